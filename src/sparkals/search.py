"""Tune's search: every trial on one holdout built once.

The split, the relevance sets, the audience, the indexes and the training ratings per event type
are built and cached once (`prepare`); a trial (`run_trial`) only weights and transforms the
cached ratings, trains ALS and measures it through the same scoring and metrics as
`evaluate_holdout`, so a trial's score is what `sparkals evaluate` reports for its settings.
`search` lets optuna's TPE sampler pick the settings, `tune.parallelism` trials at a time (Spark
runs jobs from parallel threads side by side). Trains ALS: an action by nature, like `fit_model`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.util import inheritable_thread_target

from sparkals.config import ALSSettings, EvaluateSettings, RatingsSettings, TuneSettings
from sparkals.driver_measure import TestSample, collect_sample, fits_on_driver, measure_model
from sparkals.errors import PipelineError
from sparkals.evaluate import FittedModel, measure, model_lists, relevance
from sparkals.popularity import popularity_scores
from sparkals.ratings import build_indexes, filter_pairs
from sparkals.split import Holdout
from sparkals.train import train_als
from sparkals.tuning import TrialParams, event_columns, event_ratings, sample_params, trial_ratings
from sparkals.vocabulary import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

__all__ = ["OPTUNA_MISSING", "TrialOutcome", "TuneHoldout", "prepare", "require_optuna", "run_trial", "search"]

log = logging.getLogger(__name__)

OPTUNA_MISSING = "sparkals tune needs optuna: pip install 'sparkals[tune]'"


def require_optuna() -> Any:
    """optuna, imported only by tune (an optional extra), with its per-trial INFO lines silenced:
    tune logs its own line per trial."""
    try:
        import optuna
    except ImportError as err:
        raise PipelineError(OPTUNA_MISSING) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class TuneHoldout:
    """What every trial shares, cached: the indexed training ratings per event type (`user_idx`,
    `item_idx`, one column per type of `event_types`), the index tables, the popularity counts
    `FittedModel` carries, and the relevance sets and audience of the test period; `sample`, the
    same relevance sets on the driver when they fit `evaluate.driver_max_cells` (else None)."""

    event_types: tuple[str, ...]
    indexed: DataFrame
    users: DataFrame
    items: DataFrame
    item_users: DataFrame
    truth: DataFrame
    seen: DataFrame
    audience: DataFrame
    pairs: int
    n_items: int
    sample: TestSample | None = None

    def unpersist(self) -> None:
        for frame in (self.indexed, self.users, self.items, self.item_users, self.truth, self.seen, self.audience):
            frame.unpersist()


def prepare(
    holdout: Holdout, ratings: RatingsSettings, settings: EvaluateSettings, as_of: dt.date,
    excluded: DataFrame | None = None,
) -> TuneHoldout:
    """Build and cache what the trials share, as `evaluate_holdout` builds it for one run:
    `build_ratings`' aggregation and filters with the weights left apart (every event type of
    `ratings.weights`), indexed by `build_indexes`, and the relevance sets and audience of
    `relevance` restricted to the users with a training rating."""
    event_types = tuple(ratings.weights)
    summed = event_ratings(holdout.train, event_types, as_of, ratings.half_life_days)
    pairs = filter_pairs(summed, ratings, excluded).cache()
    users, items = (index.cache() for index in build_indexes(pairs))
    all_truth, seen = relevance(holdout, settings)
    truth, seen = all_truth.join(users.select(USER_ID), USER_ID, "left_semi").cache(), seen.cache()
    audience = truth.select(USER_ID).distinct().cache()
    indexed = (
        pairs.join(users, USER_ID).join(items, ITEM_ID)
        .select(USER_IDX, ITEM_IDX, *event_columns(event_types))
        .cache()
    )
    count = indexed.count()
    item_users = popularity_scores(pairs).cache()
    item_users.count()
    pairs.unpersist()
    n_items = items.count()
    sample = None
    if fits_on_driver(audience.count(), n_items, settings.driver_max_cells):
        sample = collect_sample(truth, seen if settings.exclude_seen else None, users, items)
    log.info("tune: trials list and measure %s", "on the driver" if sample is not None else "in Spark jobs")
    return TuneHoldout(event_types, indexed, users, items, item_users, truth, seen, audience, count, n_items, sample)


@dataclass(frozen=True)
class TrialOutcome:
    score: float
    metrics: dict[str, Any]
    train_seconds: float


def run_trial(
    data: TuneHoldout, params: TrialParams, ratings: RatingsSettings, als: ALSSettings, settings: EvaluateSettings
) -> TrialOutcome:
    """Train ALS on the shared ratings weighted and transformed as `params` say, score the
    audience with the shared indexes and measure: `evaluate_holdout`'s ALS numbers for
    `params` over the configured `ratings` and `als` settings (on the driver when `data.sample`
    holds the relevance sets there)."""
    rated = trial_ratings(data.indexed, data.event_types, params.ratings(ratings))
    trained = train_als(rated, params.als(als))
    if data.sample is not None:
        metrics = measure_model(trained.model, data.sample, settings.ks, data.n_items)
    else:
        fitted = FittedModel(trained.model, data.users, data.items, data.pairs, trained.seconds, data.item_users)
        mask = data.seen if settings.exclude_seen else None
        lists = {"als": model_lists(fitted, data.audience, mask, max(settings.ks))}
        metrics = measure(lists, data.truth, settings.ks, data.n_items)["als"]
    return TrialOutcome(metrics[str(settings.metric_k)][settings.metric], metrics, trained.seconds)


class _Progress:
    """The finished trials, in the order they end, and the one log line each."""

    def __init__(self, total: int, metric: str, weights_searched: tuple[str, ...]) -> None:
        self.total, self.metric, self.weights_searched = total, metric, weights_searched
        self.done: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, sampled: int, params: TrialParams, outcome: TrialOutcome, seconds: float) -> None:
        with self._lock:
            number = len(self.done) + 1
            self.done.append({
                "number": number, "sampled": sampled, "parameters": params.as_dict(), "score": outcome.score,
                "metrics": outcome.metrics, "train_seconds": round(outcome.train_seconds, 3),
                "seconds": round(seconds, 3),
            })
            best = max(self.done, key=lambda t: (t["score"], -t["parameters"]["rank"]))
            weights = "".join(f" {name}={params.weights[name]:.3g}" for name in self.weights_searched)
            log.info(
                "tune: trial %d/%d rank=%d reg_param=%.4g alpha=%.4g confidence=%s%s %s=%.5f "
                "(best so far %.5f, trial %d) in %.1f s",
                number, self.total, params.rank, params.reg_param, params.alpha, params.confidence, weights,
                self.metric, outcome.score, best["score"], best["number"], seconds,
            )


def search(
    data: TuneHoldout, tune: TuneSettings, ratings: RatingsSettings, als: ALSSettings, settings: EvaluateSettings
) -> list[dict[str, Any]]:
    """`tune.trials` trials picked by TPE (seeded with `tune.seed`), `tune.parallelism` at a
    time; every trial's record (`number` in the order they ended, `sampled` in the order optuna
    sampled them, `parameters`, `score`, `metrics`, `seconds`), in the order they ended."""
    optuna = require_optuna()
    searched = tuple(list(ratings.weights)[1:]) if tune.search_weights else ()
    progress = _Progress(tune.trials, f"{settings.metric}@{settings.metric_k}", searched)

    def objective(trial: Any) -> float:
        started = time.perf_counter()
        params = sample_params(trial, tune, ratings.weights)
        outcome = run_trial(data, params, ratings, als, settings)
        progress.record(trial.number + 1, params, outcome, time.perf_counter() - started)
        return outcome.score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=tune.seed))
    # optuna runs parallel trials in threads of its own; Spark's local properties (the stage's job
    # group) live per thread, so each trial takes the caller's, captured here.
    spark = SparkSession.getActiveSession()
    study.optimize(inheritable_thread_target(spark)(objective) if spark is not None else objective,
                   n_trials=tune.trials, n_jobs=tune.parallelism)
    return progress.done
