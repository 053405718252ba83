import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals.ratings import aggregate_ratings, build_index, index_ratings

WEIGHTS = {"view": 1.0, "addtocart": 5.0, "transaction": 10.0}


def events(spark, rows):
    return spark.createDataFrame(rows, "user_id string, item_id string, event string")


def test_purchases_outweigh_views(spark):
    got = aggregate_ratings(
        events(spark, [("u1", "i1", "view"), ("u1", "i2", "transaction"), ("u1", "i1", "view"),
                       ("u1", "i1", "addtocart"), ("u2", "i1", "view")]),
        WEIGHTS,
    )
    expected = spark.createDataFrame(
        [("u1", "i1", 7.0), ("u1", "i2", 10.0), ("u2", "i1", 1.0)], "user_id string, item_id string, rating double"
    )
    assertDataFrameEqual(got, expected)


def test_event_types_without_weight_are_ignored(spark):
    got = aggregate_ratings(events(spark, [("u1", "i1", "wishlist"), ("u1", "i1", "view")]), {"view": 2.0})
    assert [(r.item_id, r.rating) for r in got.collect()] == [("i1", 2.0)]


def test_index_is_dense_and_round_trips(spark):
    ids = spark.createDataFrame([("b",), ("a",), ("9223372036854775807",), ("a",)], "user_id string")
    index = build_index(ids, "user_id")
    assert sorted(r.user_idx for r in index.collect()) == [0, 1, 2]
    assert dict((r.user_id, r.user_idx) for r in index.collect()) == {"9223372036854775807": 0, "a": 1, "b": 2}
    assert index.schema["user_idx"].dataType.simpleString() == "int"


def test_known_ids_keep_their_index_and_new_ones_follow(spark):
    old = build_index(spark.createDataFrame([("x",), ("m",)], "item_id string"), "item_id")
    new = build_index(spark.createDataFrame([("a",), ("x",), ("z",)], "item_id string"), "item_id", old)
    got = {r.item_id: r.item_idx for r in new.collect()}
    assert got == {"m": 0, "x": 1, "a": 2, "z": 3}


def test_index_ratings_gives_the_columns_als_takes(spark):
    ratings = spark.createDataFrame([("u", "i", 3.0)], "user_id string, item_id string, rating double")
    users = spark.createDataFrame([("u", 4)], "user_id string, user_idx int")
    items = spark.createDataFrame([("i", 7)], "item_id string, item_idx int")
    assert [tuple(r) for r in index_ratings(ratings, users, items).collect()] == [(4, 7, 3.0)]


@pytest.mark.parametrize("rows", [[("u1", "i1", "view")]])
def test_aggregate_output_schema(spark, rows):
    got = aggregate_ratings(events(spark, rows), WEIGHTS)
    assert got.columns == ["user_id", "item_id", "rating"]


# ---- issue 4: decay, confidence transforms, filters, stable indexes, statistics ----

import datetime as dt
import json
import math

import numpy as np
from pyspark.sql import functions as F

from sparkals.config import RatingsSettings
from sparkals.paths import Paths
from sparkals.stages import aggregate
from sparkals.ratings import (
    IndexOverflowError,
    build_ratings,
    confidence,
    drop_heavy_users,
    matrix_stats,
    minimum_support,
)

RUN_DATE = dt.date(2026, 11, 1)
END_OF_RUN_DATE = dt.datetime(2026, 11, 2)


def timed_events(spark, rows):
    return spark.createDataFrame(rows, "user_id string, item_id string, event string, ts timestamp")


def ratings_of(spark, rows):
    return spark.createDataFrame(rows, "user_id string, item_id string, rating double")


def as_dict(df):
    return {(r.user_id, r.item_id): r.rating for r in df.collect()}


def test_decay_halves_the_weight_at_the_half_life(spark):
    events = timed_events(spark, [
        ("u", "new", "transaction", END_OF_RUN_DATE),
        ("u", "week", "transaction", END_OF_RUN_DATE - dt.timedelta(days=7)),
        ("u", "fortnight", "transaction", END_OF_RUN_DATE - dt.timedelta(days=14)),
    ])
    got = as_dict(build_ratings(events, RatingsSettings(half_life_days=7.0, confidence="raw"), RUN_DATE))
    assert got[("u", "new")] == pytest.approx(10.0)
    assert got[("u", "week")] == pytest.approx(5.0)
    assert got[("u", "fortnight")] == pytest.approx(2.5)


def test_no_decay_when_half_life_is_zero(spark):
    events = timed_events(spark, [("u", "old", "view", dt.datetime(2020, 1, 1))])
    assert as_dict(build_ratings(events, RatingsSettings(confidence="raw"), RUN_DATE)) == {("u", "old"): 1.0}


def test_quantity_multiplies_the_weight(spark):
    events = spark.createDataFrame(
        [("u", "i", "transaction", END_OF_RUN_DATE, 3.0)],
        "user_id string, item_id string, event string, ts timestamp, quantity double",
    )
    assert as_dict(build_ratings(events, RatingsSettings(confidence="raw"), RUN_DATE)) == {("u", "i"): 30.0}


