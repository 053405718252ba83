"""Write a DataFrame so that readers see either the old output or the new one, never half."""

from __future__ import annotations

import uuid

from pyspark.sql import DataFrame

from sparkals import fs
from sparkals.errors import SparkalsError


class PublishError(SparkalsError):
    """The staged output failed its checks; nothing was replaced."""


def publish_parquet(df: DataFrame, target: str, staging_root: str) -> int:
    """Stage `df` as Parquet, check it, then swap it into `target` with renames.

    Returns the row count written. The previous content of `target` stays in place until the
    staged copy is complete and verified.
    """
    spark = df.sparkSession
    token = uuid.uuid4().hex[:12]
    staged = f"{staging_root}/{token}"
    df.write.mode("overwrite").parquet(staged)
    written = spark.read.parquet(staged)
    rows = written.count()
    if written.schema.fieldNames() != df.schema.fieldNames():
        fs.delete(spark, staged)
        raise PublishError(f"staged output at {staged} has columns {written.columns}, expected {df.columns}")
    retired = f"{staging_root}/{token}-previous"
    had_previous = fs.exists(spark, target)
    if had_previous:
        fs.rename(spark, target, retired)
    fs.rename(spark, staged, target)
    if had_previous:
        fs.delete(spark, retired)
    return rows
