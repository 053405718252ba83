"""Canonical events to the implicit ratings ALS learns from, with dense int32 indexes.

The order of work in `build_ratings` matters and is fixed: weight and decay each event, sum per
(user, item), drop excluded items, drop bot-like users, enforce minimum support (optionally to a
k-core), and only then apply the confidence transform, because BM25 / TF-IDF depend on the
shape of the final matrix.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkals.config import RatingsSettings
from sparkals.errors import SparkalsError
from sparkals.vocabulary import (
    CONFIDENCE_TRANSFORMS, EVENT, ITEM_ID, ITEM_IDX, QUANTITY, RATING, TS, USER_ID, USER_IDX, require_columns,
)

__all__ = [
    "INT32_MAX", "IndexOverflowError", "MatrixStats", "aggregate_ratings", "build_index", "build_indexes",
    "build_ratings", "confidence", "decay_factor", "drop_heavy_users", "event_value", "exclude_items",
    "exclusion_list", "filter_pairs", "index_ratings", "matrix_stats", "minimum_support", "positive_only",
    "refine_ratings",
]

INT32_MAX = 2**31 - 1
# monotonically_increasing_id() keeps the partition id in the bits above this one.
_PARTITION_SHIFT = 33
# The index column of each id column: an index table is (user_id, user_idx) or (item_id, item_idx).
INDEX_OF = {USER_ID: USER_IDX, ITEM_ID: ITEM_IDX}


class IndexOverflowError(SparkalsError):
    """More distinct ids than an int32 index can hold."""


def _weight_of(weights: Mapping[str, float]) -> Column:
    return F.create_map(*[x for name, w in weights.items() for x in (F.lit(name), F.lit(float(w)))])


def decay_factor(ts: Column, run_date: dt.date, half_life_days: float) -> Column:
    """0.5 ** (age / half-life), age measured from the end of the run date; 1 when off."""
    if half_life_days <= 0:
        return F.lit(1.0)
    reference = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
    age_days = (F.lit(reference).cast("timestamp").cast("double") - ts.cast("double")) / 86_400.0
    return F.pow(F.lit(0.5), F.greatest(age_days, F.lit(0.0)) / F.lit(float(half_life_days)))


def aggregate_ratings(
    events: DataFrame,
    weights: Mapping[str, float],
    run_date: dt.date | None = None,
    half_life_days: float = 0.0,
    extra: Sequence[Column] = (),
) -> DataFrame:
    """Sum weighted (and, with a half-life, decayed) events per (user_id, item_id).

    Event types without a weight are ignored; a `quantity` column, when the events have one,
    multiplies the weight (three units bought count three times). `extra` aggregates ride along in
    the same grouping (the night's events digest, taken without a second pass over the events).
    """
    require_columns(events, [USER_ID, ITEM_ID, EVENT], "aggregate_ratings")
    value = event_value(events, _weight_of(weights)[F.col(EVENT)], run_date, half_life_days)
    # Shuffled by user, not by (user, item): the sums need no shuffle of their own, and every
    # per-user step after them (the BM25 / TF-IDF user counts, the user index) finds the pairs
    # already partitioned by user, where a shuffle of all of them was needed for each.
    return (
        events.filter(F.col(EVENT).isin(list(weights)))
        .repartition(USER_ID)
        .groupBy(USER_ID, ITEM_ID)
        .agg(F.sum(value).alias(RATING), *extra)
    )


def event_value(
    events: DataFrame, weight: Column, run_date: dt.date | None = None, half_life_days: float = 0.0
) -> Column:
    """What one event adds to its (user, item) rating: weight x quantity (when the events have a
    `quantity` column) x time decay (with a half-life). One definition for `aggregate_ratings`
    and for tune's per-event-type sums (weight 1), so the two cannot drift apart."""
    value = weight
    if QUANTITY in events.columns:
        value = value * F.coalesce(F.col(QUANTITY).cast("double"), F.lit(1.0))
    if half_life_days > 0:
        if run_date is None:
            raise ValueError("time decay needs the run date it is relative to")
        require_columns(events, [TS], "ratings with time decay (ratings.half_life_days > 0)")
        value = value * decay_factor(F.col(TS), run_date, half_life_days)
    return value


def exclusion_list(
    spark: SparkSession, settings: RatingsSettings, from_file: DataFrame | None = None
) -> DataFrame | None:
    """The items no user may get (`item_id`): `ratings.exclude_items` plus the ids read from
    `ratings.exclude_items_path` (`from_file`); None when there are none. The one definition that
    training (`refine_ratings`) and scoring both apply."""
    excluded = from_file.select(ITEM_ID) if from_file is not None else None
    if settings.exclude_items:
        listed = spark.createDataFrame([(i,) for i in settings.exclude_items], f"{ITEM_ID} string")
        excluded = listed if excluded is None else listed.unionByName(excluded)
    return excluded


def exclude_items(ratings: DataFrame, excluded: DataFrame | None) -> DataFrame:
    """Drop ratings of items on the exclusion list (`item_id` column)."""
    if excluded is None:
        return ratings
    return ratings.join(F.broadcast(excluded.select(ITEM_ID)), ITEM_ID, "left_anti")


def drop_heavy_users(ratings: DataFrame, max_items: int) -> DataFrame:
    """Users with more than `max_items` distinct items behave like crawlers: drop them whole."""
    if max_items <= 0:
        return ratings
    heavy = ratings.groupBy(USER_ID).count().filter(F.col("count") > max_items)
    return ratings.join(heavy.select(USER_ID), USER_ID, "left_anti")


def _support_pass(ratings: DataFrame, min_user: int, min_item: int) -> DataFrame:
    """One pass: users and items with enough distinct partners in `ratings` as given."""
    out = ratings
    if min_user > 1:
        users = ratings.groupBy(USER_ID).count().filter(F.col("count") >= min_user).select(USER_ID)
        out = out.join(users, USER_ID, "left_semi")
    if min_item > 1:
        items = ratings.groupBy(ITEM_ID).count().filter(F.col("count") >= min_item).select(ITEM_ID)
        out = out.join(items, ITEM_ID, "left_semi")
    return out


def minimum_support(
    ratings: DataFrame, min_user: int, min_item: int, k_core: bool = False, max_rounds: int = 50
) -> DataFrame:
    """Keep users with >= min_user items and items with >= min_item users.

    One pass checks both against the unfiltered matrix; with `k_core` the passes repeat until
    nothing changes, so every survivor meets its minimum within the survivors (a k-core).
    """
    if min_user <= 1 and min_item <= 1:
        return ratings
    current = _support_pass(ratings, min_user, min_item)
    if not k_core:
        return current
    size = ratings.count()
    for _ in range(max_rounds):
        current = current.localCheckpoint(eager=True)  # cut the lineage each round
        new_size = current.count()
        if new_size == size:
            return current
        size = new_size
        current = _support_pass(current, min_user, min_item)
    raise SparkalsError(f"k-core filtering did not reach a fixed point in {max_rounds} rounds")


def confidence(
    ratings: DataFrame, transform: str, epsilon: float = 1.0, k1: float = 100.0, b: float = 0.8,
    user_col: str = USER_ID, item_col: str = ITEM_ID,
) -> DataFrame:
    """Rescale `rating` before ALS turns it into confidence 1 + alpha * rating.

    raw:   the weighted count as it is.
    log1p: log(1 + rating / epsilon) (Hu, Koren & Volinsky 2008): dampens heavy repeat counts.
    bm25 / tfidf: as the `implicit` library weights its item x user matrix (items are the
    documents, users the terms): idf(user) = log(n_items / (1 + items of the user)); BM25 also
    normalises by the item's total against the average item total (k1, b).

    `user_col` / `item_col` name the user and item columns: ids (`user_id`, `item_id`) as
    `build_ratings` has them, or indexes (`user_idx`, `item_idx`) when tune transforms ratings it
    has already indexed; the transform is the same on both.
    """
    if transform == "raw":
        return ratings
    if transform == "log1p":
        if epsilon <= 0:
            raise SparkalsError("ratings.epsilon must be positive for the log1p transform")
        return ratings.withColumn(RATING, F.log1p(F.col(RATING) / F.lit(float(epsilon))))
    if transform not in ("bm25", "tfidf"):
        raise SparkalsError(f"unknown confidence transform {transform!r}; use one of {', '.join(CONFIDENCE_TRANSFORMS)}")
    item_sums = ratings.groupBy(item_col).agg(F.sum(RATING).alias("item_sum"))
    shape = item_sums.agg(F.count("*").alias("items"), F.avg("item_sum").alias("average")).first()
    n_items, average = shape["items"], shape["average"]
    per_user = ratings.groupBy(user_col).agg(F.count("*").alias("user_items"))
    idf = F.log(F.lit(float(n_items)) / (F.lit(1.0) + F.col("user_items")))
    joined = ratings.join(per_user, user_col)
    if transform == "tfidf":
        return joined.select(user_col, item_col, (F.sqrt(RATING) * idf).alias(RATING))
    length_norm = F.lit(1.0 - b) + F.lit(b) * F.col("item_sum") / F.lit(float(average))
    weighted = (
        F.col(RATING) * F.lit(k1 + 1.0) / (F.lit(float(k1)) * length_norm + F.col(RATING)) * idf
    )
    item_side = _broadcast_when_small(item_sums, n_items)
    return joined.join(item_side, item_col).select(user_col, item_col, weighted.alias(RATING))


# Bytes a row of (id, sum) takes in a broadcast table, counted generously: an UnsafeRow of a string
# up to 24 bytes and a double, and the hash table's share.
_ID_SUM_ROW_BYTES = 64
_BYTE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30,
               "t": 2**40, "tb": 2**40}


