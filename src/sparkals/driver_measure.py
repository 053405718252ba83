"""List and measure top-N lists for a bounded test sample on the driver, with NumPy: ALS's
(`top_items`) and the popularity baselines' (`popularity_lists`), for the evaluation (and so the
gate) and for tune's trials.

Why: on evaluation-sized data a Spark job costs more in fixed overhead (planning, code generation,
task set-up) than in work. Listing a tune trial's test users and measuring them took about ten
jobs, 5.3-5.5 s warm at 100k events, against an ALS fit of 3-7 s; here 0.5 s. The sample's relevant
and seen items are collected once (`collect_sample`); each model then costs two small collects (its
factors) and NumPy: the scoring of score.py (the same `top_n`, so the same ties), the definitions
of metrics.py's docstring. The numbers equal `evaluate.measure`'s up to summation order.

Bounded on purpose: a caller uses it only when the sample's users x items fit
`evaluate.driver_max_cells` (`fits_on_driver`); bigger samples stay in Spark jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkals.score import item_matrix, top_n
from sparkals.vocabulary import FEATURES, ITEM_ID, ITEM_IDX, METRIC_NAMES, RANK, USER_ID, USER_IDX, require_columns

__all__ = [
    "TestSample", "collect_sample", "fits_on_driver", "measure_model", "metrics_of", "popularity_lists", "top_items",
]

BLOCK_USERS = 1024  # users scored per matrix product, as recommend.block_size's default...
BLOCK_BYTES = 256 * 2**20  # ...and at most this big a score matrix, as recommend.block_memory_mb's


def fits_on_driver(users: int, items: int, max_cells: int) -> bool:
    """Whether scoring `users` x `items` on the driver stays within `max_cells` (0: never)."""
    return max_cells > 0 and users * items <= max_cells


OUTSIDE = 2**31  # codes from here on: ids the index lacks (indexes are int32, below it)
_RELEVANT = "_relevant"  # collect_sample's tag: a relevant pair (True) or a seen one (False)


@dataclass(frozen=True)
class TestSample:
    """The evaluated users and their items as item codes grouped per user (CSR: user r's entries
    are `[offsets[r], offsets[r + 1])`). An item's code is its `item_idx`, or `OUTSIDE` + j for
    the j-th item id the index lacks (`outside`: id to code), so that baselines, which may list
    such items, are matched against the truth and masked like the model's lists.

    `users`: each evaluated user's `user_idx`, ascending. `truth_items`: the user's distinct
    relevant items. `seen_items`: items masked out of the user's lists (empty when nothing is masked).
    """

    users: np.ndarray
    truth_offsets: np.ndarray
    truth_items: np.ndarray
    seen_offsets: np.ndarray
    seen_items: np.ndarray
    ids: DataFrame  # `id`: the users as a local relation, to pick their factors with a broadcast join
    outside: dict[Any, int]
    cold_users: int = 0  # users with relevant items but no `user_idx`: not evaluated

    def relevant_counts(self) -> dict[str, int]:
        """`evaluate.relevant_counts`' numbers for the pairs the sample was collected from: users
        with a relevant item, those evaluated (with a `user_idx`), and their relevant pairs."""
        return {"users": len(self.users) + self.cold_users, "known_users": len(self.users),
                "pairs": len(self.truth_items)}

    @property
    def truth_sizes(self) -> np.ndarray:
        return np.diff(self.truth_offsets)

    def codes(self, item_idx: Sequence[int | None], item_ids: Sequence[Any]) -> np.ndarray:
        """The code of each item: its index, else (None) its id's code; an id the sample never
        met gets a code of its own, past every other (it can match nothing)."""
        fresh: dict[Any, int] = {}
        past = OUTSIDE + len(self.outside)
        return np.array([
            index if index is not None
            else self.outside[item_id] if item_id in self.outside
            else fresh.setdefault(item_id, past + len(fresh))
            for index, item_id in zip(item_idx, item_ids)
        ], dtype=np.int64)


def _grouped(user_idx: np.ndarray, codes: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, codes) of the (user, item) rows grouped by `users`' order (rows of other users dropped)."""
    row = np.searchsorted(users, user_idx)
    keep = (row < len(users)) & (users[np.minimum(row, len(users) - 1)] == user_idx) if len(users) else row < 0
    row, codes = row[keep], codes[keep]
    order = np.argsort(row, kind="stable")
    offsets = np.searchsorted(row[order], np.arange(len(users) + 1))
    return offsets.astype(np.int64), codes[order].astype(np.int64)


