"""Item popularity, defined once: distinct users per item. It ranks the baselines ALS is measured
against ("popular", "recent_popular") and the fallback served to users without factors.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
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
    list goes to every user as one array (broadcast), so keep it to hundreds or thousands of items:
    each user's list is that array minus the user's seen items, cut at n, with no join of users
    against items and no window (one shuffle, of the seen pairs).
    """
    if n < 1:
        raise ValueError(f"popularity_recs needs n >= 1, got n={n}")
    entry = F.struct(F.col(RANK).alias("r"), F.col(ITEM_ID).alias("i"), F.col(SCORE).alias("s"))
    in_order = popular.select(entry.alias("_c")).agg(F.array_sort(F.collect_list("_c")).alias("_candidates"))
    who = users.select(USER_ID).distinct()
    candidates = F.col("_candidates")
    if train_seen is not None:
        seen = train_seen.groupBy(USER_ID).agg(F.collect_set(ITEM_ID).alias("_seen"))
        who = who.join(seen, USER_ID, "left")
        candidates = F.filter(
            candidates, lambda c: ~F.coalesce(F.array_contains(F.col("_seen"), c["i"]), F.lit(False))
        )
    drawn = who.crossJoin(F.broadcast(in_order)).select(
        USER_ID, F.posexplode(F.slice(candidates, 1, n)).alias("_pos", "_c")
    )
    return drawn.select(
        USER_ID, F.col("_c.i").alias(ITEM_ID), (F.col("_pos") + 1).cast("int").alias(RANK), F.col("_c.s").alias(SCORE)
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
