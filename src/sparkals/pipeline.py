"""The stages with their I/O: each reads what the previous one wrote under `output.root`,
so a stage can run alone (one spark-submit each) or chained by `nightly`.

The transformations themselves live in ingest.py, ratings.py, train.py and recommend.py;
this module only decides where data comes from and goes to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyspark
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.config import Config
from sparkals.errors import SparkalsError
from sparkals.generate import GeneratorSpec, generate_events
from sparkals.ingest import parse_events, split_valid
from sparkals.publish import publish_parquet
from sparkals.ratings import aggregate_ratings, build_index, build_ratings, index_ratings, matrix_stats
from sparkals.recommend import to_original_ids, top_n_indexed
from sparkals.train import train_als

log = logging.getLogger(__name__)


class PipelineError(SparkalsError):
    """A stage cannot run: the message says what is missing or wrong and what to do."""


@dataclass(frozen=True)
class Paths:
    """Where every output lives below `output.root`."""

    root: str

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    def rejected(self, run_date: dt.date) -> str:
        return f"{self.root}/rejected/run_date={run_date}"

    def ratings(self, run_date: dt.date) -> str:
        return f"{self.root}/ratings/run_date={run_date}"

    def ratings_stats(self, run_date: dt.date) -> str:
        return f"{self.root}/ratings/run_date={run_date}/_stats.json"

    @property
    def indexes(self) -> str:
        return f"{self.root}/indexes"

    def user_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/users"

    def item_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/items"

    def model(self, version: str) -> str:
        return f"{self.root}/models/{version}"

    def recommendations(self, run_date: dt.date) -> str:
        return f"{self.root}/recommendations/run_date={run_date}"

    def run_summary(self, run_date: dt.date) -> str:
        return f"{self.root}/runs/run_date={run_date}/summary.json"

    @property
    def checkpoints(self) -> str:
        return f"{self.root}/checkpoints"

    @property
    def staging(self) -> str:
        return f"{self.root}/_staging"


def model_version(cfg: Config, run_date: dt.date) -> str:
    """Same run date and same settings: same version, so a rerun replaces rather than adds."""
    return f"als-{run_date:%Y%m%d}-{cfg.fingerprint()[:8]}"


def _timed(stage: str):
    def wrap(fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            log.info("%s: started", stage)
            result = fn(*args, **kwargs)
            result["seconds"] = round(time.perf_counter() - started, 3)
            log.info("%s: done in %.1fs %s", stage, result["seconds"], _brief(result))
            return result

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    return wrap


def _brief(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float)) and k != "seconds")


def read_input(spark: SparkSession, cfg: Config) -> DataFrame:
    """The raw event log, all columns as read; CSV columns stay strings (no type guessing)."""
    source = cfg.input
    if not fs.exists(spark, source.path) and not any(ch in source.path for ch in "*?["):
        raise PipelineError(f"input path {source.path!r} does not exist; set input.path")
    reader = spark.read
    if source.format == "csv":
        return reader.option("header", str(source.header).lower()).csv(source.path)
    if source.format == "json":
        return reader.json(source.path)
    return reader.parquet(source.path)


def generate(spark: SparkSession, spec: GeneratorSpec, out: str, fmt: str = "csv") -> dict[str, Any]:
    """Write a synthetic Retail Rocket style log to `out`."""
    events = generate_events(spark, spec)
    writer = events.write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").csv(out)
    elif fmt == "json":
        writer.json(out)
    elif fmt == "parquet":
        writer.parquet(out)
    else:
        raise PipelineError(f"unknown format {fmt!r}: use csv, json or parquet")
    return {"path": out, "events": spec.events, "users": spec.users, "items": spec.items}


@_timed("ingest")
def ingest(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Input log to clean events under `events/event_date=...`; unusable rows kept aside."""
    paths = Paths(cfg.output.root)
    parsed = parse_events(read_input(spark, cfg), cfg.input.columns).cache()
    try:
        rows_read = parsed.count()
        if rows_read == 0:
            raise PipelineError(f"input {cfg.input.path!r} holds no rows")
        good, bad = split_valid(parsed)
        rejected = bad.count()
        if rejected:
            bad.write.mode("overwrite").parquet(paths.rejected(run_date))
        (
            good.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy("event_date")
            .parquet(paths.events)
        )
    finally:
        parsed.unpersist()
    return {"rows_read": rows_read, "accepted": rows_read - rejected, "rejected": rejected}


def read_events(spark: SparkSession, cfg: Config, run_date: dt.date) -> DataFrame:
    paths = Paths(cfg.output.root)
    if not fs.exists(spark, paths.events):
        raise PipelineError(f"no clean events at {paths.events}: run `sparkals ingest` first")
    return spark.read.parquet(paths.events).filter(F.col("event_date") <= F.lit(run_date))


def _previous_index_date(spark: SparkSession, paths: Paths, run_date: dt.date) -> dt.date | None:
    """The newest earlier run whose indexes exist: its ids keep their indexes tonight."""
    dates = []
    for name in fs.list_names(spark, paths.indexes):
        if name.startswith("run_date="):
            day = dt.date.fromisoformat(name.split("=", 1)[1])
            if day < run_date:
                dates.append(day)
    return max(dates) if dates else None


