"""Stage `nightly`: every stage in order for one run date; rerunning the same date replaces its
outputs. The run record `runs/run_date=.../summary.json` is written whatever happens: status
`succeeded`, `gated` (tonight's model was refused and the previous one served) or `failed`. A night
that finishes (succeeded or gated) ends with retention (stages/clean.py); the record lists what it removed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import pyspark
from pyspark.sql import SparkSession

from sparkals import fs, tracking
from sparkals.config import Config
from sparkals.errors import unwritable_root
from sparkals.paths import Paths
from sparkals.stages import aggregate, clean, gate, ingest, recommend, train
from sparkals.stages.common import revision

__all__ = ["NightlyResult", "STAGES", "require_writable_root", "revision", "run"]

STAGES = {"ingest": ingest.run, "aggregate": aggregate.run, "train": train.run, "gate": gate.run,
          "recommend": recommend.run}


@dataclass(frozen=True)
class NightlyResult:
    run_date: str
    status: str
    ingest: ingest.IngestResult
    aggregate: aggregate.AggregateResult
    train: train.TrainResult
    gate: gate.GateResult
    recommend: recommend.RecommendResult
    seconds: float

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Each stage's wall seconds, in the order they ran."""
        return {name: getattr(self, name).seconds for name in STAGES}


def require_writable_root(spark: SparkSession, paths: Paths) -> None:
    """Fail before touching anything when output.root cannot be written (a read-only mount, no
    permission, a full disk): otherwise the first stage would fail half-way with a Java trace."""
    try:
        fs.check_writable(spark, paths.root)
    except OSError as err:
        raise unwritable_root(paths.root, str(err)) from err


def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> NightlyResult:
    """ingest → aggregate → train → gate → recommend, and the run record."""
    paths = Paths(cfg.output.root)
    require_writable_root(spark, paths)
    tracker = tracking.open_tracker(cfg.tracking)  # before any work: a missing extra or store fails now
    started = time.perf_counter()
    record: dict[str, Any] = {
        "run_date": str(run_date), "config_fingerprint": cfg.fingerprint(), "revision": revision(),
        "spark_version": pyspark.__version__, "status": "running",
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    results: dict[str, Any] = {}
    try:
        for name, stage in STAGES.items():
            results[name] = stage(spark, cfg, run_date)
            record[name] = dataclasses.asdict(results[name])
        record["status"] = "gated" if results["gate"].refused else "succeeded"
        record["retention"] = dataclasses.asdict(clean.run(spark, cfg, run_date, dry_run=False))
    except Exception as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["stage_seconds"] = {name: result.seconds for name, result in results.items()}
        record["outputs"] = {
            "events": paths.events, "ratings": paths.ratings(run_date), "recommendations": paths.recommendations(run_date),
            "models": paths.models, "report": paths.reports(run_date),
        }
        if tracker is not None:
            record["tracking"] = tracking.track_night(tracker, spark, cfg, record)
        fs.write_json(spark, paths.run_summary(run_date), record)
    return NightlyResult(run_date=str(run_date), status=record["status"], seconds=record["seconds"], **results)
