"""Offline ranking metrics and popularity baselines, computed in Spark.

Inputs use the column names `user_id`, `item_id` (any key types, the same on both sides) and, for
recommendations, `rank` (1 = best). Only one aggregate row per list goes to the driver, so the
metrics run on the full evaluation set however many users it has. Each user's list is gathered into
one row (a list of at most K items) and measured there, without windows over positions.

Definitions, per evaluated user, for a cut-off K (hits = held-out items among the user's top K,
T = the user's distinct held-out items, m = min(K, |T|)):

    precision@K      hits / K               (a list shorter than K still divides by K)
    recall@K         hits / |T|             (can stay below 1 when |T| > K)
    recall_capped@K  hits / m               (1 when the top K is as good as it can be)
    ndcg@K           sum over hits at position p of 1 / log2(p + 1), divided by the ideal DCG,
                     the same sum over positions 1..m (binary relevance)
    map@K            sum over hits at position p of precision@p, divided by m
    hit_rate@K       1 if hits > 0 else 0

Each metric is averaged over the evaluated users: the users with at least one truth item. Users
with no truth item are left out (there is nothing to find); users with truth but no
recommendation are in, with zeros. Positions come from `rank` only: scores are never looked at,
so equal scores cannot reorder a list. A (user, item) pair listed twice counts once, at its best
rank, and the list is renumbered 1.. in rank order (gaps closed; different items sharing a rank
are ordered by item).

Against `pyspark.ml.evaluation.RankingEvaluator` (mllib `RankingMetrics`), checked in
tests/test_metrics.py on Spark 4.3: precisionAtK, recallAtK, ndcgAtK (natural log, but the base
cancels in the ratio) and meanAveragePrecisionAtK (also divides by min(K, |T|)) are the same
definitions, equal up to floating-point summation order, when the evaluator is given one row per
evaluated user (an empty prediction array for users without recommendations) and duplicate-free
lists. Two differences: the evaluator averages over every row it is given, counting a row with an
empty label array as 0 (here such users are not evaluated); and it does not de-duplicate
predictions, so an item listed twice is a hit twice (here once).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql.types import ArrayType
from pyspark.sql import functions as F

from sparkals.vocabulary import ITEM_ID, METRIC_NAMES, RANK, USER_ID, require_columns

__all__ = [
    "DEFAULT_KS", "METRIC_NAMES", "catalogue_coverage", "catalogue_coverage_at", "catalogue_coverage_of",
    "exclude_seen", "exclude_seen_truth", "ranking_metrics", "ranking_metrics_of",
]

DEFAULT_KS = (5, 10, 20)


def _check_ks(ks: Iterable[int]) -> list[int]:
    checked = sorted(set(ks))
    if not checked or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in checked):
        raise ValueError(f"cut-offs K must be positive integers, got {list(ks)!r}")
    return checked


SYSTEM = "_system"  # which list a row belongs to, when several are measured in one pass


def _listed(recs: DataFrame, max_k: int) -> DataFrame:
    """(`_system`, `user_id`, `items`): each list and user's first `max_k` distinct items in rank
    order (an item listed twice kept at its best rank; items sharing a rank ordered by item). One
    shuffle: a user's whole list is in one row, so the metrics need no window over positions."""
    require_columns(recs, [SYSTEM, USER_ID, ITEM_ID, RANK], "ranking metrics (recommendations)")
    in_order = F.array_sort(F.collect_list(F.struct(F.col(RANK).alias("r"), F.col(ITEM_ID).alias("i"))))
    items = F.array_distinct(F.transform(in_order, lambda entry: entry["i"]))
    return recs.groupBy(SYSTEM, USER_ID).agg(F.slice(items, 1, max_k).alias("items"))


def _ideal_dcg(max_k: int) -> Column:
    """Array whose element m is the DCG of m hits in the first m positions (element 0 is 0):
    a constant that depends on K only, so it is built on the driver."""
    running, values = 0.0, [0.0]
    for p in range(1, max_k + 1):
        running += 1.0 / math.log2(p + 1)
        values.append(running)
    return F.array(*[F.lit(v) for v in values])


def _labelled(lists: dict[str, DataFrame]) -> DataFrame:
    """Every list's (`user_id`, `item_id`, `rank`) in one frame, each row marked with its list's name."""
    if not lists:
        raise ValueError("no recommendation lists to measure")
    frames = []
    for name, recs in lists.items():
        require_columns(recs, [USER_ID, ITEM_ID, RANK], f"ranking metrics (recommendations of {name})")
        frames.append(recs.select(F.lit(name).alias(SYSTEM), USER_ID, ITEM_ID, RANK))
    return functools.reduce(DataFrame.unionByName, frames)


def ranking_metrics(
    recs: DataFrame, truth: DataFrame, ks: Iterable[int] = DEFAULT_KS
) -> dict[int, dict[str, float]]:
    """Precision, recall, recall_capped, NDCG, MAP and hit rate at each K (see the module docstring),
    plus `users_evaluated` (users with truth) and `users_with_recs` (the share of them with any
    recommendation, i.e. that the model could score), repeated under every K.

    With no evaluated user the metrics are NaN and `users_evaluated` is 0.
    """
    return ranking_metrics_of({"recs": recs}, truth, ks)["recs"]


