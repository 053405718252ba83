"""Raw event log rows to canonical, typed events.

Canonical events have `user_id` and `item_id` as strings (so any id, including 64-bit numbers
and text, survives unchanged), a canonical `event` name, `ts` (timestamp, UTC) and `event_date`.
Rows that cannot be made canonical are not dropped here: they carry a `reason`, and the caller
decides where they go.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkals.config import InputColumns
from sparkals.errors import SparkalsError

CANONICAL_COLUMNS = ["user_id", "item_id", "event", "ts", "event_date"]


class InputSchemaError(SparkalsError):
    """The input lacks a column the mapping names."""


def _timestamp(raw: Column, unit: str) -> Column:
    if unit == "ms":
        return F.timestamp_millis(raw.try_cast("long"))
    if unit == "s":
        return F.timestamp_seconds(raw.try_cast("long"))
    return F.try_to_timestamp(raw.cast("string"))


def _clean_id(raw: Column) -> Column:
    text = F.trim(raw.cast("string"))
    return F.when(text != "", text)


def check_columns(raw: DataFrame, columns: InputColumns) -> None:
    """Fail with the missing column named and the columns that are there."""
    wanted = [columns.user, columns.item, columns.event, columns.timestamp]
    missing = [name for name in wanted if name not in raw.columns]
    if missing:
        raise InputSchemaError(
            f"input has no column {', '.join(map(repr, missing))}; columns present: {', '.join(raw.columns)}"
        )


def parse_events(raw: DataFrame, columns: InputColumns) -> DataFrame:
    """Canonical columns plus `reason`: null for a good row, else why it is unusable."""
    check_columns(raw, columns)
    user = _clean_id(F.col(columns.user))
    item = _clean_id(F.col(columns.item))
    event = F.lower(F.trim(F.col(columns.event).cast("string")))
    ts = _timestamp(F.col(columns.timestamp), columns.timestamp_unit)
    reason = (
        F.when(user.isNull(), F.lit("missing_user"))
        .when(item.isNull(), F.lit("missing_item"))
        .when(event.isNull() | (event == ""), F.lit("missing_event"))
        .when(ts.isNull(), F.lit("bad_timestamp"))
    )
    return raw.select(
        user.alias("user_id"),
        item.alias("item_id"),
        event.alias("event"),
        ts.alias("ts"),
        F.to_date(ts).alias("event_date"),
        reason.alias("reason"),
    )


def split_valid(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(good rows in canonical columns, rejected rows with their reason)."""
    good = parsed.filter(F.col("reason").isNull()).select(*CANONICAL_COLUMNS)
    bad = parsed.filter(F.col("reason").isNotNull())
    return good, bad
