"""Stage `tune`: search rank, regularisation, alpha and the confidence transform on the holdout,
`tune.parallelism` trials at a time; every trial in `reports/run_date=.../tune/trials.json`, the
best as a TOML snippet (`best.toml`) that `--config` takes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config, TuneSettings
from sparkals.evaluate import evaluate_holdout
from sparkals.paths import Paths
from sparkals.split import Holdout
from sparkals.stages.common import open_holdout, read_exclusion_file, timed

__all__ = ["TuneResult", "best_toml", "grid", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    trials: int
    metric: str
    best_score: float
    best: dict[str, Any]
    best_toml: str
    seconds: float = 0.0


def grid(settings: TuneSettings) -> list[dict[str, Any]]:
    """Every combination of the listed values, one trial each."""
    return [
        {"confidence": c, "rank": r, "reg_param": g, "alpha": a}
        for c, r, g, a in itertools.product(settings.confidences, settings.ranks, settings.reg_params, settings.alphas)
    ]


def best_toml(run_date: dt.date, metric: str, best: dict[str, Any], trials: int, holdout: Holdout) -> str:
    """The winning settings as TOML that `load_config` layers over the defaults."""
    cutoff = f", test from {holdout.cutoff}" if holdout.cutoff else ""
    return (
        f"# sparkals tune {run_date}: best {metric} = {best['score']:.5f} of {trials} trials "
        f"({holdout.method} split{cutoff})\n"
        f"[als]\nrank = {best['rank']}\nreg_param = {best['reg_param']}\nalpha = {best['alpha']}\n\n"
        f"[ratings]\nconfidence = \"{best['confidence']}\"\n"
    )


@timed("tune")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> TuneResult:
    """Every trial on one holdout; the best (ties: the smaller rank) written as TOML."""
    trials = grid(cfg.tune)
    excluded = read_exclusion_file(spark, cfg)
    done: list[dict[str, Any]] = []

    def trial_of(holdout: Holdout, as_of: dt.date, trial: dict[str, Any]) -> dict[str, Any]:
        ratings = dataclasses.replace(cfg.ratings, confidence=trial["confidence"])
        als = dataclasses.replace(cfg.als, rank=trial["rank"], reg_param=trial["reg_param"], alpha=trial["alpha"])
        report = evaluate_holdout(holdout, ratings, als, cfg.evaluate, as_of, with_baselines=False, excluded=excluded)
        result = {**trial, "score": report["headline"], "metrics": report["systems"]["als"],
                  "train_seconds": report["train_seconds"]}
        done.append(result)
        log.info("tune: trial %d/%d %s %s=%.5f", len(done), len(trials), trial, report["metric"], result["score"])
        return result

    with open_holdout(spark, cfg, run_date) as (holdout, as_of), ThreadPoolExecutor(cfg.tune.parallelism) as pool:
        results = list(pool.map(lambda trial: trial_of(holdout, as_of, trial), trials))
    best = max(results, key=lambda r: (r["score"], -r["rank"]))
    metric = f"{cfg.evaluate.metric}@{cfg.evaluate.metric_k}"
    folder = Paths(cfg.output.root).tune_reports(run_date)
    fs.write_json(spark, f"{folder}/trials.json", {"metric": metric, "split": holdout.describe(), "trials": results})
    fs.write_text(spark, f"{folder}/best.toml", best_toml(run_date, metric, best, len(results), holdout))
    return TuneResult(
        trials=len(results), metric=metric, best_score=round(best["score"], 5),
        best={k: best[k] for k in ("rank", "reg_param", "alpha", "confidence")}, best_toml=f"{folder}/best.toml",
    )
