"""Spark MLlib ALS on implicit feedback, every parameter from config."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame

from sparkals.config import ALSSettings
from sparkals.vocabulary import ITEM_IDX, RATING, USER_IDX, require_columns

__all__ = ["FittedALS", "build_als", "train_als"]


@dataclass(frozen=True)
class FittedALS:
    model: ALSModel
    seconds: float


def build_als(settings: ALSSettings) -> ALS:
    """The estimator: implicit preferences, `user_idx`/`item_idx`/`rating` columns, seed fixed."""
    return ALS(
        userCol=USER_IDX,
        itemCol=ITEM_IDX,
        ratingCol=RATING,
        implicitPrefs=True,
        rank=settings.rank,
        maxIter=settings.max_iter,
        regParam=settings.reg_param,
        alpha=settings.alpha,
        nonnegative=settings.nonnegative,
        numUserBlocks=settings.num_user_blocks,
        numItemBlocks=settings.num_item_blocks,
        checkpointInterval=settings.checkpoint_interval,
        intermediateStorageLevel=settings.intermediate_storage_level,
        finalStorageLevel=settings.final_storage_level,
        seed=settings.seed,
        coldStartStrategy="drop",
    )


def train_als(ratings: DataFrame, settings: ALSSettings) -> FittedALS:
    """Fit ALS on `user_idx`, `item_idx`, `rating`. Set a checkpoint directory on the SparkContext
    first: without one, long runs build a lineage deep enough for a StackOverflowError."""
    require_columns(ratings, [USER_IDX, ITEM_IDX, RATING], "train_als")
    if ratings.sparkSession.sparkContext.getCheckpointDir() is None:
        raise RuntimeError("set a checkpoint directory before training ALS (the train stage sets output.root/checkpoints)")
    started = time.perf_counter()
    model = build_als(settings).fit(ratings)
    # fit is lazy about the factors' final materialisation: force it so the timing is honest.
    model.userFactors.count()
    return FittedALS(model=model, seconds=time.perf_counter() - started)
