"""Stage `aggregate`: clean events → weighted (user_idx, item_idx, rating) under
`ratings/run_date=...` with `_stats.json`, and the night's index tables under `indexes/run_date=...`
(earlier ids keep their index)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.config import Config, RatingsSettings
from sparkals.errors import PipelineError
from sparkals.events_digest import COUNT, DIGEST, EventsDigest, digest_aggregates, exclusion_digest
from sparkals.paths import Paths
from sparkals.ratings import MatrixStats, aggregate_ratings, build_indexes, index_ratings, matrix_stats, refine_ratings
from sparkals.stages.common import (
    previous_index_date, read_events, read_exclusion_file, read_indexes, timed, write_indexes,
)
from sparkals.vocabulary import ITEM_ID, USER_ID

__all__ = ["AggregateResult", "Shape", "build_ratings_counted", "run"]


@dataclass(frozen=True)
class Shape:
    users: int
    items: int
    nonzeros: int
    events: EventsDigest  # the weighted events the ratings were built from


@dataclass(frozen=True)
class AggregateResult:
    ratings: int
    users: int
    items: int
    density: float
    removed_users: int
    removed_items: int
    seconds: float = 0.0


def build_ratings_counted(
    events: DataFrame, settings: RatingsSettings, run_date: dt.date, excluded: DataFrame | None
) -> tuple[DataFrame, Shape]:
    """(user_id, item_id, rating) as `ratings.build_ratings` makes them, cached, and the shape of
    the matrix before the filters (to say what they removed) with the digest of the events: one
    aggregation serves all three."""
    aggregated = aggregate_ratings(
        events, settings.weights, run_date, settings.half_life_days, extra=digest_aggregates(events)
    ).cache()
    before = aggregated.agg(
        F.count("*").alias("nonzeros"), F.countDistinct(USER_ID).alias("users"), F.countDistinct(ITEM_ID).alias("items"),
        F.sum(COUNT).alias(COUNT), F.sum(DIGEST).alias(DIGEST),
    ).first()
    ratings = refine_ratings(aggregated.drop(COUNT, DIGEST), settings, excluded).cache()
    ratings.count()
    aggregated.unpersist()
    digest = EventsDigest(int(before[COUNT] or 0), int(before[DIGEST] or 0))
    return ratings, Shape(before["users"], before["items"], before["nonzeros"], digest)


@timed("aggregate")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> AggregateResult:
    """Clean events to weighted, indexed ratings with statistics."""
    paths = Paths(cfg.output.root)
    events = read_events(spark, paths, run_date)
    previous = previous_index_date(spark, paths, run_date)
    old_users, old_items = read_indexes(spark, paths, previous) if previous else (None, None)

    excluded = read_exclusion_file(spark, cfg)
    ratings, before = build_ratings_counted(events, cfg.ratings, run_date, excluded)
    users, items = write_indexes(spark, paths, run_date, *build_indexes(ratings, old_users, old_items))
    index_ratings(ratings, users, items).write.mode("overwrite").parquet(paths.ratings(run_date))
    ratings.unpersist()

    stats = matrix_stats(spark.read.parquet(paths.ratings(run_date)))
    if stats.nonzeros == 0:
        raise PipelineError(
            f"no ratings for {run_date}: no events up to that date have a weighted event type "
            f"({', '.join(cfg.ratings.weights)}), or the filters in [ratings] removed them all"
        )
    removed = _removed(before, stats)
    fs.write_json(spark, paths.ratings_stats(run_date), {
        "run_date": str(run_date), **stats.as_dict(), "removed_by_filters": removed,
        "settings": dataclasses.asdict(cfg.ratings), "events_digest": before.events.as_dict(),
        "exclusion_digest": _as_dict(exclusion_digest(excluded)),
    })
    return AggregateResult(stats.nonzeros, stats.users, stats.items, round(stats.density, 6),
                           removed["users"], removed["items"])


def _removed(before: Shape, after: MatrixStats) -> dict[str, int]:
    return {key: getattr(before, key) - getattr(after, key) for key in ("users", "items", "nonzeros")}


def _as_dict(digest: EventsDigest | None) -> dict[str, int] | None:
    return None if digest is None else digest.as_dict()
