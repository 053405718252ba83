"""Atomic publish: a crash at any step leaves the previous output intact, and is repaired."""

import json

import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals import fs
from sparkals.publish import STEPS, PublishError, is_complete, publish_parquet, recover, update_latest


class Crash(Exception):
    """Stands for the process dying at a given step."""


def crash_at(step):
    def fault(reached):
        if reached == step:
            raise Crash(step)

    return fault


@pytest.fixture
def old_and_new(spark):
    old = spark.createDataFrame([(1, "a"), (2, "b")], "user int, item string")
    new = spark.createDataFrame([(1, "x"), (2, "y"), (3, "z")], "user int, item string")
    return old, new


def test_publish_replaces_the_output_and_writes_a_marker_with_counts(spark, tmp_path, old_and_new):
    old, new = old_and_new
    target, staging = str(tmp_path / "recs"), str(tmp_path / "_staging")
    assert publish_parquet(old, target, staging) == 2
    assert publish_parquet(new, target, staging, expected_rows=3, marker={"model_version": "m2"}) == 3
    assertDataFrameEqual(spark.read.parquet(target), new)
    marker = json.loads((tmp_path / "recs" / "_SUCCESS").read_text())
    assert marker["rows"] == 3 and marker["model_version"] == "m2" and marker["columns"] == ["user", "item"]
    assert fs.list_names(spark, staging) == []  # nothing left behind


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_leaves_the_previous_output_intact(spark, tmp_path, old_and_new, step):
    old, new = old_and_new
    target, staging = str(tmp_path / "recs"), str(tmp_path / "_staging")
    publish_parquet(old, target, staging, marker={"model_version": "m1"})
    with pytest.raises(Crash):
        publish_parquet(new, target, staging, fault=crash_at(step))

    swapped = STEPS.index(step) >= STEPS.index("swapped")
    if step != "retired":
        # Readers of the path see a complete output right after the crash: the old one, or the
        # new one once it is in place, never a mix.
        assert is_complete(spark, target)
        assertDataFrameEqual(spark.read.parquet(target), new if swapped else old)
    # The next run (every publish starts with this) repairs the interrupted swap.
    assert recover(spark, staging) == [target]
    assert is_complete(spark, target)
    assertDataFrameEqual(spark.read.parquet(target), new if swapped else old)
    assert fs.list_names(spark, staging) == []
    # And publishing again works as if nothing had happened.
    publish_parquet(new, target, staging)
    assertDataFrameEqual(spark.read.parquet(target), new)


def test_a_staged_output_with_the_wrong_count_is_refused_and_nothing_replaced(spark, tmp_path, old_and_new):
    old, new = old_and_new
    target, staging = str(tmp_path / "recs"), str(tmp_path / "_staging")
    publish_parquet(old, target, staging)
    with pytest.raises(PublishError, match="has 3 rows, expected 4"):
        publish_parquet(new, target, staging, expected_rows=4)
    assertDataFrameEqual(spark.read.parquet(target), old)
    assert fs.list_names(spark, staging) == []


def test_the_latest_pointer_never_moves_back_to_an_older_night(spark, tmp_path):
    pointer = str(tmp_path / "_LATEST.json")
    assert update_latest(spark, pointer, {"run_date": "2026-11-02", "path": "b"})
    assert not update_latest(spark, pointer, {"run_date": "2026-11-01", "path": "a"})  # a backfill
    assert update_latest(spark, pointer, {"run_date": "2026-11-02", "path": "b2"})  # a rerun
    assert json.loads((tmp_path / "_LATEST.json").read_text())["path"] == "b2"
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
