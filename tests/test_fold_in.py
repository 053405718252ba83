"""Fold-in: a user's factors solved from the fixed item factors as ALS's implicit user step solves
them. Reference: Spark's own trained user factors (ALS ends every iteration with the user step, so
folding in a trained user against the final item factors must give its trained factors back), a
textbook NumPy solve of the same least squares, and `implicit`'s `recalculate_user`."""

from __future__ import annotations

import types

import numpy as np
import pytest
from pyspark.sql import functions as F

from sparkals.config import ALSSettings
from sparkals.fold_in import FoldInParams, fold_in
from sparkals.recommend import model_mismatch, recommend_top_n
from sparkals.score import ALS_SOURCE, FALLBACK_SOURCE, FOLD_IN_SOURCE
from sparkals.train import train_als

ALPHA, REG = 4.0, 0.05


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A small implicit ALS model, its ratings, and its factors as NumPy arrays."""
    spark.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("fold_in_checkpoints")))
    rng = np.random.default_rng(7)
    rows = [
        (user, int(item), float(rng.gamma(1.0, 2.0)))
        for user in range(80)
        for item in rng.choice(50, size=rng.integers(2, 15), replace=False)
    ]
    ratings = spark.createDataFrame(rows, "user_idx int, item_idx int, rating float")
    settings = ALSSettings(rank=6, max_iter=6, reg_param=REG, alpha=ALPHA, num_user_blocks=2, num_item_blocks=2)
    model = train_als(ratings, settings).model
    items = model.itemFactors.orderBy("id").toPandas()
    users = model.userFactors.orderBy("id").toPandas()
    return types.SimpleNamespace(
        model=model, rows=rows, ratings=ratings,
        item_ids=items["id"].to_numpy(), item_factors=np.array(items["features"].tolist(), dtype=np.float32),
        user_ids=users["id"].to_numpy(), user_factors=np.array(users["features"].tolist(), dtype=np.float32),
    )


def _flat_histories(trained, user_ids):
    """The users' ratings laid end to end, as the scorer hands them to `fold_in`."""
    position = {int(item): row for row, item in enumerate(trained.item_ids)}
    by_user: dict[int, list[tuple[int, float]]] = {}
    for user, item, rating in trained.rows:
        by_user.setdefault(user, []).append((position[item], np.float32(rating)))
    lengths = np.array([len(by_user[u]) for u in user_ids])
    positions = np.array([p for u in user_ids for p, _ in by_user[u]])
    ratings = np.array([r for u in user_ids for _, r in by_user[u]], dtype=np.float32)
    return by_user, lengths, positions, ratings


def _relative_error(got, expected):
    return np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)


def test_fold_in_of_a_trained_user_gives_back_its_trained_factors(trained):
    _, lengths, positions, ratings = _flat_histories(trained, trained.user_ids)
    spec = FoldInParams(ALPHA, REG).with_items(trained.item_factors)
    got, solved = fold_in(trained.item_factors, lengths, positions, ratings, spec)
    assert solved.all()
    assert _relative_error(got, trained.user_factors).max() < 1e-3
    # Not true of any solve: the model's alpha is part of the answer.
    other, _ = fold_in(trained.item_factors, lengths, positions, ratings, FoldInParams(ALPHA * 2, REG).with_items(
        trained.item_factors))
    assert _relative_error(other, trained.user_factors).max() > 1e-2


def test_fold_in_equals_a_textbook_solve_and_implicits_recalculate_user(trained):
    implicit = pytest.importorskip("implicit.cpu.als", reason="implicit is in the test extra")
    by_user, lengths, positions, ratings = _flat_histories(trained, trained.user_ids[:10])
    got, _ = fold_in(trained.item_factors, lengths, positions, ratings,
                     FoldInParams(ALPHA, REG).with_items(trained.item_factors))
    y = trained.item_factors.astype(np.float64)
    reference = implicit.AlternatingLeastSquares(factors=y.shape[1], alpha=1.0, random_state=0)
    reference.item_factors = trained.item_factors.copy()
    reference.user_factors = np.zeros((1, y.shape[1]), dtype=np.float32)
    for row, user in enumerate(trained.user_ids[:10]):
        history = by_user[int(user)]
        # Hu, Koren & Volinsky over every item: confidence 1 + alpha*r where rated, 1 elsewhere;
        # preference 1 where rated; regularisation weighted by the user's ratings (ALS-WR, as Spark).
        confidence = np.ones(len(y))
        preference = np.zeros(len(y))
        for position, rating in history:
            confidence[position] = 1.0 + ALPHA * rating
            preference[position] = 1.0
        a = y.T @ (confidence[:, None] * y) + REG * len(history) * np.eye(y.shape[1])
        textbook = np.linalg.solve(a, y.T @ (confidence * preference))
        assert _relative_error(got[row:row + 1], textbook[None, :]).max() < 1e-5
        # implicit reads confidence c as given (A += (c - 1) y y^T, b += c y) and a fixed regularisation.
        from scipy.sparse import csr_matrix

        cols = [position for position, _ in history]
        values = [1.0 + ALPHA * rating for _, rating in history]
        reference.regularization = REG * len(history)
        recalculated = reference.recalculate_user(0, csr_matrix((values, ([0] * len(cols), cols)), shape=(1, len(y))))
        assert _relative_error(got[row:row + 1], np.asarray(recalculated)[None, :]).max() < 1e-3


