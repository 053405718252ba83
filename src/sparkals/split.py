"""Train / test splits of clean events for offline evaluation and tuning.

Both splits return events (all canonical columns), not ratings, so that the training side goes
through the same `build_ratings` as production and the test side can be turned into relevance
pairs with `user_items`.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def _event_day(events: DataFrame) -> Column:
    """The event's day: `event_date` as ingest wrote it, else the day of `ts` in the session time zone."""
    return F.col("event_date") if "event_date" in events.columns else F.to_date(F.col("ts"))


def time_split(events: DataFrame, cutoff: dt.date) -> tuple[DataFrame, DataFrame]:
    """Train on days before `cutoff`, test on the cutoff day and after: the way the model is used
    (learn from the past, predict the next days), so nothing from the test period leaks into training.

    The boundary is by day (`event_date`), not by instant. Rows without a date fall in neither
    part; clean events always have one.
    """
    if isinstance(cutoff, dt.datetime):
        raise TypeError("time_split cuts at a day: pass a datetime.date, not a datetime")
    before = _event_day(events) < F.lit(cutoff)
    return events.filter(before), events.filter(~before)


def last_days_cutoff(run_date: dt.date, days: int) -> dt.date:
    """The cutoff that leaves the last `days` days up to and including `run_date` for testing
    (days=7 on 2026-11-01 gives 2026-10-26: test covers 10-26 .. 11-01)."""
    if days < 1:
        raise ValueError(f"the test period must be at least one day, got days={days}")
    return run_date - dt.timedelta(days=days - 1)


def leave_last_n_out(events: DataFrame, n: int) -> tuple[DataFrame, DataFrame]:
    """Per user, hold out the `n` most recent distinct items; train on the rest.

    An interaction is a (user, item) pair, dated by its latest event. The n pairs with the latest
    dates go to test; among pairs with the same latest timestamp the smaller `item_id` counts as
    more recent, so the split is the same on every run. All events of a held-out pair go to test
    (an earlier view of the item must not leak its purchase into training). Users with n or fewer
    distinct items keep everything in train: holding out all of their history would leave ALS
    nothing to learn them from.
    """
    if n < 1:
        raise ValueError(f"leave_last_n_out needs n >= 1, got n={n}")
    pairs = events.groupBy("user_id", "item_id").agg(F.max("ts").alias("_last_ts"))
    per_user = Window.partitionBy("user_id")
    newest_first = per_user.orderBy(F.col("_last_ts").desc(), F.col("item_id").asc())
    held_out = (
        pairs.withColumn("_pos", F.row_number().over(newest_first))
        .withColumn("_items", F.count("*").over(per_user))
        .filter((F.col("_items") > n) & (F.col("_pos") <= n))
        .select("user_id", "item_id")
    )
    train = events.join(held_out, ["user_id", "item_id"], "left_anti").select(*events.columns)
    test = events.join(held_out, ["user_id", "item_id"], "left_semi").select(*events.columns)
    return train, test


def user_items(events: DataFrame) -> DataFrame:
    """Distinct (`user`, `item`) pairs of events, in the column names `sparkals.metrics` takes:
    the relevance set of a test period, or what a user has already seen in training."""
    return events.select(F.col("user_id").alias("user"), F.col("item_id").alias("item")).distinct()
