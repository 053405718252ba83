"""Stage `train`: the night's ratings → an ALS model under `models/<version>/model` with its
`metadata.json`. Whether the model serves is the gate's decision (stages/gate.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pyspark
from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config
from sparkals.errors import PipelineError
from sparkals.paths import Paths
from sparkals.ratings import matrix_stats
from sparkals.stages.common import model_version, revision, timed
from sparkals.stages.holdout_model import learned_with
from sparkals.train import train_als

__all__ = ["TrainResult", "run"]


@dataclass(frozen=True)
class TrainResult:
    model_version: str
    train_seconds: float
    ratings: int
    users: int
    items: int
    seconds: float = 0.0


@timed("train")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> TrainResult:
    """Fit ALS on the run date's ratings; save the model and its metadata."""
    paths = Paths(cfg.output.root)
    if not fs.exists(spark, paths.ratings(run_date)):
        raise PipelineError(f"no ratings for {run_date}: run `sparkals aggregate` first")
    spark.sparkContext.setCheckpointDir(paths.checkpoints)
    ratings = spark.read.parquet(paths.ratings(run_date))
    # aggregate recorded the matrix's shape; counting it again cost 10 s at 16M events.
    if fs.exists(spark, paths.ratings_stats(run_date)):
        recorded = fs.read_json(spark, paths.ratings_stats(run_date))
        shape = (recorded["nonzeros"], recorded["users"], recorded["items"])
    else:
        recorded = {}
        counted = matrix_stats(ratings)
        shape = (counted.nonzeros, counted.users, counted.items)

    fitted = train_als(ratings, cfg.als)

    version = model_version(cfg, run_date)
    # Ratings built with other [ratings] settings than tonight's (aggregate run apart) learned something else.
    learned = learned_with(cfg)
    fitted.model.write().overwrite().save(paths.model_data(version))
    result = TrainResult(version, round(fitted.seconds, 3), *shape)
    fs.write_json(spark, paths.model_metadata(version), {
        "model_version": version,
        "run_date": str(run_date),
        "parameters": dataclasses.asdict(cfg.als),
        "ratings": result.ratings,
        "users": result.users,
        "items": result.items,
        "train_seconds": result.train_seconds,
        "spark_version": pyspark.__version__,
        "config_fingerprint": cfg.fingerprint(),
        # What a later gate checks before it measures this model as its holdout model
        # (stages/holdout_model.py): the settings and code that trained it, the events it learned
        # from and the item ids left out of them.
        "learned_with": learned if recorded.get("settings") == learned["ratings"] else None,
        "revision": revision(),
        "events_digest": recorded.get("events_digest"),
        "exclusion_digest": recorded.get("exclusion_digest"),
    })
    return result
