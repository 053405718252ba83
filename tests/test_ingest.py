"""Ingest: mapping, quarantine with exact counts per reason, clear errors, ids of every kind."""

import dataclasses
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals import cli
from sparkals.errors import PipelineError
from sparkals.paths import Paths
from sparkals.stages import ingest
from sparkals.stages.common import job_group
from sparkals.config import IngestSettings, InputColumns, InputSettings
from sparkals.ingest import InputSchemaError, accepted, parse_events

DATA = Path(__file__).parent / "data" / "ingest"
CONF = Path(__file__).resolve().parents[1] / "conf"
RAW_COLUMNS = "timestamp string, visitorid string, event string, itemid string, transactionid string"
RUN_DATE = dt.date(2015, 6, 5)


def parse(raw, source=InputSettings(), rules=IngestSettings(), run_date=RUN_DATE):
    return parse_events(raw, source, rules, run_date)


def test_good_rows_become_canonical_events(spark):
    raw = spark.createDataFrame(
        [("1433221332117", "257597", "view", "355908", None), ("1433224214164", " 992329 ", "VIEW", "248676", "t1")],
        RAW_COLUMNS,
    )
    expected = spark.createDataFrame(
        [
            ("257597", "355908", "view", dt.datetime(2015, 6, 2, 5, 2, 12, 117000), dt.date(2015, 6, 2), 1.0, None),
            ("992329", "248676", "view", dt.datetime(2015, 6, 2, 5, 50, 14, 164000), dt.date(2015, 6, 2), 1.0, "t1"),
        ],
        "user_id string, item_id string, event string, ts timestamp, event_date date, quantity double, "
        "transaction_id string",
    )
    assertDataFrameEqual(accepted(parse(raw)), expected)


@pytest.mark.parametrize("by_day", [False, True])
def test_a_duplicate_repeats_every_column_its_transaction_id_too(spark, by_day):
    raw = spark.createDataFrame(
        [("1433221332117", "u", "transaction", "i", "t1"), ("1433221332117", "u", "transaction", "i", "t1"),
         ("1433221332117", "u", "transaction", "i", "t2"), ("1433221332117", "u", "view", "i", None),
         ("1433221332117", "u", "view", "i", None)],
        RAW_COLUMNS,
    )
    got = sorted((r.event, r.transaction_id) for r in accepted(parse(raw), by_day=by_day).collect())
    assert got == [("transaction", "t1"), ("transaction", "t2"), ("view", None)]


def test_event_names_are_mapped_to_canonical_ones(spark):
    raw = spark.createDataFrame([("1433221332117", "u", "Purchase", "i", None)], RAW_COLUMNS)
    source = InputSettings(events={"purchase": "transaction"})
    assert [r.event for r in accepted(parse(raw, source)).collect()] == ["transaction"]


def test_seconds_iso_and_pattern_timestamps(spark):
    cases = [("s", "1700000000", dt.datetime(2023, 11, 14, 22, 13, 20)),
             ("iso", "2023-11-14T22:13:20Z", dt.datetime(2023, 11, 14, 22, 13, 20)),
             ("M/d/yyyy H:mm", "11/14/2023 22:13", dt.datetime(2023, 11, 14, 22, 13))]
    for unit, text, expected in cases:
        raw = spark.createDataFrame([(text, "u", "view", "i")], "t string, u string, e string, i string")
        source = InputSettings(columns=InputColumns(user="u", item="i", event="e", timestamp="t",
                                                    timestamp_unit=unit, transaction_id=""))
        (row,) = accepted(parse(raw, source, run_date=dt.date(2023, 11, 20))).collect()
        assert row.ts == expected, unit


def test_a_missing_mapped_column_is_named(spark):
    raw = spark.createDataFrame([("1", "2", "view")], ["timestamp", "visitor", "event"])
    with pytest.raises(InputSchemaError, match=r"'visitorid', 'itemid', 'transactionid'.*columns present: timestamp, visitor, event"):
        parse(raw)


def run_ingest(spark, small_settings, path, *overrides, run_date=RUN_DATE):
    cfg = small_settings(f"input.path={path}", *overrides)
    result = dataclasses.asdict(ingest.run(spark, cfg, run_date))
    result.pop("seconds")
    return cfg, result


