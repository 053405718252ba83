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
    ids = spark.createDataFrame([("b",), ("a",), ("9223372036854775807",), ("a",)], "id string")
    index = build_index(ids)
    assert sorted(r.idx for r in index.collect()) == [0, 1, 2]
    assert dict((r.id, r.idx) for r in index.collect()) == {"9223372036854775807": 0, "a": 1, "b": 2}
    assert index.schema["idx"].dataType.simpleString() == "int"


def test_known_ids_keep_their_index_and_new_ones_follow(spark):
    old = build_index(spark.createDataFrame([("x",), ("m",)], "id string"))
    new = build_index(spark.createDataFrame([("a",), ("x",), ("z",)], "id string"), old)
    got = {r.id: r.idx for r in new.collect()}
    assert got == {"m": 0, "x": 1, "a": 2, "z": 3}


def test_index_ratings_gives_the_columns_als_takes(spark):
    ratings = spark.createDataFrame([("u", "i", 3.0)], "user_id string, item_id string, rating double")
    users = spark.createDataFrame([("u", 4)], "id string, idx int")
    items = spark.createDataFrame([("i", 7)], "id string, idx int")
    assert [tuple(r) for r in index_ratings(ratings, users, items).collect()] == [(4, 7, 3.0)]


@pytest.mark.parametrize("rows", [[("u1", "i1", "view")]])
def test_aggregate_output_schema(spark, rows):
    got = aggregate_ratings(events(spark, rows), WEIGHTS)
    assert got.columns == ["user_id", "item_id", "rating"]
