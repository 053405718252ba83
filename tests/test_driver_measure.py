"""Listing and measuring a test sample on the driver (driver_measure.py) gives the numbers of the
Spark path (`model_lists` through `recommend_top_n`, then `measure`): the same lists, the same
metrics up to summation order, with seen items masked or not, users without factors and relevant
items the index lacks."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from sparkals.config import ALSSettings
from sparkals.driver_measure import collect_sample, fits_on_driver, measure_model, top_items
from sparkals.evaluate import FittedModel, measure, model_lists
from sparkals.train import train_als

KS = [1, 3, 5, 10]


@pytest.fixture(scope="module")
def case(spark, tmp_path_factory):
    """A model of 120 users x 60 items, string ids; users u120..u129 are indexed without ratings
    (no factors); the truth holds items x900.. that the index lacks."""
    spark.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("driver_measure_checkpoints")))
    rng = np.random.default_rng(3)
    ratings = [
        (user, int(item), float(rng.gamma(1.0, 3.0)))
        for user in range(120) for item in rng.choice(60, size=rng.integers(1, 20), replace=False)
    ]
    rated = spark.createDataFrame(ratings, "user_idx int, item_idx int, rating float")
    model = train_als(rated, ALSSettings(rank=5, max_iter=5, reg_param=0.05, alpha=5.0,
                                         num_user_blocks=2, num_item_blocks=2)).model
    users = spark.createDataFrame([(f"u{u}", u) for u in range(130)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"i{i}", i) for i in range(60)], "item_id string, item_idx int")
    truth_rows = {(f"u{u}", f"i{int(i)}") for u in rng.choice(130, 90, replace=False)
                  for i in rng.choice(60, size=rng.integers(1, 8), replace=False)}
    truth_rows |= {(f"u{u}", f"x{900 + u % 3}") for u in range(0, 130, 4)}
    seen_rows = [(f"u{u}", f"i{i}") for u, i, _ in ratings if (u + i) % 3 == 0]
    truth = spark.createDataFrame(sorted(truth_rows), "user_id string, item_id string").cache()
    seen = spark.createDataFrame(seen_rows, "user_id string, item_id string").cache()
    fitted = FittedModel(model, users, items, len(ratings), 0.0, None)
    return fitted, truth, seen


@pytest.mark.parametrize("masked", [True, False], ids=["seen_masked", "nothing_masked"])
def test_driver_numbers_equal_the_spark_path(spark, case, masked):
    fitted, truth, seen = case
    mask = seen if masked else None
    audience = truth.select("user_id").distinct()
    lists = model_lists(fitted, audience, mask, max(KS))
    expected = measure({"als": lists}, truth, KS, 60)["als"]

    sample = collect_sample(truth, mask, fitted.users, fitted.items)
    got = measure_model(fitted.model, sample, KS, 60)
    assert got.keys() == expected.keys()
    for k, values in expected.items():
        assert got[k] == pytest.approx(values, abs=1e-12), f"at K={k}"
    assert 0 < got["10"]["users_with_recs"] < 1  # the users without factors are evaluated, with no list

    # The lists themselves, item for item and in order.
    listed = top_items(fitted.model, sample, max(KS))
    pairs = lists.join(fitted.users, "user_id").join(fitted.items, "item_id").select("user_idx", "item_idx", "rank")
    by_user: dict[int, list[int]] = {}
    for row in sorted(pairs.collect(), key=lambda r: (r.user_idx, r.rank)):
        by_user.setdefault(row.user_idx, []).append(row.item_idx)
    for position, user in enumerate(sample.users):
        assert [int(i) for i in listed[position] if i >= 0] == by_user.get(int(user), [])


def test_the_sample_holds_every_relevant_item_and_masks_only_known_ones(spark, case):
    fitted, truth, seen = case
    sample = collect_sample(truth, seen, fitted.users, fitted.items)
    assert len(sample.users) == truth.select("user_id").distinct().count()
    assert int(sample.truth_sizes.sum()) == truth.count()
    assert int((sample.truth_items == -1).sum()) == truth.filter(F.col("item_id").startswith("x")).count()
    assert len(sample.seen_items) == seen.join(truth.select("user_id").distinct(), "user_id").distinct().count()


def test_only_samples_within_the_budget_go_to_the_driver():
    assert fits_on_driver(1000, 1000, 1_000_000)
    assert not fits_on_driver(1001, 1000, 1_000_000)
    assert not fits_on_driver(1, 1, 0)