def _broadcast_when_small(frame: DataFrame, rows: int) -> DataFrame:
    """`frame` with a broadcast hint when its `rows` fit `spark.sql.autoBroadcastJoinThreshold`.

    Spark would broadcast the per-item sums itself if it knew their size, but it estimates an
    aggregate as large as its input; without the hint every rating is shuffled by item to meet them.
    A threshold of -1 (broadcasts off) or one this cannot read leaves the choice to Spark.
    """
    threshold = frame.sparkSession.conf.get("spark.sql.autoBroadcastJoinThreshold") or ""
    found = re.fullmatch(r"\s*(-?\d+)\s*([a-zA-Z]*)\s*", threshold)
    if not found or found[2].lower() not in _BYTE_UNITS or int(found[1]) < 0:
        return frame
    limit = int(found[1]) * _BYTE_UNITS[found[2].lower()]
    return F.broadcast(frame) if rows * _ID_SUM_ROW_BYTES <= limit else frame


def build_ratings(
    events: DataFrame,
    settings: RatingsSettings,
    run_date: dt.date,
    excluded_items: DataFrame | None = None,
) -> DataFrame:
    """Canonical events to (user_id, item_id, rating): the one entry point every stage uses
    (aggregate, evaluate, tune), so that they all learn from the same ratings.

    `excluded_items` (column `item_id`) adds to `settings.exclude_items`, e.g. ids read from a file.
    """
    aggregated = aggregate_ratings(events, settings.weights, run_date, settings.half_life_days)
    return refine_ratings(aggregated, settings, excluded_items)


