"""Stage `evaluate`: ALS and the popularity baselines on a holdout of the clean events;
`metrics.json`, `report.md` and `report.html` under `reports/run_date=...`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import Config
from sparkals.evaluate import evaluate_holdout
from sparkals.paths import Paths
from sparkals.report import html_page, markdown
from sparkals.stages.common import open_holdout, read_exclusion_file, timed
from sparkals.stages.holdout_model import reusable_model

__all__ = ["EvaluateResult", "run", "write_report"]


@dataclass(frozen=True)
class EvaluateResult:
    metric: str
    als: float
    popular: float
    recent_popular: float
    users_evaluated: int
    report: str
    seconds: float = 0.0


def write_report(spark: SparkSession, folder: str, report: dict[str, Any]) -> None:
    fs.write_json(spark, f"{folder}/metrics.json", report)
    fs.write_text(spark, f"{folder}/report.md", markdown(report))
    fs.write_text(spark, f"{folder}/report.html", html_page(report))


@timed("evaluate")
def run(spark: SparkSession, cfg: Config, run_date: dt.date) -> EvaluateResult:
    """Measure on the configured holdout and write the report. On a time split the model the night
    before the test period trained is measured when it learned exactly what the holdout model would
    (stages/holdout_model.py); otherwise the holdout model is trained here."""
    with open_holdout(spark, cfg, run_date) as (holdout, as_of):
        fitted, holdout_model = reusable_model(spark, cfg, holdout)
        measured = evaluate_holdout(
            holdout, cfg.ratings, cfg.als, cfg.evaluate, as_of, excluded=read_exclusion_file(spark, cfg), fitted=fitted
        )
    report = {"run_date": str(run_date), **measured, "holdout_model": holdout_model}
    folder = Paths(cfg.output.root).reports(run_date)
    write_report(spark, folder, report)
    k, metric = str(cfg.evaluate.metric_k), cfg.evaluate.metric
    scores = {name: round(values[k][metric], 5) for name, values in report["systems"].items()}
    return EvaluateResult(
        metric=report["metric"], als=scores["als"], popular=scores["popular"],
        recent_popular=scores["recent_popular"], users_evaluated=report["systems"]["als"][k]["users_evaluated"],
        report=f"{folder}/report.html",
    )
