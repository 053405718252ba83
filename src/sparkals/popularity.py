"""Item popularity, defined once: distinct users per item. It ranks the baselines ALS is measured
against ("popular", "recent_popular") and the fallback served to users without factors.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkals.vocabulary import EVENT_DATE, ITEM_ID, ITEM_IDX, RANK, SCORE, TS, USER_ID, require_columns

__all__ = [
    "fallback_scores", "popular_items", "popularity_recs", "popularity_scores", "since_day", "top_items",
    "users_per_item",
]


def since_day(events: DataFrame, since: dt.date | None) -> Column:
    """Events on or after day `since` (every event when None), by `event_date` or else the day of `ts`."""
    if since is None:
        return F.lit(True)
    if isinstance(since, dt.datetime):
        raise TypeError("`since` is a day: pass a datetime.date, not a datetime")
    day = F.col(EVENT_DATE) if EVENT_DATE in events.columns else F.to_date(F.col(TS))
    return day >= F.lit(since)


def users_per_item(pairs: DataFrame, item_col: str = ITEM_ID) -> DataFrame:
    """(`item_col`, `users`): how many rows each item has in `pairs`, which must hold one row per
    (user, item), as ratings do. Counting within partitions first, it needs no shuffle of users."""
    return pairs.groupBy(item_col).agg(F.count("*").alias("users"))


def popularity_scores(pairs: DataFrame) -> DataFrame:
    """(`item_id`, `score` = distinct users, as a double): what `top_items` ranks for the popular
    baseline. `pairs` holds one row per (user_id, item_id), as ratings do."""
    return users_per_item(pairs).select(ITEM_ID, F.col("users").cast("double").alias(SCORE))


def _distinct_pairs(events: DataFrame) -> DataFrame:
    return events.select(USER_ID, ITEM_ID).distinct()


def top_items(counts: DataFrame, n: int, item_col: str = ITEM_ID) -> DataFrame:
    """The `n` rows of (`item_col`, `score`) with the highest score as (`item_col`, `rank`, `score`),
    equal scores ordered by item."""
    if n < 1:
        raise ValueError(f"top_items needs n >= 1, got n={n}")
    # The list is n rows (a few hundred), not data: number it on the driver. A window over all rows
    # would do the same through one partition, and Spark warns about that on every run.
    top = counts.orderBy(F.col(SCORE).desc(), F.col(item_col).asc()).limit(n).select(item_col, SCORE).collect()
    schema = T.StructType([counts.schema[item_col], T.StructField(RANK, T.IntegerType(), False), counts.schema[SCORE]])
    return counts.sparkSession.createDataFrame([(row[0], rank, row[1]) for rank, row in enumerate(top, 1)], schema)


def popular_items(events: DataFrame, n: int, since: dt.date | None = None) -> DataFrame:
    """The `n` items with the most distinct users (`item_id`, `rank`, `score` = distinct users):
    the baseline a personalised model has to beat. With `since`, only events on or after that
    day count (the "recently popular" baseline). Equal scores are ordered by item.
    """
    if n < 1:
        raise ValueError(f"popular_items needs n >= 1, got n={n}")
    require_columns(events, [USER_ID, ITEM_ID], "popular_items")
    return top_items(popularity_scores(_distinct_pairs(events.filter(since_day(events, since)))), n)


def popularity_recs(
    users: DataFrame, popular: DataFrame, n: int, train_seen: DataFrame | None = None
) -> DataFrame:
    """Top-n popular items for every `user_id` (`user_id`, `item_id`, `rank`, `score`).

    With `train_seen` (`user_id`, `item_id`), each user's training items are skipped and the next
    popular ones move up, so every user gets exactly n as long as `popular` holds n unseen items
    for them: a user who has seen s of the popular items draws from the first n + s of them.
    Pass a `popular` list longer than n for that (e.g. `popular_items(train, n + 100)`). The
    list is broadcast and matched against every user, so keep it to hundreds or thousands of items.
    """
    if n < 1:
        raise ValueError(f"popularity_recs needs n >= 1, got n={n}")
    candidates = popular.select(ITEM_ID, F.col(RANK).alias("_pop_rank"), SCORE)
    who = users.select(USER_ID).distinct()
    if train_seen is None:
        top = F.broadcast(candidates.filter(F.col("_pop_rank") <= n))
        return who.crossJoin(top).select(USER_ID, ITEM_ID, F.col("_pop_rank").cast("int").alias(RANK), SCORE)

    seen = train_seen.select(USER_ID, ITEM_ID).distinct()
    seen_popular = seen.join(candidates.select(ITEM_ID), ITEM_ID, "left_semi").groupBy(USER_ID).agg(
        F.count("*").alias("_seen")
    )
    budget = who.join(seen_popular, USER_ID, "left").select(
        USER_ID, (F.lit(n) + F.coalesce(F.col("_seen"), F.lit(0))).alias("_budget")
    )
    drawn = budget.join(F.broadcast(candidates), F.col("_pop_rank") <= F.col("_budget"))
    unseen = drawn.join(seen, [USER_ID, ITEM_ID], "left_anti")
    in_order = Window.partitionBy(USER_ID).orderBy(F.col("_pop_rank"), F.col(ITEM_ID))
    return (
        unseen.select(USER_ID, ITEM_ID, SCORE, F.row_number().over(in_order).alias(RANK))
        .filter(F.col(RANK) <= n)
        .select(USER_ID, ITEM_ID, RANK, SCORE)
    )


def fallback_scores(
    events: DataFrame, ratings: DataFrame, items: DataFrame, run_date: dt.date, days: int
) -> DataFrame:
    """`item_idx`, `score`: distinct users per item over the last `days` days of `events`, plus the
    item's all-time users in `ratings` (`user_idx`, `item_idx`: one row a pair) as a fraction below
    one, so ties (and items quiet lately) still rank sensibly.

    The all-time count comes from the ratings, which are already one row per (user, item) and
    count within each partition; counting distinct users over the raw events instead was a
    shuffle of every event (37 s of 170 at 16M events). Only the recent days are shuffled."""
    ever = users_per_item(ratings, ITEM_IDX).withColumnRenamed("users", "ever")
    since = run_date - dt.timedelta(days=days - 1) if days > 0 else None
    recent_pairs = _distinct_pairs(events.filter(since_day(events, since))).join(items, ITEM_ID)
    recent = users_per_item(recent_pairs, ITEM_IDX).withColumnRenamed("users", "recent")
    most = ever.agg(F.max("ever").alias("most"))
    return ever.join(recent, ITEM_IDX, "left").crossJoin(F.broadcast(most)).select(
        ITEM_IDX, (F.coalesce(F.col("recent"), F.lit(0)) + F.col("ever") / (F.col("most") + 1)).alias(SCORE)
    )
