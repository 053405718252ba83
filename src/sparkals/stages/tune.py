"""Stage `tune`: search rank, regularisation, alpha, the confidence transform and (with
`tune.search_weights`) the event weights on the holdout with optuna, `tune.parallelism` trials at a
time; every trial in `reports/run_date=.../tune/trials.json`, the best as a TOML snippet
(`best.toml`) that `--config` takes."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config
from sparkals.paths import Paths
from sparkals.search import prepare, require_optuna, search
from sparkals.split import Holdout
from sparkals.stages.common import open_holdout, read_exclusion_file, timed

__all__ = ["TuneResult", "best_of", "best_toml", "run"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class TuneResult:
    trials: int
    metric: str
    best_score: float
    best: dict[str, Any]
    best_toml: str
    best_trial: int = 0
    prepare_seconds: float = 0.0
    mean_trial_seconds: float = 0.0
    seconds: float = 0.0


def best_of(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the best score; ties go to the smaller rank (cheaper to train and serve)."""
    return max(trials, key=lambda t: (t["score"], -t["parameters"]["rank"]))


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def best_toml(
    run_date: dt.date, metric: str, best: dict[str, Any], trials: int, holdout: Holdout, with_weights: bool
) -> str:
    """The winning settings as TOML that `load_config` layers over the defaults (floats in full:
    the snippet reproduces the trial exactly)."""
    params = best["parameters"]
    cutoff = f", test from {holdout.cutoff}" if holdout.cutoff else ""
    text = (
        f"# sparkals tune {run_date}: best {metric} = {best['score']:.5f} (trial {best['number']} of {trials}, "
        f"{holdout.method} split{cutoff})\n"
        f"[als]\nrank = {params['rank']}\nreg_param = {params['reg_param']!r}\nalpha = {params['alpha']!r}\n\n"
        f"[ratings]\nconfidence = {json.dumps(params['confidence'])}\n"
    )
    if with_weights:
        text += "\n[ratings.weights]\n" + "".join(
            f"{_toml_key(name)} = {float(weight)!r}\n" for name, weight in params["weights"].items()
        )
    return text


@timed("tune")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> TuneResult:
    """Prepare the holdout once, run the search on it, write every trial and the best."""
    require_optuna()  # before any Spark work: a missing extra should fail at once
    excluded = read_exclusion_file(spark, cfg)
    with open_holdout(spark, cfg, run_date) as (holdout, as_of):
        started = time.perf_counter()
        data = prepare(holdout, cfg.ratings, cfg.evaluate, as_of, excluded)
        prepare_seconds = time.perf_counter() - started
        try:
            trials = search(data, cfg.tune, cfg.ratings, cfg.als, cfg.evaluate)
        finally:
            data.unpersist()
    best = best_of(trials)
    metric = f"{cfg.evaluate.metric}@{cfg.evaluate.metric_k}"
    folder = Paths(cfg.output.root).tune_reports(run_date)
    fs.write_json(spark, f"{folder}/trials.json", {
        "metric": metric, "split": holdout.describe(), "prepare_seconds": round(prepare_seconds, 3),
        "searched": {"ranks": cfg.tune.ranks, "reg_param_range": cfg.tune.reg_param_range,
                     "alpha_range": cfg.tune.alpha_range, "confidences": cfg.tune.confidences,
                     "weight_range": cfg.tune.weight_range if cfg.tune.search_weights else None,
                     "seed": cfg.tune.seed},
        "trials": trials,
    })
    with_weights = cfg.tune.search_weights and len(cfg.ratings.weights) > 1
    toml = best_toml(run_date, metric, best, len(trials), holdout, with_weights)
    fs.write_text(spark, f"{folder}/best.toml", toml)
    return TuneResult(
        trials=len(trials), metric=metric, best_score=round(best["score"], 5), best=best["parameters"],
        best_toml=f"{folder}/best.toml", best_trial=best["number"], prepare_seconds=round(prepare_seconds, 3),
        mean_trial_seconds=round(sum(t["seconds"] for t in trials) / len(trials), 3),
    )
