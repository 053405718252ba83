"""A night under two values of a Spark SQL setting, alternating in one JVM: `nightly` into a fresh
--root (the gate as configured; --set gate.enabled=false for the night without it), then --rounds
rounds of one night per value, each printed with its stages' seconds, then the medians. The first
round of each value is not counted (class loading, JIT). Only settings that can change at runtime
(`spark.sql.*`) can alternate in one JVM; for others see scripts/als_conf_ab.py.

    .venv/bin/python scripts/night_sql_conf_ab.py --root /tmp/ab-night --log .bench/log-1000000 \\
        --set gate.enabled=false --conf spark.sql.sources.parallelPartitionDiscovery.threshold \\
        --values 32,10000 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session  # noqa: E402
from bench import RUN_DATE  # noqa: E402
from sparkals.config import load_config  # noqa: E402
from sparkals.stages import nightly  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output root (emptied first)")
    parser.add_argument("--log", required=True, help="an event log of scripts/bench.py (.bench/log-N)")
    parser.add_argument("--conf", required=True, help="the spark.sql.* setting to alternate")
    parser.add_argument("--values", required=True, help="its two values, comma-separated")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--set", action="append", default=["als.rank=32"], dest="overrides")
    args = parser.parse_args()
    values = args.values.split(",")
    shutil.rmtree(args.root, ignore_errors=True)
    cfg = load_config([REPO / "conf" / "local.toml"], [f"input.path={args.log}", f"output.root={args.root}",
                                                        *args.overrides])
    spark = local_session(driver_memory="8g")
    nights: dict[str, list[dict[str, float]]] = {value: [] for value in values}
    for round_number in range(args.rounds + 1):
        for value in values:
            spark.conf.set(args.conf, value)
            result = nightly.run(spark, cfg, RUN_DATE)
            seconds = {"night": result.seconds, **result.stage_seconds}
            print(json.dumps({"round": round_number, args.conf: value, **seconds}), flush=True)
            if round_number:
                nights[value].append(seconds)
    for value, runs in nights.items():
        medians = {name: round(statistics.median(run[name] for run in runs), 2) for name in runs[0]}
        print(json.dumps({args.conf: value, "median": medians, "nights": [run["night"] for run in runs]}))


if __name__ == "__main__":
    main()
