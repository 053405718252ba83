"""Stage `refresh`: between nightly runs, bring the recommendations of the users who did something
since the serving model was trained up to date, without training.

ingest and aggregate the run date as the nightly would (new events, extended indexes, ratings);
rescore only the users with events after the serving model's night, with that model (users it has
never seen are folded in from their ratings; every rescored user's seen-filter includes today's
purchases); keep every other user's rows from the newest published output; publish the union
atomically as `recommendations/run_date=...` and move `_LATEST.json` to it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.config import Config
from sparkals.errors import PipelineError
from sparkals.paths import Paths
from sparkals.publish import is_complete, publish_parquet, recover, update_latest
from sparkals.ratings import exclusion_list
from sparkals.recommend import RECOMMENDATION_COLUMNS
from sparkals.stages import aggregate, ingest
from sparkals.stages.common import previous_index_date, read_events, read_exclusion_file, read_indexes, timed
from sparkals.stages.gate import serving_model
from sparkals.stages.recommend import build_recommendations, counts_by_source
from sparkals.stages.serving import load_serving_model
from sparkals.vocabulary import EVENT_DATE, RANK, USER_ID

__all__ = ["RefreshResult", "changed_users", "keep_unchanged", "run"]


@dataclass(frozen=True)
class RefreshResult:
    path: str
    rows: int
    model_version: str
    model_run_date: str
    previous: str | None  # the output the other users' rows were kept from
    users_rescored: int
    users_als: int
    users_fold_in: int
    users_fallback: int
    users_kept: int
    ingest: ingest.IngestResult
    aggregate: aggregate.AggregateResult
    seconds: float = 0.0


def changed_users(events: DataFrame, since: dt.date) -> DataFrame:
    """`user_id` of every user with an event after day `since`: whose lists may be stale."""
    return events.filter(F.col(EVENT_DATE) > F.lit(since)).select(USER_ID).distinct()


def keep_unchanged(previous: DataFrame, changed: DataFrame) -> DataFrame:
    """The published rows of the users not rescored, as they were."""
    return previous.select(*RECOMMENDATION_COLUMNS).join(changed, USER_ID, "left_anti")


def _previous_output(spark: SparkSession, paths: Paths) -> str | None:
    """The newest complete recommendations, from `_LATEST.json`."""
    if not fs.exists(spark, paths.latest_recommendations):
        return None
    path = fs.read_json(spark, paths.latest_recommendations).get("path")
    return path if path and is_complete(spark, path) else None


@timed("refresh")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> RefreshResult:
    """Ingest and aggregate the run date, rescore the users active since the serving model, publish."""
    paths = Paths(cfg.output.root)
    version = serving_model(spark, paths, "")
    if not version:
        raise PipelineError(
            "refresh scores with the serving model and no model serves yet (models/_CURRENT.json): "
            "run `sparkals nightly` first; refresh never trains"
        )
    # The model must fit the newest indexes before anything is written; tonight's only extend them,
    # so it fits those too.
    newest = previous_index_date(spark, paths, run_date + dt.timedelta(days=1))
    if newest is None:
        raise PipelineError(f"no indexes under {paths.indexes}: run `sparkals nightly` first")
    serving = load_serving_model(spark, paths, version, *read_indexes(spark, paths, newest), cfg.recommend.fold_in)
    if serving.run_date is None:
        raise PipelineError(f"the metadata of {version} has no run_date: cannot tell which users are new since it")
    ingested = ingest.run(spark, cfg, run_date)
    aggregated = aggregate.run(spark, cfg, run_date)
    users, items = read_indexes(spark, paths, run_date)
    recover(spark, paths.staging)
    events = read_events(spark, paths, run_date)
    ratings = spark.read.parquet(paths.ratings(run_date))
    excluded = exclusion_list(spark, cfg.ratings, read_exclusion_file(spark, cfg))
    changed = changed_users(events, serving.run_date).cache()

    rescored = build_recommendations(
        serving, events, ratings, users, items, excluded, cfg.recommend, run_date, audience=changed
    ).persist()
    previous = _previous_output(spark, paths)
    kept = keep_unchanged(spark.read.parquet(previous), changed) if previous else None
    combined = rescored if kept is None else rescored.unionByName(kept)
    combined = combined.repartition(USER_ID).sortWithinPartitions(USER_ID, RANK).persist()
    target = paths.recommendations(run_date)
    try:
        counts = counts_by_source(rescored)
        users_kept = kept.select(USER_ID).distinct().count() if kept is not None else 0
        total = combined.count()
        rows = publish_parquet(combined, target, paths.staging, expected_rows=total, marker={
            "run_date": str(run_date), "model_version": serving.version, "refreshed_from": previous,
            **{key: value for key, value in counts.items() if key != "rows"}, "users_kept": users_kept,
        })
    finally:
        combined.unpersist()
        rescored.unpersist()
        changed.unpersist()
    update_latest(spark, paths.latest_recommendations, {
        "run_date": str(run_date), "path": target, "rows": rows, "model_version": serving.version,
        "refreshed_from": previous,
    })
    result = RefreshResult(
        path=target, rows=rows, model_version=serving.version, model_run_date=str(serving.run_date),
        previous=previous, users_rescored=counts["users_scored"], users_als=counts["users_als"],
        users_fold_in=counts["users_fold_in"], users_fallback=counts["users_fallback"], users_kept=users_kept,
        ingest=ingested, aggregate=aggregated,
    )
    fs.write_json(spark, paths.refresh_record(run_date), dataclasses.asdict(result))
    return result