EXPECTED_REASONS = {
    "malformed_line": 2, "bad_encoding": 1, "missing_user": 1, "missing_item": 1, "missing_event": 1,
    "unknown_event": 1, "bad_timestamp": 1, "timestamp_out_of_range": 1,
}


def test_bad_csv_corpus_exact_counts_per_reason(spark, small_settings, tmp_path):
    cfg, result = run_ingest(spark, small_settings, DATA / "retailrocket_bad.csv", "ingest.max_quarantine_share=1.0")
    assert result == {"rows_read": 14, "accepted": 4, "quarantined": 9, "duplicates": 1, "dropped_unknown_events": 0}
    assert result["rows_read"] == result["accepted"] + result["quarantined"] + result["duplicates"]
    record = json.loads((tmp_path / "out" / "runs" / f"run_date={RUN_DATE}" / "ingest.json").read_text())
    assert record["quarantined_by_reason"] == EXPECTED_REASONS
    quarantine = spark.read.parquet(Paths(cfg.output.root).quarantine(RUN_DATE))
    got = {r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    assert got == EXPECTED_REASONS
    (truncated,) = quarantine.filter("raw_event = 'view' AND raw_itemid IS NULL").collect()
    assert truncated.raw__corrupt_record == "1433221999000,1,view"
    events = spark.read.parquet(Paths(cfg.output.root).events)
    assert sorted(r.item_id for r in events.collect()) == ["248676", "355908", "8", "sku-ABC"]


def test_a_line_with_a_field_too_many_or_too_few_is_malformed_even_beside_unmapped_columns(spark, small_settings, tmp_path):
    """Spark's CSV reader parses only the columns a query needs and then cannot see a line's field
    count: the counts per reason, the good rows and the quarantine must all read every column, or
    a broken line could be counted and written as good and also quarantined."""
    log = tmp_path / "extra_columns.csv"
    log.write_text(
        "timestamp,visitorid,event,itemid,transactionid,page,referrer\n"
        "1433221332117,1,view,a,,home,google\n"
        "1433221332118,2,view,b,,cart,\n"
        "1433221332119,3,view,c,,search,bing,unquoted comma\n"  # a field too many, in unmapped columns
        "1433221332120,4,view,d,,search\n"  # a field too few, in unmapped columns
    )
    pruning = "spark.sql.csv.parser.columnPruning.enabled"
    session_value = spark.conf.get(pruning, None)
    cfg, result = run_ingest(spark, small_settings, log, "ingest.max_quarantine_share=1.0")
    assert spark.conf.get(pruning, None) == session_value  # the stage puts the session's setting back
    assert result == {"rows_read": 4, "accepted": 2, "quarantined": 2, "duplicates": 0, "dropped_unknown_events": 0}
    events = spark.read.parquet(Paths(cfg.output.root).events)
    assert sorted(r.item_id for r in events.collect()) == ["a", "b"]
    quarantine = spark.read.parquet(Paths(cfg.output.root).quarantine(RUN_DATE))
    assert sorted((r.reason, r.raw_itemid) for r in quarantine.collect()) == [("malformed_line", "c"), ("malformed_line", "d")]


def test_a_log_that_grows_between_the_events_and_the_quarantine_fails_the_run(spark, small_settings, tmp_path):
    """A log with bad rows is read twice (the events written with every row counted, then the
    quarantine): bad rows that landed in between would be quarantined but never counted, and the
    run says so, before the staged events are published."""
    log = tmp_path / "growing.csv"
    log.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,a,\n1433221332117,,view,b,\n")
    cfg = small_settings(f"input.path={log}", "ingest.max_quarantine_share=1.0")
    paths = Paths(cfg.output.root)

    def parsed():
        return parse_events(ingest.read_input(spark, cfg.input, RUN_DATE), cfg.input, cfg.ingest, RUN_DATE)

    by_reason, written = ingest._stage_events(parsed(), paths.staged_events(RUN_DATE), dated=True)
    assert (by_reason, written) == ({None: 1, "missing_user": 1}, 1)
    with log.open("a") as landing:
        landing.write("1433221332118,,view,c,\n")
    with pytest.raises(PipelineError, match="input changed while ingest read it: 1 rows quarantined as the events "
                                            "were written, then 2 in the quarantine"):
        ingest._write_quarantine(spark, paths, cfg, RUN_DATE, parsed(), ingest.count_rows(by_reason, written))
    record = json.loads(Path(paths.ingest_record(RUN_DATE)).read_text())
    assert record["status"] == "failed" and record["quarantined"] == 1
    assert not Path(paths.events).exists()


def test_the_events_are_staged_then_published_and_the_staging_is_removed(spark, small_settings, tmp_path):
    """The events are written once, counted as they go, into the output root's staging folder and
    moved into place only after the counts allow it; a later night replaces only its days."""
    cfg, result = run_ingest(spark, small_settings, DATA / "retailrocket_bad.csv", "ingest.max_quarantine_share=1.0")
    paths = Paths(cfg.output.root)
    assert not Path(paths.staged_events(RUN_DATE)).exists()
    days = sorted(path.name for path in Path(paths.events).glob("event_date=*"))
    assert days and spark.read.parquet(paths.events).count() == result["accepted"]
    log = tmp_path / "one-day.csv"
    log.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,9,view,z,\n")
    run_ingest(spark, small_settings, log)
    assert sorted(path.name for path in Path(paths.events).glob("event_date=*")) == days
    replaced = spark.read.parquet(f"{paths.events}/event_date=2015-06-02")
    assert [(r.user_id, r.item_id) for r in replaced.collect()] == [("9", "z")]
    assert not Path(paths.staged_events(RUN_DATE)).exists()


def test_a_stage_runs_its_spark_jobs_in_its_own_job_group_and_gives_back_the_callers(spark, small_settings):
    """The Spark UI and event log tell a night's stages apart by job group (scripts/profile_night.py)."""
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup("sparkals.ingest"))
    with job_group(spark, "caller"):
        run_ingest(spark, small_settings, DATA / "retailrocket_bad.csv", "ingest.max_quarantine_share=1.0")
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "caller"
    assert len(set(tracker.getJobIdsForGroup("sparkals.ingest")) - before) >= 2  # events, quarantine


