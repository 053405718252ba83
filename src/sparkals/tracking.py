"""Run tracking: each nightly run as one MLflow run, where Spark teams already look.

Off unless `tracking.mlflow_uri` is set; MLflow is then imported, from the optional extra
`sparkals[mlflow]` (mlflow-skinny, the client alone). The run holds the configuration flattened as
parameters (`als.rank`, `ratings.weights.view`, ...), the stage times and counts and the holdout
scores of ALS and the baselines as metrics, the status and the gate's decision as tags, and the run
record and the model's metadata as JSON artifacts. The client API is used, not MLflow's global
active run, so nothing leaks into other code in the process.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config, TrackingSettings
from sparkals.errors import SparkalsError
from sparkals.paths import Paths

__all__ = ["Tracker", "TrackingError", "night_metrics", "night_params", "night_tags", "open_tracker",
           "require_mlflow", "track_night"]

log = logging.getLogger(__name__)

INSTALL = "pip install 'sparkals[mlflow]'"
MAX_PARAM_LENGTH = 6000  # MLflow refuses longer parameter values
_UNSAFE = re.compile(r"[^\w.\- /]")  # characters MLflow does not take in a key
STAGES = ("ingest", "aggregate", "train", "gate", "recommend")


class TrackingError(SparkalsError):
    """MLflow tracking is asked for but cannot be used; the message says why and what to do."""


def require_mlflow() -> ModuleType:
    """The mlflow package, or a TrackingError naming the extra that brings it."""
    try:
        import mlflow
    except ImportError as err:
        raise TrackingError(
            f"tracking.mlflow_uri is set but MLflow is not installed: {INSTALL} "
            "(or leave tracking.mlflow_uri empty to run without tracking)"
        ) from err
    return mlflow


@dataclass(frozen=True)
class Tracker:
    client: Any  # mlflow.MlflowClient
    experiment_id: str
    uri: str


def open_tracker(settings: TrackingSettings) -> Tracker | None:
    """None when tracking is off. Else the client and the experiment (created when missing),
    reached now, before the night's work: a missing extra or an unusable store fails the run at
    once instead of after hours of training."""
    if not settings.mlflow_uri:
        return None
    mlflow = require_mlflow()
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
    try:
        experiment = client.get_experiment_by_name(settings.experiment)
        if experiment is None:
            experiment_id = client.create_experiment(settings.experiment)
        elif experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment {settings.experiment!r} at {settings.mlflow_uri} is deleted: restore it "
                "or set tracking.experiment to another name"
            )
        else:
            experiment_id = experiment.experiment_id
    except (MlflowException, OSError) as err:
        raise TrackingError(
            f"tracking.mlflow_uri {settings.mlflow_uri!r}: cannot open MLflow experiment {settings.experiment!r}: "
            f"{err}"
        ) from err
    return Tracker(client, experiment_id, settings.mlflow_uri)


def _key(name: str) -> str:
    return _UNSAFE.sub("_", name)


def night_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every setting as one parameter: nested tables flattened with dots, lists as JSON, values
    longer than MLflow takes cut (they stay whole in the run record artifact)."""
    params: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(night_params(value, f"{name}."))
            continue
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
        params[_key(name)] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
    return params


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def night_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a run record: `seconds.<stage>` and `seconds.total`, each stage's counts as
    `<stage>.<field>`, and the holdout scores `holdout.<metric>.<system>` (ALS and each baseline)
    with the lift over each baseline, as the gate measured them."""
    metrics = {f"seconds.{name}": float(value) for name, value in record.get("stage_seconds", {}).items()}
    if _number(record.get("seconds")):
        metrics["seconds.total"] = float(record["seconds"])
    for stage in STAGES:
        for field, value in (record.get(stage) or {}).items():
            if _number(value) and field not in ("seconds", "candidate_score", "current_score", "floor"):
                metrics[_key(f"{stage}.{field}")] = float(value)
    gate = record.get("gate") or {}
    if gate.get("metric") and _number(gate.get("candidate_score")):
        metric = gate["metric"].replace("@", "_at_")
        metrics[_key(f"holdout.{metric}.als")] = float(gate["candidate_score"])
        for name, score in (gate.get("baselines") or {}).items():
            metrics[_key(f"holdout.{metric}.{name}")] = float(score)
        for name, lift in (gate.get("lift") or {}).items():
            if _number(lift):
                metrics[_key(f"holdout.lift.{name}")] = float(lift)
        for field in ("current_score", "floor"):
            if _number(gate.get(field)):
                metrics[_key(f"holdout.{metric}.serving_{field}")] = float(gate[field])
    return metrics


def night_tags(record: Mapping[str, Any]) -> dict[str, str]:
    """What to filter runs by: run date, status, the gate's decision, the models, the code."""
    gate = record.get("gate") or {}
    train = record.get("train") or {}
    tags = {
        "sparkals.run_date": record.get("run_date"),
        "sparkals.status": record.get("status"),
        "sparkals.model_version": train.get("model_version"),
        "sparkals.gate": gate.get("status"),
        "sparkals.gate_reason": gate.get("reason"),
        "sparkals.serving": gate.get("serving"),
        "sparkals.revision": record.get("revision"),
        "sparkals.spark_version": record.get("spark_version"),
        "sparkals.config_fingerprint": record.get("config_fingerprint"),
        "sparkals.error": record.get("error"),
    }
    return {key: str(value) for key, value in tags.items() if value is not None}


def _metadata(spark: SparkSession, paths: Paths, record: Mapping[str, Any]) -> dict[str, Any] | None:
    version = (record.get("train") or {}).get("model_version")
    if not version or not fs.exists(spark, paths.model_metadata(version)):
        return None
    return fs.read_json(spark, paths.model_metadata(version))


def track_night(tracker: Tracker, spark: SparkSession, cfg: Config, record: Mapping[str, Any]) -> dict[str, Any]:
    """Log the night's record as one MLflow run; returns what the run record keeps about it.

    A store that fails now (after the night's outputs are written) is logged as an error and
    noted in the run record instead of failing a night whose recommendations are published."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    now_ms = int(time.time() * 1000)
    started = record.get("started_at")
    start_ms = int(dt.datetime.fromisoformat(started).timestamp() * 1000) if started else now_ms
    run_id = None
    try:
        run = tracker.client.create_run(
            tracker.experiment_id, start_time=start_ms, run_name=f"nightly {record.get('run_date')}",
            tags=night_tags(record),
        )
        run_id = run.info.run_id
        tracker.client.log_batch(
            run_id,
            metrics=[Metric(key, value, now_ms, 0) for key, value in night_metrics(record).items()],
            params=[Param(key, value) for key, value in night_params(cfg.to_dict()).items()],
        )
        tracker.client.log_dict(run_id, dict(record), "run_record.json")
        metadata = _metadata(spark, Paths(cfg.output.root), record)
        if metadata is not None:
            tracker.client.log_dict(run_id, metadata, "model_metadata.json")
        tracker.client.set_terminated(run_id, "FAILED" if record.get("status") == "failed" else "FINISHED")
    except (MlflowException, OSError) as err:
        log.error("tracking: the night was not fully logged to MLflow at %s (run %s): %s; its outputs and "
                  "run record are written as usual", tracker.uri, run_id, err)
        return {"mlflow_uri": tracker.uri, "mlflow_run_id": run_id, "error": f"{type(err).__name__}: {err}"}
    log.info("tracking: logged as MLflow run %s (experiment %s at %s)", run_id, tracker.experiment_id, tracker.uri)
    return {"mlflow_uri": tracker.uri, "mlflow_run_id": run_id, "experiment_id": tracker.experiment_id}