def refine_ratings(
    aggregated: DataFrame, settings: RatingsSettings, excluded_items: DataFrame | None = None
) -> DataFrame:
    """The second half of `build_ratings`: `aggregate_ratings` output through the exclusion,
    heavy-user and support filters, then the confidence transform. Separate so that a caller
    can cache the aggregation and count what the filters removed without aggregating twice."""
    ratings = filter_pairs(aggregated, settings, excluded_items)
    transformed = confidence(ratings, settings.confidence, settings.epsilon, settings.bm25_k1, settings.bm25_b)
    return positive_only(transformed)


def filter_pairs(
    aggregated: DataFrame, settings: RatingsSettings, excluded_items: DataFrame | None = None
) -> DataFrame:
    """The exclusion list, the heavy-user cap and the minimum support, in that order. They count
    (user, item) pairs, never weights, so every other column rides along unchanged: tune filters
    its per-event-type table once for all the weights it tries."""
    require_columns(aggregated, [USER_ID, ITEM_ID], "filter_pairs")
    ratings = exclude_items(aggregated, exclusion_list(aggregated.sparkSession, settings, excluded_items))
    ratings = drop_heavy_users(ratings, settings.max_user_items)
    return minimum_support(
        ratings, settings.min_user_items, settings.min_item_users, settings.k_core, settings.k_core_max_rounds
    )


