"""The gate measures the model the night before the test period trained, when it learned exactly
what the holdout model would (stages/holdout_model.py), and trains one when anything differs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from sparkals import cli
from sparkals.config import EvaluateSettings, load_config
from sparkals.evaluate import evaluate_holdout
from sparkals.events_digest import digest_of
from sparkals.generate import GeneratorSpec
from sparkals.paths import Paths
from sparkals.stages import aggregate, generate
from sparkals.stages.common import open_holdout, read_events
from sparkals.stages.holdout_model import REUSED, TRAINED, nights_to_keep, reusable_model

START = dt.date(2026, 8, 1)
TONIGHT = START + dt.timedelta(days=39)  # the last day of the generated log
HOLDOUT_NIGHT = TONIGHT - dt.timedelta(days=7)  # evaluate.test_days = 7: the day before the test period
SETTINGS = [
    "als.num_user_blocks=2", "als.num_item_blocks=2", "als.rank=8", "als.max_iter=4", "recommend.top_n=5",
    "spark.shuffle_partitions=2", "spark.log_level=ERROR",
]


def _args(log: str, out: str, *extra: str) -> list[str]:
    return [arg for value in (f"input.path={log}", f"output.root={out}", *SETTINGS, *extra) for arg in ("--set", value)]


def _report(out, day: dt.date) -> dict:
    return json.loads((out / "reports" / f"run_date={day}" / "metrics.json").read_text())


def _ms(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def two_nights(spark, tmp_path_factory):
    """The holdout night's ingest, aggregate and train (its ingest accepts the later days of the
    log, which does not change what it learns), then tonight's whole night with the gate."""
    root = tmp_path_factory.mktemp("holdout")
    log, out = str(root / "log"), root / "out"
    generate.run(spark, GeneratorSpec(users=300, items=120, events=9_000, seed=5, start=START, days=40), log)
    for stage in ("ingest", "aggregate", "train"):
        assert cli.main([stage, "--run-date", str(HOLDOUT_NIGHT), *_args(log, str(out), "ingest.max_future_days=60")]) == 0
    assert cli.main(["nightly", "--run-date", str(TONIGHT), *_args(log, str(out))]) == 0
    return root, log, out


@pytest.mark.slow
def test_the_gate_measures_the_model_the_holdout_night_trained(two_nights):
    _, _, out = two_nights
    (held,) = [p.name for p in (out / "models").iterdir() if p.name.startswith(f"als-{HOLDOUT_NIGHT:%Y%m%d}")]
    report = _report(out, TONIGHT)
    assert report["holdout_model"] == {"source": REUSED, "model_version": held, "run_date": str(HOLDOUT_NIGHT)}
    assert report["train_seconds"] == 0.0  # no second ALS in the gate
    assert f"Holdout model: the night of {HOLDOUT_NIGHT}'s {held}" in (
        out / "reports" / f"run_date={TONIGHT}" / "report.md"
    ).read_text()
    summary = json.loads((out / "runs" / f"run_date={TONIGHT}" / "summary.json").read_text())
    assert summary["gate"]["metric"] == "ndcg@10" and summary["gate"]["candidate_score"] is not None


@pytest.mark.slow
def test_the_reused_model_is_measured_on_the_same_users_and_baselines_as_a_retrained_one(spark, two_nights):
    _, log, out = two_nights
    cfg = load_config([], [f"input.path={log}", f"output.root={out}", *SETTINGS])
    with open_holdout(spark, cfg, TONIGHT) as (holdout, as_of):
        fitted, said = reusable_model(spark, cfg, holdout)
        assert said["source"] == REUSED
        reused = evaluate_holdout(holdout, cfg.ratings, cfg.als, cfg.evaluate, as_of, fitted=fitted)
        retrained = evaluate_holdout(holdout, cfg.ratings, cfg.als, cfg.evaluate, as_of)
    assert reused["data"] == retrained["data"]  # same ratings, users, items, test users, relevant pairs
    for baseline in ("popular", "recent_popular"):
        assert reused["systems"][baseline] == retrained["systems"][baseline]
    for k, values in reused["systems"]["als"].items():
        assert values["users_evaluated"] == retrained["systems"]["als"][k]["users_evaluated"]
        # Different index numbering, different random start: close, not equal.
        assert values["ndcg"] == pytest.approx(retrained["systems"]["als"][k]["ndcg"], abs=0.1)


