"""The pure part of `sparkals tune`: ratings kept apart per event type, so that a trial's ratings
are one select (Σ weight × column) instead of a new aggregation, and the search space a trial
samples its settings from.

The per-event-type table goes through the same filters as `build_ratings` (they count pairs,
not weights), so a trial's ratings equal what `build_ratings` gives for the same settings: exactly
when the per-type sums are whole numbers (no decay, whole quantities), else up to the rounding of
weight × Σ against Σ weight × (relative 1e-15).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkals.config import ALSSettings, RatingsSettings, TuneSettings
from sparkals.ratings import confidence, event_value, positive_only
from sparkals.vocabulary import EVENT, ITEM_ID, ITEM_IDX, RATING, USER_ID, USER_IDX, require_columns

__all__ = ["TrialParams", "event_columns", "event_ratings", "sample_params", "trial_ratings"]


def event_columns(events: Sequence[str]) -> list[str]:
    """The column of each event type in the per-event-type table, by position (`rating_0`, ...):
    event names come from the configuration and may hold any character."""
    return [f"{RATING}_{i}" for i in range(len(events))]


def event_ratings(
    events: DataFrame, event_types: Sequence[str], run_date: dt.date | None = None, half_life_days: float = 0.0
) -> DataFrame:
    """(`user_id`, `item_id`, one column per event type): each the sum of quantity × decay of the
    pair's events of that type, i.e. `aggregate_ratings` with weight 1 for each type separately.
    Types not listed are ignored, as `aggregate_ratings` ignores types without a weight."""
    require_columns(events, [USER_ID, ITEM_ID, EVENT], "event_ratings")
    value = event_value(events, F.lit(1.0), run_date, half_life_days)
    sums = [
        F.sum(F.when(F.col(EVENT) == F.lit(name), value).otherwise(F.lit(0.0))).alias(column)
        for name, column in zip(event_types, event_columns(event_types))
    ]
    return events.filter(F.col(EVENT).isin(list(event_types))).groupBy(USER_ID, ITEM_ID).agg(*sums)


def _weighted_sum(event_types: Sequence[str], weights: Mapping[str, float]) -> Column:
    columns = event_columns(event_types)
    terms = [F.lit(float(weights[name])) * F.col(column) for name, column in zip(event_types, columns)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def trial_ratings(indexed: DataFrame, event_types: Sequence[str], settings: RatingsSettings) -> DataFrame:
    """(`user_idx`, `item_idx`, `rating`) for one trial from the indexed per-event-type table:
    rating = Σ weight × column (a select: no shuffle), then the trial's confidence transform, then
    `positive_only` as in `build_ratings`. (A user whose ratings all drop there keeps their index
    here but gets no factors in that trial, where `build_ratings` would leave them out of the index:
    the scores agree, the indexes may not.)"""
    missing = [name for name in event_types if name not in settings.weights]
    if missing:
        raise ValueError(f"trial_ratings has no weight for event type {', '.join(missing)}")
    require_columns(indexed, [USER_IDX, ITEM_IDX, *event_columns(event_types)], "trial_ratings")
    rated = indexed.select(USER_IDX, ITEM_IDX, _weighted_sum(event_types, settings.weights).alias(RATING))
    return positive_only(confidence(
        rated, settings.confidence, settings.epsilon, settings.bm25_k1, settings.bm25_b, user_col=USER_IDX,
        item_col=ITEM_IDX,
    ))


@dataclass(frozen=True)
class TrialParams:
    """The settings one trial tries; everything else comes from the configuration."""

    rank: int
    reg_param: float
    alpha: float
    confidence: str
    weights: dict[str, float]

    def ratings(self, base: RatingsSettings) -> RatingsSettings:
        return dataclasses.replace(base, confidence=self.confidence, weights=dict(self.weights))

    def als(self, base: ALSSettings) -> ALSSettings:
        return dataclasses.replace(base, rank=self.rank, reg_param=self.reg_param, alpha=self.alpha)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


WEIGHT_PREFIX = "weight."  # search-space names of the event weights: weight.addtocart, ...


def sample_params(trial: Any, settings: TuneSettings, weights: Mapping[str, float]) -> TrialParams:
    """Ask an optuna trial for one point of the search space: rank and confidence transform among
    the listed ones, reg_param and alpha log-uniform in their ranges and, with `search_weights`,
    the weight of every event type but the first log-uniform in `weight_range`. The first keeps
    its configured weight as the scale: with raw ratings, multiplying every weight by c is the
    same as multiplying alpha by c, so searching it too would only add a redundant direction."""
    rank = trial.suggest_categorical("rank", list(settings.ranks))
    reg_param = trial.suggest_float("reg_param", *settings.reg_param_range, log=True)
    alpha = trial.suggest_float("alpha", *settings.alpha_range, log=True)
    transform = trial.suggest_categorical("confidence", list(settings.confidences))
    searched = dict(weights)
    if settings.search_weights:
        for name in list(weights)[1:]:
            searched[name] = trial.suggest_float(f"{WEIGHT_PREFIX}{name}", *settings.weight_range, log=True)
    return TrialParams(rank=rank, reg_param=reg_param, alpha=alpha, confidence=transform, weights=searched)
