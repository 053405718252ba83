"""Train / test splits of clean events for offline evaluation and tuning.

Both splits return events (all canonical columns), not ratings, so that the training side goes
through the same `build_ratings` as production and the test side can be turned into relevance
pairs with `user_items`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from sparkals.config import EvaluateSettings
from sparkals.vocabulary import EVENT_DATE, ITEM_ID, TS, USER_ID

__all__ = [
    "Holdout", "last_days_cutoff", "leave_last_n_out", "random_split", "split_events", "time_split", "user_items",
]

_TWO_63 = float(2**63)


def _event_day(events: DataFrame) -> Column:
    """The event's day: `event_date` as ingest wrote it, else the day of `ts` in the session time zone."""
    return F.col(EVENT_DATE) if EVENT_DATE in events.columns else F.to_date(F.col(TS))


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
    pairs = events.groupBy(USER_ID, ITEM_ID).agg(F.max(TS).alias("_last_ts"))
    per_user = Window.partitionBy(USER_ID)
    newest_first = per_user.orderBy(F.col("_last_ts").desc(), F.col(ITEM_ID).asc())
    held_out = (
        pairs.withColumn("_pos", F.row_number().over(newest_first))
        .withColumn("_items", F.count("*").over(per_user))
        .filter((F.col("_items") > n) & (F.col("_pos") <= n))
        .select(USER_ID, ITEM_ID)
    )
    train = events.join(held_out, [USER_ID, ITEM_ID], "left_anti").select(*events.columns)
    test = events.join(held_out, [USER_ID, ITEM_ID], "left_semi").select(*events.columns)
    return train, test


def random_split(events: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Per user, hold out each distinct item with probability `fraction`; train on the rest.

    The draw is a hash of (seed, user_id, item_id), not a random number generator, so the same
    seed gives the same split on every run however Spark partitions the work. Each user's first
    item in hash order stays in training, so no user loses all of their history (users with one
    item are never tested). All events of a held-out pair go to test.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"random_split needs 0 < fraction < 1, got {fraction}")
    hashed = F.xxhash64(F.lit(seed), F.col(USER_ID), F.col(ITEM_ID))
    draw = hashed.bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF)).cast("double") / F.lit(_TWO_63)
    first_in_hash_order = F.row_number().over(Window.partitionBy(USER_ID).orderBy(hashed, F.col(ITEM_ID))) == 1
    held_out = (
        events.select(USER_ID, ITEM_ID).distinct()
        .withColumn("_first", first_in_hash_order)
        .filter((draw < F.lit(fraction)) & ~F.col("_first"))
        .select(USER_ID, ITEM_ID)
    )
    train = events.join(held_out, [USER_ID, ITEM_ID], "left_anti").select(*events.columns)
    test = events.join(held_out, [USER_ID, ITEM_ID], "left_semi").select(*events.columns)
    return train, test


def user_items(events: DataFrame) -> DataFrame:
    """Distinct (`user_id`, `item_id`) pairs of events: the relevance set of a test period, or
    what a user has already seen in training."""
    return events.select(USER_ID, ITEM_ID).distinct()


@dataclass(frozen=True)
class Holdout:
    """Train and test events of one split, and what identifies it in a report."""

    train: DataFrame
    test: DataFrame
    method: str
    cutoff: dt.date | None

    @cached_property
    def sizes(self) -> tuple[int, int]:
        """(training events, test events), counted together in one Spark action the first time they
        are asked for: the empty-split check and the report share it."""
        side = F.col("_train")
        both = self.train.select(F.lit(True).alias("_train")).unionByName(self.test.select(F.lit(False).alias("_train")))
        row = both.agg(F.count(F.when(side, 1)).alias("train"), F.count(F.when(~side, 1)).alias("test")).first()
        return int(row["train"]), int(row["test"])

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "cutoff": str(self.cutoff) if self.cutoff else None}

    @property
    def as_of(self) -> dt.date | None:
        """The day training ratings are built "as of": the day before the test period, so that
        time decay never looks into the future (None: no cutoff, use the run date)."""
        return self.cutoff - dt.timedelta(days=1) if self.cutoff else None


def split_events(events: DataFrame, settings: EvaluateSettings, run_date: dt.date) -> Holdout:
    """The configured split of events up to the run date."""
    if settings.split == "leave_last_n":
        train, test = leave_last_n_out(events, settings.leave_last_n)
        return Holdout(train, test, f"leave_last_{settings.leave_last_n}", None)
    if settings.split == "random":
        train, test = random_split(events, settings.test_fraction, settings.seed)
        return Holdout(train, test, f"random_{settings.test_fraction:g}_seed{settings.seed}", None)
    cutoff = (
        dt.date.fromisoformat(settings.cutoff_date) if settings.cutoff_date
        else last_days_cutoff(run_date, settings.test_days)
    )
    train, test = time_split(events, cutoff)
    return Holdout(train, test, "time", cutoff)