@pytest.mark.slow
def test_other_settings_or_changed_events_train_the_holdout_model_and_say_why(spark, two_nights):
    _, log, out = two_nights
    other = load_config([], [f"input.path={log}", f"output.root={out}", *SETTINGS, "als.reg_param=0.05"])
    with open_holdout(spark, other, TONIGHT) as (holdout, _):
        fitted, said = reusable_model(spark, other, holdout)
    assert fitted is None and said["source"] == TRAINED and "other [ratings] or [als] settings" in said["reason"]

    # A late event re-ingested into a day the holdout night learned from.
    late = HOLDOUT_NIGHT - dt.timedelta(days=3)
    (out.parent / "log" / "late.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n" f"{_ms(late, 8)},late-user,view,late-item,\n"
    )
    assert cli.main(["ingest", "--run-date", str(TONIGHT), *_args(log, str(out))]) == 0
    cfg = load_config([], [f"input.path={log}", f"output.root={out}", *SETTINGS])
    with open_holdout(spark, cfg, TONIGHT) as (holdout, _):
        fitted, said = reusable_model(spark, cfg, holdout)
    assert fitted is None and said["source"] == TRAINED
    assert f"the events up to {HOLDOUT_NIGHT} changed" in said["reason"]


@pytest.mark.slow
def test_an_edited_exclusion_file_trains_the_holdout_model(spark, tmp_path):
    log, out, excluded = str(tmp_path / "log"), tmp_path / "out", tmp_path / "excluded.txt"
    generate.run(spark, GeneratorSpec(users=60, items=40, events=1_500, seed=8, start=START, days=40), log)
    excluded.write_text("# out of stock\nno-such-item\n")
    exclusion = f"ratings.exclude_items_path={excluded}"
    for stage in ("ingest", "aggregate", "train"):
        args = _args(log, str(out), exclusion, "ingest.max_future_days=60")
        assert cli.main([stage, "--run-date", str(HOLDOUT_NIGHT), *args]) == 0
    cfg = load_config([], [f"input.path={log}", f"output.root={out}", *SETTINGS, exclusion])
    with open_holdout(spark, cfg, TONIGHT) as (holdout, _):
        assert reusable_model(spark, cfg, holdout)[1]["source"] == REUSED
        excluded.write_text("# out of stock\nno-such-item\nanother-item\n")
        fitted, said = reusable_model(spark, cfg, holdout)
    assert fitted is None and said["source"] == TRAINED and "ratings.exclude_items_path changed" in said["reason"]


def test_the_events_digest_is_the_one_aggregate_records_however_the_events_are_partitioned(spark, tmp_path):
    log, out = str(tmp_path / "log"), str(tmp_path / "out")
    generate.run(spark, GeneratorSpec(users=50, items=30, events=800, seed=3, start=START, days=10), log)
    cfg = load_config([], [f"input.path={log}", f"output.root={out}", *SETTINGS])
    assert cli.main(["ingest", "--run-date", str(START + dt.timedelta(days=9)), *_args(log, out)]) == 0
    events = read_events(spark, Paths(out), START + dt.timedelta(days=9))
    _, shape = aggregate.build_ratings_counted(events, cfg.ratings, START, None)
    weighted = list(cfg.ratings.weights)
    assert shape.events.events == events.count() > 0
    assert digest_of(events.repartition(7), weighted) == digest_of(events.coalesce(1), weighted) == shape.events
    one_less = events.orderBy("ts").limit(events.count() - 1)
    assert digest_of(one_less, weighted) != shape.events


def test_retention_keeps_the_models_the_next_gates_measure():
    tonight = dt.date(2026, 11, 22)
    week = nights_to_keep(EvaluateSettings(test_days=7), tonight)
    assert min(week) == dt.date(2026, 11, 16) and max(week) == tonight and len(week) == 7
    assert nights_to_keep(EvaluateSettings(cutoff_date="2026-11-01"), tonight) == {dt.date(2026, 10, 31)}
    assert nights_to_keep(EvaluateSettings(split="random"), tonight) == set()
