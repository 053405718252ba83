"""Offline evaluation: learn on a split's past exactly as production does, score the test users
through the production scoring call, and measure ALS and the popularity baselines on the same
relevance set.

Pure DataFrame work except `fit_model` (which trains ALS, an action by nature); the stages read
the events and write the reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkals.config import ALSSettings, EvaluateSettings, RatingsSettings
from sparkals.driver_measure import (
    TestSample, collect_sample, fits_on_driver, measure_model, metrics_of, popularity_lists,
)
from sparkals.metrics import catalogue_coverage_of, exclude_seen_truth, ranking_metrics_of
from sparkals.popularity import popular_items, popularity_recs, popularity_scores, top_items
from sparkals.ratings import build_indexes, build_ratings, index_ratings
from sparkals.recommend import recommend_top_n
from sparkals.split import Holdout, user_items
from sparkals.train import train_als
from sparkals.vocabulary import EVENT, EVENT_DATE, ITEM_ID, RANK, USER_ID

__all__ = ["BASELINES", "FittedModel", "baseline_candidates", "baseline_lists", "evaluate_holdout", "fit_model",
           "measure", "measure_on_driver", "model_lists", "relevance", "relevant_counts"]

log = logging.getLogger(__name__)

BASELINES = ("popular", "recent_popular")


@dataclass(frozen=True)
class FittedModel:
    """A model trained on a split's training events, with the indexes it was trained with."""

    model: ALSModel
    users: DataFrame
    items: DataFrame
    ratings: int
    train_seconds: float
    # (`item_id`, `score` = users who rated it): the popularity baseline's counts, taken from the
    # training ratings while they are cached (one row per user and item: a count, no shuffle).
    item_users: DataFrame


def fit_model(
    train_events: DataFrame, ratings: RatingsSettings, als: ALSSettings, as_of: dt.date,
    excluded: DataFrame | None = None,
) -> FittedModel:
    """Ratings, indexes and ALS exactly as the nightly job builds them, from the training events only."""
    rated = build_ratings(train_events, ratings, as_of, excluded).cache()
    users, items = (index.cache() for index in build_indexes(rated))
    indexed = index_ratings(rated, users, items).cache()
    count = indexed.count()
    item_users = popularity_scores(rated).cache()
    item_users.count()
    result = train_als(indexed, als)
    indexed.unpersist()
    rated.unpersist()
    return FittedModel(result.model, users, items, count, result.seconds, item_users)


def model_lists(fitted: FittedModel, audience: DataFrame, seen: DataFrame | None, n: int) -> DataFrame:
    """Top-n (`user_id`, `item_id`, `rank`) for the `audience` users that have factors, with their
    `seen` pairs masked out when given: the production scoring call, without the fallback."""
    recs = recommend_top_n(fitted.model, audience.select(USER_ID).distinct(), fitted.users, fitted.items, n, seen=seen)
    return recs.select(USER_ID, ITEM_ID, RANK)


def relevance(holdout: Holdout, settings: EvaluateSettings, exclude: bool = True) -> tuple[DataFrame, DataFrame]:
    """(`truth`, `seen`): the held-out (user_id, item_id) pairs of relevant event types and the
    evaluated users' training pairs; with `exclude_seen` (and `exclude`), what a user already had
    is not relevant (a user left with nothing relevant is not evaluated). `exclude=False` leaves
    that to the caller (`collect_sample` does it on the driver).

    With `max_test_users`, only that many test users, picked by a hash of their id (the same
    users on every run, so nights and trials compare like with like) before anything else is
    joined: every later join (seen pairs, masks, baselines) is then bounded by that number and
    broadcast, whatever the size of the log.
    """
    relevant = holdout.test.filter(F.col(EVENT).isin(list(settings.relevant_events)))
    truth = user_items(relevant)
    test_users = truth.select(USER_ID).distinct()
    if settings.max_test_users:
        test_users = test_users.orderBy(F.xxhash64(USER_ID), USER_ID).limit(settings.max_test_users)
        truth = truth.join(test_users, USER_ID, "left_semi")
    seen = user_items(holdout.train.join(test_users, USER_ID, "left_semi"))
    if settings.exclude_seen and exclude:
        truth = exclude_seen_truth(truth, seen)
    return truth, seen


