"""The stages with their I/O: each reads what the previous one wrote under `output.root`,
so a stage can run alone (one spark-submit each) or chained by `nightly`.

The transformations themselves live in ingest.py, ratings.py, train.py and recommend.py;
this module only decides where data comes from and goes to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyspark
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import sparkals
from sparkals import fs
from sparkals.config import Config, TuneSettings
from sparkals.evaluate import Holdout, evaluate_holdout, split_events
from sparkals.errors import SparkalsError
from sparkals.generate import GeneratorSpec, generate_events
from sparkals.ingest import CORRUPT_COLUMN, DROPPED, REASONS, accepted, parse_events, quarantined
from sparkals.publish import publish_parquet, recover, update_latest
from sparkals.ratings import aggregate_ratings, build_index, index_ratings, matrix_stats, refine_ratings
from sparkals.recommend import (
    fallback_scores,
    scoring_input,
    seen_items,
    similar_to_original_ids,
    to_original_ids,
    users_to_score,
)
from sparkals.report import html_page, markdown
from sparkals.score import ALS_SOURCE, FALLBACK_SOURCE, item_matrix, score_all, similar_items
from sparkals.train import train_als

log = logging.getLogger(__name__)


class PipelineError(SparkalsError):
    """A stage cannot run: the message says what is missing or wrong and what to do."""


class EmptyHoldoutError(PipelineError):
    """The split leaves no training or no test events: there is nothing to evaluate."""


@dataclass(frozen=True)
class Paths:
    """Where every output lives below `output.root`."""

    root: str

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    def quarantine(self, run_date: dt.date) -> str:
        return f"{self.root}/quarantine/run_date={run_date}"

    def ingest_record(self, run_date: dt.date) -> str:
        return f"{self.root}/runs/run_date={run_date}/ingest.json"

    def ratings(self, run_date: dt.date) -> str:
        return f"{self.root}/ratings/run_date={run_date}"

    def ratings_stats(self, run_date: dt.date) -> str:
        return f"{self.root}/ratings/run_date={run_date}/_stats.json"

    @property
    def indexes(self) -> str:
        return f"{self.root}/indexes"

    def user_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/users"

    def item_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/items"

    def model(self, version: str) -> str:
        return f"{self.root}/models/{version}"

    @property
    def current_model(self) -> str:
        """Pointer to the model that serves: written only when a model passes the quality gate."""
        return f"{self.root}/models/_CURRENT.json"

    def recommendations(self, run_date: dt.date) -> str:
        return f"{self.root}/recommendations/run_date={run_date}"

    @property
    def latest_recommendations(self) -> str:
        """Pointer file naming the newest complete recommendations (readers start here)."""
        return f"{self.root}/recommendations/_LATEST.json"

    def similar_items(self, run_date: dt.date) -> str:
        return f"{self.root}/similar_items/run_date={run_date}"

    def reports(self, run_date: dt.date) -> str:
        return f"{self.root}/reports/run_date={run_date}"

    def run_summary(self, run_date: dt.date) -> str:
        return f"{self.root}/runs/run_date={run_date}/summary.json"

    @property
    def checkpoints(self) -> str:
        return f"{self.root}/checkpoints"

    @property
    def staging(self) -> str:
        return f"{self.root}/_staging"


def model_version(cfg: Config, run_date: dt.date) -> str:
    """Same run date and same settings: same version, so a rerun replaces rather than adds."""
    return f"als-{run_date:%Y%m%d}-{cfg.fingerprint()[:8]}"


def _timed(stage: str):
    def wrap(fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            log.info("%s: started", stage)
            result = fn(*args, **kwargs)
            result["seconds"] = round(time.perf_counter() - started, 3)
            log.info("%s: done in %.1fs %s", stage, result["seconds"], _brief(result))
            return result

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    return wrap


def _brief(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float)) and k != "seconds")


def _input_paths(spark: SparkSession, cfg: Config, run_date: dt.date) -> list[str]:
    """The paths to read: `input.path`, or with "{date}" in it one path per day of the window."""
    source = cfg.input
    if "{date}" in source.path:
        days = [run_date - dt.timedelta(days=i) for i in range(max(1, source.lookback_days))]
        candidates = [source.path.replace("{date}", day.isoformat()) for day in days]
    else:
        candidates = [source.path]
    found = [path for path in candidates if fs.glob_has_files(spark, path)]
    if not found:
        if len(candidates) == 1 and fs.exists(spark, candidates[0]):
            raise PipelineError(f"input {candidates[0]!r} holds no files")
        raise PipelineError(
            f"input path {source.path!r} does not exist"
            + (f" for any day from {candidates[-1]} to {candidates[0]}" if len(candidates) > 1 else "")
            + "; set input.path"
        )
    return found


def read_input(spark: SparkSession, cfg: Config, run_date: dt.date) -> DataFrame:
    """The raw event log with every column as text where the format allows, plus the
    corrupt-record column for lines the reader could not parse (CSV, JSON)."""
    source = cfg.input
    paths = _input_paths(spark, cfg, run_date)
    if source.format == "csv":
        reader = spark.read.option("header", str(source.header).lower()).option("sep", source.delimiter)
        columns = reader.csv(paths).columns
        schema = ", ".join(f"`{name}` string" for name in columns) + f", `{CORRUPT_COLUMN}` string"
        raw = (
            reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
            .schema(schema).csv(paths)
        )
    elif source.format == "json":
        raw = (
            spark.read.option("primitivesAsString", "true")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN).json(paths)
        )
    else:
        raw = spark.read.parquet(*paths)
    if source.partition_column and source.lookback_days > 0:
        if source.partition_column not in raw.columns:
            raise PipelineError(f"input.partition_column {source.partition_column!r} is not a column of the input")
        first = run_date - dt.timedelta(days=source.lookback_days - 1)
        day = F.to_date(F.col(source.partition_column).cast("string"))
        raw = raw.filter(day.between(F.lit(first), F.lit(run_date)))
    return raw


def generate(spark: SparkSession, spec: GeneratorSpec, out: str, fmt: str = "csv") -> dict[str, Any]:
    """Write a synthetic Retail Rocket style log to `out`."""
    events = generate_events(spark, spec)
    writer = events.write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").csv(out)
    elif fmt == "json":
        writer.json(out)
    elif fmt == "parquet":
        writer.parquet(out)
    else:
        raise PipelineError(f"unknown format {fmt!r}: use csv, json or parquet")
    return {"path": out, "events": spec.events, "users": spec.users, "items": spec.items}


@_timed("ingest")
def ingest(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Input log to clean events under `events/event_date=...`; every other row is quarantined
    with its reason, and rows_read == accepted + quarantined + duplicates + dropped, exactly."""
    paths = Paths(cfg.output.root)
    # Cache the full rows: CSV only flags a malformed line when every column is parsed, so every
    # use of `parsed` must see the same fully parsed rows. `parsed` itself is cheap expressions
    # over them, and wider (it carries the raw fields for the quarantine): not cached.
    raw = read_input(spark, cfg, run_date).cache()
    parsed = parse_events(raw, cfg.input, cfg.ingest, run_date)
    try:
        by_reason = {row["reason"]: row["count"] for row in parsed.groupBy("reason").count().collect()}
        rows_read = sum(by_reason.values())
        if rows_read == 0:
            raise PipelineError(f"input {cfg.input.path!r} holds no rows (only a header, or empty files)")
        good = accepted(parsed).cache()
        accepted_rows = good.count()
        quarantine_counts = {reason: by_reason[reason] for reason in REASONS if reason in by_reason}
        record = {
            "run_date": str(run_date),
            "input": cfg.input.path,
            "rows_read": rows_read,
            "accepted": accepted_rows,
            "quarantined": sum(quarantine_counts.values()),
            "quarantined_by_reason": quarantine_counts,
            "duplicates": by_reason.get(None, 0) - accepted_rows,
            "dropped_unknown_events": by_reason.get(DROPPED, 0),
            "quarantine_path": paths.quarantine(run_date),
        }
        fs.delete(spark, paths.quarantine(run_date))
        if record["quarantined"]:
            quarantined(parsed).write.mode("overwrite").parquet(paths.quarantine(run_date))
        share = record["quarantined"] / rows_read
        record["status"] = "failed" if share > cfg.ingest.max_quarantine_share else "succeeded"
        fs.write_json(spark, paths.ingest_record(run_date), record)
        if record["status"] == "failed":
            raise PipelineError(
                f"{share:.1%} of {rows_read:,} rows were quarantined, above ingest.max_quarantine_share "
                f"({cfg.ingest.max_quarantine_share:.1%}): {quarantine_counts}. Nothing was written downstream; "
                f"see {paths.quarantine(run_date)} and fix the input or the [input] mapping."
            )
        (
            good.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy("event_date")
            .parquet(paths.events)
        )
        good.unpersist()
    finally:
        raw.unpersist()
    return {key: record[key] for key in ("rows_read", "accepted", "quarantined", "duplicates", "dropped_unknown_events")}


