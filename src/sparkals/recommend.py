"""Top-N recommendations in the original ids: one call (`recommend_top_n`) carries every option
(seen items, the exclusion list, the fallback for users without factors), for the nightly output
and for offline evaluation alike, so the two can never drift apart.

All pure DataFrame functions; the blocked scoring itself is in score.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkals.ann import AnnParams
from sparkals.popularity import since_day
from sparkals.score import item_matrix, score_all, similar_items
from sparkals.vocabulary import (
    EVENT, FEATURES, ITEM_ID, ITEM_IDX, MODEL_VERSION, RANK, SCORE, SEEN, SOURCE, USER_ID, USER_IDX,
    require_columns,
)

__all__ = [
    "RECOMMENDATION_COLUMNS", "SIMILAR_ITEM_COLUMNS", "recommend_top_n", "seen_arrays", "seen_pairs",
    "similar_items_top_n", "users_to_score", "with_model_version",
]

RECOMMENDATION_COLUMNS = [USER_ID, RANK, ITEM_ID, SCORE, SOURCE, MODEL_VERSION]
SIMILAR_ITEM_COLUMNS = [ITEM_ID, RANK, "similar_item_id", SCORE, MODEL_VERSION]


def _last_days(events: DataFrame, run_date: dt.date, days: int) -> Column:
    """Events of the last `days` days up to and including the run date (all when days is 0)."""
    return since_day(events, run_date - dt.timedelta(days=days - 1) if days > 0 else None)


def users_to_score(events: DataFrame, run_date: dt.date, active_days: int = 0) -> DataFrame:
    """`user_id` of every user with an event in the window: tonight's audience."""
    return events.filter(_last_days(events, run_date, active_days)).select(USER_ID).distinct()


def seen_pairs(
    events: DataFrame, filter_events: Sequence[str], run_date: dt.date, lookback_days: int = 0
) -> DataFrame:
    """(`user_id`, `item_id`) pairs the user must not be recommended again: events of a type in
    `filter_events` within the last `lookback_days` days (0: all history)."""
    chosen = events.filter(F.col(EVENT).isin(list(filter_events)) & _last_days(events, run_date, lookback_days))
    return chosen.select(USER_ID, ITEM_ID)


def seen_arrays(pairs: DataFrame, items: DataFrame) -> DataFrame:
    """(`user_id`, `item_id`) pairs to `user_id`, `seen` (sorted item indexes): the masks the
    scorer takes. Items without an index are dropped (the model cannot recommend them)."""
    return (
        pairs.join(items, ITEM_ID)
        .groupBy(USER_ID)
        .agg(F.array_sort(F.collect_set(ITEM_IDX)).alias(SEEN))
    )


def _scoring_input(
    audience: DataFrame, users: DataFrame, user_factors: DataFrame | None, seen: DataFrame | None
) -> DataFrame:
    """`user_id`, `features` (null: no factors, serve the fallback), `seen` (null: nothing to
    mask) for every user to score."""
    if user_factors is None:
        with_factors = audience.select(USER_ID, F.lit(None).cast("array<float>").alias(FEATURES))
    else:
        factors = users.join(user_factors.select(F.col("id").alias(USER_IDX), FEATURES), USER_IDX)
        with_factors = audience.join(factors, USER_ID, "left")
    if seen is None:
        return with_factors.select(USER_ID, FEATURES, F.lit(None).cast("array<int>").alias(SEEN))
    return with_factors.join(seen, USER_ID, "left").select(USER_ID, FEATURES, SEEN)


def recommend_top_n(
    model: ALSModel | None,
    audience: DataFrame,
    users: DataFrame,
    items: DataFrame,
    n: int,
    *,
    seen: DataFrame | None = None,
    excluded: DataFrame | None = None,
    fallback: DataFrame | None = None,
    block_size: int = 1024,
    memory_mb: int = 256,
    method: str = "exact",
    ann: AnnParams | None = None,
) -> DataFrame:
    """The top `n` items for every `audience` user (`user_id`): `user_id`, `rank`, `item_id`,
    `score`, `source`.

    - `users` / `items`: the index tables the model was trained with (`user_id`, `user_idx`),
      (`item_id`, `item_idx`);
    - `seen` (`user_id`, `item_id`): pairs never recommended (what the user already bought);
    - `excluded` (`item_id`): items no user gets (the exclusion list);
    - `fallback` (`item_idx`, `score`): the ranking served to users without factors (`source`
      "fallback"); without it such users get no rows. With no `model` (none passed the quality
      gate), every user is served the fallback.
    - `method`: "exact", "ann" (candidates from an approximate index, `ann` its settings) or
      "auto" (the index from `ann.min_items` items on); see score.score_all.
    Seen and excluded items are masked before the top-N is taken (with "ann": dropped from a wider
    candidate list, the exact path for users left short), so users still get `n` items when the
    catalogue allows.
    """
    require_columns(audience, [USER_ID], "recommend_top_n (audience)")
    require_columns(users, [USER_ID, USER_IDX], "recommend_top_n (user index)")
    require_columns(items, [ITEM_ID, ITEM_IDX], "recommend_top_n (item index)")
    banned = excluded.select(ITEM_ID).join(items, ITEM_ID).select(ITEM_IDX) if excluded is not None else None
    if model is None:  # every item scorable by the fallback alone: zero factors, no user factors
        item_factors = items.select(F.col(ITEM_IDX).alias("id"), F.array(F.lit(0.0).cast("float")).alias(FEATURES))
        user_factors = None
    else:
        item_factors, user_factors = model.itemFactors, model.userFactors
    matrix = item_matrix(item_factors, fallback, banned)
    masks = seen_arrays(seen, items) if seen is not None else None
    scored = score_all(
        _scoring_input(audience, users, user_factors, masks), matrix, n, block_size, memory_mb, key=USER_ID,
        method=method if model is not None else "exact", ann=ann,
    )
    return scored.join(items, ITEM_IDX).select(
        USER_ID, RANK, ITEM_ID, F.col(SCORE).cast("double").alias(SCORE), SOURCE
    )


def with_model_version(recs: DataFrame, model_version: str) -> DataFrame:
    """Recommendations in the published column order, each row naming the model that made it."""
    return recs.select(*RECOMMENDATION_COLUMNS[:-1], F.lit(model_version).alias(MODEL_VERSION))


def similar_items_top_n(
    model: ALSModel, items: DataFrame, n: int, block_size: int = 1024, memory_mb: int = 256,
    method: str = "exact", ann: AnnParams | None = None,
) -> DataFrame:
    """Item-to-item top-N by cosine similarity of the item factors, in the original ids:
    `item_id`, `rank`, `similar_item_id`, `score`."""
    similar = similar_items(model.itemFactors, n, block_size, memory_mb, method=method, ann=ann)
    others = items.select(F.col(ITEM_ID).alias("similar_item_id"), F.col(ITEM_IDX).alias("similar_item_idx"))
    return similar.join(items, ITEM_IDX).join(others, "similar_item_idx").select(
        ITEM_ID, RANK, "similar_item_id", SCORE
    )