def test_log1p_transform_by_hand(spark):
    got = as_dict(confidence(ratings_of(spark, [("u", "i", 3.0), ("u", "j", 0.0)]), "log1p", epsilon=0.5))
    assert got[("u", "i")] == pytest.approx(math.log(1 + 3.0 / 0.5))
    assert got[("u", "j")] == 0.0


RATINGS = [("u1", "i1", 2.0), ("u1", "i2", 1.0), ("u2", "i1", 1.0), ("u2", "i3", 3.0),
           ("u3", "i4", 5.0), ("u3", "i1", 1.0), ("u3", "i2", 2.0), ("u4", "i5", 1.0)]


def reference_weighting(rows, transform, k1=100.0, b=0.8):
    """Independent dense NumPy computation over the item x user matrix, as `implicit` does."""
    users = sorted({u for u, _, _ in rows})
    items = sorted({i for _, i, _ in rows})
    X = np.zeros((len(items), len(users)))
    for u, i, r in rows:
        X[items.index(i), users.index(u)] = r
    N = X.shape[0]
    idf = np.log(N / (1.0 + (X > 0).sum(axis=0)))
    if transform == "tfidf":
        W = np.sqrt(X) * idf
    else:
        row_sums = X.sum(axis=1)
        length_norm = (1.0 - b) + b * row_sums / row_sums.mean()
        W = X * (k1 + 1.0) / (k1 * length_norm[:, None] + X) * idf
    return {(u, i): W[items.index(i), users.index(u)] for u, i, _ in rows}


@pytest.mark.parametrize("transform", ["bm25", "tfidf"])
def test_bm25_and_tfidf_match_an_independent_computation(spark, transform):
    got = as_dict(confidence(ratings_of(spark, RATINGS), transform, k1=100.0, b=0.8))
    expected = reference_weighting(RATINGS, transform)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.parametrize("threshold", ["10MB", "-1", "100b"])
def test_bm25_is_the_same_whether_its_item_sums_are_broadcast_or_shuffled(spark, threshold):
    """The item sums are broadcast when they fit Spark's threshold (5 items: not at 100 bytes, nor
    with broadcasts off), which changes the plan, never the values."""
    before = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", threshold)
    try:
        weighted = confidence(ratings_of(spark, RATINGS), "bm25")
        plan = weighted._jdf.queryExecution().optimizedPlan().toString()
        got = as_dict(weighted)
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", before)
    assert ("strategy=broadcast" in plan) == (threshold == "10MB"), plan
    for key, value in reference_weighting(RATINGS, "bm25").items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_tfidf_one_value_by_hand(spark):
    # 5 items; u3 has 3 of them: idf = log(5 / 4); rating 2 -> sqrt(2) * idf
    got = as_dict(confidence(ratings_of(spark, RATINGS), "tfidf"))
    assert got[("u3", "i2")] == pytest.approx(math.sqrt(2.0) * math.log(5 / 4))