def baseline_candidates(holdout: Holdout, item_users: DataFrame, n: int, recent_days: int) -> dict[str, DataFrame]:
    """Each baseline's ranking (`item_id`, `rank`, `score`), long enough that masking a user's seen
    items still leaves n: most popular overall (most users in the training ratings, `item_users`:
    what ALS learned from) and most popular over the last `recent_days` before the test period
    (distinct users in the events of those days)."""
    until = holdout.cutoff or holdout.train.agg(F.max(EVENT_DATE)).first()[0]
    since = until - dt.timedelta(days=recent_days) if until else None
    candidates = n + 200
    return {
        "popular": top_items(item_users, candidates),
        "recent_popular": popular_items(holdout.train, candidates, since=since),
    }


def baseline_lists(
    holdout: Holdout, item_users: DataFrame, audience: DataFrame, seen: DataFrame | None, n: int, recent_days: int
) -> dict[str, DataFrame]:
    """The baselines' top-n for every `audience` user, their `seen` items skipped."""
    return {
        name: popularity_recs(audience, ranking, n, seen)
        for name, ranking in baseline_candidates(holdout, item_users, n, recent_days).items()
    }


def measure_on_driver(
    fitted: FittedModel, holdout: Holdout, sample: TestSample, settings: EvaluateSettings, n_items: int,
    with_baselines: bool,
) -> dict[str, Any]:
    """`measure`'s numbers for ALS (and the baselines) from the same lists built on the driver
    (driver_measure.py), for a `sample` (`collect_sample`) within `evaluate.driver_max_cells`."""
    started = time.perf_counter()
    n = max(settings.ks)
    systems = {"als": measure_model(fitted.model, sample, settings.ks, n_items)}
    if with_baselines:
        rankings = baseline_candidates(holdout, fitted.item_users, n, settings.recent_days)
        for name, listed in popularity_lists(rankings, fitted.items, sample, n).items():
            systems[name] = metrics_of(listed, sample, settings.ks, n_items)
    log.info("evaluate: %s listed and measured in %.1f s (on the driver)", ", ".join(systems),
             time.perf_counter() - started)
    return systems


def measure(lists: dict[str, DataFrame], truth: DataFrame, ks: list[int], n_items: int) -> dict[str, Any]:
    """Every metric at every K for each system, plus catalogue coverage at each K: two Spark actions
    for all the systems together (per-job overhead, not data, is what an evaluation pays most for)."""
    started = time.perf_counter()
    cached = {name: recs.cache() for name, recs in lists.items()}
    try:
        metrics = ranking_metrics_of(cached, truth, ks)
        coverage = catalogue_coverage_of(cached, ks, n_items)
    finally:
        for recs in cached.values():
            recs.unpersist()
    results: dict[str, Any] = {}
    for name in lists:
        for k, share in coverage[name].items():
            metrics[name][k]["coverage"] = share
        results[name] = {str(k): values for k, values in metrics[name].items()}
    log.info("evaluate: %s listed and measured in %.1f s", ", ".join(lists), time.perf_counter() - started)
    return results


def relevant_counts(all_truth: DataFrame, users: DataFrame) -> dict[str, int]:
    """Of the relevant pairs `all_truth`: `users`, their distinct users; `known_users`, those with a
    training rating (an index row in `users`): the evaluated test users; `pairs`, the relevant
    pairs of those. One Spark action for the three (the evaluation's count of test users and the
    report's)."""
    known = users.select(USER_ID, F.lit(1).alias("_known"))
    per_user = all_truth.join(known, USER_ID, "left").groupBy(USER_ID).agg(F.count("_known").alias("_pairs"))
    row = per_user.agg(
        F.count("*").alias("users"), F.count(F.when(F.col("_pairs") > 0, 1)).alias("known_users"),
        F.sum("_pairs").alias("pairs"),
    ).first()
    return {"users": int(row["users"]), "known_users": int(row["known_users"]), "pairs": int(row["pairs"] or 0)}


