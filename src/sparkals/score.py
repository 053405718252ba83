"""Exact top-N scoring in blocks: the item factors go to every executor once (a broadcast),
users are scored a block at a time with one matrix product (NumPy BLAS) inside `mapInArrow`,
and items the user must not get are masked to -inf *before* the top-N is taken, so every user
still gets N items when the catalogue allows. A user without factors but with ratings on items the
model knows is folded in first (fold_in.py): solved on the executor, then scored like any other.

Spark's `recommendForAllUsers` cannot mask: the usual work-around asks it for N + max(seen)
items and anti-joins, which sorts far more candidates than it keeps (see scripts/bench_scoring.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkals.ann import (
    AnnIndex, AnnParams, SerializedIndex, build_index, choose_method, load_index, search, ship_index,
)
from sparkals.fold_in import FoldIn, FoldInParams, fold_in
from sparkals.vocabulary import FEATURES, HISTORY, ITEM_IDX, RANK, RATING, SCORE, SEEN, SOURCE

__all__ = [
    "ALS_SOURCE", "FALLBACK_SOURCE", "FOLD_IN_SOURCE", "ItemMatrix", "block_rows", "index_items", "item_matrix",
    "score_all", "score_block", "score_block_ann", "similar_items", "top_n",
]

ALS_SOURCE = "als"
FALLBACK_SOURCE = "fallback"
FOLD_IN_SOURCE = "fold_in"

log = logging.getLogger("sparkals.score")


@dataclass(frozen=True)
class ItemMatrix:
    """Everything a block needs to score, small enough to broadcast: one row per scorable item.

    `ids` are the items' int32 indexes in ascending order, `factors` their (items x rank) float32
    latent vectors, `fallback` a score per item for users without factors (None: no fallback),
    `excluded` the row positions no user may get (exclusion list), `fold_in` what solving a
    user's factors needs (None: users without factors get the fallback)."""

    ids: np.ndarray
    factors: np.ndarray
    fallback: np.ndarray | None = None
    excluded: np.ndarray | None = None
    fold_in: FoldIn | None = None

    @property
    def rank(self) -> int:
        return int(self.factors.shape[1])

    def positions(self, item_ids: np.ndarray) -> np.ndarray:
        """Row position of each item index, -1 for items this matrix does not hold."""
        item_ids = np.asarray(item_ids)
        if len(self.ids) == 0:
            return np.full(len(item_ids), -1)
        found = np.clip(np.searchsorted(self.ids, item_ids), 0, len(self.ids) - 1)
        return np.where(self.ids[found] == item_ids, found, -1)


def item_matrix(
    item_factors: DataFrame,
    fallback: DataFrame | None = None,
    excluded: DataFrame | None = None,
    normalise: bool = False,
    fold_in_params: FoldInParams | None = None,
) -> ItemMatrix:
    """Collect ALS item factors (`id`, `features`) into dense arrays on the driver.

    `fallback` (`item_idx`, `score`) and `excluded` (`item_idx`) are keyed by item index;
    `fold_in_params` (the model's alpha and reg_param) turn fold-in on, with YtY computed here once.
    This is the one collect of scoring: items x rank floats (1M items at rank 64 is 256 MB), never
    the users.
    """
    table = item_factors.select(F.col("id").cast("int").alias("id"), FEATURES).orderBy("id").toArrow()
    ids = table.column("id").to_numpy().astype(np.int32)
    rank = len(table.column(FEATURES)[0]) if table.num_rows else 0
    flat = pc.list_flatten(table.column(FEATURES)).to_numpy()
    factors = np.ascontiguousarray(flat.reshape(len(ids), rank), dtype=np.float32)
    if normalise:
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        factors = factors / np.where(norms > 0, norms, 1.0)
    matrix = ItemMatrix(ids=ids, factors=factors)
    popular = None
    if fallback is not None:
        rows = fallback.select(F.col(ITEM_IDX).cast("int"), F.col(SCORE).cast("float")).toArrow()
        popular = np.full(len(ids), -np.inf, dtype=np.float32)
        where = matrix.positions(rows.column(ITEM_IDX).to_numpy())
        known = where >= 0
        popular[where[known]] = rows.column(SCORE).to_numpy()[known]
    banned = None
    if excluded is not None:
        items = excluded.select(F.col(ITEM_IDX).cast("int")).distinct().toArrow().column(ITEM_IDX).to_numpy()
        where = matrix.positions(items)
        banned = np.unique(where[where >= 0])
    solve = fold_in_params.with_items(factors) if fold_in_params is not None else None
    return dataclasses.replace(matrix, fallback=popular, excluded=banned, fold_in=solve)