def read_events(spark: SparkSession, cfg: Config, run_date: dt.date) -> DataFrame:
    paths = Paths(cfg.output.root)
    if not fs.exists(spark, paths.events):
        raise PipelineError(f"no clean events at {paths.events}: run `sparkals ingest` first")
    return spark.read.parquet(paths.events).filter(F.col("event_date") <= F.lit(run_date))


def _previous_index_date(spark: SparkSession, paths: Paths, run_date: dt.date) -> dt.date | None:
    """The newest earlier run whose indexes exist: its ids keep their indexes tonight."""
    dates = []
    for name in fs.list_names(spark, paths.indexes):
        if name.startswith("run_date="):
            day = dt.date.fromisoformat(name.split("=", 1)[1])
            if day < run_date:
                dates.append(day)
    return max(dates) if dates else None


def _excluded_items(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """Item ids from `ratings.exclude_items_path`, read by Spark (works on any storage)."""
    path = cfg.ratings.exclude_items_path
    if not path:
        return None
    if not fs.exists(spark, path):
        raise PipelineError(f"ratings.exclude_items_path {path!r} does not exist")
    lines = spark.read.text(path).select(F.trim("value").alias("id"))
    return lines.filter((F.col("id") != "") & ~F.col("id").startswith("#"))


@_timed("aggregate")
def aggregate(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Clean events to weighted (user, item, rating) with stable int32 indexes and statistics."""
    paths = Paths(cfg.output.root)
    events = read_events(spark, cfg, run_date)
    settings = cfg.ratings
    # One aggregation serves both the ratings and the count of what the filters removed.
    aggregated = aggregate_ratings(events, settings.weights, run_date, settings.half_life_days).cache()
    unfiltered = aggregated.agg(
        F.count("*").alias("nonzeros"), F.countDistinct("user_id").alias("users"),
        F.countDistinct("item_id").alias("items"),
    ).first()
    ratings = refine_ratings(aggregated, settings, _excluded_items(spark, cfg)).cache()
    previous = _previous_index_date(spark, paths, run_date)
    old_users = spark.read.parquet(paths.user_index(previous)) if previous else None
    old_items = spark.read.parquet(paths.item_index(previous)) if previous else None
    users = build_index(ratings.select(F.col("user_id").alias("id")), old_users)
    items = build_index(ratings.select(F.col("item_id").alias("id")), old_items)
    users.write.mode("overwrite").parquet(paths.user_index(run_date))
    items.write.mode("overwrite").parquet(paths.item_index(run_date))
    users = spark.read.parquet(paths.user_index(run_date))
    items = spark.read.parquet(paths.item_index(run_date))
    index_ratings(ratings, users, items).write.mode("overwrite").parquet(paths.ratings(run_date))
    ratings.unpersist()
    aggregated.unpersist()
    stats = matrix_stats(spark.read.parquet(paths.ratings(run_date)))
    if stats.nonzeros == 0:
        raise PipelineError(
            f"no ratings for {run_date}: no events up to that date have a weighted event type "
            f"({', '.join(cfg.ratings.weights)}), or the filters in [ratings] removed them all"
        )
    removed = {key: unfiltered[key] - getattr(stats, key) for key in ("users", "items", "nonzeros")}
    record = {"run_date": str(run_date), **stats.as_dict(), "removed_by_filters": removed,
              "settings": dataclasses.asdict(cfg.ratings)}
    fs.write_json(spark, paths.ratings_stats(run_date), record)
    return {"ratings": stats.nonzeros, "users": stats.users, "items": stats.items,
            "density": round(stats.density, 6), "removed_users": removed["users"],
            "removed_items": removed["items"]}


@_timed("train")
def train(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Fit ALS on the run date's ratings; save the model and its metadata."""
    paths = Paths(cfg.output.root)
    if not fs.exists(spark, paths.ratings(run_date)):
        raise PipelineError(f"no ratings for {run_date}: run `sparkals aggregate` first")
    spark.sparkContext.setCheckpointDir(paths.checkpoints)
    ratings = spark.read.parquet(paths.ratings(run_date))
    # aggregate recorded the matrix's shape; counting it again cost 10 s at 16M events.
    if fs.exists(spark, paths.ratings_stats(run_date)):
        recorded = fs.read_json(spark, paths.ratings_stats(run_date))
        counts = (recorded["nonzeros"], recorded["users"], recorded["items"])
    else:
        shape = matrix_stats(ratings)
        counts = (shape.nonzeros, shape.users, shape.items)
    result = train_als(ratings, cfg.als)
    version = model_version(cfg, run_date)
    result.model.write().overwrite().save(f"{paths.model(version)}/model")
    metadata = {
        "model_version": version,
        "run_date": str(run_date),
        "parameters": dataclasses.asdict(cfg.als),
        "ratings": counts[0],
        "users": counts[1],
        "items": counts[2],
        "train_seconds": round(result.seconds, 3),
        "spark_version": pyspark.__version__,
        "config_fingerprint": cfg.fingerprint(),
    }
    fs.write_json(spark, f"{paths.model(version)}/metadata.json", metadata)
    gate = _quality_gate(spark, cfg, run_date, version)
    metadata["gate"] = gate
    fs.write_json(spark, f"{paths.model(version)}/metadata.json", metadata)
    return {"model_version": version, "train_seconds": round(result.seconds, 3), "ratings": counts[0],
            "serving_model": gate["serving"], "gate": gate, "status": "gated" if gate["status"] == "refused" else "ok"}


def _quality_gate(spark: SparkSession, cfg: Config, run_date: dt.date, version: str) -> dict[str, Any]:
    """Make `version` the current model unless its holdout metric falls more than
    `gate.max_drop` below the current model's; a refused model is kept but does not serve."""
    paths = Paths(cfg.output.root)
    current = fs.read_json(spark, paths.current_model) if fs.exists(spark, paths.current_model) else None
    decision: dict[str, Any] = {"candidate": version, "previous": current["model_version"] if current else None}
    score = None
    if cfg.gate.enabled:
        try:
            evaluation = evaluate(spark, cfg, run_date)
        except EmptyHoldoutError as err:
            # Too little history to measure (a first night on a day of data): nothing to gate on.
            log.warning("gate: skipped, %s; promoting %s unmeasured", err, version)
            _promote(spark, paths, version, run_date, None, None)
            return {**decision, "status": "promoted_unmeasured", "reason": str(err), "serving": version}
        score = evaluation["als"]
        decision.update(metric=evaluation["metric"], candidate_score=score, report=evaluation["report"])
        if current and current["model_version"] != version and current.get("score") is not None:
            floor = current["score"] * (1.0 - cfg.gate.max_drop)
            decision.update(current_score=current["score"], floor=round(floor, 6))
            if score < floor:
                log.warning(
                    "gate: refused %s: %s %.5f is below %.5f (current %s scored %.5f, gate.max_drop %.0f%%); "
                    "serving %s", version, evaluation["metric"], score, floor, current["model_version"],
                    current["score"], cfg.gate.max_drop * 100, current["model_version"],
                )
                return {**decision, "status": "refused", "serving": current["model_version"]}
    _promote(spark, paths, version, run_date, score, decision.get("metric"))
    return {**decision, "status": "promoted" if cfg.gate.enabled else "promoted_without_gate", "serving": version}


def _promote(spark: SparkSession, paths: Paths, version: str, run_date: dt.date, score: float | None,
             metric: str | None) -> None:
    fs.write_json(spark, paths.current_model, {
        "model_version": version, "run_date": str(run_date), "score": score, "metric": metric,
        "path": paths.model(version),
    })


def serving_model(spark: SparkSession, cfg: Config, run_date: dt.date) -> str:
    """The model version that scores: the current pointer's, else tonight's (an older output root)."""
    paths = Paths(cfg.output.root)
    if fs.exists(spark, paths.current_model):
        return fs.read_json(spark, paths.current_model)["model_version"]
    return model_version(cfg, run_date)


def _excluded_item_indexes(spark: SparkSession, cfg: Config, items: DataFrame) -> DataFrame:
    """`item` indexes of the exclusion list (`ratings.exclude_items` and its file), applied again
    at scoring so that a list updated today takes effect without retraining."""
    listed = spark.createDataFrame([(i,) for i in cfg.ratings.exclude_items], "id string")
    from_file = _excluded_items(spark, cfg)
    ids = listed if from_file is None else listed.unionByName(from_file)
    return ids.join(items, "id").select(F.col("idx").alias("item"))


@_timed("recommend")
def recommend(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Top-N per user from the run date's model with seen and excluded items filtered, users
    without factors served the fallback, published atomically as Parquet in the original ids."""
    paths = Paths(cfg.output.root)
    settings = cfg.recommend
    version = serving_model(spark, cfg, run_date)
    if not fs.exists(spark, paths.model(version)):
        raise PipelineError(f"no model {version} for {run_date}: run `sparkals train` first")
    recover(spark, paths.staging)
    model = ALSModel.load(f"{paths.model(version)}/model")
    events = read_events(spark, cfg, run_date)
    users = spark.read.parquet(paths.user_index(run_date))
    items = spark.read.parquet(paths.item_index(run_date))
    fallback = None
    if settings.fallback:
        ratings = spark.read.parquet(paths.ratings(run_date))
        fallback = fallback_scores(events, ratings, items, run_date, settings.fallback_days)
    matrix = item_matrix(model.itemFactors, fallback, _excluded_item_indexes(spark, cfg, items))
    audience = users_to_score(events, run_date, settings.active_days)
    seen = seen_items(events, items, settings.filter_events, run_date, settings.filter_lookback_days)
    scored = score_all(
        scoring_input(audience, users, model.userFactors, seen), matrix, settings.top_n,
        settings.block_size, settings.block_memory_mb, key="user_id",
    )
    recs = (
        to_original_ids(scored, items, version).repartition("user_id").sortWithinPartitions("user_id", "rank")
    ).persist()
    try:
        by_source = {
            row["source"]: (row["users"], row["rows"])
            for row in recs.groupBy("source").agg(
                F.countDistinct("user_id").alias("users"), F.count("*").alias("rows")
            ).collect()
        }
        expected = sum(rows for _, rows in by_source.values())
        counts = {
            "users_scored": sum(users for users, _ in by_source.values()),
            "users_als": by_source.get(ALS_SOURCE, (0, 0))[0],
            "users_fallback": by_source.get(FALLBACK_SOURCE, (0, 0))[0],
        }
        target = paths.recommendations(run_date)
        rows = publish_parquet(
            recs, target, paths.staging, expected_rows=expected,
            marker={"run_date": str(run_date), "model_version": version, **counts},
        )
    finally:
        recs.unpersist()
    result: dict[str, Any] = {"path": target, "rows": rows, "model_version": version, **counts}
    if settings.similar_items:
        similar = similar_items(model.itemFactors, settings.similar_top_n, settings.block_size, settings.block_memory_mb)
        named = similar_to_original_ids(similar, items, version)
        result["similar_items_rows"] = publish_parquet(
            named.repartition("item_id").sortWithinPartitions("item_id", "rank"), paths.similar_items(run_date),
            paths.staging, marker={"run_date": str(run_date), "model_version": version},
        )
    update_latest(spark, paths.latest_recommendations, {
        "run_date": str(run_date), "path": target, "rows": rows, "model_version": version, **counts,
    })
    return result


@contextmanager
def _holdout(spark: SparkSession, cfg: Config, run_date: dt.date) -> Iterator[tuple[Holdout, dt.date]]:
    """The configured split of the events up to the run date, and the day ratings are built
    "as of" (the day before the test period: decay must not look into the future). The events
    stay cached while the caller evaluates, and are released after."""
    spark.sparkContext.setCheckpointDir(Paths(cfg.output.root).checkpoints)
    events = read_events(spark, cfg, run_date).cache()
    try:
        holdout = split_events(events, cfg.evaluate, run_date)
        as_of = holdout.cutoff - dt.timedelta(days=1) if holdout.cutoff else run_date
        if holdout.train.isEmpty() or holdout.test.isEmpty():
            raise EmptyHoldoutError(
                f"the {holdout.method} split leaves no {'training' if holdout.train.isEmpty() else 'test'} events "
                f"(cutoff {holdout.cutoff}); set evaluate.cutoff_date or evaluate.test_days to fit the data"
            )
        yield holdout, as_of
    finally:
        events.unpersist()


@_timed("evaluate")
def evaluate(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """ALS and the popularity baselines on a holdout; metrics.json, report.md and report.html
    under reports/run_date=D/."""
    paths = Paths(cfg.output.root)
    with _holdout(spark, cfg, run_date) as (holdout, as_of):
        report = {"run_date": str(run_date), **evaluate_holdout(holdout, cfg.ratings, cfg.als, cfg.evaluate, as_of)}
    folder = paths.reports(run_date)
    fs.write_json(spark, f"{folder}/metrics.json", report)
    fs.write_text(spark, f"{folder}/report.md", markdown(report))
    fs.write_text(spark, f"{folder}/report.html", html_page(report))
    k, metric = str(cfg.evaluate.metric_k), cfg.evaluate.metric
    return {
        "metric": report["metric"],
        **{name: round(values[k][metric], 5) for name, values in report["systems"].items()},
        "users_evaluated": report["systems"]["als"][k]["users_evaluated"],
        "report": f"{folder}/report.html",
    }


def _trials(settings: TuneSettings) -> list[dict[str, Any]]:
    return [
        {"confidence": c, "rank": r, "reg_param": g, "alpha": a}
        for c, r, g, a in itertools.product(settings.confidences, settings.ranks, settings.reg_params, settings.alphas)
    ]


@_timed("tune")
def tune(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Grid search over rank, reg_param, alpha and the confidence transform on the holdout,
    `tune.parallelism` trials at a time; every trial recorded, the best written as TOML."""
    paths = Paths(cfg.output.root)
    trials = _trials(cfg.tune)
    done = []

    def run(holdout: Holdout, as_of: dt.date, trial: dict[str, Any]) -> dict[str, Any]:
        ratings = dataclasses.replace(cfg.ratings, confidence=trial["confidence"])
        als = dataclasses.replace(cfg.als, rank=trial["rank"], reg_param=trial["reg_param"], alpha=trial["alpha"])
        report = evaluate_holdout(holdout, ratings, als, cfg.evaluate, as_of, with_baselines=False)
        result = {**trial, "score": report["headline"], "metrics": report["systems"]["als"],
                  "train_seconds": report["train_seconds"]}
        done.append(result)
        log.info("tune: trial %d/%d %s %s=%.5f", len(done), len(trials), trial, report["metric"], result["score"])
        return result

    with _holdout(spark, cfg, run_date) as (holdout, as_of), ThreadPoolExecutor(cfg.tune.parallelism) as pool:
        results = list(pool.map(lambda trial: run(holdout, as_of, trial), trials))
    best = max(results, key=lambda r: (r["score"], -r["rank"]))
    metric = f"{cfg.evaluate.metric}@{cfg.evaluate.metric_k}"
    folder = f"{paths.reports(run_date)}/tune"
    fs.write_json(spark, f"{folder}/trials.json", {"metric": metric, "split": holdout.describe(), "trials": results})
    snippet = (
        f"# sparkals tune {run_date}: best {metric} = {best['score']:.5f} of {len(results)} trials "
        f"({holdout.method} split{', test from ' + str(holdout.cutoff) if holdout.cutoff else ''})\n"
        f"[als]\nrank = {best['rank']}\nreg_param = {best['reg_param']}\nalpha = {best['alpha']}\n\n"
        f"[ratings]\nconfidence = \"{best['confidence']}\"\n"
    )
    fs.write_text(spark, f"{folder}/best.toml", snippet)
    return {"trials": len(results), "metric": metric, "best_score": round(best["score"], 5),
            "best": {k: best[k] for k in ("rank", "reg_param", "alpha", "confidence")},
            "best_toml": f"{folder}/best.toml"}


def _revision() -> str:
    """The code that ran: the git revision when run from a checkout, else the package version."""
    package = f"sparkals {sparkals.__version__}"
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return package
    return (found.stdout.strip() if found.returncode == 0 else "") or package


def nightly(spark: SparkSession, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """Every stage in order for one run date; rerunning the same date replaces its outputs.

    The run record (runs/run_date=D/summary.json) is written whatever happens: status
    `succeeded`, `gated` (the new model was refused and the previous one served) or `failed`.
    """
    paths = Paths(cfg.output.root)
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "run_date": str(run_date), "config_fingerprint": cfg.fingerprint(), "revision": _revision(),
        "spark_version": pyspark.__version__, "status": "running",
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    stages = {"ingest": ingest, "aggregate": aggregate, "train": train, "recommend": recommend}
    try:
        for name, stage in stages.items():
            summary[name] = stage(spark, cfg, run_date)
        summary["status"] = "gated" if summary["train"]["status"] == "gated" else "succeeded"
    except Exception as err:
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        summary["seconds"] = round(time.perf_counter() - started, 3)
        summary["stage_seconds"] = {name: summary[name]["seconds"] for name in stages if name in summary}
        summary["outputs"] = {
            "events": paths.events, "ratings": paths.ratings(run_date), "recommendations": paths.recommendations(run_date),
            "models": f"{paths.root}/models", "report": paths.reports(run_date),
        }
        fs.write_json(spark, paths.run_summary(run_date), summary)
    return summary