def positive_only(ratings: DataFrame) -> DataFrame:
    """Drop ratings that are not positive. Implicit ALS reads them as "not preferred", yet BM25 and
    TF-IDF give one to a user who has nearly every item (idf = log(items / (1 + the user's items))
    <= 0): not a dislike. A user left with no positive rating would get no regularisation in
    Spark's solve and make it singular; without ratings the user is served the fallback instead."""
    return ratings.filter(F.col(RATING) > 0)


def build_index(
    frame: DataFrame, id_col: str, existing: DataFrame | None = None, limit: int = INT32_MAX
) -> DataFrame:
    """Map every distinct `id_col` (`user_id` or `item_id`) of `frame` to a dense int32 index:
    (`user_id`, `user_idx`) or (`item_id`, `item_idx`).

    Ids already in `existing` (an index table of the same kind) keep their index; new ids get the
    next free ones in id order, so the same input always gives the same index. Numbering runs in
    the JVM: ids are range partitioned and sorted, then each row's position is its partition's
    offset plus its place in the partition. Refuses to return an index past `limit` (int32 by
    default); the count comes from the numbering itself, so the ids are not aggregated a second
    time to check.
    """
    (index,) = _build_indexes(frame, [(id_col, existing)], limit)
    return index


def build_indexes(
    ratings: DataFrame, old_users: DataFrame | None = None, old_items: DataFrame | None = None,
    limit: int = INT32_MAX,
) -> tuple[DataFrame, DataFrame]:
    """The user and item index tables of `ratings`, extending earlier ones when given: the one
    way indexes are built, for the nightly ratings and for an evaluation's training ratings alike.
    Both are numbered as `build_index` numbers one, in one pass: one range partitioning, one
    checkpoint and one count for the two (each is a Spark job; the Steam log's two indexes took
    1.9 s each on their own)."""
    users, items = _build_indexes(ratings, [(USER_ID, old_users), (ITEM_ID, old_items)], limit)
    return users, items


def _build_indexes(
    frame: DataFrame, kinds: Sequence[tuple[str, DataFrame | None]], limit: int
) -> list[DataFrame]:
    """One index table per (`id_col`, `existing`) of `kinds`, numbered together."""
    new_ids, starts = [], []
    for id_col, existing in kinds:
        require_columns(frame, [id_col], "build_index")
        distinct = frame.select(F.col(id_col).cast("string").alias(id_col)).distinct()
        start = 0
        if existing is not None:
            require_columns(existing, [id_col, INDEX_OF[id_col]], "build_index (existing index)")
            distinct = distinct.join(existing.select(id_col), id_col, "left_anti")
            top = existing.agg(F.max(INDEX_OF[id_col])).first()[0]
            start = 0 if top is None else int(top) + 1
        new_ids.append(distinct)
        starts.append(start)
    numbered = _number_in_order(new_ids, starts)
    indexes = []
    for (id_col, existing), start, (fresh, fresh_count) in zip(kinds, starts, numbered):
        if start + fresh_count - 1 > limit:
            raise IndexOverflowError(
                f"{start + fresh_count} distinct ids do not fit the index of {id_col} (at most {limit + 1}); "
                "ALS needs int32 indexes: filter rare ids (ratings.min_user_items / min_item_users) or start a fresh index"
            )
        idx_col = INDEX_OF[id_col]
        fresh = fresh.select(F.col(_ID).alias(id_col), F.col(_IDX).alias(idx_col))
        indexes.append(fresh if existing is None else existing.select(id_col, idx_col).unionByName(fresh))
    return indexes


