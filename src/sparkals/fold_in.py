"""Fold-in: the factors of a user the model has not seen, from the user's ratings and the model's
fixed item factors, solved exactly as Spark's implicit ALS user step solves them.

Spark's step (`ALS.computeFactors` with implicitPrefs) for a user with ratings r_i on items y_i:

    c1_i = alpha * |r_i|
    A = YtY + sum_i c1_i * y_i y_i^T + reg_param * n * I      (n: the user's ratings > 0)
    b = sum_{i: r_i > 0} (1 + c1_i) * y_i
    x = A^-1 b

with YtY the Gram matrix of every item factor. ALS ends each iteration with the user step, so for a
user who was in training this reproduces the trained factors (in double precision, as Spark
solves; Spark stores the result as float32). `implicit`'s `recalculate_user` solves the same system
when given confidences 1 + alpha * r and regularization reg_param * n.

Pure NumPy: it runs on the executors inside the scorer's Arrow batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FoldIn", "FoldInParams", "fold_in", "gram"]


@dataclass(frozen=True)
class FoldInParams:
    """The model's own `alpha` and `reg_param` (from its metadata): fold-in must solve the system
    the model was trained with, whatever tonight's configuration says."""

    alpha: float
    reg_param: float

    def with_items(self, factors: np.ndarray) -> "FoldIn":
        return FoldIn(self.alpha, self.reg_param, gram(factors))


@dataclass(frozen=True)
class FoldIn:
    """What the user step needs besides the user's ratings: `alpha`, `reg_param` and `YtY`
    (rank x rank, float64) of the item factors, computed once and broadcast with them."""

    alpha: float
    reg_param: float
    yty: np.ndarray


def gram(factors: np.ndarray) -> np.ndarray:
    """YtY of item factors (items x rank), accumulated in float64 as Spark does."""
    as_double = np.asarray(factors, dtype=np.float64)
    return as_double.T @ as_double


def fold_in(
    factors: np.ndarray, lengths: np.ndarray, positions: np.ndarray, ratings: np.ndarray, spec: FoldIn
) -> tuple[np.ndarray, np.ndarray]:
    """Factors for a batch of users, and which users could be folded in.

    `lengths[u]` ratings per user, laid end to end in `positions` (row of the item in `factors`,
    -1 for an item the model does not know: skipped) and `ratings`. A user with no positive rating
    on a known item cannot be folded in (`solved[u]` False; that row of the result is zeros):
    the system would carry no preference at all.
    """
    users, rank = len(lengths), factors.shape[1]
    result = np.zeros((users, rank), dtype=np.float32)
    solved = np.zeros(users, dtype=bool)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    systems, rights, which = [], [], []
    for user in range(users):
        where = positions[starts[user]:ends[user]]
        values = np.asarray(ratings[starts[user]:ends[user]], dtype=np.float64)
        known = where >= 0
        where, values = where[known], values[known]
        positive = values > 0
        if not positive.any():
            continue
        y = factors[where].astype(np.float64)
        c1 = spec.alpha * np.abs(values)
        a = spec.yty + (y.T * c1) @ y
        a[np.diag_indices(rank)] += spec.reg_param * positive.sum()
        systems.append(a)
        rights.append(y[positive].T @ (1.0 + c1[positive]))
        which.append(user)
    if which:
        # One batched solve; A is symmetric positive definite (YtY + a positive diagonal).
        answers = np.linalg.solve(np.stack(systems), np.stack(rights)[..., None])[..., 0]
        result[which] = answers
        solved[which] = True
    return result, solved
