"""Publish a DataFrame so that readers see the old output or the new one, never half of one.

The protocol, on any Hadoop file system:
1. a journal names the swap (`_staging/<token>.swap.json`), then the data is written to
   `_staging/<token>` and read back: row count and columns must match what was meant;
2. a `_SUCCESS` marker with the counts goes into the staged folder, so it arrives with the data;
3. the previous output is renamed aside and the staged folder renamed into place, then the
   old copy and the journal are deleted.
A crash at any point is repaired by `recover`, which every publish runs first: a swap that
stopped before the new output was in place is rolled back (the previous output is renamed back),
one that stopped after it is finished. Readers that want only complete output check for the
`_SUCCESS` marker, or follow the `_LATEST` pointer the pipeline writes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession

from sparkals import fs
from sparkals.errors import SparkalsError

__all__ = ["MARKER", "STEPS", "PublishError", "is_complete", "publish_parquet", "recover", "update_latest"]

MARKER = "_SUCCESS"
JOURNAL_SUFFIX = ".swap.json"
STEPS = ("journaled", "staged", "verified", "retired", "swapped")


class PublishError(SparkalsError):
    """The staged output failed its checks; nothing was replaced."""


def _no_fault(step: str) -> None:
    return None


def publish_parquet(
    df: DataFrame,
    target: str,
    staging_root: str,
    expected_rows: int | None = None,
    marker: dict[str, Any] | None = None,
    fault: Callable[[str], None] = _no_fault,
) -> int:
    """Stage `df` as Parquet, check it, then swap it into `target`; returns the rows written.

    `expected_rows`, when given, must equal what was written; `marker` adds fields to the
    `_SUCCESS` JSON. `fault` is called after each step of STEPS: tests raise from it to show
    that a crash there leaves the previous output intact.
    """
    spark = df.sparkSession
    recover(spark, staging_root)
    token = uuid.uuid4().hex[:12]
    staged, retired = f"{staging_root}/{token}", f"{staging_root}/{token}-previous"
    journal = f"{staging_root}/{token}{JOURNAL_SUFFIX}"
    fs.write_json(spark, journal, {"target": target, "staged": staged, "retired": retired})
    fault("journaled")
    df.write.mode("overwrite").parquet(staged)
    fault("staged")
    written = spark.read.parquet(staged)
    rows = written.count()
    problem = None
    if written.schema.fieldNames() != df.schema.fieldNames():
        problem = f"has columns {written.columns}, expected {df.columns}"
    elif expected_rows is not None and rows != expected_rows:
        problem = f"has {rows:,} rows, expected {expected_rows:,}"
    if problem:
        fs.delete(spark, staged)
        fs.delete(spark, journal)
        raise PublishError(f"staged output for {target} {problem}; the published output was left as it was")
    fs.write_json(spark, f"{staged}/{MARKER}", {
        **(marker or {}), "rows": rows, "columns": written.columns,
        "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    fault("verified")
    if fs.exists(spark, target):
        fs.rename(spark, target, retired)
    fault("retired")
    fs.rename(spark, staged, target)
    fault("swapped")
    fs.delete(spark, retired)
    fs.delete(spark, journal)
    return rows


def recover(spark: SparkSession, staging_root: str) -> list[str]:
    """Repair every swap a crash interrupted; returns the targets it touched.

    Before the new output was in place: the previous output goes back (if it had been moved)
    and the staged copy is dropped. After: the old copy is dropped. Either way the target
    ends complete, and the journal is removed last so that a crash here is repaired next time.
    """
    repaired = []
    for name in fs.list_names(spark, staging_root):
        if not name.endswith(JOURNAL_SUFFIX):
            continue
        journal = f"{staging_root}/{name}"
        swap = fs.read_json(spark, journal)
        target, staged, retired = swap["target"], swap["staged"], swap["retired"]
        if not fs.exists(spark, target) and fs.exists(spark, retired):
            fs.rename(spark, retired, target)
        fs.delete(spark, staged)
        fs.delete(spark, retired)
        fs.delete(spark, journal)
        repaired.append(target)
    return repaired


def is_complete(spark: SparkSession, target: str) -> bool:
    """True when `target` holds a published output (its `_SUCCESS` marker is there)."""
    return fs.exists(spark, f"{target}/{MARKER}")


def update_latest(spark: SparkSession, pointer: str, entry: dict[str, Any]) -> bool:
    """Point `pointer` (a small JSON file) at `entry` unless it already names a later run date,
    so that a backfill of an old night does not move readers backwards. Returns whether it moved."""
    if fs.exists(spark, pointer):
        current = fs.read_json(spark, pointer)
        if str(current.get("run_date", "")) > str(entry["run_date"]):
            return False
    fs.write_json(spark, pointer, entry)
    return True
