"""The night as a user runs it: `sparkals nightly` as a new process each time (JVM start, class
loading and JIT included), with and without the driver JVM's class archive (`spark.class_archive`),
the two taking turns. Wall seconds per run, and the medians, to stdout and --out as JSON.

    .venv/bin/python scripts/bench_cold.py --events 100000 --repeats 3 --out /tmp/cold.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import spread  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def night(log: Path, out: Path, archive: str, overrides: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "sparkals.cli", "nightly", "--config", str(REPO / "conf" / "local.toml"),
               "--run-date", "2026-11-01", "--set", f"input.path={log}", "--set", f"output.root={out}",
               "--set", f"spark.class_archive={archive}", *[x for o in overrides for x in ("--set", o)]]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="the .bench/log-N that scripts/bench.py generated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=["als.rank=32"], dest="overrides")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    log = REPO / ".bench" / f"log-{args.events}"
    if not log.is_dir():
        sys.exit(f"no {log}: run scripts/bench.py --sizes {args.events} --only pipeline first")
    with tempfile.TemporaryDirectory() as work:
        archive = str(Path(work) / "driver.jsa")
        first = night(log, Path(work) / "out", archive, args.overrides)  # writes the archive
        runs: dict[str, list[float]] = {"with_archive": [], "without_archive": []}
        for _ in range(args.repeats):
            runs["with_archive"].append(night(log, Path(work) / "out", archive, args.overrides))
            runs["without_archive"].append(night(log, Path(work) / "out", "", args.overrides))
            print(json.dumps({k: round(v[-1], 1) for k, v in runs.items()}), flush=True)
    result = {"events": args.events, "overrides": args.overrides, "first_run_writing_the_archive": round(first, 2),
              **{name: spread(values) for name, values in runs.items()}, "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