def _codes(index: pa.ChunkedArray, ids: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Each row's code: its `index`, or where that is null `OUTSIDE` + the position of its id (in
    `ids`, set only on those rows) among the distinct ids lacking an index, which are returned too."""
    lacking = pc.unique(ids.drop_null())
    codes = pc.fill_null(index, -1).to_numpy().astype(np.int64)
    missing = np.flatnonzero(pc.is_null(index).to_numpy(zero_copy_only=False))
    if len(missing):
        positions = pc.index_in(ids.take(pa.array(missing)), value_set=lacking)
        codes[missing] = OUTSIDE + positions.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, lacking


def _pair_keys(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One integer per (user code, item code) pair (codes are below 2**32)."""
    return (users.astype(np.uint64) << np.uint64(32)) | items.astype(np.uint64)


def _first_of_each(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Of `rows` (positions in `keys`), the first of each distinct key: a pair given twice counts once."""
    return np.sort(rows[np.unique(keys[rows], return_index=True)[1]])


def collect_sample(truth: DataFrame, seen: DataFrame | None, users: DataFrame, items: DataFrame) -> TestSample:
    """The sample from `truth` (`user_id`, `item_id`: relevant pairs) and `seen` (`user_id`,
    `item_id`: pairs that are not relevant, masked out of the lists; None: mask nothing), a pair
    given twice counted once, in one collect: what `evaluate.relevance` and
    `metrics.exclude_seen_truth` would leave, without a Spark job per step (at evaluation sizes a
    job costs more than the rows it moves). Users of `truth` without a `user_idx` are not
    evaluated: they are counted (`cold_users`)."""
    require_columns(truth, [USER_ID, ITEM_ID], "collect_sample (truth)")
    frames = [truth.select(USER_ID, ITEM_ID, F.lit(True).alias(_RELEVANT))]
    if seen is not None:
        frames.append(seen.select(USER_ID, ITEM_ID, F.lit(False).alias(_RELEVANT)))
    table = (
        reduce(DataFrame.unionByName, frames).join(users, USER_ID, "left").join(items, ITEM_ID, "left")
        .select(_RELEVANT, F.col(USER_IDX).cast("int"), F.col(ITEM_IDX).cast("int"),
                F.when(F.col(USER_IDX).isNull(), F.col(USER_ID)).alias(USER_ID),
                F.when(F.col(ITEM_IDX).isNull(), F.col(ITEM_ID)).alias(ITEM_ID))
        .toArrow()
    )
    user_codes, _ = _codes(table.column(USER_IDX), table.column(USER_ID))
    item_codes, lacking = _codes(table.column(ITEM_IDX), table.column(ITEM_ID))
    tagged = table.column(_RELEVANT).to_numpy(zero_copy_only=False).astype(bool)
    keys = _pair_keys(user_codes, item_codes)
    masked = _first_of_each(keys, np.flatnonzero(~tagged))
    relevant = _first_of_each(keys, np.flatnonzero(tagged))
    relevant = relevant[~np.isin(keys[relevant], keys[masked])]  # a pair the user already had is not relevant
    known = relevant[user_codes[relevant] < OUTSIDE]
    sample_users = np.unique(user_codes[known]).astype(np.int32)
    cold_users = len(np.unique(user_codes[relevant])) - len(sample_users)
    truth_offsets, truth_items = _grouped(user_codes[known], item_codes[known], sample_users)
    if seen is None:
        seen_offsets, seen_items = np.zeros(len(sample_users) + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
    else:
        seen_offsets, seen_items = _grouped(user_codes[masked], item_codes[masked], sample_users)
    ids = truth.sparkSession.createDataFrame(pa.table({"id": pa.array(sample_users, type=pa.int32())}))
    outside = {item_id: OUTSIDE + position for position, item_id in enumerate(lacking.to_pylist())}
    return TestSample(sample_users, truth_offsets, truth_items, seen_offsets, seen_items, ids, outside, cold_users)


def _user_factors(model: ALSModel, sample: TestSample) -> tuple[np.ndarray, np.ndarray]:
    """(row in `sample.users` of each sample user with factors, their factors as float32 rows)."""
    table = model.userFactors.join(F.broadcast(sample.ids), "id").select("id", FEATURES).toArrow()
    ids = table.column("id").to_numpy()
    flat = pc.list_flatten(table.column(FEATURES)).to_numpy()
    return np.searchsorted(sample.users, ids), np.asarray(flat, dtype=np.float32).reshape(len(ids), model.rank)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions `starts[i] .. starts[i] + lengths[i] - 1` of every i, concatenated."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - lengths - starts, lengths)


def top_items(model: ALSModel, sample: TestSample, n: int) -> np.ndarray:
    """Each sample user's top `n` item indexes, best first, seen items masked (`users` x `n`,
    -1 past the end of a short list and for users without factors): what `recommend_top_n`
    lists for them."""
    matrix = item_matrix(model.itemFactors)
    listed = np.full((len(sample.users), n), -1, dtype=np.int64)
    rows, factors = _user_factors(model, sample)
    step = max(1, min(BLOCK_USERS, BLOCK_BYTES // (4 * max(1, len(matrix.ids)))))
    for start in range(0, len(rows), step):
        block, vectors = rows[start:start + step], factors[start:start + step]
        scores = vectors @ matrix.factors.T
        starts = sample.seen_offsets[block]
        lengths = sample.seen_offsets[block + 1] - starts
        columns = matrix.positions(sample.seen_items[_ranges(starts, lengths)])
        seen_rows = np.repeat(np.arange(len(block)), lengths)
        known = columns >= 0
        scores[seen_rows[known], columns[known]] = -np.inf
        row_of, col_of, rank = top_n(scores, n)
        listed[block[row_of], rank - 1] = matrix.ids[col_of]
    return listed


def _in_rows(grid: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each cell of `grid` (a row per sample user, item codes, -1 for none) is one of that
    user's `items` (grouped per user by `offsets`): one `isin` over (row, code) pairs."""
    width = int(max(grid.max(initial=-1), items.max(initial=-1))) + 2
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return np.isin(np.arange(len(grid))[:, None] * width + grid, rows * width + items) & (grid >= 0)