def evaluate_holdout(
    holdout: Holdout, ratings: RatingsSettings, als: ALSSettings, settings: EvaluateSettings, as_of: dt.date,
    with_baselines: bool = True, excluded: DataFrame | None = None, fitted: FittedModel | None = None,
) -> dict[str, Any]:
    """Train on the holdout's past (or take `fitted`, a model that already learned exactly that),
    score its test users, and measure ALS (and the baselines).

    Every system is measured on the same users: the test users with a training rating, the ones
    ALS can personalise. Test users new since the cutoff get the fallback in production whichever
    model serves, so they say nothing about the model; the report counts them (`cold_test_users`).
    """
    if fitted is None:
        fitted = fit_model(holdout.train, ratings, als, as_of, excluded)
        how = f"trained on {fitted.ratings:,} training ratings in {fitted.train_seconds:.1f} s"
    else:
        how = f"of {fitted.ratings:,} training ratings, trained before"
    log.info("evaluate: ALS %s; listing and measuring %s", how,
             ", ".join(["als", *BASELINES] if with_baselines else ["als"]))
    n_items = fitted.items.count()
    if settings.max_test_users and fits_on_driver(settings.max_test_users, n_items, settings.driver_max_cells):
        systems, relevant = _measure_sample(fitted, holdout, settings, n_items, with_baselines)
    else:
        systems, relevant = _measure_counted(fitted, holdout, settings, n_items, with_baselines)
    test_users = relevant["known_users"]
    key = str(settings.metric_k)
    headline = systems["als"][key][settings.metric]
    train_events, test_events = holdout.sizes
    report = {
        "split": holdout.describe(),
        "metric": f"{settings.metric}@{settings.metric_k}",
        "headline": headline,
        "systems": systems,
        "data": {
            "train_events": train_events,
            "test_events": test_events,
            "train_ratings": fitted.ratings,
            "train_users": fitted.users.count(),
            "train_items": n_items,
            "test_users": test_users,
            "cold_test_users": relevant["users"] - test_users,
            "relevant_pairs": relevant["pairs"],
        },
        "parameters": {"als": dataclasses.asdict(als), "ratings": dataclasses.asdict(ratings)},
        "train_seconds": round(fitted.train_seconds, 3),
    }
    if with_baselines:
        report["lift"] = {
            name: (headline / systems[name][key][settings.metric] - 1.0) if systems[name][key][settings.metric] else None
            for name in BASELINES
        }
    for frame in (fitted.users, fitted.items, fitted.item_users):
        frame.unpersist()
    return report


def _measure_sample(
    fitted: FittedModel, holdout: Holdout, settings: EvaluateSettings, n_items: int, with_baselines: bool
) -> tuple[dict[str, Any], dict[str, int]]:
    """Every system measured on the driver, and `relevant_counts`' numbers, from one collect of the
    relevance sets: for a test sample bounded (`max_test_users`) within `driver_max_cells`. At 100k
    events the collect runs 9 Spark jobs, where counting the cached sets, then collecting the truth
    and the seen pairs apart, ran 24."""
    truth, seen = relevance(holdout, settings, exclude=False)
    sample = collect_sample(truth, seen if settings.exclude_seen else None, fitted.users, fitted.items)
    return measure_on_driver(fitted, holdout, sample, settings, n_items, with_baselines), sample.relevant_counts()


def _measure_counted(
    fitted: FittedModel, holdout: Holdout, settings: EvaluateSettings, n_items: int, with_baselines: bool
) -> tuple[dict[str, Any], dict[str, int]]:
    """Every system measured, and `relevant_counts`' numbers, when the sample is not bounded within
    `driver_max_cells` beforehand: the test users are counted first, then measured on the driver if
    they fit after all, in Spark jobs if not."""
    all_truth, seen = relevance(holdout, settings)
    # The relevance sets are computed once, into the cache, by the counts: every use below reads them.
    all_truth = all_truth.cache()
    relevant = relevant_counts(all_truth, fitted.users)
    truth = all_truth.join(fitted.users.select(USER_ID), USER_ID, "left_semi").cache()
    seen = seen.cache()
    mask = seen if settings.exclude_seen else None
    try:
        if fits_on_driver(relevant["known_users"], n_items, settings.driver_max_cells):
            sample = collect_sample(truth, mask, fitted.users, fitted.items)
            return measure_on_driver(fitted, holdout, sample, settings, n_items, with_baselines), relevant
        audience = truth.select(USER_ID).distinct().cache()
        n = max(settings.ks)
        lists = {"als": model_lists(fitted, audience, mask, n)}
        if with_baselines:
            lists.update(baseline_lists(holdout, fitted.item_users, audience, mask, n, settings.recent_days))
        systems = measure(lists, truth, settings.ks, n_items)
        audience.unpersist()
        return systems, relevant
    finally:
        for frame in (all_truth, truth, seen):
            frame.unpersist()
