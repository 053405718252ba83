"""Canonical events to the implicit ratings ALS learns from, with dense int32 indexes."""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkals.config import RatingsSettings
from sparkals.errors import SparkalsError

INT32_MAX = 2**31 - 1


class IndexOverflowError(SparkalsError):
    """More distinct ids than an int32 index can hold."""


def aggregate_ratings(events: DataFrame, weights: Mapping[str, float]) -> DataFrame:
    """Sum weighted events per (user_id, item_id); event types without a weight are ignored."""
    weight_of = F.create_map(*[x for name, w in weights.items() for x in (F.lit(name), F.lit(float(w)))])
    return (
        events.filter(F.col("event").isin(list(weights)))
        .groupBy("user_id", "item_id")
        .agg(F.sum(weight_of[F.col("event")]).alias("rating"))
    )


def build_ratings(events: DataFrame, settings: RatingsSettings, run_date: dt.date) -> DataFrame:
    """Canonical events to (user_id, item_id, rating): the one entry point every stage uses
    (aggregate, evaluate, tune), so that they all learn from the same ratings."""
    return aggregate_ratings(events, settings.weights)


def build_index(ids: DataFrame, existing: DataFrame | None = None) -> DataFrame:
    """Map every distinct `id` to a dense int32 `idx`.

    Ids already in `existing` keep their index; new ids get the next free ones, in id order,
    so the same input always gives the same index.
    """
    spark: SparkSession = ids.sparkSession
    distinct = ids.select(F.col("id").cast("string").alias("id")).distinct()
    if existing is not None:
        distinct = distinct.join(existing.select("id"), "id", "left_anti")
        start = existing.agg(F.max("idx")).first()[0]
        start = -1 if start is None else int(start)
    else:
        start = -1
    ordered = distinct.orderBy("id")
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("idx", T.LongType())])
    numbered = spark.createDataFrame(
        ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1] + start + 1)), schema
    )
    top = numbered.agg(F.max("idx")).first()[0]
    if top is not None and top > INT32_MAX:
        raise IndexOverflowError(
            f"{top + 1} distinct ids do not fit an int32 index (ALS's limit is {INT32_MAX + 1})"
        )
    fresh = numbered.select("id", F.col("idx").cast("int").alias("idx"))
    return fresh if existing is None else existing.select("id", "idx").unionByName(fresh)


def index_ratings(ratings: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace user_id / item_id by their int32 indexes: the `user`, `item`, `rating` ALS takes."""
    return (
        ratings.join(users.select(F.col("id").alias("user_id"), F.col("idx").alias("user")), "user_id")
        .join(items.select(F.col("id").alias("item_id"), F.col("idx").alias("item")), "item_id")
        .select("user", "item", "rating")
    )
