"""Top-N items per user from a trained model, back in the original ids."""

from __future__ import annotations

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

RECOMMENDATION_COLUMNS = ["user_id", "rank", "item_id", "score", "model_version"]


def top_n_indexed(model: ALSModel, n: int) -> DataFrame:
    """`user`, `rank` (1..n), `item`, `score` for every user with factors, best first."""
    return model.recommendForAllUsers(n).select(
        "user", F.posexplode("recommendations").alias("pos", "rec")
    ).select(
        "user",
        (F.col("pos") + 1).cast("int").alias("rank"),
        F.col("rec.item").alias("item"),
        F.col("rec.rating").cast("double").alias("score"),
    )


def to_original_ids(
    recs: DataFrame, users: DataFrame, items: DataFrame, model_version: str
) -> DataFrame:
    """Translate int32 indexes back through the index tables (`id`, `idx`)."""
    return (
        recs.join(users.select(F.col("idx").alias("user"), F.col("id").alias("user_id")), "user")
        .join(items.select(F.col("idx").alias("item"), F.col("id").alias("item_id")), "item")
        .select("user_id", "rank", "item_id", "score", F.lit(model_version).alias("model_version"))
    )