def test_unknown_events_can_be_dropped_and_are_still_counted(spark, small_settings):
    _, result = run_ingest(spark, small_settings, DATA / "retailrocket_bad.csv",
                           "ingest.max_quarantine_share=1.0", "ingest.unknown_events=\"drop\"")
    assert result["dropped_unknown_events"] == 1 and result["quarantined"] == 8
    assert result["rows_read"] == result["accepted"] + result["quarantined"] + result["duplicates"] + 1


def test_too_many_bad_rows_fail_before_anything_downstream(spark, small_settings, tmp_path):
    with pytest.raises(PipelineError, match=r"64\.3% of 14 rows were quarantined.*Nothing was written"):
        run_ingest(spark, small_settings, DATA / "retailrocket_bad.csv")
    assert not (tmp_path / "out" / "events").exists()
    assert not (tmp_path / "out" / "_staging" / f"ingest-{RUN_DATE}").exists()
    assert (tmp_path / "out" / "quarantine" / f"run_date={RUN_DATE}").exists()
    record = json.loads((tmp_path / "out" / "runs" / f"run_date={RUN_DATE}" / "ingest.json").read_text())
    assert record["status"] == "failed"
    assert (record["rows_read"], record["accepted"], record["quarantined"], record["duplicates"]) == (14, 4, 9, 1)


def test_a_log_of_only_bad_rows_allowed_by_the_share_writes_no_events_and_counts_them(spark, small_settings, tmp_path):
    """The accepted rows are counted as the write goes (an observation on it): with none to write,
    the count must still arrive (0), not leave the run waiting."""
    log = tmp_path / "bad.csv"
    log.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,,view,1,\n1433221332117,u,,1,\n")
    _, result = run_ingest(spark, small_settings, log, "ingest.max_quarantine_share=1.0")
    assert result == {"rows_read": 2, "accepted": 0, "quarantined": 2, "duplicates": 0, "dropped_unknown_events": 0}


def test_gzip_csv_reads_like_plain(spark, small_settings, tmp_path):
    packed = tmp_path / "log.csv.gz"
    packed.write_bytes(gzip.compress((DATA / "retailrocket_bad.csv").read_bytes()))
    _, result = run_ingest(spark, small_settings, packed, "ingest.max_quarantine_share=1.0")
    assert (result["rows_read"], result["accepted"]) == (14, 4)