def popularity_lists(
    rankings: Mapping[str, DataFrame], items: DataFrame, sample: TestSample, n: int
) -> dict[str, np.ndarray]:
    """Each sample user's first `n` items of each ranking in `rankings` (name to `item_id`, `rank`:
    a popularity ranking of a few hundred items) that the user has not seen: what
    `popularity.popularity_recs` lists for them, as item codes (`users` x `n`, -1 past the end of
    a short list), by name. The rankings find their item indexes in one Spark job together (at
    evaluation sizes a job costs more than the rows it moves)."""
    if not rankings:
        return {}
    for name, ranking in rankings.items():
        require_columns(ranking, [ITEM_ID, RANK], f"popularity_lists ({name})")
    tagged = [ranking.select(F.lit(name).alias("_list"), ITEM_ID, RANK) for name, ranking in rankings.items()]
    rows = reduce(DataFrame.unionByName, tagged).join(items, ITEM_ID, "left").select("_list", ITEM_ID, ITEM_IDX, RANK)
    by_list: dict[str, list[Any]] = {name: [] for name in rankings}
    for row in sorted(rows.collect(), key=lambda row: row[RANK]):
        by_list[row["_list"]].append(row)
    return {name: _unseen_first(sample, ranked_rows, n) for name, ranked_rows in by_list.items()}


