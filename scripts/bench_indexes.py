"""User and item indexes numbered in one pass (`ratings.build_indexes`) against each numbered on its
own (`ratings.build_index` twice, as before 2026-12-02), alternating in one JVM on the same cached
ratings: generated events (`--events`) or a ratings Parquet folder (`--ratings`, with `user_id`
and `item_id` columns, or `user_idx`/`item_idx`, read as ids). Checks both give the same indexes.

    .venv/bin/python scripts/bench_indexes.py --events 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session, spread  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from sparkals.config import RatingsSettings  # noqa: E402
from sparkals.generate import GeneratorSpec, generate_events  # noqa: E402
from sparkals.ratings import aggregate_ratings, build_index, build_indexes  # noqa: E402
from sparkals.vocabulary import ITEM_ID, USER_ID  # noqa: E402

def pairs_of(spark, args: argparse.Namespace) -> DataFrame:
    if args.ratings:
        frame = spark.read.parquet(args.ratings)
        if USER_ID not in frame.columns:
            frame = frame.select(F.col("user_idx").alias(USER_ID), F.col("item_idx").alias(ITEM_ID))
        return frame.select(USER_ID, ITEM_ID)
    spec = GeneratorSpec(users=args.events // 25, items=args.events // 250, events=args.events, seed=7,
                         start=dt.date(2026, 8, 1), days=90)
    events = generate_events(spark, spec).select(
        F.col("visitorid").alias(USER_ID), F.col("itemid").alias(ITEM_ID), F.col("event"))
    return aggregate_ratings(events, RatingsSettings().weights).select(USER_ID, ITEM_ID)  # the default weights


def as_dict(index: DataFrame) -> dict:
    return {row[0]: row[1] for row in index.collect()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ratings", help="a ratings Parquet folder instead of generated events")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spark = local_session()
    pairs = pairs_of(spark, args).cache()
    ratings = pairs.count()

    def together() -> list[DataFrame]:
        return list(build_indexes(pairs))

    def apart() -> list[DataFrame]:
        return [build_index(pairs, USER_ID), build_index(pairs, ITEM_ID)]

    def seconds(build) -> float:
        started = time.perf_counter()
        for index in build():
            index.count()
        return time.perf_counter() - started

    variants = {"together": together, "apart": apart}
    for build in variants.values():  # one unrecorded warm-up of each
        seconds(build)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):  # alternating
        for name, build in variants.items():
            results[name].append(seconds(build))
    same = all(as_dict(a) == as_dict(b) for a, b in zip(together(), apart()))
    summary = {"ratings": ratings, **{name: spread(runs) for name, runs in results.items()}, "same_indexes": same}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
