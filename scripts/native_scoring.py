"""Spark MLlib's own top-N (`recommendForAllUsers`), unfiltered and with the usual seen-item
work-around: the baseline scripts/bench_scoring.py measures the blocked scorer against, and the
reference the tests check it with. Not part of the package: production scores with
`sparkals.recommend.recommend_top_n`."""

from __future__ import annotations

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from sparkals.vocabulary import ITEM_IDX, RANK, SCORE, USER_IDX


def top_n_indexed(model: ALSModel, n: int) -> DataFrame:
    """`user_idx`, `rank` (1..n), `item_idx`, `score` for every user with factors, straight from
    Spark's `recommendForAllUsers` (no filtering)."""
    return model.recommendForAllUsers(n).select(
        USER_IDX, F.posexplode("recommendations").alias("pos", "rec")
    ).select(
        USER_IDX,
        (F.col("pos") + 1).cast("int").alias(RANK),
        F.col(f"rec.{ITEM_IDX}").alias(ITEM_IDX),
        F.col("rec.rating").cast("double").alias(SCORE),
    )


def native_top_n_filtered(model: ALSModel, seen: DataFrame, n: int) -> DataFrame:
    """The usual work-around without a masking scorer: ask `recommendForAllUsers` for
    n + max(seen) items, anti-join the seen (`user_idx`, `item_idx`) pairs, keep the first n."""
    widest = seen.groupBy(USER_IDX).count().agg(F.max("count")).first()[0] or 0
    candidates = top_n_indexed(model, n + int(widest)).join(seen, [USER_IDX, ITEM_IDX], "left_anti")
    by_score = Window.partitionBy(USER_IDX).orderBy(F.col(SCORE).desc(), F.col(ITEM_IDX))
    return (
        candidates.withColumn(RANK, F.row_number().over(by_score))
        .filter(F.col(RANK) <= n)
        .select(USER_IDX, RANK, ITEM_IDX, SCORE)
    )
