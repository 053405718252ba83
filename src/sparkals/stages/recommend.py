"""Stage `recommend`: top-N per user from the serving model, published atomically as Parquet in
the original ids under `recommendations/run_date=...` (and `similar_items/run_date=...` when asked),
with `recommendations/_LATEST.json` pointing readers at the newest complete output. Users the serving
model has no factors for (new since it was trained) are folded in from tonight's ratings."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.ann import AnnParams
from sparkals.config import Config, RecommendSettings
from sparkals.errors import PipelineError
from sparkals.paths import Paths
from sparkals.popularity import fallback_scores
from sparkals.publish import publish_parquet, recover, update_latest
from sparkals.ratings import exclusion_list
from sparkals.recommend import (
    recommend_top_n, seen_pairs, similar_items_top_n, users_to_score, with_model_version,
)
from sparkals.score import ALS_SOURCE, FALLBACK_SOURCE, FOLD_IN_SOURCE, block_rows
from sparkals.stages.common import model_version, read_events, read_exclusion_file, read_indexes, timed
from sparkals.stages.gate import serving_model
from sparkals.stages.serving import ServingModel, load_serving_model
from sparkals.vocabulary import ITEM_ID, MODEL_VERSION, RANK, SOURCE, USER_ID

__all__ = ["NO_MODEL", "RecommendResult", "build_recommendations", "counts_by_source", "run"]

log = logging.getLogger(__name__)

NO_MODEL = "none"  # model_version of rows served when no model passed the quality gate


@dataclass(frozen=True)
class RecommendResult:
    path: str
    rows: int
    model_version: str
    users_scored: int
    users_als: int
    users_fallback: int
    users_fold_in: int = 0
    similar_items_rows: int | None = None
    seconds: float = 0.0


def build_recommendations(
    serving: ServingModel | None, events: DataFrame, ratings: DataFrame, users: DataFrame, items: DataFrame,
    excluded: DataFrame | None, settings: RecommendSettings, run_date: dt.date,
    audience: DataFrame | None = None,
) -> DataFrame:
    """The top-N of every `audience` user (default: every user active in `settings.active_days`) in
    the published columns: seen and excluded items filtered, users without factors folded in from
    `ratings` when they can be, else served the fallback; one output partition per user hash,
    sorted, so the same inputs always give the same files."""
    fallback = fallback_scores(events, ratings, items, run_date, settings.fallback_days) if settings.fallback else None
    recs = recommend_top_n(
        serving.model if serving else None,
        users_to_score(events, run_date, settings.active_days) if audience is None else audience,
        users, items, settings.top_n,
        seen=seen_pairs(events, settings.filter_events, run_date, settings.filter_lookback_days),
        excluded=excluded, fallback=fallback,
        ratings=ratings if serving and serving.fold_in else None, fold_in=serving.fold_in if serving else None,
        block_size=settings.block_size, memory_mb=settings.block_memory_mb,
        method=settings.method, ann=AnnParams.from_settings(settings),
    )
    version = serving.version if serving else NO_MODEL
    return with_model_version(recs, version).repartition(USER_ID).sortWithinPartitions(USER_ID, RANK)


def counts_by_source(recs: DataFrame) -> dict[str, int]:
    """Users per `source` (als, fold_in, fallback) and `rows` in all: what a run reports."""
    rows = recs.groupBy(SOURCE).agg(F.countDistinct(USER_ID).alias("users"), F.count("*").alias("rows")).collect()
    by_source = {row[SOURCE]: row["users"] for row in rows}
    return {
        "users_scored": sum(by_source.values()),
        "users_als": by_source.get(ALS_SOURCE, 0),
        "users_fold_in": by_source.get(FOLD_IN_SOURCE, 0),
        "users_fallback": by_source.get(FALLBACK_SOURCE, 0),
        "rows": sum(row["rows"] for row in rows),
    }


@timed("recommend")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> RecommendResult:
    """Score every active user with the serving model and publish."""
    paths = Paths(cfg.output.root)
    version = serving_model(spark, paths, model_version(cfg, run_date))
    if version is None and not cfg.recommend.fallback:
        raise PipelineError(
            "no model passed the quality gate and recommend.fallback is off: there is nothing to serve; "
            "see models/_CURRENT.json for why, or set recommend.fallback = true"
        )
    users, items = read_indexes(spark, paths, run_date)
    serving = load_serving_model(spark, paths, version, users, items, cfg.recommend.fold_in) if version else None
    recover(spark, paths.staging)
    version = version or NO_MODEL
    events = read_events(spark, paths, run_date)
    ratings = spark.read.parquet(paths.ratings(run_date))
    excluded = exclusion_list(spark, cfg.ratings, read_exclusion_file(spark, cfg))

    target = paths.recommendations(run_date)
    # Progress for a long scoring: what is scored how, then how many users it took how long.
    n_items = items.count()
    log.info("recommend: scoring with %s against %s items, blocks of up to %s users",
             f"model {version}" if serving else "the fallback only", f"{n_items:,}",
             f"{block_rows(n_items, cfg.recommend.block_size, cfg.recommend.block_memory_mb):,}")
    started = time.perf_counter()
    recs = build_recommendations(serving, events, ratings, users, items, excluded, cfg.recommend, run_date).persist()
    try:
        counts = counts_by_source(recs)
        rows = counts.pop("rows")
        log.info("recommend: scored %s users (%s by ALS, %s folded in, %s fallback) in %.1f s; publishing",
                 f"{counts['users_scored']:,}", f"{counts['users_als']:,}", f"{counts['users_fold_in']:,}",
                 f"{counts['users_fallback']:,}", time.perf_counter() - started)
        rows = publish_parquet(
            recs, target, paths.staging, expected_rows=rows,
            marker={"run_date": str(run_date), "model_version": version, **counts},
        )
    finally:
        recs.unpersist()
    similar_rows = None
    if cfg.recommend.similar_items and serving is not None:
        similar = similar_items_top_n(
            serving.model, items, cfg.recommend.similar_top_n, cfg.recommend.block_size, cfg.recommend.block_memory_mb,
            method=cfg.recommend.method, ann=AnnParams.from_settings(cfg.recommend),
        ).withColumn(MODEL_VERSION, F.lit(version))
        similar_rows = publish_parquet(
            similar.repartition(ITEM_ID).sortWithinPartitions(ITEM_ID, RANK), paths.similar_items(run_date),
            paths.staging, marker={"run_date": str(run_date), "model_version": version},
        )
    update_latest(spark, paths.latest_recommendations, {
        "run_date": str(run_date), "path": target, "rows": rows, "model_version": version, **counts,
    })
    return RecommendResult(path=target, rows=rows, model_version=version, **counts, similar_items_rows=similar_rows)
