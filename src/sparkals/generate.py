"""Synthetic e-commerce event logs in the Retail Rocket schema, with structure ALS can find.

Every random draw is a hash of (seed, event id, purpose), so the log is identical for the same
seed however Spark partitions the work, and it is generated on the executors: tens of millions
of events never pass through the driver.

The planted structure: items belong to one of `genres` groups with power-law popularity inside
each group; every user prefers three groups (55 / 25 / 12 % of their events, 8 % noise), and buys
mostly from the first. Popularity alone therefore recommends the wrong group for most users,
while a latent-factor model can learn each user's groups.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

__all__ = ["RETAIL_ROCKET_COLUMNS", "GeneratorSpec", "generate_events"]

RETAIL_ROCKET_COLUMNS = ["timestamp", "visitorid", "event", "itemid", "transactionid"]

_TWO_63 = float(2**63)
_SESSIONS_PER_USER = 12
_SESSION_MS = 30 * 60 * 1000


@dataclass(frozen=True)
class GeneratorSpec:
    """What to generate; `start` is the first day of the log, `days` its length."""

    users: int = 10_000
    items: int = 2_000
    events: int = 500_000
    seed: int = 7
    start: dt.date = dt.date(2026, 7, 1)
    days: int = 120
    genres: int = 0  # 0: pick from the catalogue size

    def genre_count(self) -> int:
        if self.genres:
            return self.genres
        return max(2, min(50, self.items // 40))


def _uniform(seed: int, purpose: str, *cols: Column) -> Column:
    """A uniform draw in [0, 1) that depends only on the seed, the purpose and the columns."""
    hashed = F.xxhash64(F.lit(seed), F.lit(purpose), *cols)
    return (hashed.bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF)).cast("double")) / F.lit(_TWO_63)


def _scramble(index: Column) -> Column:
    """A bijection of [0, 2^31): ids that look like a real catalogue's, not 0..n-1."""
    return ((index * F.lit(2654435761) + F.lit(104729)) % F.lit(2**31)).cast("long")


def generate_events(spark: SparkSession, spec: GeneratorSpec) -> DataFrame:
    """The event log as a DataFrame with the Retail Rocket columns."""
    if spec.users < 1 or spec.items < 1 or spec.events < 1:
        raise ValueError("users, items and events must all be at least 1")
    genres = spec.genre_count()
    per_genre = max(1, spec.items // genres)
    start_ms = int(dt.datetime.combine(spec.start, dt.time(), dt.timezone.utc).timestamp() * 1000)
    span_ms = spec.days * 86_400_000 - _SESSION_MS
    seed = spec.seed
    partitions = max(2, spec.events // 1_000_000)

    eid = F.col("id")
    user = F.floor(F.lit(spec.users) * F.pow(_uniform(seed, "user", eid), 2.0)).cast("long")
    kind = _uniform(seed, "event", eid)
    event = (
        F.when(kind < 0.011, F.lit("transaction"))
        .when(kind < 0.037, F.lit("addtocart"))
        .otherwise(F.lit("view"))
    )
    taste = [F.floor(F.lit(genres) * _uniform(seed, f"taste{k}", user)).cast("long") for k in range(3)]
    pick = _uniform(seed, "genre", eid)
    noise_genre = F.floor(F.lit(genres) * _uniform(seed, "noise", eid)).cast("long")
    genre = (
        F.when((F.col("event") != "view") & (pick < 0.8), taste[0])
        .when(pick < 0.55, taste[0])
        .when(pick < 0.80, taste[1])
        .when(pick < 0.92, taste[2])
        .otherwise(noise_genre)
    )
    popularity_rank = F.floor(F.lit(per_genre) * F.pow(_uniform(seed, "item", eid), 2.5)).cast("long")
    item_index = F.col("genre") + F.lit(genres) * popularity_rank
    session = F.floor(F.lit(_SESSIONS_PER_USER) * _uniform(seed, "session", eid)).cast("long")
    session_start = F.lit(start_ms) + F.floor(F.lit(span_ms) * _uniform(seed, "when", user, session))
    offset = F.floor(F.lit(_SESSION_MS) * _uniform(seed, "offset", eid))
    txn = F.when(
        F.col("event") == "transaction",
        F.floor(F.lit(10_000_000) * _uniform(seed, "txn", user, session)).cast("long"),
    )

    return (
        spark.range(0, spec.events, numPartitions=partitions)
        .withColumn("visitorid", user)
        .withColumn("event", event)
        .withColumn("genre", genre)
        .withColumn("itemid", _scramble(item_index))
        .withColumn("session", session)
        .withColumn("timestamp", (session_start + offset).cast("long"))
        .withColumn("transactionid", txn)
        .select(*RETAIL_ROCKET_COLUMNS)
    )