def test_one_pass_and_k_core(spark):
    # u3 has 2 items, but i9 has only u3: dropping i9 leaves u3 with 1 item, below the minimum.
    rows = [("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "a", 1.0), ("u2", "b", 1.0),
            ("u3", "a", 1.0), ("u3", "i9", 1.0)]
    one_pass = as_dict(minimum_support(ratings_of(spark, rows), 2, 2, k_core=False))
    assert ("u3", "a") in one_pass and ("u3", "i9") not in one_pass
    core = minimum_support(ratings_of(spark, rows), 2, 2, k_core=True)
    assert set(as_dict(core)) == {("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")}
    assert core.groupBy("user_id").count().filter("count < 2").count() == 0
    assert core.groupBy("item_id").count().filter("count < 2").count() == 0


def test_heavy_users_are_dropped_whole(spark):
    rows = [("bot", str(i), 1.0) for i in range(5)] + [("human", "1", 1.0)]
    assert set(as_dict(drop_heavy_users(ratings_of(spark, rows), 4))) == {("human", "1")}


def test_excluded_items_from_config_and_from_a_list(spark):
    events = timed_events(spark, [("u", i, "view", END_OF_RUN_DATE) for i in ("a", "b", "c")])
    more = spark.createDataFrame([("c",)], "item_id string")
    got = as_dict(build_ratings(events, RatingsSettings(exclude_items=["a"], confidence="raw"), RUN_DATE, more))
    assert got == {("u", "b"): 1.0}


def test_index_refuses_to_overflow_before_numbering(spark):
    ids = spark.createDataFrame([(str(i),) for i in range(4)], "item_id string")
    with pytest.raises(IndexOverflowError, match="4 distinct ids do not fit the index"):
        build_index(ids, "item_id", limit=2)
    existing = spark.createDataFrame([("x", 2)], "item_id string, item_idx int")
    with pytest.raises(IndexOverflowError, match="7 distinct ids"):
        build_index(ids, "item_id", existing, limit=5)


def test_index_numbering_is_the_sorted_position_across_many_partitions(spark):
    ids = spark.range(0, 3000, numPartitions=5).select(F.format_string("id%05d", "id").alias("user_id"))
    index = {r.user_id: r.user_idx for r in build_index(ids, "user_id").collect()}
    assert index == {f"id{i:05d}": i for i in range(3000)}


def test_users_and_items_numbered_together_as_each_alone_with_kinds_sharing_a_partition(spark):
    """build_indexes numbers both kinds in one range partitioning: 2,400 new users then 1,500 items
    sorted into 4 partitions put the last users and the first items in one partition."""
    from sparkals.ratings import build_indexes

    spark.conf.set("spark.sql.shuffle.partitions", "4")  # the partitions of the numbering; put back after the test
    pairs = spark.range(0, 2500, numPartitions=5).select(
        F.format_string("u%05d", "id").alias("user_id"), F.format_string("i%04d", F.col("id") % 1500).alias("item_id"))
    old_users = build_index(pairs.filter(F.col("user_id") >= "u02400"), "user_id")  # u02400.. keep 0..99
    users, items = build_indexes(pairs, old_users, None)
    got_users = {r.user_id: r.user_idx for r in users.collect()}
    got_items = {r.item_id: r.item_idx for r in items.collect()}
    assert got_users == {f"u{i:05d}": i - 2400 if i >= 2400 else i + 100 for i in range(2500)}
    assert got_items == {f"i{i:04d}": i for i in range(1500)}
    assert got_users == {r.user_id: r.user_idx for r in build_index(pairs, "user_id", old_users).collect()}
    assert got_items == {r.item_id: r.item_idx for r in build_index(pairs, "item_id").collect()}
    with pytest.raises(IndexOverflowError, match="2500 distinct ids do not fit the index of user_id"):
        build_indexes(pairs, limit=2000)


def test_matrix_stats(spark):
    stats = matrix_stats(ratings_of(spark, RATINGS), "user_id", "item_id")
    assert (stats.users, stats.items, stats.nonzeros) == (4, 5, 8)
    assert stats.density == pytest.approx(8 / 20)
    assert stats.items_per_user["p100"] == 3.0 and stats.users_per_item["p0"] == 1.0


def _write_events(spark, root, rows):
    events = timed_events(spark, rows).withColumn("event_date", F.to_date("ts"))
    events.write.mode("append").partitionBy("event_date").parquet(f"{root}/events")


def test_second_night_keeps_every_old_index_and_numbers_new_ids(spark, small_settings, tmp_path):
    cfg = small_settings("ratings.min_user_items=1", 'ratings.confidence="raw"')
    root = cfg.output.root
    day1, day2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
    _write_events(spark, root, [("u1", "i1", "view", dt.datetime(2026, 10, 1, 8)),
                                ("u2", "i2", "view", dt.datetime(2026, 10, 1, 9))])
    aggregate.run(spark, cfg, day1)
    first_users = {r.user_id: r.user_idx for r in spark.read.parquet(Paths(root).user_index(day1)).collect()}
    first_items = {r.item_id: r.item_idx for r in spark.read.parquet(Paths(root).item_index(day1)).collect()}
    _write_events(spark, root, [("a0", "i0", "view", dt.datetime(2026, 10, 2, 8)),
                                ("u1", "i3", "view", dt.datetime(2026, 10, 2, 9))])
    result = aggregate.run(spark, cfg, day2)
    users = {r.user_id: r.user_idx for r in spark.read.parquet(Paths(root).user_index(day2)).collect()}
    items = {r.item_id: r.item_idx for r in spark.read.parquet(Paths(root).item_index(day2)).collect()}
    assert all(users[k] == v for k, v in first_users.items())
    assert all(items[k] == v for k, v in first_items.items())
    assert users["a0"] == 2 and items["i0"] == 2 and items["i3"] == 3
    assert sorted(users.values()) == list(range(3)) and sorted(items.values()) == list(range(4))
    stats = json.loads((tmp_path / "out" / "ratings" / f"run_date={day2}" / "_stats.json").read_text())
    assert stats["users"] == result.users == 3 and stats["nonzeros"] == 4
    assert set(stats["items_per_user"]) >= {"p50", "p90", "p99"}


def test_ratings_that_are_not_positive_after_bm25_are_dropped(spark):
    # Three items; u1 has all: idf = log(3 / (1 + 3)) < 0. Not a dislike: u1's ratings go (u1 is
    # then served the fallback), and Spark's solve is not handed a user without regularisation.
    events = timed_events(spark, [("u1", i, "view", END_OF_RUN_DATE) for i in ("a", "b", "c")]
                          + [("u2", "a", "view", END_OF_RUN_DATE)])
    got = as_dict(build_ratings(events, RatingsSettings(confidence="bm25"), RUN_DATE))
    assert set(got) == {("u2", "a")} and got[("u2", "a")] > 0
