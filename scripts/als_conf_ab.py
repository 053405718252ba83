"""ALS's fit under two Spark configurations, alternating in new processes: which one trains faster?

Settings such as `spark.serializer` are read once, when the JVM starts, so each round is a new
process per variant (A, B, A, B, ...), each fitting the same ratings: one unrecorded fit to warm its
JVM, then --fits timed ones. A checksum of the user factors shows whether both learned the same model.

    .venv/bin/python scripts/als_conf_ab.py --ratings .bench/out-1000000/without_gate0/ratings/run_date=2026-11-01 \\
        --b spark.serializer=org.apache.spark.serializer.KryoSerializer --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session, spread  # noqa: E402


def fit_in_this_process(ratings_path: str, conf: list[str], fits: int, rank: int) -> dict:
    from pyspark.sql import functions as F

    from sparkals.config import ALSSettings
    from sparkals.train import train_als

    spark = local_session(conf=dict(pair.split("=", 1) for pair in conf))
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="als-ab-ckpt-"))
    ratings = spark.read.parquet(ratings_path).cache()
    count = ratings.count()
    settings = ALSSettings(rank=rank, max_iter=10, reg_param=0.05, num_user_blocks=0, num_item_blocks=0)
    train_als(ratings, settings)  # warm-up, unrecorded
    seconds, checksum = [], None
    for _ in range(fits):
        started = time.perf_counter()
        fitted = train_als(ratings, settings)
        seconds.append(time.perf_counter() - started)
        checksum = fitted.model.userFactors.select(
            F.sum(F.aggregate("features", F.lit(0.0).cast("double"), lambda acc, x: acc + x))).first()[0]
    spark.stop()
    return {"ratings": count, "seconds": seconds, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", required=True, help="indexed ratings Parquet (an aggregate stage's output)")
    parser.add_argument("--a", action="append", default=[], help="KEY=VALUE of variant A (default: none)")
    parser.add_argument("--b", action="append", default=[], help="KEY=VALUE of variant B")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fits", type=int, default=2, help="timed fits per process")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--conf", action="append", default=[], help=argparse.SUPPRESS)  # the child's variant
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_in_this_process(args.ratings, args.conf, args.fits, args.rank)))
        return
    results: dict[str, list[float]] = {"A": [], "B": []}
    checksums: dict[str, set] = {"A": set(), "B": set()}
    for round_number in range(args.rounds):
        for name, conf in (("A", args.a), ("B", args.b)):
            command = [sys.executable, __file__, "--child", "--ratings", args.ratings, "--fits", str(args.fits),
                       "--rank", str(args.rank)] + [f"--conf={pair}" for pair in conf]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            child = json.loads(out)
            results[name] += child["seconds"]
            checksums[name].add(round(child["checksum"], 3))
            print(f"round {round_number + 1} {name} {conf}: {child['ratings']:,} ratings, fits "
                  f"{', '.join(f'{s:.2f}' for s in child['seconds'])} s, checksum {child['checksum']:.4f}", flush=True)
    for name in ("A", "B"):
        fits = spread(results[name])
        print(f"{name}: median {fits['median']:.2f} s of {len(results[name])} fits "
              f"[{fits['min']:.2f}-{fits['max']:.2f}], checksums {sorted(checksums[name])}")


if __name__ == "__main__":
    main()
