"""The holdout model of a time split, taken from the night that already trained it.

On a time split the evaluation learns from the events before the cutoff, "as of" the day before
it, with tonight's ratings and ALS settings. The night of that day, run with the same settings,
built its ratings from exactly those events as of exactly that day and trained ALS on them: its
model is the holdout model, and training it again cost the gate a second aggregation and a second
ALS fit (at 4M events, 69 of the gate's 99 s). So a nightly job run every night trains ALS once a
night, gate included.

That night's model stands in only when it provably learned what the evaluation would: the same
`[ratings]` and `[als]` settings (recorded in its metadata as `learned_with`), the same code (the
revision recorded when it was trained), the same events (the digest of tonight's events before the
cutoff equals the one its ratings were built from) and the same ids in the exclusion file. Otherwise
the evaluation trains, and its report says why. The model numbers users and items with that night's
indexes, which extend earlier nights', so a reused and a retrained holdout model start ALS from
different random factors: their scores differ by ALS's seed noise, not by what they learned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.config import Config, EvaluateSettings
from sparkals.evaluate import FittedModel
from sparkals.events_digest import EventsDigest, digest_of, exclusion_digest
from sparkals.paths import Paths
from sparkals.popularity import users_per_item
from sparkals.split import Holdout
from sparkals.stages.common import model_run_date, model_version, read_exclusion_file, read_indexes, revision
from sparkals.vocabulary import ITEM_ID, ITEM_IDX, SCORE, USER_IDX

__all__ = ["REUSED", "TRAINED", "learned_with", "nights_to_keep", "reusable_model"]

log = logging.getLogger(__name__)

TRAINED, REUSED = "trained", "reused"


def learned_with(cfg: Config) -> dict[str, Any]:
    """The settings that decide what a model learns, as its metadata records them (JSON types)."""
    return json.loads(json.dumps({"ratings": dataclasses.asdict(cfg.ratings), "als": dataclasses.asdict(cfg.als)}))


def nights_to_keep(settings: EvaluateSettings, run_date: dt.date) -> set[dt.date]:
    """The nights whose models the gates of the coming `test_days` nights will reuse (retention
    keeps them): the last `test_days` nights up to `run_date`, or the day before a fixed cutoff."""
    if settings.split != "time":
        return set()
    if settings.cutoff_date:
        return {dt.date.fromisoformat(settings.cutoff_date) - dt.timedelta(days=1)}
    return {run_date - dt.timedelta(days=i) for i in range(settings.test_days)}


def reusable_model(
    spark: SparkSession, cfg: Config, holdout: Holdout
) -> tuple[FittedModel | None, dict[str, Any]]:
    """(the holdout model loaded from its night, or None to train it; what the report says about it)."""
    night = holdout.as_of
    if night is None:
        return None, {"source": TRAINED, "reason": f"the {holdout.method} split has no cutoff: no night trained on its past"}
    paths = Paths(cfg.output.root)
    # Tonight's side of the checks, each a Spark job: taken once, whatever the number of candidates.
    tonight = _Tonight(
        functools.cache(lambda: digest_of(holdout.train, list(cfg.ratings.weights))),
        functools.cache(lambda: exclusion_digest(read_exclusion_file(spark, cfg))),
    )
    reasons = []
    for version in _models_of(spark, cfg, paths, night):
        metadata, why_not = _why_not(spark, cfg, paths, version, night, tonight)
        if why_not is None:
            log.info("evaluate: the holdout model is %s, trained the night of %s on the same events", version, night)
            fitted = _load(spark, paths, version, night, int(metadata["ratings"]))
            return fitted, {"source": REUSED, "model_version": version, "run_date": str(night)}
        reasons.append(why_not)
    reason = reasons[0] if reasons else f"no model was trained the night of {night}"
    log.info("evaluate: training the holdout model: %s", reason)
    return None, {"source": TRAINED, "reason": reason}


def _models_of(spark: SparkSession, cfg: Config, paths: Paths, night: dt.date) -> list[str]:
    """The model versions of `night`, the one with tonight's whole configuration first."""
    same = model_version(cfg, night)
    found = [name for name in fs.list_names(spark, paths.models) if model_run_date(name) == night]
    return sorted(found, key=lambda name: (name != same, name))


@dataclass(frozen=True)
class _Tonight:
    events: Callable[[], EventsDigest]  # of tonight's weighted events before the cutoff
    exclusion: Callable[[], EventsDigest | None]  # of the ids in tonight's exclusion file


def _why_not(
    spark: SparkSession, cfg: Config, paths: Paths, version: str, night: dt.date, tonight: _Tonight
) -> tuple[dict[str, Any], str | None]:
    """The metadata of the night's model `version`, and why it cannot stand for the holdout model
    (None when it can)."""
    if not fs.exists(spark, paths.model_metadata(version)) or not fs.exists(spark, paths.model_data(version)):
        return {}, f"{version} has no saved model or metadata"
    metadata = fs.read_json(spark, paths.model_metadata(version))
    if metadata.get("learned_with") != learned_with(cfg):
        return metadata, f"{version} learned with other [ratings] or [als] settings"
    if metadata.get("revision") != revision():
        return metadata, f"{version} was trained by code {metadata.get('revision')}, this is {revision()}"
    for path in (paths.user_index(night), paths.item_index(night), paths.ratings(night)):
        if not fs.exists(spark, path):
            return metadata, f"{path} of the night of {night} is gone"
    recorded = EventsDigest.from_dict(metadata.get("events_digest"))
    if recorded is None:
        return metadata, f"{version} records no digest of the events it learned from"
    if EventsDigest.from_dict(metadata.get("exclusion_digest")) != tonight.exclusion():
        return metadata, f"the ids in ratings.exclude_items_path changed since that night trained {version}"
    found = tonight.events()
    if found != recorded:
        return metadata, (
            f"the events up to {night} changed since that night trained {version} "
            f"({found.events:,} weighted events now, {recorded.events:,} then, or their content differs)"
        )
    return metadata, None


def _load(spark: SparkSession, paths: Paths, version: str, night: dt.date, ratings: int) -> FittedModel:
    """The night's model with its indexes, each narrowed to the ids that have factors (the night's
    indexes also keep ids of earlier nights that had no rating that night), and its popularity
    counts (users per item of the ratings it learned from): what `fit_model` returns."""
    model = ALSModel.load(paths.model_data(version))
    users, items = read_indexes(spark, paths, night)
    users = _with_factors(users, model.userFactors, USER_IDX).cache()
    items = _with_factors(items, model.itemFactors, ITEM_IDX).cache()
    counted = users_per_item(spark.read.parquet(paths.ratings(night)), item_col=ITEM_IDX)
    item_users = counted.join(items, ITEM_IDX).select(ITEM_ID, F.col("users").cast("double").alias(SCORE)).cache()
    return FittedModel(model, users, items, ratings, 0.0, item_users)


def _with_factors(index: DataFrame, factors: DataFrame, idx_col: str) -> DataFrame:
    return index.join(factors.select(F.col("id").alias(idx_col)), idx_col, "left_semi")