# `top_n` on wide rows: columns are taken in groups of GROUP_WIDTH (column j in group j % groups),
# and only the n groups with the best maxima are ranked (see `_best_by_groups`). Below
# GROUPS_PER_KEPT groups per kept item, ranking the whole rows costs less than finding the groups.
GROUP_WIDTH = 16
GROUPS_PER_KEPT = 24


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best `n` columns per row of `scores`, ignoring -inf: (row, column, rank) of each kept cell.

    Ties sort by column (the items are in index order), at the cut too: of items tied for the
    n-th place, the first columns are kept. So the same scores always give the same lists, whichever
    way they were found. Wide rows (a catalogue of thousands of items) are ranked by groups of
    columns (`_best_by_groups`: at 64k items 3-4.6x faster than `argpartition` over whole rows, the
    same lists); narrow ones by `argpartition` (linear time, on the scores as they are: negating
    them first costs a copy and made it 1.4x slower at 64k items). Only the n kept are sorted.
    """
    rows, cols = scores.shape
    k = min(n, cols)
    if rows == 0 or k == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    if k == cols:
        best = np.broadcast_to(np.arange(cols), (rows, cols)).copy()
    else:
        if cols // GROUP_WIDTH >= GROUPS_PER_KEPT * k:
            best, cut, tied = _best_by_groups(scores, k)
        else:
            # Partitioned at the (k+1)-th best, which lands in its place with the k best after it:
            # a tie at the cut is the k-th best being equal to it.
            order = np.argpartition(scores, cols - k - 1, axis=1)
            best = order[:, cols - k:]
            cut = np.take_along_axis(scores, best, axis=1).min(axis=1)
            after = np.take_along_axis(scores, order[:, cols - k - 1:cols - k], axis=1)[:, 0]
            tied = (after == cut) & (cut > -np.inf)
        if tied.any():
            best[tied] = _first_at_cut(scores[tied], cut[tied], k)
        best.sort(axis=1)
    picked = np.take_along_axis(scores, best, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    keep = picked > -np.inf
    row_of, place = np.nonzero(keep)
    return row_of, best[row_of, place], place + 1


def _best_by_groups(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's `k` best columns (in no order), found among the columns of its `k` groups with
    the highest maxima; the k-th best score (the cut); and which rows may hold a tie at the cut
    (for `_first_at_cut`).

    Exact: a column of the k best whose group is not among the k best groups would leave k groups
    whose maxima are at least its score, k other columns at least as good, so it is not in the k
    best unless tied. Group j holds the columns j, j + groups, j + 2 * groups, ...: their maxima are
    one reduction over contiguous rows of the block, which runs in SIMD (a reduction over short
    runs of adjacent columns ran slower than ranking whole rows). Columns past the last whole
    group (fewer than GROUP_WIDTH) are candidates in every row."""
    rows, cols = scores.shape
    groups = cols // GROUP_WIDTH
    whole = groups * GROUP_WIDTH
    maxima = scores[:, :whole].reshape(rows, GROUP_WIDTH, groups).max(axis=1)
    chosen = np.argpartition(maxima, groups - k, axis=1)[:, groups - k:]
    candidates = (chosen[:, :, None] + np.arange(GROUP_WIDTH) * groups).reshape(rows, -1)
    if whole < cols:
        candidates = np.concatenate([candidates, np.broadcast_to(np.arange(whole, cols), (rows, cols - whole))], axis=1)
    values = np.take_along_axis(scores, candidates, axis=1)
    width = values.shape[1]
    kept = np.argpartition(values, width - k, axis=1)[:, width - k:]
    cut = np.take_along_axis(values, kept, axis=1).min(axis=1)
    # A tie at the cut: another candidate as good as the cut, or a group left out whose maximum
    # reaches it (the k chosen groups' maxima all do). Rows with fewer than k scores above -inf have
    # nothing to settle.
    tied = ((np.count_nonzero(values >= cut[:, None], axis=1) > k) | (np.count_nonzero(maxima >= cut[:, None], axis=1) > k)) & (
        cut > -np.inf)
    return np.take_along_axis(candidates, kept, axis=1), cut, tied


