"""`sparkals tune`: the optuna search on one shared holdout, its records, its progress line, the
snippet it writes, and a trial measured exactly as `evaluate_holdout` measures the same settings."""

import datetime as dt
import json
import logging
import sys

import pytest
from pyspark.testing import assertDataFrameEqual

from sparkals import cli, search as search_module
from sparkals.config import ALSSettings, EvaluateSettings, RatingsSettings, TuneSettings, load_config
from sparkals.evaluate import evaluate_holdout
from sparkals.generate import GeneratorSpec
from sparkals.ratings import build_ratings, build_indexes, index_ratings
from sparkals.search import OPTUNA_MISSING, TrialOutcome, prepare, run_trial, search
from sparkals.split import split_events
from sparkals.stages import generate
from sparkals.tuning import TrialParams, event_ratings, trial_ratings
from sparkals.vocabulary import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

RUN_DATE = "2026-10-01"
SMALL = [
    "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2", "--set", "als.max_iter=4",
    "--set", "spark.shuffle_partitions=2", "--set", "spark.log_level=ERROR", "--set", "evaluate.test_days=14",
]
SEARCH = ["--set", "tune.ranks=[4, 8]", "--set", 'tune.confidences=["raw", "log1p"]', "--set", "tune.trials=4",
          "--set", "tune.parallelism=2"]


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    """A 40k-event log with planted tastes, ingested once for the module: (output root, args)."""
    base = tmp_path_factory.mktemp("tune")
    spec = GeneratorSpec(users=600, items=250, events=40_000, seed=5, start=dt.date(2026, 7, 1), days=90)
    generate.run(spark, spec, str(base / "log"))
    args = ["--run-date", RUN_DATE, "--set", f"input.path={base / 'log'}", "--set", f"output.root={base / 'out'}",
            *SMALL]
    assert cli.main(["ingest", *args]) == 0
    return base / "out", args


