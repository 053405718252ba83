import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals.split import last_days_cutoff, leave_last_n_out, time_split, user_items

SCHEMA = "user_id string, item_id string, event string, ts timestamp, event_date date"


def ev(user: str, item: str, when: str, event: str = "view"):
    ts = dt.datetime.fromisoformat(when)
    return (user, item, event, ts, ts.date())


def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def test_time_split_puts_the_cutoff_day_in_test(spark):
    last_second_before = ev("u1", "a", "2026-10-31 23:59:59")
    first_second_of = ev("u1", "b", "2026-11-01 00:00:00")
    end_of_cutoff_day = ev("u2", "a", "2026-11-01 23:59:59")
    day_after = ev("u2", "c", "2026-11-02 08:00:00")
    long_before = ev("u3", "a", "2026-01-15 12:00:00")
    events = frame(spark, [last_second_before, first_second_of, end_of_cutoff_day, day_after, long_before])

    train, test = time_split(events, dt.date(2026, 11, 1))

    assertDataFrameEqual(train, frame(spark, [last_second_before, long_before]))
    assertDataFrameEqual(test, frame(spark, [first_second_of, end_of_cutoff_day, day_after]))


def test_time_split_falls_back_to_the_day_of_ts(spark):
    # No event_date column: the day of ts (session time zone UTC in the tests) decides.
    events = spark.createDataFrame(
        [("u1", "a", dt.datetime(2026, 10, 31, 23, 0)), ("u1", "b", dt.datetime(2026, 11, 1, 0, 30))],
        "user_id string, item_id string, ts timestamp",
    )
    train, test = time_split(events, dt.date(2026, 11, 1))
    assert [r.item_id for r in train.collect()] == ["a"]
    assert [r.item_id for r in test.collect()] == ["b"]


def test_time_split_refuses_a_datetime_cutoff(spark):
    with pytest.raises(TypeError, match="date"):
        time_split(frame(spark, []), dt.datetime(2026, 11, 1, 12, 0))


def test_last_days_cutoff_counts_the_run_date_as_a_test_day():
    # 7 test days ending on 11-01: 10-26, 10-27, ..., 11-01.
    assert last_days_cutoff(dt.date(2026, 11, 1), 7) == dt.date(2026, 10, 26)
    assert last_days_cutoff(dt.date(2026, 11, 1), 1) == dt.date(2026, 11, 1)
    assert last_days_cutoff(dt.date(2026, 3, 1), 2) == dt.date(2026, 2, 28)
    with pytest.raises(ValueError, match="at least one day"):
        last_days_cutoff(dt.date(2026, 11, 1), 0)


def test_leave_last_n_out_holds_out_the_latest_items_with_ties_broken_by_item(spark):
    # u1 has four distinct items; each pair is dated by its latest event:
    #   i4: viewed 09:00 and bought 13:00 -> 13:00   (newest)
    #   i2: 12:00, i3: 12:00                          (tie: i2 < i3, so i2 counts as newer)
    #   i1: 10:00
    # n=2 -> test {i4, i2} with all their events, train {i3, i1}.
    u1 = {
        "i1": ev("u1", "i1", "2026-11-01 10:00:00"),
        "i2": ev("u1", "i2", "2026-11-01 12:00:00"),
        "i3": ev("u1", "i3", "2026-11-01 12:00:00"),
        "i4_view": ev("u1", "i4", "2026-11-01 09:00:00"),
        "i4_buy": ev("u1", "i4", "2026-11-01 13:00:00", "transaction"),
    }
    # u2 has exactly n=2 distinct items (three events): it all stays in train.
    u2 = [ev("u2", "a", "2026-11-01 10:00:00"), ev("u2", "b", "2026-11-01 11:00:00"),
          ev("u2", "b", "2026-11-01 12:00:00")]
    # u3 has three items, all at the same instant: held out are the two smallest ids, x and y.
    u3 = {i: ev("u3", i, "2026-11-01 10:00:00") for i in ("z", "y", "x")}
    events = frame(spark, [*u1.values(), *u2, *u3.values()])

    train, test = leave_last_n_out(events, 2)

    assertDataFrameEqual(test, frame(spark, [u1["i2"], u1["i4_view"], u1["i4_buy"], u3["x"], u3["y"]]))
    assertDataFrameEqual(train, frame(spark, [u1["i1"], u1["i3"], *u2, u3["z"]]))
    assert train.columns == events.columns and test.columns == events.columns


def test_leave_last_n_out_splits_every_event_exactly_once(spark):
    rows = [ev(f"u{u}", f"i{(u * 7 + j) % 11}", f"2026-11-0{1 + j % 5} 1{j % 10}:00:00")
            for u in range(6) for j in range(u + 1)]
    events = frame(spark, rows)
    train, test = leave_last_n_out(events, 1)
    assertDataFrameEqual(train.unionByName(test), events)
    assert train.join(test, ["user_id", "item_id"]).count() == 0  # no pair on both sides


def test_leave_last_n_out_needs_a_positive_n(spark):
    with pytest.raises(ValueError, match="n >= 1"):
        leave_last_n_out(frame(spark, []), 0)


def test_user_items_gives_distinct_pairs_in_metric_columns(spark):
    events = frame(spark, [ev("u1", "a", "2026-11-01 10:00:00"), ev("u1", "a", "2026-11-01 11:00:00", "cart"),
                           ev("u2", "a", "2026-11-01 10:00:00")])
    expected = spark.createDataFrame([("u1", "a"), ("u2", "a")], "user_id string, item_id string")
    assertDataFrameEqual(user_items(events), expected)


def test_random_split_is_stable_keeps_one_item_per_user_in_training_and_moves_whole_pairs(spark):
    from sparkals.split import random_split

    rows = [ev(f"u{u}", f"i{i}", "2026-11-01 10:00:00") for u in range(60) for i in range(u % 7 + 1)]
    rows += [ev("u1", "i0", "2026-11-01 11:00:00", "cart")]  # a second event of a pair: it moves with the pair
    events = frame(spark, rows)
    train, test = random_split(events, 0.3, seed=7)
    again_train, again_test = random_split(events, 0.3, seed=7)
    assertDataFrameEqual(test, again_test)
    assertDataFrameEqual(train, again_train)
    assert train.count() + test.count() == events.count()
    assert train.select("user_id").distinct().count() == 60  # nobody loses all of their history
    pairs = lambda df: {(r.user_id, r.item_id) for r in df.select("user_id", "item_id").distinct().collect()}  # noqa: E731
    assert not pairs(train) & pairs(test)
    share = len(pairs(test)) / (len(pairs(train)) + len(pairs(test)))
    assert 0.1 < share < 0.35  # each pair with probability 0.3, but every user's first pair stays
    single = {f"u{u}" for u in range(60) if u % 7 == 0}  # users with one item are never tested
    assert not single & {r.user_id for r in test.select("user_id").distinct().collect()}
    _, other_test = random_split(events, 0.3, seed=8)
    assert pairs(other_test) != pairs(test)


def test_random_split_needs_a_fraction_between_zero_and_one(spark):
    from sparkals.split import random_split

    with pytest.raises(ValueError, match="0 < fraction < 1"):
        random_split(frame(spark, []), 1.0, seed=1)
