"""Stage `clean`: retention. Removes dated outputs older than `retention.keep_days` and models
beyond `retention.keep_models` (what goes is decided in retention.py), at the end of each
successful night and with `sparkals clean --dry-run|--yes`. The models of the last
`evaluate.test_days` nights stay whatever `keep_models` says: the coming nights' gates measure
them (stages/holdout_model.py). Clean events (`events/`, the history ALS learns from) and run
records (`runs/`) are never touched. Also here: removing Spark's checkpoint files when a run ends."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config
from sparkals.paths import DATED_KINDS, Paths
from sparkals.retention import expired_dates, surplus_models
from sparkals.stages.common import model_run_date, model_version, timed
from sparkals.stages.holdout_model import nights_to_keep

__all__ = ["CleanResult", "Removal", "pinned", "plan", "remove_checkpoints", "run"]

log = logging.getLogger(__name__)

MODELS = "models"


@dataclass(frozen=True)
class Removal:
    kind: str  # one of paths.DATED_KINDS, or "models"
    path: str
    bytes: int


@dataclass(frozen=True)
class CleanResult:
    dry_run: bool
    keep_days: int
    keep_models: int
    removed: tuple[Removal, ...]  # with dry_run: what would be removed
    bytes: int
    failed: tuple[str, ...] = ()  # "path: error" for each removal the storage refused
    seconds: float = 0.0


def _dated(spark: SparkSession, folder: str) -> dict[dt.date, str]:
    """The `run_date=...` folders below `folder` by date; other names are left alone."""
    found = {}
    for name in fs.list_names(spark, folder):
        key, _, value = name.partition("=")
        try:
            if key == "run_date":
                found[dt.date.fromisoformat(value)] = f"{folder}/{name}"
        except ValueError:
            continue
    return found


def _pointer_date(spark: SparkSession, pointer: str) -> dt.date | None:
    if not fs.exists(spark, pointer):
        return None
    run_date = fs.read_json(spark, pointer).get("run_date")
    return dt.date.fromisoformat(run_date) if run_date else None


def pinned(spark: SparkSession, cfg: Config, run_date: dt.date) -> tuple[set[dt.date], set[str]]:
    """(dates, model versions) retention never removes: tonight's; the serving model and its run
    date (its ratings, indexes and report); the run date `_LATEST` recommendations name."""
    paths = Paths(cfg.output.root)
    dates, versions = {run_date, _pointer_date(spark, paths.latest_recommendations)}, {model_version(cfg, run_date)}
    if fs.exists(spark, paths.current_model):
        serving = fs.read_json(spark, paths.current_model).get("model_version")
        if serving:
            versions.add(serving)
            dates.add(model_run_date(serving))
    return {day for day in dates if day is not None}, versions


def plan(spark: SparkSession, cfg: Config, run_date: dt.date) -> list[tuple[str, str]]:
    """(kind, path) of everything retention would remove for `run_date`, oldest first per kind."""
    paths, keep = Paths(cfg.output.root), cfg.retention
    dates, versions = pinned(spark, cfg, run_date)
    doomed = []
    for kind in DATED_KINDS:
        folders = _dated(spark, paths.dated_root(kind))
        doomed += [(kind, folders[day]) for day in expired_dates(folders, run_date, keep.keep_days, dates)]
    models = {
        name: (day, fs.modified_at(spark, paths.model(name)))
        for name in fs.list_names(spark, paths.models) if (day := model_run_date(name)) is not None
    }
    # The models the coming nights' gates will measure as their holdout models (stages/holdout_model.py).
    reused = nights_to_keep(cfg.evaluate, run_date)
    versions |= {name for name, (day, _) in models.items() if day in reused}
    doomed += [(MODELS, paths.model(name)) for name in surplus_models(models, keep.keep_models, versions)]
    return doomed


@timed("clean")
def run(spark: SparkSession, cfg: Config, run_date: dt.date, dry_run: bool = True) -> CleanResult:
    """Remove (or with `dry_run` only list) what retention allows for `run_date`."""
    removed, failed = [], []
    for kind, path in plan(spark, cfg, run_date):
        try:
            removal = Removal(kind, path, fs.size(spark, path))
            if not dry_run:
                fs.delete(spark, path)
        except Py4JJavaError as err:  # one refused removal must not keep the others
            failed.append(f"{path}: {str(err.java_exception).splitlines()[0]}")
            log.warning("clean: could not remove %s", failed[-1])
            continue
        removed.append(removal)
    return CleanResult(dry_run, cfg.retention.keep_days, cfg.retention.keep_models, tuple(removed),
                       sum(r.bytes for r in removed), tuple(failed))


def remove_checkpoints(spark: SparkSession, paths: Paths) -> None:
    """Remove `checkpoints/` (ALS's and the holdout's checkpoint files) when a run ends, success or
    failure. Safe only under the run lock: no other run can be writing there."""
    try:
        fs.delete(spark, paths.checkpoints)
    except Py4JJavaError as err:  # must not hide the run's own error
        log.warning("could not remove %s: %s", paths.checkpoints, str(err.java_exception).splitlines()[0])