def test_users_without_a_positive_rating_on_a_known_item_are_not_folded_in(trained):
    spec = FoldInParams(ALPHA, REG).with_items(trained.item_factors)
    lengths = np.array([2, 1, 0])
    positions = np.array([-1, -1, 3])  # user 0: unknown items only; user 1: a known item rated 0
    ratings = np.array([1.0, 1.0, 0.0], dtype=np.float32)
    _, solved = fold_in(trained.item_factors, lengths, positions, ratings, spec)
    assert solved.tolist() == [False, False, False]


def test_the_scorer_folds_in_users_without_factors_and_gives_them_the_als_list(spark, trained):
    """Take users 0-4's factors away from the model: folded in from their ratings, they get the
    list their trained factors give, item for item; a user whose items the model does not know
    gets the fallback."""
    absent = [0, 1, 2, 3, 4]
    without = types.SimpleNamespace(
        itemFactors=trained.model.itemFactors,
        userFactors=trained.model.userFactors.filter(~F.col("id").isin(absent)),
    )
    users = spark.createDataFrame([(f"u{u}", u) for u in range(81)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"i{i}", i) for i in range(51)], "item_id string, item_idx int")
    ratings = trained.ratings.unionByName(spark.createDataFrame([(80, 50, 3.0)], "user_idx int, item_idx int, rating float"))
    audience = spark.createDataFrame([(f"u{u}",) for u in [*absent, 5, 6, 80]], "user_id string")
    fallback = spark.createDataFrame([(i, float(100 - i)) for i in range(50)], "item_idx int, score double")
    seen = trained.ratings.filter(F.col("rating") > 3).select(
        F.concat(F.lit("u"), F.col("user_idx")).alias("user_id"), F.concat(F.lit("i"), F.col("item_idx")).alias("item_id"))
    common = dict(seen=seen, fallback=fallback, ratings=ratings, fold_in=FoldInParams(ALPHA, REG))

    folded = recommend_top_n(without, audience, users, items, 5, **common).toPandas()
    full = recommend_top_n(trained.model, audience, users, items, 5, **common).toPandas()

    sources = folded.groupby("user_id")["source"].first().to_dict()
    assert sources == {**{f"u{u}": FOLD_IN_SOURCE for u in absent}, "u5": ALS_SOURCE, "u6": ALS_SOURCE,
                       "u80": FALLBACK_SOURCE}
    assert set(full["source"]) == {ALS_SOURCE, FALLBACK_SOURCE}
    key = ["user_id", "rank"]
    mine, theirs = folded.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True)
    assert mine["item_id"].tolist() == theirs["item_id"].tolist()
    assert np.allclose(mine["score"], theirs["score"], rtol=1e-4)
    seen_pairs = set(map(tuple, seen.toPandas().itertuples(index=False)))
    assert not seen_pairs & set(zip(folded["user_id"], folded["item_id"]))

    off = recommend_top_n(without, audience, users, items, 5, seen=seen, fallback=fallback).toPandas()
    assert set(off[off["user_id"].isin([f"u{u}" for u in absent])]["source"]) == {FALLBACK_SOURCE}


def test_a_model_that_does_not_match_the_indexes_is_named(spark, trained):
    users = spark.createDataFrame([(f"u{u}", u) for u in range(80)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"i{i}", i) for i in range(50)], "item_id string, item_idx int")
    assert model_mismatch(trained.model, users, items, rank=6) is None
    assert "rank in its metadata is 8" in model_mismatch(trained.model, users, items, rank=8)
    fewer_items = items.filter(F.col("item_idx") < 45)
    assert "no entry in the item index" in model_mismatch(trained.model, users, fewer_items, rank=6)
    fewer_users = users.filter(F.col("user_idx") < 70)
    assert "user index ends at 69" in model_mismatch(trained.model, fewer_users, items, rank=6)
