"""Raw event log rows to canonical, typed events, and every other row to quarantine with a reason.

Canonical events have `user_id` and `item_id` as strings (so any id, including 64-bit numbers
and text, survives unchanged), a canonical `event` name, `ts` (timestamp, UTC), `event_date`,
`quantity` (1.0 unless mapped) and `transaction_id`. Nothing is dropped silently: a row is
accepted, quarantined with a `reason`, dropped as an unmapped event when so configured (counted),
or removed as an exact duplicate (counted).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkals.config import IngestSettings, InputSettings
from sparkals.errors import SparkalsError
from sparkals.vocabulary import EVENT, EVENT_DATE, ITEM_ID, QUANTITY, TRANSACTION_ID, TS, USER_ID

__all__ = [
    "CANONICAL_COLUMNS", "CORRUPT_COLUMN", "DROPPED", "GOOD", "REASONS", "InputSchemaError", "accepted", "check_columns",
    "mapped_columns", "parse_events", "quarantined", "rows_per_reason",
]

CANONICAL_COLUMNS = [USER_ID, ITEM_ID, EVENT, TS, EVENT_DATE, QUANTITY, TRANSACTION_ID]
CORRUPT_COLUMN = "_corrupt_record"
# A duplicate repeats another row in every fact, its transaction id too: two purchases of one item
# at one instant under two invoices are two purchases. (No column left to aggregate also lets Spark
# remove duplicates with a hash aggregate rather than by sorting.)
DUPLICATE_KEY = [USER_ID, ITEM_ID, EVENT, TS, QUANTITY, TRANSACTION_ID]

# Why a row was not accepted; the order is the order the checks are made in.
REASONS = (
    "malformed_line",
    "bad_encoding",
    "missing_user",
    "missing_item",
    "missing_event",
    "unknown_event",
    "bad_timestamp",
    "timestamp_out_of_range",
    "bad_quantity",
)
DROPPED = "dropped_unknown_event"
GOOD = "good"  # `rows_per_reason`'s name for the rows without a reason


class InputSchemaError(SparkalsError):
    """The input lacks a column the mapping names."""


def _timestamp(raw: Column, unit: str) -> Column:
    """ms / s since the epoch, ISO-8601, or any other text as a Spark datetime pattern."""
    if unit == "ms":
        return F.timestamp_millis(raw.try_cast("long"))
    if unit == "s":
        return F.timestamp_seconds(raw.try_cast("long"))
    if unit == "iso":
        return F.try_to_timestamp(raw.cast("string"))
    return F.try_to_timestamp(raw.cast("string"), F.lit(unit))


def _clean_text(raw: Column) -> Column:
    text = F.trim(raw.cast("string"))
    return F.when(text != "", text)


def mapped_columns(source: InputSettings) -> list[str]:
    cols = source.columns
    names = [cols.user, cols.item, cols.event, cols.timestamp, cols.quantity, cols.transaction_id]
    return [name for name in names if name]


def check_columns(raw: DataFrame, source: InputSettings) -> None:
    """Fail with the missing column named and the columns that are there."""
    present = [c for c in raw.columns if c != CORRUPT_COLUMN]
    missing = [name for name in mapped_columns(source) if name not in raw.columns]
    if missing:
        raise InputSchemaError(
            f"input has no column {', '.join(map(repr, missing))}; columns present: {', '.join(present)}. "
            "Map the right ones in [input.columns]."
        )


def parse_events(raw: DataFrame, source: InputSettings, rules: IngestSettings, run_date: dt.date) -> DataFrame:
    """Canonical columns, the raw source fields as text, and `reason` (null for a good row).

    A log without time (`input.columns.timestamp = ""`) dates every row at the start of the run
    date: the log is a snapshot of what users have, as of that night.
    """
    check_columns(raw, source)
    cols = source.columns
    user = _clean_text(F.col(cols.user))
    item = _clean_text(F.col(cols.item))
    source_event = F.lower(_clean_text(F.col(cols.event))) if cols.event else F.lit(source.constant_event)
    mapping = {str(k).lower(): v for k, v in source.events.items()}
    event = F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])[source_event]
    if cols.timestamp:
        ts = _timestamp(F.col(cols.timestamp), cols.timestamp_unit)
    else:
        ts = F.lit(dt.datetime.combine(run_date, dt.time())).cast("timestamp")
    quantity = F.col(cols.quantity).try_cast("double") if cols.quantity else F.lit(1.0)
    txn = _clean_text(F.col(cols.transaction_id)) if cols.transaction_id else F.lit(None).cast("string")
    earliest = dt.datetime.combine(dt.date.fromisoformat(rules.min_event_date), dt.time())
    latest = dt.datetime.combine(run_date + dt.timedelta(days=1 + rules.max_future_days), dt.time())
    text_fields = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in mapped_columns(source)]
    corrupt = F.col(CORRUPT_COLUMN).isNotNull() if CORRUPT_COLUMN in raw.columns else F.lit(False)
    unknown = "unknown_event" if rules.unknown_events == "quarantine" else DROPPED

    reason = (
        F.when(corrupt, F.lit("malformed_line"))
        .when(F.concat(*text_fields).contains("\ufffd"), F.lit("bad_encoding"))
        .when(user.isNull(), F.lit("missing_user"))
        .when(item.isNull(), F.lit("missing_item"))
        .when(source_event.isNull(), F.lit("missing_event"))
        .when(event.isNull(), F.lit(unknown))
        .when(ts.isNull(), F.lit("bad_timestamp"))
        .when((ts < F.lit(earliest)) | (ts >= F.lit(latest)), F.lit("timestamp_out_of_range"))
        .when(quantity.isNull() | (quantity <= 0), F.lit("bad_quantity"))
    )
    raw_fields = [F.col(c).cast("string").alias(f"raw_{c}") for c in raw.columns]
    return raw.select(
        user.alias("user_id"),
        item.alias("item_id"),
        event.alias("event"),
        ts.alias("ts"),
        F.to_date(ts).alias("event_date"),
        quantity.alias("quantity"),
        txn.alias("transaction_id"),
        reason.alias("reason"),
        *raw_fields,
    )


def accepted(parsed: DataFrame, by_day: bool = False) -> DataFrame:
    """Good rows in canonical columns, exact duplicates (equal in every column) removed.

    With `by_day` the rows are shuffled by `event_date` and the duplicates removed within that one
    shuffle: every copy of an event falls on the same day (the day is a function of its time), so a
    write partitioned by day needs no second shuffle and each day is written by one task.
    """
    good = parsed.filter(F.col("reason").isNull()).select(*CANONICAL_COLUMNS)
    if by_day:
        return good.repartition(EVENT_DATE).dropDuplicates([EVENT_DATE, *DUPLICATE_KEY])
    return good.dropDuplicates(DUPLICATE_KEY)


def rows_per_reason() -> list[Column]:
    """Aggregates of `parse_events`' output: the rows of each reason, and of none (GOOD, before
    duplicates go). As an Observation on a write they count every row the write reads, in that
    same read: placed before `accepted`'s filter, they see the rows it lets through and the rest."""
    reason = F.col("reason")
    return [F.count_if(reason.isNull()).alias(GOOD), *[F.count_if(reason == name).alias(name) for name in (*REASONS, DROPPED)]]


def quarantined(parsed: DataFrame) -> DataFrame:
    """Rejected rows as they came in (raw fields as text) with their reason; dropped events excluded."""
    bad = parsed.filter(F.col("reason").isNotNull() & (F.col("reason") != DROPPED))
    return bad.select("reason", *[c for c in parsed.columns if c.startswith("raw_")])