def test_json_lines_with_a_broken_line_and_ids_of_every_kind(spark, small_settings):
    cfg, result = run_ingest(spark, small_settings, DATA / "events.jsonl", "input.format=json",
                             "ingest.max_quarantine_share=1.0")
    assert (result["rows_read"], result["accepted"], result["quarantined"]) == (4, 3, 1)
    events = spark.read.parquet(Paths(cfg.output.root).events)
    assert {(r.user_id, r.item_id) for r in events.collect()} == {
        ("9223372036854775807", "12345678901234"), ("anna@example.com", "B-7"), ("3", "4")}


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "holds no files"),
    (lambda tmp: DATA / "header_only.csv", "holds no rows"),
])
def test_unusable_inputs_are_clear_errors(spark, small_settings, tmp_path, make, message):
    with pytest.raises(PipelineError, match=message):
        run_ingest(spark, small_settings, make(tmp_path))


def test_look_back_window_over_dated_folders(spark, small_settings, tmp_path):
    for day, stamp in (("2015-06-03", "1433300000000"), ("2015-06-04", "1433400000000"), ("2015-06-05", "1433500000000")):
        folder = tmp_path / "logs" / day
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text(f"timestamp,visitorid,event,itemid,transactionid\n{stamp},u,view,{day},\n")
    path = f"{tmp_path}/logs/{{date}}"
    _, result = run_ingest(spark, small_settings, path, "input.lookback_days=2")
    assert result["rows_read"] == 2
    _, result = run_ingest(spark, small_settings, path)
    assert result["rows_read"] == 1


def test_look_back_window_over_hive_partitions(spark, small_settings, tmp_path):
    for day in ("2015-06-01", "2015-06-04", "2015-06-05"):
        folder = tmp_path / "hive" / f"dt={day}"
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text("timestamp,visitorid,event,itemid,transactionid\n1433400000000,u,view,i,\n")
    _, result = run_ingest(spark, small_settings, tmp_path / "hive", "input.lookback_days=2", "input.partition_column=dt")
    assert result["rows_read"] == 2


# The nights below test what ingest accepts all the way to the recommendations; the gate, which
# would train a second ALS on these few rows, is tested elsewhere (test_pipeline, test_holdout_model).
TINY_ALS = ["--set", "als.rank=4", "--set", "als.max_iter=3", "--set", "als.num_user_blocks=2",
            "--set", "als.num_item_blocks=2", "--set", "spark.shuffle_partitions=2", "--set", "spark.log_level=ERROR",
            "--set", "gate.enabled=false"]


@pytest.mark.slow
def test_retail_transactions_log_runs_through_nightly(spark, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["nightly", "--config", str(CONF / "retail.toml"), "--run-date", "2011-10-31",
                     "--set", f"input.path={DATA / 'online_retail_sample.csv'}", "--set", f"output.root={out}",
                     "--set", "recommend.top_n=3", *TINY_ALS])
    assert code == 0
    record = json.loads((out / "runs" / "run_date=2011-10-31" / "ingest.json").read_text())
    assert record["quarantined_by_reason"] == {"missing_user": 1, "bad_quantity": 1}
    assert record["accepted"] == 168
    recs = spark.read.parquet(str(out / "recommendations" / "run_date=2011-10-31"))
    assert recs.select("user_id").distinct().count() == 24
    assert {r.user_id for r in recs.collect()} == {str(12346 + c) for c in range(24)}


@pytest.mark.slow
def test_ids_of_every_kind_round_trip_to_the_recommendations(spark, tmp_path):
    users = ["42", "9223372036854775807", "4294967296123", "anna@example.com", "ünïcode-user"]
    items = ["7", "9007199254740993", "SKU-001", "18446744073709"]
    lines = ["timestamp,visitorid,event,itemid,transactionid"]
    for u, user in enumerate(users):
        for i, item in enumerate(items):
            if (u + i) % 3:
                lines.append(f"{1433221332117 + 1000 * (u * 10 + i)},{user},view,{item},")
    log = tmp_path / "ids.csv"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli.main(["nightly", "--run-date", "2015-06-05", "--set", f"input.path={log}",
                     "--set", f"output.root={out}", "--set", "recommend.top_n=2", *TINY_ALS]) == 0
    recs = spark.read.parquet(str(out / "recommendations" / "run_date=2015-06-05")).collect()
    assert {r.user_id for r in recs} == set(users)
    assert {r.item_id for r in recs} <= set(items)


