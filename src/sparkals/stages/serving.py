"""The serving model as the scoring stages (recommend, refresh) load it: the ALS model, the night it
was trained on, the settings fold-in must solve with, and a check that tonight's index tables still
describe it, made before anything is written."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession

from sparkals import fs
from sparkals.errors import PipelineError
from sparkals.fold_in import FoldInParams
from sparkals.paths import Paths
from sparkals.recommend import model_mismatch

__all__ = ["ServingModel", "load_serving_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    version: str
    model: ALSModel
    run_date: dt.date | None  # the night it was trained on (None: metadata missing)
    fold_in: FoldInParams | None  # None: fold-in off, or not exact for this model


def _fold_in_params(metadata: dict, version: str) -> FoldInParams | None:
    parameters = metadata.get("parameters") or {}
    if "alpha" not in parameters or "reg_param" not in parameters:
        log.warning("recommend: fold-in off: the metadata of %s does not record alpha and reg_param", version)
        return None
    if parameters.get("nonnegative"):
        # Spark solved this model's users with non-negative least squares; the fold-in solve is
        # unconstrained and would not reproduce them.
        log.warning("recommend: fold-in off: %s was trained with als.nonnegative = true", version)
        return None
    return FoldInParams(alpha=float(parameters["alpha"]), reg_param=float(parameters["reg_param"]))


def load_serving_model(
    spark: SparkSession, paths: Paths, version: str, users: DataFrame, items: DataFrame, fold_in: bool
) -> ServingModel:
    """Load `version`, with fold-in settings when `fold_in`; fail before any write when the model
    and the index tables do not match (another rank than its metadata, or factors for users or items
    the indexes do not hold: indexes rebuilt, or an output root mixed up)."""
    if not fs.exists(spark, paths.model_data(version)):
        raise PipelineError(f"no model {version} at {paths.model(version)}: run `sparkals train` first")
    model = ALSModel.load(paths.model_data(version))
    metadata = fs.read_json(spark, paths.model_metadata(version)) if fs.exists(spark, paths.model_metadata(version)) else {}
    recorded = (metadata.get("parameters") or {}).get("rank")
    problem = model_mismatch(model, users, items, recorded)
    if problem:
        raise PipelineError(f"model {version} does not match the index tables: {problem}; nothing was written")
    trained_on = dt.date.fromisoformat(metadata["run_date"]) if metadata.get("run_date") else None
    return ServingModel(version, model, trained_on, _fold_in_params(metadata, version) if fold_in else None)