def _excluded_items(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """Item ids from `ratings.exclude_items_path`, read by Spark (works on any storage)."""
    path = cfg.ratings.exclude_items_path
    if not path:
        return None
    if not fs.exists(spark, path):
        raise PipelineError(f"ratings.exclude_items_path {path!r} does not exist")
    lines = spark.read.text(path).select(F.trim("value").alias("id"))
    return lines.filter((F.col("id") != "") & ~F.col("id").startswith("#"))


@_timed("aggregate")
def aggregate(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Clean events to weighted (user, item, rating) with stable int32 indexes and statistics."""
    paths = Paths(cfg.output.root)
    events = read_events(spark, cfg, run_date).cache()
    unfiltered = aggregate_ratings(events, cfg.ratings.weights).agg(
        F.count("*").alias("nonzeros"), F.countDistinct("user_id").alias("users"),
        F.countDistinct("item_id").alias("items"),
    ).first()
    ratings = build_ratings(events, cfg.ratings, run_date, _excluded_items(spark, cfg)).cache()
    previous = _previous_index_date(spark, paths, run_date)
    old_users = spark.read.parquet(paths.user_index(previous)) if previous else None
    old_items = spark.read.parquet(paths.item_index(previous)) if previous else None
    users = build_index(ratings.select(F.col("user_id").alias("id")), old_users)
    items = build_index(ratings.select(F.col("item_id").alias("id")), old_items)
    users.write.mode("overwrite").parquet(paths.user_index(run_date))
    items.write.mode("overwrite").parquet(paths.item_index(run_date))
    users = spark.read.parquet(paths.user_index(run_date))
    items = spark.read.parquet(paths.item_index(run_date))
    index_ratings(ratings, users, items).write.mode("overwrite").parquet(paths.ratings(run_date))
    ratings.unpersist()
    events.unpersist()
    stats = matrix_stats(spark.read.parquet(paths.ratings(run_date)))
    if stats.nonzeros == 0:
        raise PipelineError(
            f"no ratings for {run_date}: no events up to that date have a weighted event type "
            f"({', '.join(cfg.ratings.weights)}), or the filters in [ratings] removed them all"
        )
    removed = {key: unfiltered[key] - getattr(stats, key) for key in ("users", "items", "nonzeros")}
    record = {"run_date": str(run_date), **stats.as_dict(), "removed_by_filters": removed,
              "settings": dataclasses.asdict(cfg.ratings)}
    fs.write_json(spark, paths.ratings_stats(run_date), record)
    return {"ratings": stats.nonzeros, "users": stats.users, "items": stats.items,
            "density": round(stats.density, 6), "removed_users": removed["users"],
            "removed_items": removed["items"]}


@_timed("train")
def train(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Fit ALS on the run date's ratings; save the model and its metadata."""
    paths = Paths(cfg.output.root)
    if not fs.exists(spark, paths.ratings(run_date)):
        raise PipelineError(f"no ratings for {run_date}: run `sparkals aggregate` first")
    spark.sparkContext.setCheckpointDir(paths.checkpoints)
    ratings = spark.read.parquet(paths.ratings(run_date)).cache()
    counts = ratings.agg(F.count("*"), F.countDistinct("user"), F.countDistinct("item")).first()
    result = train_als(ratings, cfg.als)
    ratings.unpersist()
    version = model_version(cfg, run_date)
    result.model.write().overwrite().save(f"{paths.model(version)}/model")
    metadata = {
        "model_version": version,
        "run_date": str(run_date),
        "parameters": dataclasses.asdict(cfg.als),
        "ratings": counts[0],
        "users": counts[1],
        "items": counts[2],
        "train_seconds": round(result.seconds, 3),
        "spark_version": pyspark.__version__,
        "config_fingerprint": cfg.fingerprint(),
    }
    fs.write_json(spark, f"{paths.model(version)}/metadata.json", metadata)
    return {"model_version": version, "train_seconds": round(result.seconds, 3), "ratings": counts[0]}


@_timed("recommend")
def recommend(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Top-N per user from the run date's model, published as Parquet in the original ids."""
    paths = Paths(cfg.output.root)
    version = model_version(cfg, run_date)
    if not fs.exists(spark, paths.model(version)):
        raise PipelineError(f"no model {version} for {run_date}: run `sparkals train` first")
    model = ALSModel.load(f"{paths.model(version)}/model")
    users = spark.read.parquet(paths.user_index(run_date))
    items = spark.read.parquet(paths.item_index(run_date))
    recs = to_original_ids(top_n_indexed(model, cfg.recommend.top_n), users, items, version)
    rows = publish_parquet(recs, paths.recommendations(run_date), paths.staging)
    scored = spark.read.parquet(paths.recommendations(run_date)).select("user_id").distinct().count()
    return {"path": paths.recommendations(run_date), "rows": rows, "users_scored": scored}


def nightly(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Every stage in order for one run date; rerunning the same date replaces its outputs."""
    started = time.perf_counter()
    summary: dict[str, Any] = {"run_date": str(run_date), "config_fingerprint": cfg.fingerprint()}
    for name, stage in (("ingest", ingest), ("aggregate", aggregate), ("train", train), ("recommend", recommend)):
        summary[name] = stage(spark, cfg, run_date)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    fs.write_text(
        spark, Paths(cfg.output.root).run_summary(run_date), json.dumps(summary, indent=2, sort_keys=True)
    )
    return summary
