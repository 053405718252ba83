"""Retention: what goes (retention.py), and `sparkals clean` on a real output layout."""

import datetime as dt
import json
from pathlib import Path

from sparkals import cli
from sparkals.paths import DATED_KINDS, Paths
from sparkals.retention import expired_dates, surplus_models

D = dt.date.fromisoformat


def test_dates_older_than_keep_days_go_but_never_the_newest_nor_a_pinned_one():
    dates = [D("2026-09-01"), D("2026-09-15"), D("2026-10-01"), D("2026-10-20"), D("2026-11-01")]
    assert expired_dates(dates, D("2026-11-01"), 30, pinned={D("2026-09-15")}) == [D("2026-09-01"), D("2026-10-01")]
    assert expired_dates(dates, D("2026-10-01"), 0) == []  # 0: keep everything
    assert expired_dates(dates, D("2027-06-01"), 30) == dates[:-1]  # all old: the newest still stays
    assert expired_dates([], D("2026-11-01"), 30) == []


def test_models_beyond_keep_go_newest_first_by_run_date_then_time_but_never_a_pinned_one():
    models = {
        "als-20260901-aa": (D("2026-09-01"), 5.0), "als-20260915-bb": (D("2026-09-15"), 1.0),
        "als-20261001-cc": (D("2026-10-01"), 2.0), "als-20261001-dd": (D("2026-10-01"), 3.0),
    }
    assert surplus_models(models, 2, pinned={"als-20260901-aa"}) == ["als-20260915-bb"]
    assert surplus_models(models, 1) == ["als-20260901-aa", "als-20260915-bb", "als-20261001-cc"]
    assert surplus_models(models, 0) == []


def _folder(path: Path, text: str = "x") -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "part-00000.json").write_text(text)


def _files(root: Path) -> dict[str, int]:
    """Every file and folder below root; files with their modification time (a folder's changes
    when something in it is removed)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns if p.is_file() else 0 for p in root.rglob("*")}


def test_clean_lists_then_removes_old_outputs_keeping_what_serves_and_what_a_later_night_extends(
    spark, tmp_path, capsys
):
    root = tmp_path / "out"
    paths = Paths(str(root))
    tonight = D("2026-11-22")
    spark.range(3).write.parquet(paths.ratings(D("2026-09-01")))  # real Parquet: a folder with checksums
    for day in ("2026-10-01", "2026-11-22"):
        _folder(Path(paths.ratings(D(day))))
    for day in ("2026-09-01", "2026-10-01", "2026-10-10", "2026-11-22"):
        _folder(Path(paths.user_index(D(day))))
        _folder(Path(paths.item_index(D(day))))
    for day in ("2026-09-01", "2026-10-05", "2026-10-21"):
        _folder(Path(paths.recommendations(D(day))))
    for day in ("2026-09-01", "2026-11-22"):
        _folder(Path(paths.similar_items(D(day))))
    for day in ("2026-09-01", "2026-10-30"):
        _folder(Path(paths.reports(D(day))))
    _folder(Path(paths.quarantine(D("2026-09-01"))))  # old, but the newest of its kind: kept
    _folder(root / "quarantine" / "notes")  # not a night's folder: left alone
    _folder(root / "events" / "event_date=2026-09-01")  # the history ALS learns from: never touched
    _folder(Path(paths.run_folder(D("2026-09-01"))))  # run records: kept
    for version in ("als-20260901-aaaa", "als-20261001-bbbb", "als-20261101-cccc", "als-20261120-dddd"):
        _folder(Path(paths.model(version)))
    _folder(root / "models" / "notes")
    Path(paths.current_model).write_text(json.dumps({"model_version": "als-20261001-bbbb", "run_date": "2026-10-01"}))
    Path(paths.latest_recommendations).write_text(json.dumps({"run_date": "2026-10-05"}))
    _folder(root / "checkpoints" / "left-by-a-killed-run")

    args = ["--run-date", str(tonight), "--set", f"output.root={root}", "--set", "retention.keep_days=30",
            "--set", "retention.keep_models=2"]
    before = _files(root)
    assert cli.main(["clean", "--dry-run", *args]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert _files(root) == before  # a dry run touches nothing: no lock, no removal
    expected = {
        ("ratings", paths.ratings(D("2026-09-01"))),
        ("indexes", f"{paths.indexes}/run_date=2026-09-01"), ("indexes", f"{paths.indexes}/run_date=2026-10-10"),
        ("recommendations", paths.recommendations(D("2026-09-01"))),
        ("similar_items", paths.similar_items(D("2026-09-01"))),
        ("reports", paths.reports(D("2026-09-01"))),
        ("models", paths.model("als-20260901-aaaa")),
    }
    assert listed["dry_run"] and {(r["kind"], r["path"]) for r in listed["removed"]} == expected
    assert listed["bytes"] == sum(r["bytes"] for r in listed["removed"]) > 0 and listed["failed"] == []

    assert cli.main(["clean", "--yes", *args]) == 0
    done = json.loads(capsys.readouterr().out)
    assert not done["dry_run"] and done["removed"] == listed["removed"]
    gone = {str(Path(path).relative_to(root)) for _, path in expected} | {"checkpoints"}
    left = {name: mtime for name, mtime in before.items() if not any(name.startswith(g) for g in gone)}
    assert _files(root) == left  # exactly those went: no lock left behind either


def test_every_dated_output_lives_in_its_kind_folder():
    paths, day = Paths("root"), D("2026-11-22")
    written = {
        "ratings": paths.ratings(day), "indexes": paths.user_index(day), "recommendations": paths.recommendations(day),
        "similar_items": paths.similar_items(day), "reports": paths.tune_reports(day),
        "quarantine": paths.quarantine(day),
    }
    assert written.keys() == set(DATED_KINDS)
    for kind, path in written.items():
        assert path.startswith(f"{paths.dated_root(kind)}/run_date={day}")


def test_clean_keeps_the_models_of_the_last_test_days_nights_for_the_next_gates(spark, tmp_path, capsys):
    root = tmp_path / "out"
    paths = Paths(str(root))
    for version in ("als-20261110-aaaa", "als-20261116-bbbb", "als-20261120-cccc", "als-20261122-dddd"):
        _folder(Path(paths.model(version)))
    args = ["--run-date", "2026-11-22", "--set", f"output.root={root}", "--set", "retention.keep_models=1"]
    assert cli.main(["clean", "--dry-run", *args]) == 0
    # evaluate.test_days = 7: the gates of 11-23 .. 11-29 measure the models of 11-16 .. 11-22.
    assert [r["path"] for r in json.loads(capsys.readouterr().out)["removed"]] == [paths.model("als-20261110-aaaa")]
    assert cli.main(["clean", "--dry-run", *args, "--set", "evaluate.split=random"]) == 0
    assert [r["path"] for r in json.loads(capsys.readouterr().out)["removed"]] == [
        paths.model(v) for v in ("als-20261110-aaaa", "als-20261116-bbbb", "als-20261120-cccc")
    ]
