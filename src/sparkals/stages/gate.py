"""Stage `gate`: measure tonight's model on the holdout and decide whether it serves.

A model serves only if its headline metric beats the best popularity baseline by `gate.min_lift`
and does not fall more than `gate.max_drop` below the serving model's. The decision (`decide`) is a
pure function of the scores; the stage reads the serving pointer `models/_CURRENT.json`, evaluates,
moves the pointer when the model is promoted, and records the decision in the model's metadata.
A refused model is kept but does not serve; with no model serving, every user gets the fallback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
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
    serving: str | None  # None: no model serves, every user gets the fallback
    metric: str | None = None
    candidate_score: float | None = None
    baselines: dict[str, float] | None = None
    lift: dict[str, float | None] | None = None
    current_score: float | None = None
    floor: float | None = None
    report: str | None = None
    reason: str | None = None
    seconds: float = 0.0

    @property
    def refused(self) -> bool:
        return self.status == REFUSED


def _lift(score: float, baseline: float) -> float | None:
    return round(score / baseline - 1.0, 6) if baseline > 0 else None


def decide(
    candidate: str, current: dict[str, Any] | None, metric: str, score: float, baselines: dict[str, float],
    settings: GateSettings,
) -> GateResult:
    """Promote `candidate` if its holdout `score` beats the best of `baselines` by `min_lift` and
    is not more than `max_drop` below the score of the serving model (`current`, the pointer's
    content); otherwise the serving model stays (None when there is none). Every check that fails
    is named in `reason`."""
    previous = current["model_version"] if current else None
    result = GateResult(candidate, previous, PROMOTED, candidate, metric=metric, candidate_score=score,
                        baselines=dict(baselines), lift={name: _lift(score, v) for name, v in baselines.items()})
    failed = []
    best = max(baselines, key=baselines.get)
    needed = baselines[best] * (1.0 + settings.min_lift)
    if score <= 0 or score < needed:
        failed.append(
            f"{metric} {score:.5f} does not beat the best baseline, {best} {baselines[best]:.5f}, "
            f"by gate.min_lift {settings.min_lift:.0%} (needs {needed:.5f})"
        )
    if current and previous != candidate and current.get("score") is not None:
        floor = current["score"] * (1.0 - settings.max_drop)
        result = dataclasses.replace(result, current_score=current["score"], floor=round(floor, 6))
        if score < floor:
            failed.append(
                f"{metric} {score:.5f} is below {floor:.5f}: more than gate.max_drop {settings.max_drop:.0%} "
                f"under the serving model {previous} ({current['score']:.5f})"
            )
    if failed:
        return dataclasses.replace(result, status=REFUSED, serving=previous, reason="; ".join(failed))
    return result


def _pointer(spark: SparkSession, paths: Paths) -> dict[str, Any] | None:
    """The content of `models/_CURRENT.json`, or None when it was never written."""
    return fs.read_json(spark, paths.current_model) if fs.exists(spark, paths.current_model) else None


def _serving_pointer(spark: SparkSession, paths: Paths) -> dict[str, Any] | None:
    """The serving pointer, or None when none was ever written or no model serves."""
    pointer = _pointer(spark, paths)
    return pointer if pointer and pointer.get("model_version") else None


def serving_model(spark: SparkSession, paths: Paths, tonight: str) -> str | None:
    """The model version that scores: the serving pointer's; None when the gate left no model
    serving; tonight's for an output root that has never been gated."""
    pointer = _pointer(spark, paths)
    return tonight if pointer is None else pointer.get("model_version")


@timed("gate")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> GateResult:
    """Gate the run date's model (trained with these settings) and point readers at the one that serves."""
    paths = Paths(cfg.output.root)
    version = model_version(cfg, run_date)
    if not fs.exists(spark, paths.model_data(version)):
        raise PipelineError(f"no model {version} for {run_date}: run `sparkals train` with the same settings first")
    current = _serving_pointer(spark, paths)
    previous = current["model_version"] if current else None
    result = _judge(spark, cfg, run_date, version, current) if cfg.gate.enabled else GateResult(
        version, previous, WITHOUT_GATE, version
    )
    if result.refused:
        log.warning("gate: refused %s: %s; %s", version, result.reason,
                    f"serving {previous}" if previous else "no model serves: every user gets the fallback")
    if not result.refused:
        fs.write_json(spark, paths.current_model, {
            "model_version": version, "run_date": str(run_date), "score": result.candidate_score,
            "metric": result.metric, "path": paths.model(version),
        })
    elif previous is None:  # say so, rather than let readers fall back to tonight's model
        fs.write_json(spark, paths.current_model, {
            "model_version": None, "run_date": str(run_date), "reason": f"refused {version}: {result.reason}",
        })
    metadata = fs.read_json(spark, paths.model_metadata(version))
    fs.write_json(spark, paths.model_metadata(version), {**metadata, "gate": _record(result)})
    return result


def _judge(
    spark: SparkSession, cfg: Config, run_date: dt.date, version: str, current: dict[str, Any] | None
) -> GateResult:
    previous = current["model_version"] if current else None
    try:
        measured = evaluate.run(spark, cfg, run_date)
    except EmptyHoldoutError as err:
        # Too little history to measure (a first night on a day of data): nothing to gate on.
        log.warning("gate: skipped, %s; promoting %s unmeasured", err, version)
        return GateResult(version, previous, UNMEASURED, version, reason=str(err))
    if math.isnan(measured.als):
        reason = "no test user has training history: nothing to measure the model on"
        log.warning("gate: skipped, %s; promoting %s unmeasured", reason, version)
        return GateResult(version, previous, UNMEASURED, version, reason=reason)
    baselines = {"popular": measured.popular, "recent_popular": measured.recent_popular}
    decision = decide(version, current, measured.metric, measured.als, baselines, cfg.gate)
    return dataclasses.replace(decision, report=measured.report)


def _record(result: GateResult) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"}
