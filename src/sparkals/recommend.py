"""What scoring needs besides the model: who to score, what each user must not get again, the
fallback for users without factors, and the translation back to the original ids.

All pure DataFrame functions; the scoring itself is in score.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

RECOMMENDATION_COLUMNS = ["user_id", "rank", "item_id", "score", "source", "model_version"]


def _since(run_date: dt.date, days: int) -> F.Column:
    """Events of the last `days` days up to and including the run date (all when days is 0)."""
    if days <= 0:
        return F.lit(True)
    return F.col("event_date") > F.lit(run_date - dt.timedelta(days=days))


def item_keys(items: DataFrame) -> DataFrame:
    """The item index table (`id`, `idx`) under the names scoring joins on: `item_id`, `item`."""
    return items.select(F.col("id").alias("item_id"), F.col("idx").alias("item"))


def users_to_score(events: DataFrame, run_date: dt.date, active_days: int = 0) -> DataFrame:
    """`user_id` of every user with an event in the window: tonight's audience."""
    return events.filter(_since(run_date, active_days)).select("user_id").distinct()


def seen_items(
    events: DataFrame, items: DataFrame, filter_events: Sequence[str], run_date: dt.date, lookback_days: int = 0
) -> DataFrame:
    """`user_id`, `seen` (array of item indexes) the user must not be recommended again.

    Items without an index cannot be recommended anyway, so they are left out here."""
    chosen = events.filter(F.col("event").isin(list(filter_events)) & _since(run_date, lookback_days))
    return seen_arrays(chosen, items)


def seen_arrays(pairs: DataFrame, items: DataFrame) -> DataFrame:
    """(`user_id`, `item_id`) pairs to `user_id`, `seen` (sorted item indexes): the masks the
    scorer takes. Items without an index are dropped (the model cannot recommend them)."""
    return (
        pairs.join(item_keys(items), "item_id")
        .groupBy("user_id")
        .agg(F.array_sort(F.collect_set("item")).alias("seen"))
    )


def fallback_scores(
    events: DataFrame, ratings: DataFrame, items: DataFrame, run_date: dt.date, days: int
) -> DataFrame:
    """`item`, `score`: distinct users per item over the last `days` days of `events`, plus the
    item's all-time users in `ratings` (`user`, `item`: one row a pair) as a fraction below one,
    so ties (and items quiet lately) still rank sensibly.

    The all-time count comes from the ratings, which are already one row per (user, item) and
    count within each partition; counting distinct users over the raw events instead was a
    shuffle of every event (37 s of 170 at 16M events). Only the recent days are shuffled."""
    ever = ratings.groupBy("item").agg(F.count("*").alias("ever"))
    recent = (
        events.filter(_since(run_date, days)).select("item_id", "user_id").distinct()
        .join(item_keys(items), "item_id").groupBy("item").agg(F.count("*").alias("recent"))
    )
    most = ever.agg(F.max("ever").alias("most"))
    return ever.join(recent, "item", "left").crossJoin(F.broadcast(most)).select(
        "item", (F.coalesce(F.col("recent"), F.lit(0)) + F.col("ever") / (F.col("most") + 1)).alias("score")
    )


def scoring_input(
    audience: DataFrame, users: DataFrame, user_factors: DataFrame, seen: DataFrame | None = None
) -> DataFrame:
    """`user_id`, `features` (null: no factors, serve the fallback), `seen` (null: nothing to
    mask) for every user to score."""
    factors = users.select(F.col("id").alias("user_id"), F.col("idx").alias("user")).join(
        user_factors.select(F.col("id").alias("user"), "features"), "user"
    )
    with_factors = audience.join(factors, "user_id", "left")
    if seen is None:
        return with_factors.select("user_id", "features", F.lit(None).cast("array<int>").alias("seen"))
    return with_factors.join(seen, "user_id", "left").select("user_id", "features", "seen")


def to_original_ids(scored: DataFrame, items: DataFrame, model_version: str) -> DataFrame:
    """Scorer output (`user_id`, `rank`, `item`, `score`, `source`) with item indexes translated
    back to the original ids, in the published column order."""
    return scored.join(item_keys(items), "item").select(
        "user_id", "rank", "item_id", F.col("score").cast("double").alias("score"), "source",
        F.lit(model_version).alias("model_version"),
    )


def similar_to_original_ids(similar: DataFrame, items: DataFrame, model_version: str) -> DataFrame:
    """`similar_items` output (`item`, `rank`, `similar`, `score`) in the original ids:
    `item_id`, `rank`, `similar_item_id`, `score`, `model_version`."""
    keys = item_keys(items)
    return (
        similar.join(keys, "item")
        .join(keys.select(F.col("item_id").alias("similar_item_id"), F.col("item").alias("similar")), "similar")
        .select("item_id", "rank", "similar_item_id", "score", F.lit(model_version).alias("model_version"))
    )


def top_n_indexed(model: ALSModel, n: int) -> DataFrame:
    """`user`, `rank` (1..n), `item`, `score` for every user with factors, straight from Spark's
    `recommendForAllUsers` (no filtering): the reference the blocked scorer is measured against."""
    return model.recommendForAllUsers(n).select(
        "user", F.posexplode("recommendations").alias("pos", "rec")
    ).select(
        "user",
        (F.col("pos") + 1).cast("int").alias("rank"),
        F.col("rec.item").alias("item"),
        F.col("rec.rating").cast("double").alias("score"),
    )


def native_top_n_filtered(model: ALSModel, seen: DataFrame, n: int) -> DataFrame:
    """The usual work-around without a masking scorer: ask `recommendForAllUsers` for
    n + max(seen) items, anti-join the seen (`user`, `item`) pairs, keep the first n.
    Kept as the baseline of scripts/bench_scoring.py and as a cross-check in the tests."""
    widest = seen.groupBy("user").count().agg(F.max("count")).first()[0] or 0
    candidates = top_n_indexed(model, n + int(widest)).join(seen, ["user", "item"], "left_anti")
    by_score = Window.partitionBy("user").orderBy(F.col("score").desc(), F.col("item"))
    return (
        candidates.withColumn("rank", F.row_number().over(by_score))
        .filter(F.col("rank") <= n)
        .select("user", "rank", "item", "score")
    )
