"""Listing and measuring a test sample on the driver (driver_measure.py) gives the numbers of the
Spark path (`model_lists` through `recommend_top_n`, `popularity_recs`, then `measure`): the same
lists, the same metrics up to summation order, with seen items masked or not, users without
factors, and relevant, seen or popular items the index lacks; and `evaluate_holdout` reports the
same whichever path it takes."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from sparkals.config import ALSSettings, EvaluateSettings, IngestSettings, InputSettings, RatingsSettings
from sparkals.driver_measure import (
    collect_sample, fits_on_driver, measure_model, metrics_of, popularity_lists, top_items,
)
from sparkals.evaluate import FittedModel, evaluate_holdout, fit_model, measure, model_lists, relevant_counts
from sparkals.generate import GeneratorSpec, generate_events
from sparkals.ingest import accepted, parse_events
from sparkals.metrics import exclude_seen_truth
from sparkals.popularity import popularity_recs
from sparkals.split import split_events
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
    seen_rows += [(f"u{u}", f"x{900 + u % 3}") for u in range(0, 130, 8)]  # seen, not indexed
    truth_rows -= set(seen_rows)  # as `relevance` leaves them: what a user had is not relevant
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


def test_popularity_lists_of_several_rankings_equal_each_alone(spark, case):
    """The rankings share one Spark job: each still gets its own items, in its own order."""
    fitted, truth, seen = case
    sample = collect_sample(truth, seen, fitted.users, fitted.items)
    orders = {"forward": ["i3", "x900", *[f"i{i}" for i in range(5, 30)]],
              "backward": [*[f"i{i}" for i in range(30, 5, -1)], "y1", "i2"]}
    rankings = {name: spark.createDataFrame([(item, rank, 0.0) for rank, item in enumerate(order, 1)],
                                            "item_id string, rank int, score double")
                for name, order in orders.items()}
    together = popularity_lists(rankings, fitted.items, sample, 10)
    assert list(together) == ["forward", "backward"]
    for name, ranking in rankings.items():
        alone = popularity_lists({name: ranking}, fitted.items, sample, 10)[name]
        assert np.array_equal(together[name], alone)
    assert not np.array_equal(together["forward"], together["backward"])


@pytest.mark.parametrize("masked", [True, False], ids=["seen_masked", "nothing_masked"])
def test_popularity_lists_equal_popularity_recs(spark, case, masked):
    """Candidates with items the index lacks: x900 (relevant to some users, seen by others) and
    y1 (in neither), ranked among indexed ones."""
    fitted, truth, seen = case
    mask = seen if masked else None
    order = ["i3", "x900", "i7", "y1", "i1", "x901", *[f"i{i}" for i in range(8, 40)]]
    candidates = spark.createDataFrame([(item, rank, 100.0 - rank) for rank, item in enumerate(order, 1)],
                                       "item_id string, rank int, score double")
    audience = truth.select("user_id").distinct()
    n = max(KS)
    expected_lists = popularity_recs(audience, candidates, n, mask)
    expected = measure({"popular": expected_lists}, truth, KS, 60)["popular"]

    sample = collect_sample(truth, mask, fitted.users, fitted.items)
    listed = popularity_lists({"popular": candidates}, fitted.items, sample, n)["popular"]
    got = metrics_of(listed, sample, KS, 60)
    for k, values in expected.items():
        assert got[k] == pytest.approx(values, abs=1e-12), f"at K={k}"
    assert got["10"]["recall"] > 0  # x900 and the indexed items do hit
    users = {int(row.user_idx): row.user_id for row in fitted.users.collect()}
    code_to_id = {code: item_id for item_id, code in sample.outside.items()} | {i: f"i{i}" for i in range(60)}
    by_user: dict[str, list[str]] = {}
    for row in sorted(expected_lists.collect(), key=lambda r: (r.user_id, r.rank)):
        by_user.setdefault(row.user_id, []).append(row.item_id)
    for position, user in enumerate(sample.users):
        fresh = {code for code in listed[position] if code >= 0 and code not in code_to_id}
        assert len(fresh) <= 1  # y1, the one candidate the sample never met
        got_items = [code_to_id.get(int(code), "y1") for code in listed[position] if code >= 0]
        assert got_items == by_user[users[int(user)]]


def test_the_sample_holds_every_relevant_and_seen_pair(spark, case):
    fitted, truth, seen = case
    sample = collect_sample(truth, seen, fitted.users, fitted.items)
    assert len(sample.users) == truth.select("user_id").distinct().count()
    assert int(sample.truth_sizes.sum()) == truth.count()
    assert set(sample.outside) == {"x900", "x901", "x902"}  # every id the index lacks, once
    assert int((sample.truth_items >= 2**31).sum()) == truth.filter(F.col("item_id").startswith("x")).count()
    assert len(sample.seen_items) == seen.join(truth.select("user_id").distinct(), "user_id").distinct().count()


def test_the_sample_leaves_out_seen_pairs_and_counts_cold_users_as_relevant_counts_does(spark, case):
    """Relevant pairs as `relevance(exclude=False)` gives them: some also seen (not relevant), and
    users without an index (c1 keeps a relevant item; c2 had every one of its items: not counted);
    pairs given twice count once."""
    fitted, truth, seen = case
    extra_truth = [("u0", "i1"), ("u4", "x900"), ("c1", "i1"), ("c1", "x901"), ("c1", "x901"), ("c2", "i2"),
                   ("c2", "i5"), ("u1", "i7"), ("u1", "i7")]
    extra_seen = [("u0", "i1"), ("u4", "x900"), ("c1", "i1"), ("c2", "i2"), ("c2", "i5"), ("c2", "i5")]
    schema = "user_id string, item_id string"
    raw_truth = truth.unionByName(spark.createDataFrame(extra_truth, schema))
    raw_seen = seen.unionByName(spark.createDataFrame(extra_seen, schema))
    excluded = exclude_seen_truth(raw_truth.distinct(), raw_seen)
    expected = relevant_counts(excluded, fitted.users)

    sample = collect_sample(raw_truth, raw_seen, fitted.users, fitted.items)
    assert sample.cold_users == 1
    assert sample.relevant_counts() == expected
    codes = {row.item_id: row.item_idx for row in fitted.items.collect()} | sample.outside
    users = {row.user_id: row.user_idx for row in fitted.users.collect()}
    got_pairs = {(int(user), int(code)) for row, user in enumerate(sample.users)
                 for code in sample.truth_items[sample.truth_offsets[row]:sample.truth_offsets[row + 1]]}
    assert got_pairs == {(users[row.user_id], codes[row.item_id])
                         for row in excluded.collect() if row.user_id in users}

    unmasked = collect_sample(raw_truth, None, fitted.users, fitted.items)  # nothing seen: all relevant
    assert len(unmasked.truth_items) == raw_truth.distinct().join(fitted.users, "user_id").count()
    assert unmasked.cold_users == 2 and len(unmasked.seen_items) == 0


@pytest.mark.slow
def test_evaluate_holdout_reports_the_same_on_the_driver_and_in_spark_jobs(spark, tmp_path):
    spec = GeneratorSpec(users=300, items=120, events=10_000, seed=8, start=dt.date(2026, 7, 1), days=60)
    run_date = dt.date(2026, 8, 29)
    events = accepted(parse_events(generate_events(spark, spec), InputSettings(), IngestSettings(), run_date)).cache()
    settings = EvaluateSettings(test_days=10)
    holdout = split_events(events, settings, run_date)
    as_of = holdout.cutoff - dt.timedelta(days=1)
    ratings = RatingsSettings(min_item_users=3)  # some items of the log stay out of the index
    als = ALSSettings(rank=6, max_iter=4, num_user_blocks=2, num_item_blocks=2)
    fitted = fit_model(holdout.train, ratings, als, as_of)
    on_driver = evaluate_holdout(holdout, ratings, als, settings, as_of, fitted=fitted)
    in_spark = evaluate_holdout(holdout, ratings, als, dataclasses.replace(settings, driver_max_cells=0), as_of,
                                fitted=fitted)
    events.unpersist()
    assert on_driver["data"] == in_spark["data"]
    assert on_driver["systems"].keys() == in_spark["systems"].keys() == {"als", "popular", "recent_popular"}
    for system, at_k in in_spark["systems"].items():
        for k, values in at_k.items():
            assert on_driver["systems"][system][k] == pytest.approx(values, abs=1e-12), (system, k)
    assert on_driver["lift"] == pytest.approx(in_spark["lift"], abs=1e-9)


def test_only_samples_within_the_budget_go_to_the_driver():
    assert fits_on_driver(1000, 1000, 1_000_000)
    assert not fits_on_driver(1001, 1000, 1_000_000)
    assert not fits_on_driver(1, 1, 0)
