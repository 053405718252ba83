import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals.config import InputColumns
from sparkals.ingest import InputSchemaError, parse_events, split_valid

RAW_COLUMNS = "timestamp string, visitorid string, event string, itemid string, transactionid string"


def test_good_rows_become_canonical_events(spark):
    raw = spark.createDataFrame(
        [("1433221332117", "257597", "view", "355908", None), ("1433224214164", " 992329 ", "VIEW", "248676", None)],
        RAW_COLUMNS,
    )
    good, bad = split_valid(parse_events(raw, InputColumns()))
    assert bad.count() == 0
    expected = spark.createDataFrame(
        [
            ("257597", "355908", "view", dt.datetime(2015, 6, 2, 5, 2, 12, 117000), dt.date(2015, 6, 2)),
            ("992329", "248676", "view", dt.datetime(2015, 6, 2, 5, 50, 14, 164000), dt.date(2015, 6, 2)),
        ],
        "user_id string, item_id string, event string, ts timestamp, event_date date",
    )
    assertDataFrameEqual(good, expected)


def test_unusable_rows_are_kept_with_a_reason(spark):
    raw = spark.createDataFrame(
        [
            ("1433221332117", None, "view", "1", None),
            ("1433221332117", "u", "view", "", None),
            ("1433221332117", "u", None, "1", None),
            ("yesterday", "u", "view", "1", None),
            ("1433221332117", "u", "view", "1", None),
        ],
        RAW_COLUMNS,
    )
    good, bad = split_valid(parse_events(raw, InputColumns()))
    assert good.count() == 1
    assert sorted(r.reason for r in bad.collect()) == ["bad_timestamp", "missing_event", "missing_item", "missing_user"]


def test_seconds_and_iso_timestamps(spark):
    raw = spark.createDataFrame([("1700000000", "u", "view", "i")], ["t", "u", "e", "i"])
    mapping = InputColumns(user="u", item="i", event="e", timestamp="t", timestamp_unit="s")
    (row,) = split_valid(parse_events(raw, mapping))[0].collect()
    assert row.ts == dt.datetime(2023, 11, 14, 22, 13, 20)
    iso = spark.createDataFrame([("2026-11-02T10:00:00Z", "u", "view", "i")], ["t", "u", "e", "i"])
    mapping = InputColumns(user="u", item="i", event="e", timestamp="t", timestamp_unit="iso")
    (row,) = split_valid(parse_events(iso, mapping))[0].collect()
    assert row.event_date == dt.date(2026, 11, 2)


def test_a_missing_mapped_column_is_named(spark):
    raw = spark.createDataFrame([("1", "2", "view")], ["timestamp", "visitor", "event"])
    with pytest.raises(InputSchemaError, match=r"'visitorid', 'itemid'.*columns present: timestamp, visitor, event"):
        parse_events(raw, InputColumns())