def _seen_of_ranking(ranked: np.ndarray, sample: TestSample) -> np.ndarray:
    """Whether each sample user (row) has seen each item of `ranked` (column; distinct codes):
    each seen pair is looked up in the short ranking, O(seen pairs x log(ranking)), instead of
    every (user, ranked item) cell in the seen pairs (an `isin` that sorts users x ranking cells:
    at 4M events, 33k test users, the two baselines' lists took 2.4-2.9 s with it, 0.4-0.6 s now)."""
    seen = np.zeros((len(sample.users), len(ranked)), dtype=bool)
    order = np.argsort(ranked, kind="stable")
    in_order = ranked[order]
    found = np.minimum(np.searchsorted(in_order, sample.seen_items), len(ranked) - 1)
    hit = in_order[found] == sample.seen_items
    rows = np.repeat(np.arange(len(sample.users)), np.diff(sample.seen_offsets))
    seen[rows[hit], order[found[hit]]] = True
    return seen


def _unseen_first(sample: TestSample, ranked_rows: Sequence[Any], n: int) -> np.ndarray:
    """One ranking's rows (best first) to each sample user's first `n` unseen item codes."""
    ranked = sample.codes([row[ITEM_IDX] for row in ranked_rows], [row[ITEM_ID] for row in ranked_rows])
    users = len(sample.users)
    listed = np.full((users, n), -1, dtype=np.int64)
    if not users or not len(ranked):
        return listed
    kept = ~_seen_of_ranking(ranked, sample)
    place = np.cumsum(kept, axis=1)
    row_of, column = np.nonzero(kept & (place <= n))
    listed[row_of, place[row_of, column] - 1] = ranked[column]
    return listed


def metrics_of(listed: np.ndarray, sample: TestSample, ks: Sequence[int], n_items: int) -> dict[str, dict[str, Any]]:
    """`evaluate.measure`'s numbers for one list ({"K": {metric: value, "users_evaluated",
    "users_with_recs", "coverage"}}) from `top_items`' array: every metric averaged over the
    sample's users (each has truth), coverage over `n_items`."""
    users = len(sample.users)
    truth_sizes = sample.truth_sizes.astype(np.float64)
    hits = _in_rows(listed, sample.truth_offsets, sample.truth_items)
    positions = np.arange(listed.shape[1], dtype=np.float64)
    ideal = np.concatenate([[0.0], np.cumsum([1.0 / math.log2(p + 1) for p in range(1, listed.shape[1] + 1)])])
    with_recs = float(np.mean(listed[:, 0] >= 0)) if users and listed.shape[1] else math.nan
    results: dict[str, dict[str, Any]] = {}
    for k in sorted(set(ks)):
        top = hits[:, :k]
        n_hits = top.sum(axis=1).astype(np.float64)
        capped = np.minimum(truth_sizes, k)
        gains = (top / np.log2(positions[:k] + 2)).sum(axis=1)
        precision_at = np.cumsum(top, axis=1) / (positions[:k] + 1)
        per_user = {
            "precision": n_hits / k,
            "recall": n_hits / truth_sizes,
            "recall_capped": n_hits / capped,
            "ndcg": gains / ideal[capped.astype(np.int64)],
            "map": (precision_at * top).sum(axis=1) / capped,
            "hit_rate": (n_hits > 0).astype(np.float64),
        }
        kept = listed[:, :k]
        values: dict[str, Any] = {
            name: (float(np.mean(per_user[name])) if users else math.nan) for name in METRIC_NAMES
        }
        values["users_evaluated"] = users
        values["users_with_recs"] = with_recs
        values["coverage"] = len(np.unique(kept[kept >= 0])) / n_items
        results[str(k)] = values
    return results


def measure_model(model: ALSModel, sample: TestSample, ks: Sequence[int], n_items: int) -> dict[str, dict[str, Any]]:
    """`metrics_of(top_items(...))`: a model's numbers on the sample, at every K of `ks`."""
    return metrics_of(top_items(model, sample, max(ks)), sample, ks, n_items)
