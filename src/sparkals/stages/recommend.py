"""Stage `recommend`: top-N per user from the serving model, published atomically as Parquet in
the original ids under `recommendations/run_date=...` (and `similar_items/run_date=...` when asked),
with `recommendations/_LATEST.json` pointing readers at the newest complete output."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.ml.recommendation import ALSModel
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
from sparkals.score import ALS_SOURCE, FALLBACK_SOURCE
from sparkals.stages.common import model_version, read_events, read_exclusion_file, read_indexes, timed
from sparkals.stages.gate import serving_model
from sparkals.vocabulary import ITEM_ID, MODEL_VERSION, RANK, SOURCE, USER_ID

__all__ = ["NO_MODEL", "RecommendResult", "ann_params", "build_recommendations", "run"]

NO_MODEL = "none"  # model_version of rows served when no model passed the quality gate


@dataclass(frozen=True)
class RecommendResult:
    path: str
    rows: int
    model_version: str
    users_scored: int
    users_als: int
    users_fallback: int
    similar_items_rows: int | None = None
    seconds: float = 0.0


def ann_params(settings: RecommendSettings) -> AnnParams:
    """The approximate index's settings (recommend.ann_*)."""
    return AnnParams(
        ef_search=settings.ann_ef, m=settings.ann_m, ef_construction=settings.ann_ef_construction,
        max_extra=settings.ann_max_extra, min_items=settings.ann_min_items, build_threads=settings.ann_build_threads,
    )


def build_recommendations(
    model: ALSModel | None, events: DataFrame, ratings: DataFrame, users: DataFrame, items: DataFrame,
    excluded: DataFrame | None, settings: RecommendSettings, run_date: dt.date, version: str,
) -> DataFrame:
    """Every active user's top-N in the published columns, seen and excluded items filtered, users
    without factors served the fallback; one output partition per user hash, sorted, so the same
    inputs always give the same files."""
    fallback = fallback_scores(events, ratings, items, run_date, settings.fallback_days) if settings.fallback else None
    recs = recommend_top_n(
        model, users_to_score(events, run_date, settings.active_days), users, items, settings.top_n,
        seen=seen_pairs(events, settings.filter_events, run_date, settings.filter_lookback_days),
        excluded=excluded, fallback=fallback,
        block_size=settings.block_size, memory_mb=settings.block_memory_mb,
        method=settings.method, ann=ann_params(settings),
    )
    return with_model_version(recs, version).repartition(USER_ID).sortWithinPartitions(USER_ID, RANK)


def _counts_by_source(recs: DataFrame) -> dict[str, tuple[int, int]]:
    """source -> (users, rows)."""
    rows = recs.groupBy(SOURCE).agg(F.countDistinct(USER_ID).alias("users"), F.count("*").alias("rows")).collect()
    return {row[SOURCE]: (row["users"], row["rows"]) for row in rows}


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
    if version is not None and not fs.exists(spark, paths.model(version)):
        raise PipelineError(f"no model {version} for {run_date}: run `sparkals train` first")
    recover(spark, paths.staging)
    model = ALSModel.load(paths.model_data(version)) if version else None
    version = version or NO_MODEL
    events = read_events(spark, paths, run_date)
    users, items = read_indexes(spark, paths, run_date)
    ratings = spark.read.parquet(paths.ratings(run_date))
    excluded = exclusion_list(spark, cfg.ratings, read_exclusion_file(spark, cfg))

    target = paths.recommendations(run_date)
    recs = build_recommendations(
        model, events, ratings, users, items, excluded, cfg.recommend, run_date, version
    ).persist()
    try:
        by_source = _counts_by_source(recs)
        counts = {
            "users_scored": sum(users for users, _ in by_source.values()),
            "users_als": by_source.get(ALS_SOURCE, (0, 0))[0],
            "users_fallback": by_source.get(FALLBACK_SOURCE, (0, 0))[0],
        }
        rows = publish_parquet(
            recs, target, paths.staging, expected_rows=sum(rows for _, rows in by_source.values()),
            marker={"run_date": str(run_date), "model_version": version, **counts},
        )
    finally:
        recs.unpersist()
    similar_rows = None
    if cfg.recommend.similar_items and model is not None:
        similar = similar_items_top_n(
            model, items, cfg.recommend.similar_top_n, cfg.recommend.block_size, cfg.recommend.block_memory_mb,
            method=cfg.recommend.method, ann=ann_params(cfg.recommend),
        ).withColumn(MODEL_VERSION, F.lit(version))
        similar_rows = publish_parquet(
            similar.repartition(ITEM_ID).sortWithinPartitions(ITEM_ID, RANK), paths.similar_items(run_date),
            paths.staging, marker={"run_date": str(run_date), "model_version": version},
        )
    update_latest(spark, paths.latest_recommendations, {
        "run_date": str(run_date), "path": target, "rows": rows, "model_version": version, **counts,
    })
    return RecommendResult(path=target, rows=rows, model_version=version, **counts, similar_items_rows=similar_rows)