def _first_at_cut(scores: np.ndarray, cut: np.ndarray, k: int) -> np.ndarray:
    """For rows with a tie at their `cut` (the k-th best score): every column above the cut, then
    the first of those at the cut until `k` (rows x k columns, in column order)."""
    above = scores > cut[:, None]
    at_cut = scores == cut[:, None]
    room = k - above.sum(axis=1)
    kept = above | (at_cut & (np.cumsum(at_cut, axis=1) <= room[:, None]))
    return np.nonzero(kept)[1].reshape(len(scores), k)


def _products(features: pa.Array, items: ItemMatrix) -> np.ndarray:
    """Users' factors (a list array without nulls) times every item's: one matrix product.

    Its BLAS runs one thread per task: Spark starts Python workers with OMP_NUM_THREADS set to
    `spark.task.cpus` (unless `spark.executorEnv.OMP_NUM_THREADS` says otherwise), which NumPy's
    OpenBLAS follows, so concurrent tasks do not oversubscribe the cores (BENCHMARKS.md, section 5)."""
    users = pc.list_flatten(features).to_numpy().astype(np.float32, copy=False)
    return users.reshape(-1, items.rank) @ items.factors.T


def _folded_in(history: pa.Array, rows: np.ndarray, items: ItemMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Fold-in factors for `rows` of the block from their `history` (item_idx, rating) lists, and
    which of them could be solved (a user needs a positive rating on an item the model knows)."""
    chosen = history.take(pa.array(rows))
    lengths = pc.fill_null(pc.list_value_length(chosen), 0).to_numpy()
    pairs = pc.list_flatten(chosen)
    positions = items.positions(pc.struct_field(pairs, ITEM_IDX).to_numpy(zero_copy_only=False))
    ratings = pc.struct_field(pairs, RATING).to_numpy(zero_copy_only=False)
    return fold_in(items.factors, lengths, positions, ratings, items.fold_in)


def _seen_cells(seen: pa.Array, items: ItemMatrix) -> tuple[np.ndarray, np.ndarray]:
    """(row in the block, ItemMatrix row or -1 for an item the matrix lacks) of every seen item."""
    lengths = pc.fill_null(pc.list_value_length(seen), 0).to_numpy()
    return np.repeat(np.arange(len(seen)), lengths), items.positions(pc.list_flatten(seen).to_numpy())


def _scores(block: pa.RecordBatch, items: ItemMatrix) -> tuple[np.ndarray, np.ndarray]:
    """The block's (users x items) scores and each user's `source`: ALS factors when the user has
    them, else fold-in factors when the user's history allows, else the fallback ranking."""
    rows = block.num_rows
    features = block.column(FEATURES)
    has_factors = features.is_valid().to_numpy(zero_copy_only=False)
    if has_factors.all():
        # The usual block: the product is the score matrix, no masked copy into a second one.
        return _products(features, items), np.full(rows, ALS_SOURCE, dtype=object)
    source = np.where(has_factors, ALS_SOURCE, FALLBACK_SOURCE).astype(object)
    scores = np.empty((rows, len(items.ids)), dtype=np.float32)
    if has_factors.any():
        scores[has_factors] = _products(features.filter(pa.array(has_factors)), items)
    if items.fold_in is not None and HISTORY in block.schema.names:
        candidates = np.flatnonzero(~has_factors & block.column(HISTORY).is_valid().to_numpy(zero_copy_only=False))
        if len(candidates):
            factors, solved = _folded_in(block.column(HISTORY), candidates, items)
            folded = candidates[solved]
            scores[folded] = factors[solved] @ items.factors.T
            source[folded] = FOLD_IN_SOURCE
    fallback = source == FALLBACK_SOURCE
    scores[fallback] = items.fallback if items.fallback is not None else -np.inf
    return scores, source


def score_block(block: pa.RecordBatch, items: ItemMatrix, n: int, key: str) -> pa.RecordBatch:
    """One block of users (`key`, `features` or null, `seen` item indexes, optionally `history`
    for fold-in) to their top-N rows."""
    scores, source = _scores(block, items)
    if items.excluded is not None and len(items.excluded):
        scores[:, items.excluded] = -np.inf
    seen_rows, seen_cols = _seen_cells(block.column(SEEN), items)
    known = seen_cols >= 0
    scores[seen_rows[known], seen_cols[known]] = -np.inf
    row_of, col_of, rank = top_n(scores, n)
    return pa.RecordBatch.from_arrays(
        [
            block.column(key).take(pa.array(row_of)),
            pa.array(rank, type=pa.int32()),
            pa.array(items.ids[col_of], type=pa.int32()),
            pa.array(scores[row_of, col_of], type=pa.float32()),
            pa.array(source[row_of], type=pa.string()),
        ],
        names=[key, RANK, ITEM_IDX, SCORE, SOURCE],
    )


def block_rows(items: int, block_size: int, memory_mb: int) -> int:
    """Users per block: `block_size`, fewer when the block's score matrix would pass the budget."""
    budget = max(1, (memory_mb * 1024 * 1024) // (4 * max(items, 1)))
    return max(1, min(block_size, budget))


def index_items(items: ItemMatrix, params: AnnParams) -> SerializedIndex:
    """The approximate index over every item a user may get (excluded items are left out of the
    graph, so the index never returns them): built once, on the driver."""
    allowed = np.ones(len(items.ids), dtype=bool)
    if items.excluded is not None:
        allowed[items.excluded] = False
    return build_index(items.factors, np.flatnonzero(allowed), params)


def _ann_candidates(users: np.ndarray, extra: np.ndarray, index: AnnIndex, n: int, ef_search: int) -> np.ndarray:
    """ItemMatrix rows of each user's n + extra best candidates (-1 padded to the widest): users
    are searched in groups of equal width (extra rounded up to a power of two), not all at the widest."""
    widths = n + np.where(extra > 0, 2 ** np.ceil(np.log2(np.maximum(extra, 1))).astype(np.int64), 0)
    widths = np.minimum(widths, np.maximum(len(index.positions), 1))
    found = np.full((len(users), int(widths.max(initial=n))), -1, dtype=np.int64)
    for width in np.unique(widths):
        group = np.flatnonzero(widths == width)
        found[group, :width] = search(index, users[group], int(width), ef_search)
    return found


def score_block_ann(
    block: pa.RecordBatch, items: ItemMatrix, index: AnnIndex, n: int, key: str, params: AnnParams, exact_rows: int
) -> Iterator[pa.RecordBatch]:
    """One block of users to their top-N rows by the approximate index, with the same columns as
    `score_block`.

    Each user with factors asks the index for N + the number of their seen items it holds (at most
    `params.max_extra` more), drops the seen ones and keeps the best N, rescored exactly. Users the
    filter leaves short of N (when the catalogue has N for them) and users without factors go
    through `score_block`, the exact path, `exact_rows` at a time."""
    has_factors = block.column(FEATURES).is_valid().to_numpy(zero_copy_only=False)
    approx = np.flatnonzero(has_factors)
    exact = np.flatnonzero(~has_factors)
    if len(approx):
        chosen = block.take(pa.array(approx))
        users = pc.list_flatten(chosen.column(FEATURES)).to_numpy().astype(np.float32).reshape(-1, items.rank)
        in_index = np.zeros(len(items.ids), dtype=bool)
        in_index[index.positions] = True
        seen_rows, seen_cols = _seen_cells(chosen.column(SEEN), items)
        held = seen_cols >= 0
        held[held] = in_index[seen_cols[held]]
        seen_codes = np.unique(seen_rows[held].astype(np.int64) * len(items.ids) + seen_cols[held])
        seen_held = np.bincount(seen_codes // max(len(items.ids), 1), minlength=len(approx))

        found = _ann_candidates(users, np.minimum(seen_held, params.max_extra), index, n, params.ef_search)
        found.sort(axis=1)  # item order within a row, so equal scores rank the lower index first
        codes = np.arange(len(approx))[:, None] * len(items.ids) + found
        usable = (found >= 0) & ~np.isin(codes, seen_codes)
        vectors = items.factors[np.maximum(found, 0)]
        scores = np.einsum("ur,ukr->uk", users, vectors).astype(np.float32, copy=False)
        scores[~usable] = -np.inf
        row_of, col_of, rank = top_n(scores, n)

        available = len(index.positions) - seen_held
        short = np.bincount(row_of, minlength=len(approx)) < np.minimum(n, available)
        keep = ~short[row_of]
        row_of, col_of, rank = row_of[keep], col_of[keep], rank[keep]
        yield pa.RecordBatch.from_arrays(
            [
                chosen.column(key).take(pa.array(row_of)),
                pa.array(rank, type=pa.int32()),
                pa.array(items.ids[found[row_of, col_of]], type=pa.int32()),
                pa.array(scores[row_of, col_of], type=pa.float32()),
                pa.array(np.full(len(row_of), ALS_SOURCE), type=pa.string()),
            ],
            names=[key, RANK, ITEM_IDX, SCORE, SOURCE],
        )
        exact = np.sort(np.concatenate([exact, approx[short]]))
    if len(exact):
        rest = block.take(pa.array(exact))
        for start in range(0, rest.num_rows, exact_rows):
            yield score_block(rest.slice(start, exact_rows), items, n, key)


def score_all(
    users: DataFrame, items: ItemMatrix, n: int, block_size: int = 4096, memory_mb: int = 256, key: str = "key",
    method: str = "exact", ann: AnnParams | None = None,
) -> DataFrame:
    """Top-N for every row of `users` (`key`, `features` array<float> or null, `seen` array<int>
    or null, and optionally `history` array<struct<item_idx, rating>>): `key`, `rank`, `item_idx`,
    `score`, `source` (`als`; `fold_in` for null features solved from `history` when `items` has
    fold-in; else `fallback`).

    `method` "exact": the same lists (up to ties) as scoring every item and sorting; "ann": the
    candidates come from an approximate index (ann.py), built here once and broadcast; "auto":
    the index from `ann.min_items` items on. Either way seen and excluded items are never returned.
    """
    spark: SparkSession = users.sparkSession
    shared = spark.sparkContext.broadcast(items)
    per_block = block_rows(len(items.ids), block_size, memory_mb)
    key_type = users.schema[key].dataType
    params = ann or AnnParams()
    shared_index = None
    if choose_method(method, len(items.ids), params) == "ann":
        started = time.perf_counter()
        serialized = index_items(items, params)
        log.info("approximate index over %d items built in %.1f s (%.0f MiB)",
                 len(serialized.positions), time.perf_counter() - started, serialized.nbytes / 2**20)
        shared_index = ship_index(spark.sparkContext, serialized)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matrix: ItemMatrix = shared.value
        if shared_index is not None:
            index = load_index(shared_index)
            for batch in batches:
                for start in range(0, batch.num_rows, block_size):
                    yield from score_block_ann(batch.slice(start, block_size), matrix, index, n, key, params, per_block)
            return
        for batch in batches:
            for start in range(0, batch.num_rows, per_block):
                yield score_block(batch.slice(start, per_block), matrix, n, key)

    schema = T.StructType([
        T.StructField(key, key_type),
        T.StructField(RANK, T.IntegerType()),
        T.StructField(ITEM_IDX, T.IntegerType()),
        T.StructField(SCORE, T.FloatType()),
        T.StructField(SOURCE, T.StringType()),
    ])
    columns = [key, F.col(FEATURES).cast("array<float>").alias(FEATURES), F.col(SEEN).cast("array<int>").alias(SEEN)]
    if HISTORY in users.columns:
        columns.append(F.col(HISTORY).cast(f"array<struct<{ITEM_IDX}:int,{RATING}:float>>").alias(HISTORY))
    return users.select(*columns).mapInArrow(run, schema)


def similar_items(
    item_factors: DataFrame, n: int, block_size: int = 4096, memory_mb: int = 256,
    method: str = "exact", ann: AnnParams | None = None,
) -> DataFrame:
    """Item-to-item top-N by cosine similarity of ALS item factors: `item_idx`, `rank`,
    `similar_item_idx`, `score`.

    The same scorer (and `method`) with unit-length factors on both sides and each item masked
    from its own list; the approximate index is then built over the unit-length factors (cosine
    and inner product rank items differently, so it cannot be the users' index).
    """
    matrix = item_matrix(item_factors, normalise=True)
    squares = F.aggregate(FEATURES, F.lit(0.0), lambda total, x: total + x * x)
    queries = item_factors.select(
        F.col("id").cast("int").alias("key"),
        F.transform(FEATURES, lambda x: x / F.greatest(F.sqrt(squares), F.lit(1e-12))).alias(FEATURES),
        F.array(F.col("id").cast("int")).alias(SEEN),
    )
    scored = score_all(queries, matrix, n, block_size, memory_mb, key="key", method=method, ann=ann)
    return scored.select(
        F.col("key").alias(ITEM_IDX), RANK, F.col(ITEM_IDX).alias("similar_item_idx"),
        F.col(SCORE).cast("double").alias(SCORE),
    )
