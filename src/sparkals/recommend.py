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

from sparkals.fold_in import FoldInParams
from sparkals.ann import AnnParams
from sparkals.popularity import since_day
from sparkals.score import item_matrix, score_all, similar_items
from sparkals.vocabulary import (
    EVENT, FEATURES, HISTORY, ITEM_ID, ITEM_IDX, MODEL_VERSION, RANK, RATING, SCORE, SEEN, SOURCE, USER_ID,
    USER_IDX, require_columns,
)

__all__ = [
    "RECOMMENDATION_COLUMNS", "SIMILAR_ITEM_COLUMNS", "model_mismatch", "recommend_top_n", "seen_arrays", "seen_pairs",
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


def _histories(ratings: DataFrame, users: DataFrame, user_factors: DataFrame) -> DataFrame:
    """`user_id`, `history` (the user's (item_idx, rating) pairs) for the users of `ratings` the
    model has no factors for: what fold-in solves from. Users with factors ship no history."""
    unseen = ratings.join(user_factors.select(F.col("id").alias(USER_IDX)), USER_IDX, "left_anti")
    return (
        unseen.groupBy(USER_IDX)
        .agg(F.collect_list(F.struct(F.col(ITEM_IDX).cast("int"), F.col(RATING).cast("float"))).alias(HISTORY))
        .join(users, USER_IDX)
        .select(USER_ID, HISTORY)
    )


def _scoring_input(
    audience: DataFrame, users: DataFrame, user_factors: DataFrame | None, seen: DataFrame | None,
    ratings: DataFrame | None = None,
) -> DataFrame:
    """`user_id`, `features` (null: no factors), `seen` (null: nothing to mask) and, with
    `ratings`, `history` (null unless the user has no factors but has ratings to fold in) for
    every user to score."""
    if user_factors is None:
        scored = audience.select(USER_ID, F.lit(None).cast("array<float>").alias(FEATURES))
    else:
        factors = users.join(user_factors.select(F.col("id").alias(USER_IDX), FEATURES), USER_IDX)
        scored = audience.join(factors.select(USER_ID, FEATURES), USER_ID, "left")
    columns = [USER_ID, FEATURES, SEEN]
    if seen is None:
        scored = scored.withColumn(SEEN, F.lit(None).cast("array<int>"))
    else:
        scored = scored.join(seen, USER_ID, "left")
    if ratings is not None and user_factors is not None:
        scored = scored.join(_histories(ratings, users, user_factors), USER_ID, "left")
        columns.append(HISTORY)
    return scored.select(*columns)


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
    ratings: DataFrame | None = None,
    fold_in: FoldInParams | None = None,
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
      gate), every user is served the fallback;
    - `ratings` (`user_idx`, `item_idx`, `rating`, as ALS takes them) with `fold_in` (the model's
      alpha and reg_param): a user without factors but with ratings on items the model knows is
      folded in (fold_in.py) and scored like the others (`source` "fold_in");
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
    folding = fold_in if (model is not None and ratings is not None) else None
    matrix = item_matrix(item_factors, fallback, banned, fold_in_params=folding)
    masks = seen_arrays(seen, items) if seen is not None else None
    history = ratings if folding is not None else None
    scored = score_all(
        _scoring_input(audience, users, user_factors, masks, history), matrix, n, block_size, memory_mb, key=USER_ID,
        method=method if model is not None else "exact", ann=ann,
    )
    return scored.join(items, ITEM_IDX).select(
        USER_ID, RANK, ITEM_ID, F.col(SCORE).cast("double").alias(SCORE), SOURCE
    )


def model_mismatch(model: ALSModel, users: DataFrame, items: DataFrame, rank: int | None = None) -> str | None:
    """Why `model` cannot be scored against the index tables (`user_id`, `user_idx`), (`item_id`,
    `item_idx`), or None when it can: factors of another length than `rank` (the metadata's) or
    than the model's own rank, or factor ids the indexes do not hold."""
    lengths = model.itemFactors.select(F.size(FEATURES).alias("length")).distinct().collect()
    found = sorted(row["length"] for row in lengths)
    for expected, what in ((model.rank, "the model's rank"), (rank, "the rank in its metadata")):
        if expected is not None and found and found != [expected]:
            return f"its item factors have length {', '.join(map(str, found))}, {what} is {expected}"
    unknown = model.itemFactors.select(F.col("id").alias(ITEM_IDX)).join(items, ITEM_IDX, "left_anti")
    missing = [row[ITEM_IDX] for row in unknown.limit(3).collect()]
    if missing:
        return (f"{unknown.count():,} of its items have no entry in the item index (e.g. item_idx "
                f"{', '.join(map(str, missing))})")
    # Indexes are dense and only ever extended: a user factor past the last index is a mismatch.
    top_factor = model.userFactors.agg(F.max("id")).first()[0]
    top_index = users.agg(F.max(USER_IDX)).first()[0]
    if top_factor is not None and (top_index is None or top_factor > top_index):
        return f"it has factors for user_idx {top_factor}, the user index ends at {top_index}"
    return None


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