@pytest.mark.slow
def test_tune_records_every_trial_and_writes_a_snippet_the_config_loader_takes(spark, ingested, caplog):
    out, args = ingested
    tracker = spark.sparkContext.statusTracker()
    ungrouped, grouped = set(tracker.getJobIdsForGroup(None)), set(tracker.getJobIdsForGroup("sparkals.tune"))
    with caplog.at_level(logging.INFO, logger="sparkals"):
        assert cli.main(["tune", *args, *SEARCH]) == 0
    # Every job, the trials' in optuna's threads too, carries the stage's job group. The tracker
    # keeps only the newest jobs (spark.ui.retainedJobs), so older ids may drop out: only new ones count.
    assert set(tracker.getJobIdsForGroup(None)) - ungrouped == set()
    assert len(set(tracker.getJobIdsForGroup("sparkals.tune")) - grouped) > 4 * 10  # ALS: a job an iteration
    folder = out / "reports" / f"run_date={RUN_DATE}" / "tune"
    record = json.loads((folder / "trials.json").read_text())
    trials = record["trials"]
    assert len(trials) == 4 and sorted(t["number"] for t in trials) == [1, 2, 3, 4]
    assert sorted(t["sampled"] for t in trials) == [1, 2, 3, 4]
    assert record["split"] == {"method": "time", "cutoff": "2026-09-18"}
    assert len({json.dumps(t["parameters"], sort_keys=True) for t in trials}) == 4  # distinct settings
    for trial in trials:
        params = trial["parameters"]
        assert params["rank"] in (4, 8) and params["confidence"] in ("raw", "log1p")
        assert 0.001 <= params["reg_param"] <= 1.0 and 0.5 <= params["alpha"] <= 50.0  # the default ranges
        assert params["weights"]["view"] == 1.0  # the first event type is the scale
        assert all(0.5 <= params["weights"][e] <= 50.0 for e in ("addtocart", "transaction"))
        assert trial["score"] == trial["metrics"]["10"]["ndcg"] and 0.0 < trial["score"] <= 1.0
        assert trial["seconds"] > 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tune: trial ")]
    assert len(lines) == 4 and lines[-1].startswith("tune: trial 4/4 rank=")
    assert "ndcg@10=" in lines[0] and "(best so far " in lines[0] and " addtocart=" in lines[0]

    best = max(trials, key=lambda t: (t["score"], -t["parameters"]["rank"]))["parameters"]
    cfg = load_config([folder / "best.toml"])
    assert (cfg.als.rank, cfg.als.reg_param, cfg.als.alpha, cfg.ratings.confidence) == (
        best["rank"], best["reg_param"], best["alpha"], best["confidence"])
    assert cfg.ratings.weights == best["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("driver_max_cells", [100_000_000, 0], ids=["on_the_driver", "in_spark_jobs"])
def test_a_trial_scores_exactly_what_evaluate_holdout_reports(spark, ingested, driver_max_cells):
    """Same settings, same ratings, same indexes, same seed: the same model and the same metric,
    the trial measured on the driver or in Spark jobs. tfidf and non-default weights exercise the
    weighted sum and the transform on indexes."""
    out, _ = ingested
    settings = EvaluateSettings(test_days=14, driver_max_cells=driver_max_cells)
    holdout = split_events(spark.read.parquet(str(out / "events")), settings, dt.date.fromisoformat(RUN_DATE))
    as_of = holdout.cutoff - dt.timedelta(days=1)
    ratings = RatingsSettings(weights={"view": 1.0, "addtocart": 2.5, "transaction": 8.0})
    als = ALSSettings(rank=8, max_iter=4, num_user_blocks=2, num_item_blocks=2)
    params = TrialParams(rank=8, reg_param=0.02, alpha=15.0, confidence="tfidf", weights=dict(ratings.weights))

    spark.sparkContext.setCheckpointDir(str(out / "checkpoints"))
    data = prepare(holdout, ratings, settings, as_of)
    assert (data.sample is not None) == (driver_max_cells > 0)
    try:
        trial = run_trial(data, params, ratings, als, settings)
    finally:
        data.unpersist()
    report = evaluate_holdout(holdout, params.ratings(ratings), params.als(als), settings, as_of, with_baselines=False)
    assert trial.score == pytest.approx(report["headline"], abs=1e-9)
    expected = report["systems"]["als"]
    assert trial.metrics.keys() == expected.keys()
    for k, values in expected.items():
        assert trial.metrics[k] == pytest.approx(values, abs=1e-9), f"metrics at {k}"


def test_trial_ratings_equal_build_ratings_with_the_same_weights(spark):
    """Per-event-type sums weighted afterwards give `build_ratings`' ratings (quantity and decay
    included), indexed the same way."""
    events = spark.createDataFrame(
        [("u1", "i1", "view", 1.0, dt.datetime(2026, 9, 1)), ("u1", "i1", "transaction", 2.0, dt.datetime(2026, 9, 20)),
         ("u1", "i2", "addtocart", 1.0, dt.datetime(2026, 9, 25)), ("u2", "i1", "view", 3.0, dt.datetime(2026, 9, 29)),
         ("u2", "i2", "view", 1.0, dt.datetime(2026, 8, 1)), ("u2", "i2", "other", 1.0, dt.datetime(2026, 9, 1))],
        "user_id string, item_id string, event string, quantity double, ts timestamp",
    )
    as_of = dt.date(2026, 9, 30)
    settings = RatingsSettings(weights={"view": 1.0, "addtocart": 4.0, "transaction": 12.5}, half_life_days=30.0,
                               confidence="log1p")
    expected_ratings = build_ratings(events, settings, as_of)
    users, items = build_indexes(expected_ratings)
    expected = index_ratings(expected_ratings, users, items)
    types = list(settings.weights)
    indexed = event_ratings(events, types, as_of, 30.0).join(users, USER_ID).join(items, ITEM_ID).drop(USER_ID, ITEM_ID)
    assertDataFrameEqual(trial_ratings(indexed, types, settings), expected, rtol=1e-12)
    assert set(indexed.columns) == {USER_IDX, ITEM_IDX, "rating_0", "rating_1", "rating_2"}


def test_seeded_search_samples_the_same_settings(monkeypatch):
    """Same seed, same settings in the same order, past TPE's ten random start-up trials (the
    trial itself replaced by a deterministic stand-in: what is checked is the sampling)."""

    def fake_trial(data, params, ratings, als, settings):
        return TrialOutcome(score=params.rank / (1.0 + abs(params.alpha - 20.0)), metrics={}, train_seconds=0.0)

    monkeypatch.setattr(search_module, "run_trial", fake_trial)
    ratings, als, ev = RatingsSettings(), ALSSettings(), EvaluateSettings()

    def sampled(seed: int) -> list[dict]:
        tune = TuneSettings(trials=14, parallelism=1, seed=seed, ranks=[4, 8], confidences=["raw", "log1p"])
        return [t["parameters"] for t in search(None, tune, ratings, als, ev)]

    first = sampled(7)
    assert first == sampled(7)
    assert first != sampled(8)
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 14


def test_without_optuna_tune_says_which_extra_to_install(ingested, monkeypatch, capsys):
    _, args = ingested
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    assert cli.main(["tune", *args]) == 1
    assert OPTUNA_MISSING in capsys.readouterr().err
    assert OPTUNA_MISSING == "sparkals tune needs optuna: pip install 'sparkals[tune]'"
