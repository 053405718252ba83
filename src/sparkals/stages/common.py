"""What several stages read the same way: the clean events, the index tables, the exclusion list,
the holdout; and the one line each stage logs when it starts and ends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import sparkals
from sparkals import fs
from sparkals.config import Config
from sparkals.errors import EmptyHoldoutError, PipelineError
from sparkals.paths import Paths
from sparkals.split import Holdout, split_events
from sparkals.vocabulary import EVENT_DATE, ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

__all__ = [
    "job_group", "model_run_date", "model_version", "open_holdout", "previous_index_date", "read_events",
    "read_exclusion_file", "read_indexes", "revision", "sql_conf", "timed", "write_indexes",
]

log = logging.getLogger("sparkals.stages")

Result = TypeVar("Result")


def timed(stage: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Log a stage's start and end (with its numeric results) and put its wall time in the
    result's `seconds` field (results are frozen dataclasses)."""

    def wrap(fn: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Result:
            started = time.perf_counter()
            log.info("%s: started", stage)
            with _job_group(stage):
                result = fn(*args, **kwargs)
            result = dataclasses.replace(result, seconds=round(time.perf_counter() - started, 3))
            log.info("%s: done in %.1fs %s", stage, result.seconds, _brief(result))
            return result

        return run

    return wrap


@contextmanager
def job_group(spark: SparkSession, group: str, description: str = "") -> Iterator[None]:
    """Spark jobs started inside carry `group` as their job group (Spark UI, event log); the
    caller's group and description are put back afterwards."""
    context = spark.sparkContext
    outer = context.getLocalProperty("spark.jobGroup.id"), context.getLocalProperty("spark.job.description")
    context.setJobGroup(group, description or group)
    try:
        yield
    finally:
        context.setLocalProperty("spark.jobGroup.id", outer[0])  # type: ignore[arg-type]
        context.setLocalProperty("spark.job.description", outer[1])  # type: ignore[arg-type]


@contextmanager
def sql_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Spark SQL `settings` while inside; the session's own values (or their absence) put back after."""
    outer = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in outer.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


@contextmanager
def _job_group(stage: str) -> Iterator[None]:
    """The stage's Spark jobs carry its name as their job group (`sparkals.<stage>`): the Spark UI
    and the event log tell which stage of a night ran each job (scripts/profile_night.py). A stage
    run by another (the gate runs `evaluate`, refresh runs ingest and aggregate) has its own group,
    and the caller's is put back afterwards."""
    spark = SparkSession.getActiveSession()
    if spark is None:
        yield
        return
    with job_group(spark, f"sparkals.{stage}", f"sparkals {stage}"):
        yield


def _brief(result: Any) -> str:
    values = dataclasses.asdict(result)
    return " ".join(
        f"{k}={v}" for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seconds"
    )


@functools.lru_cache(maxsize=1)
def revision() -> str:
    """The code that runs: the git revision when run from a checkout, else the package version."""
    package = f"sparkals {sparkals.__version__}"
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return package
    return (found.stdout.strip() if found.returncode == 0 else "") or package


def model_version(cfg: Config, run_date: dt.date) -> str:
    """Same run date and same settings: same version, so a rerun replaces rather than adds."""
    return f"als-{run_date:%Y%m%d}-{cfg.fingerprint()[:8]}"


def model_run_date(version: str) -> dt.date | None:
    """The run date in a `model_version` name; None for a name it did not make."""
    found = re.fullmatch(r"als-(\d{8})-[0-9a-f]+", version)
    return dt.datetime.strptime(found.group(1), "%Y%m%d").date() if found else None


def read_events(spark: SparkSession, paths: Paths, run_date: dt.date) -> DataFrame:
    """The clean events ingest wrote, up to and including the run date."""
    if not fs.exists(spark, paths.events):
        raise PipelineError(f"no clean events at {paths.events}: run `sparkals ingest` first")
    return spark.read.parquet(paths.events).filter(F.col(EVENT_DATE) <= F.lit(run_date))


def _read_index(spark: SparkSession, path: str, id_col: str, idx_col: str) -> DataFrame:
    index = spark.read.parquet(path)
    if "id" in index.columns and id_col not in index.columns:  # written before the vocabulary had one name
        index = index.select(F.col("id").alias(id_col), F.col("idx").alias(idx_col))
    return index


def read_indexes(spark: SparkSession, paths: Paths, run_date: dt.date) -> tuple[DataFrame, DataFrame]:
    """The night's index tables: (`user_id`, `user_idx`) and (`item_id`, `item_idx`)."""
    if not fs.exists(spark, paths.user_index(run_date)):
        raise PipelineError(f"no indexes for {run_date} at {paths.indexes}: run `sparkals aggregate` first")
    return (
        _read_index(spark, paths.user_index(run_date), USER_ID, USER_IDX),
        _read_index(spark, paths.item_index(run_date), ITEM_ID, ITEM_IDX),
    )


def write_indexes(
    spark: SparkSession, paths: Paths, run_date: dt.date, users: DataFrame, items: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """Write the night's index tables and read them back: later joins then read fixed files
    instead of recomputing the numbering."""
    users.write.mode("overwrite").parquet(paths.user_index(run_date))
    items.write.mode("overwrite").parquet(paths.item_index(run_date))
    return read_indexes(spark, paths, run_date)


def read_exclusion_file(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """The item ids (`item_id`) in the file `ratings.exclude_items_path`, read by Spark (any
    storage; blank lines and `#` comments skipped); None without a file. `ratings.exclusion_list`
    adds `ratings.exclude_items` to them."""
    path = cfg.ratings.exclude_items_path
    if not path:
        return None
    if not fs.exists(spark, path):
        raise PipelineError(f"ratings.exclude_items_path {path!r} does not exist")
    lines = spark.read.text(path).select(F.trim("value").alias(ITEM_ID))
    return lines.filter((F.col(ITEM_ID) != "") & ~F.col(ITEM_ID).startswith("#"))


def previous_index_date(spark: SparkSession, paths: Paths, run_date: dt.date) -> dt.date | None:
    """The newest earlier run whose indexes exist: its ids keep their indexes tonight."""
    days = [
        dt.date.fromisoformat(name.split("=", 1)[1])
        for name in fs.list_names(spark, paths.indexes) if name.startswith("run_date=")
    ]
    earlier = [day for day in days if day < run_date]
    return max(earlier) if earlier else None


@contextmanager
def open_holdout(spark: SparkSession, cfg: Config, run_date: dt.date) -> Iterator[tuple[Holdout, dt.date]]:
    """The configured split of the events up to the run date, and the day ratings are built
    "as of" (the day before the test period: decay must not look into the future).

    A time split is two filters on the day partitions, so each use reads only its days' columns
    from Parquet: cheaper than caching every event first (the scheduled gate at 4M events, 15.0
    against 21.4 s). The other splits find their held-out pairs with a shuffle of every event: their
    events stay cached while the caller evaluates, so that is done once, and are released after."""
    paths = Paths(cfg.output.root)
    spark.sparkContext.setCheckpointDir(paths.checkpoints)
    events = read_events(spark, paths, run_date)
    cached = cfg.evaluate.split != "time"
    if cached:
        events = events.cache()
    try:
        holdout = split_events(events, cfg.evaluate, run_date)
        train_events, test_events = holdout.sizes
        if not train_events or not test_events:
            raise EmptyHoldoutError(
                f"the {holdout.method} split leaves no {'training' if not train_events else 'test'} events "
                f"(cutoff {holdout.cutoff}); set evaluate.cutoff_date or evaluate.test_days to fit the data"
            )
        yield holdout, holdout.as_of or run_date
    finally:
        if cached:
            events.unpersist()
