"""Stage `gate`: measure tonight's model on the holdout and decide whether it serves.

The decision (`decide`) is a pure function of the scores; the stage reads the serving pointer
`models/_CURRENT.json`, evaluates, writes the pointer when the model is promoted, and records the
decision in the model's metadata. A refused model is kept but does not serve.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config, GateSettings
from sparkals.errors import EmptyHoldoutError, PipelineError
from sparkals.paths import Paths
from sparkals.stages import evaluate
from sparkals.stages.common import model_version, timed

__all__ = ["GateResult", "decide", "run", "serving_model"]

log = logging.getLogger(__name__)

PROMOTED, REFUSED = "promoted", "refused"
UNMEASURED, WITHOUT_GATE = "promoted_unmeasured", "promoted_without_gate"


@dataclass(frozen=True)
class GateResult:
    candidate: str
    previous: str | None
    status: str
    serving: str
    metric: str | None = None
    candidate_score: float | None = None
    current_score: float | None = None
    floor: float | None = None
    report: str | None = None
    reason: str | None = None
    seconds: float = 0.0

    @property
    def refused(self) -> bool:
        return self.status == REFUSED


def decide(
    candidate: str, current: dict[str, Any] | None, metric: str, score: float, settings: GateSettings
) -> GateResult:
    """Promote `candidate` unless its holdout `score` falls more than `gate.max_drop` below the
    score the serving model (`current`, the pointer's content) had."""
    previous = current["model_version"] if current else None
    measured = GateResult(candidate, previous, PROMOTED, candidate, metric=metric, candidate_score=score)
    if not current or previous == candidate or current.get("score") is None:
        return measured
    floor = current["score"] * (1.0 - settings.max_drop)
    compared = dataclasses.replace(measured, current_score=current["score"], floor=round(floor, 6))
    if score < floor:
        return dataclasses.replace(compared, status=REFUSED, serving=previous)
    return compared


def serving_model(spark: SparkSession, paths: Paths, tonight: str) -> str:
    """The model version that scores: the serving pointer's, else tonight's (an output root
    that has never been gated)."""
    if fs.exists(spark, paths.current_model):
        return fs.read_json(spark, paths.current_model)["model_version"]
    return tonight


@timed("gate")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> GateResult:
    """Gate the run date's model (trained with these settings) and point readers at the one that serves."""
    paths = Paths(cfg.output.root)
    version = model_version(cfg, run_date)
    if not fs.exists(spark, paths.model_data(version)):
        raise PipelineError(f"no model {version} for {run_date}: run `sparkals train` with the same settings first")
    current = fs.read_json(spark, paths.current_model) if fs.exists(spark, paths.current_model) else None
    previous = current["model_version"] if current else None
    if not cfg.gate.enabled:
        result = GateResult(version, previous, WITHOUT_GATE, version)
    else:
        try:
            measured = evaluate.run(spark, cfg, run_date)
        except EmptyHoldoutError as err:
            # Too little history to measure (a first night on a day of data): nothing to gate on.
            log.warning("gate: skipped, %s; promoting %s unmeasured", err, version)
            result = GateResult(version, previous, UNMEASURED, version, reason=str(err))
        else:
            result = dataclasses.replace(
                decide(version, current, measured.metric, measured.als, cfg.gate), report=measured.report
            )
    if result.refused:
        log.warning(
            "gate: refused %s: %s %.5f is below %.5f (current %s scored %.5f, gate.max_drop %.0f%%); serving %s",
            version, result.metric, result.candidate_score, result.floor, previous, result.current_score,
            cfg.gate.max_drop * 100, previous,
        )
    else:
        fs.write_json(spark, paths.current_model, {
            "model_version": version, "run_date": str(run_date), "score": result.candidate_score,
            "metric": result.metric, "path": paths.model(version),
        })
    if fs.exists(spark, paths.model_metadata(version)):
        metadata = fs.read_json(spark, paths.model_metadata(version))
        fs.write_json(spark, paths.model_metadata(version), {**metadata, "gate": _record(result)})
    return result


def _record(result: GateResult) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"}
