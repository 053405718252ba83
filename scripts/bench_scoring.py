"""Benchmark: scoring every user with seen-item filtering.

The project's blocked scorer (score.py: broadcast item factors, NumPy BLAS per block in
mapInArrow, seen items masked before the top-N) against Spark's native
`recommendForAllUsers(n + max seen)` + anti-join, on the same trained model. Each figure is the
median of several runs; results go to stdout and, with --json, to a file.

    .venv/bin/python scripts/bench_scoring.py --events 2000000 --users 100000 --items 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from _bench_common import local_session, machine, timed  # noqa: E402
from sparkals.config import ALSSettings, IngestSettings, InputSettings, RatingsSettings  # noqa: E402
from sparkals.generate import GeneratorSpec, generate_events  # noqa: E402
from sparkals.ingest import accepted, parse_events  # noqa: E402
from native_scoring import native_top_n_filtered  # noqa: E402
from sparkals.ratings import build_indexes, build_ratings, index_ratings  # noqa: E402
from sparkals.score import item_matrix, score_all  # noqa: E402
from sparkals.train import train_als  # noqa: E402

RUN_DATE = dt.date(2026, 11, 1)


def prepare(spark: SparkSession, spec: GeneratorSpec, rank: int, workdir: str) -> dict[str, Any]:
    """Generated events → indexed ratings → a trained model (not timed here)."""
    events = accepted(parse_events(generate_events(spark, spec), InputSettings(), IngestSettings(), RUN_DATE))
    events.write.mode("overwrite").parquet(f"{workdir}/events")
    events = spark.read.parquet(f"{workdir}/events")
    ratings = build_ratings(events, RatingsSettings(), RUN_DATE)
    users, items = build_indexes(ratings)
    users.write.mode("overwrite").parquet(f"{workdir}/users")
    items.write.mode("overwrite").parquet(f"{workdir}/items")
    users, items = spark.read.parquet(f"{workdir}/users"), spark.read.parquet(f"{workdir}/items")
    index_ratings(ratings, users, items).write.mode("overwrite").parquet(f"{workdir}/ratings")
    indexed = spark.read.parquet(f"{workdir}/ratings")
    spark.sparkContext.setCheckpointDir(f"{workdir}/checkpoints")
    model = train_als(indexed, ALSSettings(rank=rank, max_iter=5, num_user_blocks=4, num_item_blocks=4)).model
    return {"events": events, "users": users, "items": items, "ratings": indexed, "model": model}


def seen_pairs(data: dict[str, Any], event_types: list[str]) -> DataFrame:
    """(`user_idx`, `item_idx`) pairs each user must not be recommended, cached for both paths."""
    chosen = data["events"].filter(F.col("event").isin(event_types)).select("user_id", "item_id").distinct()
    return chosen.join(data["users"], "user_id").join(data["items"], "item_id").select("user_idx", "item_idx").cache()


def run_blocked(data: dict[str, Any], seen: DataFrame, n: int, block_size: int) -> None:
    model = data["model"]
    users = model.userFactors.select(F.col("id").alias("key"), "features").join(
        seen.groupBy(F.col("user_idx").alias("key")).agg(F.collect_list("item_idx").alias("seen")), "key", "left"
    )
    score_all(users, item_matrix(model.itemFactors), n, block_size=block_size).write.format("noop").mode(
        "overwrite"
    ).save()


def run_native(data: dict[str, Any], seen: DataFrame, n: int) -> None:
    native_top_n_filtered(data["model"], seen, n).write.format("noop").mode("overwrite").save()


def bench(spark: SparkSession, data: dict[str, Any], n: int, repeats: int, block_sizes: list[int],
          filters: dict[str, list[str]]) -> dict[str, Any]:
    scored_users = data["model"].userFactors.count()
    results: dict[str, Any] = {"users": scored_users, "items": data["model"].itemFactors.count(), "top_n": n}
    for label, event_types in filters.items():
        seen = seen_pairs(data, event_types)
        widest = seen.groupBy("user_idx").count().agg(F.max("count")).first()[0] or 0
        entry: dict[str, Any] = {"filter_events": event_types, "seen_pairs": seen.count(), "max_seen": widest}
        entry["native"] = timed(lambda: run_native(data, seen, n), repeats)
        for block_size in block_sizes:
            entry[f"blocked_{block_size}"] = timed(lambda: run_blocked(data, seen, n, block_size), repeats, warmup=1)
        best = min((k for k in entry if k.startswith("blocked_")), key=lambda k: entry[k]["median"])
        entry["best_block"] = best
        entry["speedup_vs_native"] = round(entry["native"]["median"] / entry[best]["median"], 2)
        entry["users_per_second"] = {
            "native": round(scored_users / entry["native"]["median"]),
            "blocked": round(scored_users / entry[best]["median"]),
        }
        flops = 2.0 * scored_users * results["items"] * data["model"].rank
        entry["blocked_gflops"] = round(flops / entry[best]["median"] / 1e9, 2)
        results[label] = entry
        seen.unpersist()
        print(json.dumps({label: entry}, indent=2), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-sizes", default="512,2048,8192")
    parser.add_argument("--workdir", default=".bench/scoring")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()

    spark = local_session()
    spec = GeneratorSpec(users=args.users, items=args.items, events=args.events, seed=3,
                         start=dt.date(2026, 7, 1), days=120)
    data = prepare(spark, spec, args.rank, str(Path(args.workdir).resolve()))
    filters = {"purchases": ["transaction"], "all_events": ["view", "addtocart", "transaction"]}
    results = {
        "machine": machine(spark),
        "spec": {"events": args.events, "users": args.users, "items": args.items, "rank": args.rank},
        **bench(spark, data, args.top_n, args.repeats, [int(b) for b in args.block_sizes.split(",")], filters),
    }
    print(json.dumps(results["machine"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