# Column names inside the numbering: the kind of id (its place in the list), the id and its index.
_KIND, _ID, _IDX = "kind", "id", "idx"


def _number_in_order(ids: Sequence[DataFrame], starts: Sequence[int]) -> list[tuple[DataFrame, int]]:
    """For each one-column frame of distinct ids in `ids`: (`id`, `idx` = its start in `starts` plus
    the id's position in sorted order), and how many ids it has; all kinds numbered in the same
    jobs, without moving ids through Python. The kinds are sorted one after the other, so a
    partition may end one kind and begin the next: an id's position among its own kind is its
    place in the partition less the ids of earlier kinds there."""
    partitions = int(ids[0].sparkSession.conf.get("spark.sql.shuffle.partitions"))
    tagged = [frame.select(F.lit(kind).alias(_KIND), F.col(frame.columns[0]).alias(_ID)) for kind, frame in enumerate(ids)]
    union = tagged[0]
    for frame in tagged[1:]:
        union = union.unionByName(frame)
    ordered = (
        union.repartitionByRange(partitions, _KIND, _ID)
        .sortWithinPartitions(_KIND, _ID)
        .select(_KIND, _ID, F.spark_partition_id().alias("part"), F.monotonically_increasing_id().alias("mono"))
        .localCheckpoint(eager=True)  # partition ids and positions must not change between the uses below
    )
    counts = sorted((row["part"], row[_KIND], row["count"]) for row in ordered.groupBy("part", _KIND).count().collect())
    running = list(starts)
    earlier_in_part: dict[int, int] = {}  # ids of earlier kinds in each partition so far
    offsets = []
    for part, kind, count in counts:
        before = earlier_in_part.get(part, 0)
        offsets += [F.lit(part * len(ids) + kind), F.lit(running[kind] - before)]
        running[kind] += count
        earlier_in_part[part] = before + count
    position = F.col("mono") - F.shiftleft(F.col("part").cast("long"), _PARTITION_SHIFT)
    key = F.col("part") * len(ids) + F.col(_KIND)
    numbered = ordered.select(
        _KIND, _ID, (F.create_map(*offsets)[key] + position).cast("int").alias(_IDX) if offsets else F.lit(0).alias(_IDX)
    )
    return [(numbered.filter(F.col(_KIND) == kind).select(_ID, _IDX), running[kind] - starts[kind])
            for kind in range(len(ids))]


def index_ratings(ratings: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace user_id / item_id by their int32 indexes: the `user_idx`, `item_idx`, `rating` ALS takes."""
    require_columns(ratings, [USER_ID, ITEM_ID, RATING], "index_ratings")
    return ratings.join(users, USER_ID).join(items, ITEM_ID).select(USER_IDX, ITEM_IDX, RATING)


@dataclass(frozen=True)
class MatrixStats:
    users: int
    items: int
    nonzeros: int
    density: float
    items_per_user: dict[str, float]
    users_per_item: dict[str, float]

    def as_dict(self) -> dict:
        return self.__dict__.copy()


_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def matrix_stats(ratings: DataFrame, user_col: str = USER_IDX, item_col: str = ITEM_IDX) -> MatrixStats:
    """Size, density and the spread of interactions per user and per item (approximate quantiles):
    one Spark job per side, the counts read off the same per-user and per-item tallies."""

    def side(col: str) -> tuple[int, int, dict[str, float]]:
        counts = ratings.groupBy(col).count()
        row = counts.agg(
            F.count("*").alias("ids"), F.sum("count").alias("nnz"),
            F.percentile_approx("count", list(_QUANTILES), 10_000).alias("q"),
        ).first()
        values = row["q"] or [math.nan] * len(_QUANTILES)
        return row["ids"], row["nnz"] or 0, {f"p{int(q * 100)}": float(v) for q, v in zip(_QUANTILES, values)}

    users, nnz, items_per_user = side(user_col)
    items, _, users_per_item = side(item_col)
    return MatrixStats(
        users=users,
        items=items,
        nonzeros=nnz,
        density=nnz / (users * items) if users and items else 0.0,
        items_per_user=items_per_user,
        users_per_item=users_per_item,
    )
