"""Stage `ingest`: the input log → clean events under `events/event_date=...`, every other row to
`quarantine/run_date=...` with its reason, and the row accounting in `runs/run_date=.../ingest.json`:
rows_read == accepted + quarantined + duplicates + dropped_unknown_events, exactly."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from sparkals import fs
from sparkals.config import Config, InputSettings
from sparkals.errors import PipelineError
from sparkals.ingest import CORRUPT_COLUMN, DROPPED, GOOD, REASONS, accepted, parse_events, quarantined, rows_per_reason
from sparkals.paths import Paths
from sparkals.stages.common import sql_conf, timed
from sparkals.vocabulary import EVENT_DATE

__all__ = ["IngestResult", "RowCounts", "count_rows", "read_input", "run"]

# Every read of the input parses whole lines (see `run`).
WHOLE_LINES = {"spark.sql.csv.parser.columnPruning.enabled": "false"}


@dataclass(frozen=True)
class RowCounts:
    """Where every row read went."""

    rows_read: int
    accepted: int
    quarantined: int
    duplicates: int
    dropped_unknown_events: int
    quarantined_by_reason: dict[str, int]


@dataclass(frozen=True)
class IngestResult:
    rows_read: int
    accepted: int
    quarantined: int
    duplicates: int
    dropped_unknown_events: int
    seconds: float = 0.0


def _input_paths(spark: SparkSession, source: InputSettings, run_date: dt.date) -> list[str]:
    """The paths to read: `input.path`, or with "{date}" in it one path per day of the window."""
    if "{date}" in source.path:
        days = [run_date - dt.timedelta(days=i) for i in range(max(1, source.lookback_days))]
        candidates = [source.path.replace("{date}", day.isoformat()) for day in days]
    else:
        candidates = [source.path]
    found = [path for path in candidates if fs.glob_has_files(spark, path)]
    if not found:
        if len(candidates) == 1 and fs.exists(spark, candidates[0]):
            raise PipelineError(f"input {candidates[0]!r} holds no files")
        raise PipelineError(
            f"input path {source.path!r} does not exist"
            + (f" for any day from {candidates[-1]} to {candidates[0]}" if len(candidates) > 1 else "")
            + "; set input.path"
        )
    return found


def read_input(spark: SparkSession, source: InputSettings, run_date: dt.date) -> DataFrame:
    """The raw event log with every column as text where the format allows, plus the
    corrupt-record column for lines the reader could not parse (CSV, JSON)."""
    paths = _input_paths(spark, source, run_date)
    if source.format == "csv":
        reader = spark.read.option("header", str(source.header).lower()).option("sep", source.delimiter)
        columns = reader.csv(paths).columns
        schema = ", ".join(f"`{name}` string" for name in columns) + f", `{CORRUPT_COLUMN}` string"
        raw = (
            reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
            .schema(schema).csv(paths)
        )
    elif source.format == "json":
        raw = (
            spark.read.option("primitivesAsString", "true")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN).json(paths)
        )
    else:
        raw = spark.read.parquet(*paths)
    if source.partition_column and source.lookback_days > 0:
        if source.partition_column not in raw.columns:
            raise PipelineError(f"input.partition_column {source.partition_column!r} is not a column of the input")
        first = run_date - dt.timedelta(days=source.lookback_days - 1)
        day = F.to_date(F.col(source.partition_column).cast("string"))
        raw = raw.filter(day.between(F.lit(first), F.lit(run_date)))
    return raw


def _quarantine_counts(by_reason: dict[str | None, int]) -> dict[str, int]:
    """The rows of each quarantine reason found (the other keys: good rows, dropped events)."""
    return {reason: by_reason[reason] for reason in REASONS if reason in by_reason}


def count_rows(by_reason: dict[str | None, int], accepted_rows: int) -> RowCounts:
    """Rows per quarantine reason (None: good rows, before duplicates go) to the accounting."""
    quarantine = _quarantine_counts(by_reason)
    return RowCounts(
        rows_read=sum(by_reason.values()),
        accepted=accepted_rows,
        quarantined=sum(quarantine.values()),
        duplicates=by_reason.get(None, 0) - accepted_rows,
        dropped_unknown_events=by_reason.get(DROPPED, 0),
        quarantined_by_reason=quarantine,
    )


@timed("ingest")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> IngestResult:
    """Input log to clean events; fails, writing nothing downstream, when more than
    `ingest.max_quarantine_share` of the rows are quarantined."""
    paths = Paths(cfg.output.root)
    staged, dated = paths.staged_events(run_date), bool(cfg.input.columns.timestamp)
    # Every read parses every column: Spark's CSV reader otherwise parses only the columns a query
    # uses, and then cannot tell a line with a field too many or too few, so a read for the events
    # and one for the quarantine would flag different malformed lines.
    with sql_conf(spark, WHOLE_LINES):
        parsed = parse_events(read_input(spark, cfg.input, run_date), cfg.input, cfg.ingest, run_date)
        fs.delete(spark, staged)  # what a run that crashed may have left
        try:
            by_reason, accepted_rows = _stage_events(parsed, staged, dated)
            if not by_reason:
                raise PipelineError(f"input {cfg.input.path!r} holds no rows (only a header, or empty files)")
            counts = count_rows(by_reason, accepted_rows)
            _write_quarantine(spark, paths, cfg, run_date, parsed, counts)
            _promote(spark, staged, paths.events, dated)
        finally:
            fs.delete(spark, staged)
    _write_record(spark, paths, cfg, run_date, counts, "succeeded")
    return IngestResult(counts.rows_read, counts.accepted, counts.quarantined, counts.duplicates,
                        counts.dropped_unknown_events)


def _stage_events(parsed: DataFrame, staged: str, dated: bool) -> tuple[dict[str | None, int], int]:
    """The clean events written to `staged`, partitioned by day, in the one read of the input that
    also counts every row per reason (an observation before `accepted`'s filter) and the rows
    written (one after its duplicates go): the rows per reason, without empty ones (None: good
    rows, before duplicates go), and the events written.

    One read, not a count and then a write: the decision whether to publish needs the counts, so
    the events wait in `staged` until `_promote` (ingest at 4M events: 18.5 against 15.3 s;
    BENCHMARKS.md, section 5).
    A dated log: one task writes each day, one file a day (`accepted` shuffles by day). Written as
    read, every task would write a file into every day it holds (a log of two years in 8 tasks: up
    to 5,840 small files). A snapshot is one day: written as read, by every task at once."""
    tallied, written = Observation("rows per reason"), Observation("accepted")
    good = accepted(parsed.observe(tallied, *rows_per_reason()), by_day=dated)
    good.observe(written, F.count(F.lit(1)).alias("rows")).write.mode("overwrite").partitionBy(EVENT_DATE).parquet(staged)
    rows_written = int(written.get["rows"])
    # With nothing written, adaptive execution replaces the plan after the shuffle by an empty
    # relation, and the observation before the shuffle goes with it: those counts take a job of their own.
    tallies = tallied.get if rows_written else parsed.agg(*rows_per_reason()).first().asDict()
    by_reason = {None if name == GOOD else name: int(tallies[name]) for name in (GOOD, *REASONS, DROPPED)}
    return {reason: rows for reason, rows in by_reason.items() if rows}, rows_written


def _write_quarantine(
    spark: SparkSession, paths: Paths, cfg: Config, run_date: dt.date, parsed: DataFrame, counts: RowCounts
) -> None:
    """The quarantined rows, then the check of their share. The quarantine is a second read of the
    input, for logs that have bad rows only: when it finds other rows than the first read counted,
    the files changed in between, and the run fails rather than record counts the outputs do not hold."""
    fs.delete(spark, paths.quarantine(run_date))
    if counts.quarantined:
        written = Observation("quarantined")
        quarantined(parsed).observe(written, F.count(F.lit(1)).alias("rows")).write.mode("overwrite").parquet(
            paths.quarantine(run_date))
        rows_written = int(written.get["rows"])
        if rows_written != counts.quarantined:
            _write_record(spark, paths, cfg, run_date, counts, "failed")
            raise PipelineError(
                f"the input changed while ingest read it: {counts.quarantined:,} rows quarantined as the events "
                f"were written, then {rows_written:,} in the quarantine; run ingest for {run_date} "
                f"again once {cfg.input.path!r} is complete"
            )
    share = counts.quarantined / counts.rows_read
    if share > cfg.ingest.max_quarantine_share:
        _write_record(spark, paths, cfg, run_date, counts, "failed")
        raise PipelineError(
            f"{share:.1%} of {counts.rows_read:,} rows were quarantined, above ingest.max_quarantine_share "
            f"({cfg.ingest.max_quarantine_share:.1%}): {counts.quarantined_by_reason}. Nothing was written downstream; "
            f"see {paths.quarantine(run_date)} and fix the input or the [input] mapping."
        )


def _promote(spark: SparkSession, staged: str, events: str, dated: bool) -> None:
    """Move the staged events into place: a dated log replaces only the days it holds; a log
    without time is a snapshot dated at the run date and replaces every earlier snapshot, or each
    night would count the same rows again. Each day is one delete and one rename of its folder, as
    Spark's dynamic partition overwrite does when it commits."""
    if not dated:
        fs.delete(spark, events)
        fs.rename(spark, staged, events)
        return
    for day in fs.list_names(spark, staged):
        if day.startswith(f"{EVENT_DATE}="):
            fs.delete(spark, f"{events}/{day}")
            fs.rename(spark, f"{staged}/{day}", f"{events}/{day}")


def _write_record(
    spark: SparkSession, paths: Paths, cfg: Config, run_date: dt.date, counts: RowCounts, status: str
) -> None:
    fs.write_json(spark, paths.ingest_record(run_date), {
        "run_date": str(run_date), "input": cfg.input.path, **asdict(counts),
        "quarantine_path": paths.quarantine(run_date), "status": status,
    })