def test_a_play_count_log_without_time_is_a_snapshot_of_the_run_date(spark, small_settings, tmp_path):
    # The commented example of conf/steam.toml: user, item, count; tab-separated; no event, no time.
    log = tmp_path / "plays.tsv"
    log.write_text("user\titem\tcount\nu1\tsong-a\t12\nu1\tsong-b\t3\nu2\tsong-a\t1\nu2\tsong-a\t1\nu3\t\t4\n")
    mapping = [
        "input.delimiter=\"\\t\"", 'input.constant_event="play"', 'input.columns.user="user"',
        'input.columns.item="item"', 'input.columns.event=""', 'input.columns.timestamp=""',
        'input.columns.quantity="count"', 'input.columns.transaction_id=""', 'input.events={play="play"}',
        'evaluate.split="random"', "ingest.max_quarantine_share=0.5",
    ]
    cfg, result = run_ingest(spark, small_settings, log, *mapping)
    assert result == {"rows_read": 5, "accepted": 3, "quarantined": 1, "duplicates": 1, "dropped_unknown_events": 0}
    events = spark.read.parquet(Paths(cfg.output.root).events)
    assert {(r.user_id, r.item_id, r.quantity) for r in events.collect()} == {
        ("u1", "song-a", 12.0), ("u1", "song-b", 3.0), ("u2", "song-a", 1.0)}
    assert {str(r.event_date) for r in events.collect()} == {str(RUN_DATE)}
    assert {r.ts for r in events.collect()} == {dt.datetime.combine(RUN_DATE, dt.time())}
    # The next night's snapshot replaces this one: no row is counted twice.
    log.write_text("user\titem\tcount\nu1\tsong-a\t13\n")
    run_ingest(spark, small_settings, log, *mapping, run_date=RUN_DATE + dt.timedelta(days=1))
    again = spark.read.parquet(Paths(cfg.output.root).events)
    assert [(r.user_id, r.quantity, str(r.event_date)) for r in again.collect()] == [
        ("u1", 13.0, str(RUN_DATE + dt.timedelta(days=1)))]


@pytest.mark.slow
def test_two_years_of_days_are_written_as_one_file_a_day(spark, small_settings, tmp_path):
    """Each input file holds every day (as a log exported by user or by shard does): written as
    read, every task would write a file into every day's folder, thousands of tiny files."""
    start, days, shards = dt.datetime(2013, 6, 6, 12, tzinfo=dt.timezone.utc), 730, 4
    log = tmp_path / "log"
    log.mkdir()
    for shard in range(shards):
        lines = ["timestamp,visitorid,event,itemid,transactionid"]
        for day in range(days):
            stamp = int((start + dt.timedelta(days=day)).timestamp() * 1000)
            lines.append(f"{stamp},u{shard}-{day % 7},view,i{day % 11},")
        (log / f"part-{shard}.csv").write_text("\n".join(lines) + "\n")
    # A shard exported twice in part: its first ten days again, in a file of their own.
    first = (log / "part-0.csv").read_text().splitlines()[:11]
    (log / "part-again.csv").write_text("\n".join(first) + "\n")
    cfg, result = run_ingest(spark, small_settings, log)
    assert (result["accepted"], result["duplicates"]) == (days * shards, 10)
    written = list(Path(Paths(cfg.output.root).events).glob("event_date=*/*.parquet"))
    day_folders = {path.parent.name for path in written}
    assert len(day_folders) == days
    assert len(written) == days, f"{len(written)} files for {days} days"
    # A local master lists the 730 day folders on the driver (session.LOCAL_MASTER_CONF), not in a
    # Spark job of a task per folder. (Reading the schema of one file may still run a job of its own.)
    tracker = spark.sparkContext.statusTracker()
    with job_group(spark, "list the days"):
        events = spark.read.parquet(Paths(cfg.output.root).events)
    stages = [tracker.getStageInfo(stage) for job in tracker.getJobIdsForGroup("list the days")
              for stage in tracker.getJobInfo(job).stageIds]
    assert None not in stages
    assert [stage.numTasks for stage in stages if stage.numTasks >= days] == []
    assert events.count() == days * shards