def ranking_metrics_of(
    lists: dict[str, DataFrame], truth: DataFrame, ks: Iterable[int] = DEFAULT_KS
) -> dict[str, dict[int, dict[str, float]]]:
    """`ranking_metrics` of several lists against the same truth, in one Spark action: each job costs
    a fixed overhead that dominates on evaluation-sized data, and the lists share the truth's shuffles."""
    cutoffs = _check_ks(ks)
    max_k = cutoffs[-1]
    require_columns(truth, [USER_ID, ITEM_ID], "ranking metrics (truth)")
    recs = _labelled(lists)
    systems = recs.sparkSession.createDataFrame([(name,) for name in lists], f"{SYSTEM} string")
    relevant = truth.groupBy(USER_ID).agg(F.collect_set(ITEM_ID).alias("truth"))
    # Every list is measured on every user with truth, listed or not.
    users = relevant.crossJoin(F.broadcast(systems)).join(_listed(recs, max_k), [SYSTEM, USER_ID], "left")
    listed = F.coalesce(F.col("items"), F.array().cast(ArrayType(recs.schema[ITEM_ID].dataType)))
    hit = F.transform(listed, lambda item: F.array_contains(F.col("truth"), item))

    ideal = _ideal_dcg(max_k)
    n_truth = F.size("truth")
    averages = []
    for k in cutoffs:
        top = F.slice(hit, 1, k)
        n_hits = F.size(F.filter(top, lambda h: h)).cast("double")
        gains = F.transform(top, lambda h, i: F.when(h, 1.0 / F.log2(i + 2)).otherwise(0.0))
        # precision at each hit's position: hits so far / position
        precisions = F.transform(
            top, lambda h, i: F.when(h, F.size(F.filter(F.slice(top, 1, i + 1), lambda g: g)) / (i + 1)).otherwise(0.0)
        )
        capped = F.least(n_truth, F.lit(k))
        per_user = {
            "precision": n_hits / F.lit(float(k)),
            "recall": n_hits / n_truth,
            "recall_capped": n_hits / capped,
            "ndcg": F.aggregate(gains, F.lit(0.0), lambda acc, g: acc + g) / ideal[capped],
            "map": F.aggregate(precisions, F.lit(0.0), lambda acc, g: acc + g) / capped,
            "hit_rate": (n_hits > 0).cast("double"),
        }
        averages += [F.avg(value).alias(f"{name}_{k}") for name, value in per_user.items()]
    has_recs = F.when(F.col("items").isNotNull(), 1.0).otherwise(0.0)
    rows = {
        row[SYSTEM]: row for row in users.groupBy(SYSTEM).agg(
            F.count("*").alias("users_evaluated"),
            F.avg(has_recs).alias("users_with_recs"),
            *averages,
        ).collect()
    }
    return {name: _at_cutoffs(rows.get(name), cutoffs) for name in lists}


def _at_cutoffs(row: Row | None, cutoffs: list[int]) -> dict[int, dict[str, float]]:
    """One list's aggregate row to {K: metrics}; no row (no user with truth): NaN, 0 evaluated."""

    def value(name: str) -> float:
        got = None if row is None else row[name]
        return math.nan if got is None else float(got)

    evaluated = 0 if row is None else int(row["users_evaluated"])
    return {
        k: {
            **{name: value(f"{name}_{k}") for name in METRIC_NAMES},
            "users_evaluated": evaluated,
            "users_with_recs": value("users_with_recs"),
        }
        for k in cutoffs
    }


def catalogue_coverage(recs: DataFrame, k: int, n_items: int) -> float:
    """Share of the catalogue (`n_items`) that appears in at least one user's top k: a model that
    only ever shows the head of the catalogue scores low however precise it is."""
    if k < 1 or n_items < 1:
        raise ValueError(f"catalogue_coverage needs k >= 1 and n_items >= 1, got k={k}, n_items={n_items}")
    return catalogue_coverage_at(recs, [k], n_items)[k]


def catalogue_coverage_at(recs: DataFrame, ks: Iterable[int], n_items: int) -> dict[int, float]:
    """`catalogue_coverage` at every K in one Spark action: each item's best position over all users
    is computed once, then counted against each cut-off."""
    return catalogue_coverage_of({"recs": recs}, ks, n_items)["recs"]


def catalogue_coverage_of(lists: dict[str, DataFrame], ks: Iterable[int], n_items: int) -> dict[str, dict[int, float]]:
    """`catalogue_coverage_at` of several lists in one Spark action."""
    cutoffs = _check_ks(ks)
    if n_items < 1:
        raise ValueError(f"catalogue coverage needs n_items >= 1, got {n_items}")
    positioned = _listed(_labelled(lists), cutoffs[-1]).select(SYSTEM, F.posexplode("items").alias("pos", ITEM_ID))
    best = positioned.groupBy(SYSTEM, ITEM_ID).agg((F.min("pos") + 1).alias("best"))
    counted = {
        row[SYSTEM]: row for row in
        best.groupBy(SYSTEM).agg(*[F.count(F.when(F.col("best") <= k, 1)).alias(f"k{k}") for k in cutoffs]).collect()
    }
    return {name: {k: (counted[name][f"k{k}"] if name in counted else 0) / n_items for k in cutoffs} for name in lists}


def exclude_seen(recs: DataFrame, seen: DataFrame) -> DataFrame:
    """Drop recommendations of (user, item) pairs in `seen` and renumber `rank` 1.. per user,
    keeping every other column (such as `score`): items the user already had in training are
    not what the model is judged on."""
    kept = recs.join(seen.select(USER_ID, ITEM_ID).distinct(), [USER_ID, ITEM_ID], "left_anti")
    in_order = Window.partitionBy(USER_ID).orderBy(F.col(RANK), F.col(ITEM_ID))
    return kept.withColumn(RANK, F.row_number().over(in_order)).select(*recs.columns)


def exclude_seen_truth(truth: DataFrame, seen: DataFrame) -> DataFrame:
    """Truth minus `seen`: an item the user already had in training is not a discovery, so it is
    not relevant either (use together with `exclude_seen` on the recommendations)."""
    return truth.join(seen.select(USER_ID, ITEM_ID).distinct(), [USER_ID, ITEM_ID], "left_anti").select(*truth.columns)
