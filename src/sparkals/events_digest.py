"""A fingerprint of the events a night's ratings were built from: how many, and the sum of a
32-bit hash of each one's content.

The gate measures, on a time split, a model trained on the events before the test period; the
night before that period trained exactly such a model, with the same settings. The fingerprint is
how a later run tells that the events that night learned from are still the ones on disk (a late
event re-ingested into an old day changes it). A sum of integers is exact and the same whatever
the order or partitioning, so it can be taken inside the night's own aggregation (per pair, then
summed) and, later, straight over the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkals.vocabulary import EVENT, EVENT_DATE, ITEM_ID, QUANTITY, TS, USER_ID

__all__ = [
    "COUNT", "DIGEST", "EventsDigest", "digest_aggregates", "digest_of", "event_hash", "exclusion_digest", "rows_digest",
]

COUNT, DIGEST = "_digest_events", "_digest"
# What an event is: every column that can change what it adds to a rating.
_FIELDS = (USER_ID, ITEM_ID, EVENT, TS, QUANTITY, EVENT_DATE)


def event_hash(events: DataFrame) -> Column:
    """A hash of one event's fields, kept to 32 bits so that summing billions cannot overflow a long."""
    fields = [F.col(name) for name in _FIELDS if name in events.columns]
    return F.xxhash64(*fields).bitwiseAND(F.lit(0xFFFFFFFF))


def digest_aggregates(events: DataFrame) -> list[Column]:
    """The two aggregates (`_digest_events`, `_digest`) to take alongside a grouping of `events`;
    summed over the groups they give the digest of all of them."""
    return [F.count(F.lit(1)).alias(COUNT), F.sum(event_hash(events)).alias(DIGEST)]


@dataclass(frozen=True)
class EventsDigest:
    events: int
    digest: int

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "digest": self.digest}

    @staticmethod
    def from_dict(found: dict[str, Any] | None) -> EventsDigest | None:
        return EventsDigest(int(found["events"]), int(found["digest"])) if found else None


def rows_digest(frame: DataFrame) -> EventsDigest:
    """The digest of every row of `frame` (of the fields above it has): one Spark job."""
    row = frame.agg(*digest_aggregates(frame)).first()
    return EventsDigest(int(row[COUNT]), int(row[DIGEST] or 0))


def digest_of(events: DataFrame, event_types: Sequence[str]) -> EventsDigest:
    """The digest of the events of `event_types` (those a rating counts): one Spark job."""
    return rows_digest(events.filter(F.col(EVENT).isin(list(event_types))))


def exclusion_digest(excluded: DataFrame | None) -> EventsDigest | None:
    """The digest of the item ids read from `ratings.exclude_items_path` (None without a file):
    they are left out of the ratings, so they shape what a model learns as much as the events."""
    return None if excluded is None else rows_digest(excluded)
