"""A night as an operator sees it: `sparkals nightly` in its own process, as cron or Airflow runs it.

One small night (local[2], its own JVM) with MLflow tracking on a local file store is run once for
the module; the tests read its stderr (no warning nobody can act on, progress lines), its MLflow run
and, as "the previous output", its output root, which a second process then finds read-only or full.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkals.config import TrackingSettings
from sparkals.generate import GeneratorSpec
from sparkals.stages import generate
from sparkals.tracking import TrackingError, open_tracker

RUN_DATE = "2026-10-01"
SETTINGS = [
    "--set", "spark.master=local[2]", "--set", "spark.shuffle_partitions=2",
    "--set", "spark.conf={\"spark.ui.enabled\" = \"false\", \"spark.driver.memory\" = \"1g\"}",
    "--set", "als.rank=8", "--set", "als.max_iter=3", "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2",
    "--set", "recommend.top_n=5",
]
LIMIT_S = 900  # a safety net for a hung run, not a performance check
# The one line left on stderr that is no logger's: the JDK prints it whenever a JVM resolves an
# incubator module, and Spark's launcher adds jdk.incubator.vector (the Vector API its Java BLAS
# uses) to every JVM it starts. No JVM option turns it off.
JDK_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"


def _nightly(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparkals.cli", "nightly", "--run-date", RUN_DATE, *SETTINGS, *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=LIMIT_S, stdin=subprocess.DEVNULL,
    )


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("night")
    events = root / "events"
    spec = GeneratorSpec(users=300, items=100, events=20_000, seed=3, start=dt.date(2026, 8, 1), days=60)
    generate.run(spark, spec, str(events))
    out, store = root / "out", root / "mlruns"
    done = _nightly(
        ["--set", f"input.path={events}", "--set", f"output.root={out}",
         "--set", f"tracking.mlflow_uri={store.as_uri()}", "--set", "tracking.experiment=nightly-test"],
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked: the store
        # of this test, not a recommendation (see the README's tracking section).
        MLFLOW_ALLOW_FILE_STORE="true",
    )
    assert done.returncode == 0, f"nightly exited {done.returncode}\n{done.stderr[-4000:]}"
    summary = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    return {"root": root, "events": events, "out": out, "store": store, "stderr": done.stderr, "summary": summary}


@pytest.mark.slow
def test_a_normal_night_logs_no_warning_and_shows_its_progress(night):
    lines = night["stderr"].splitlines()
    noise = [line for line in lines if line != JDK_NOTICE and any(
        word in line for word in (" WARN ", " ERROR ", "WARNING", "Exception", "log4j", "netlib", "setLogLevel")
    )]
    assert noise == [], "\n".join(noise)
    for stage in ("ingest", "aggregate", "train", "gate", "recommend"):
        assert sum(f"INFO sparkals.stages: {stage}: done in" in line for line in lines) == 1, stage
    # Progress inside the long stages: the holdout's training, the systems measured, the scoring.
    assert any("evaluate: ALS trained on" in line for line in lines)
    assert sum("evaluate: als, popular, recent_popular listed and measured in" in line for line in lines) == 1
    assert any("recommend: scoring with model als-" in line for line in lines)
    assert any("recommend: scored 300 users" in line for line in lines)


@pytest.mark.slow
def test_the_night_is_one_mlflow_run_with_its_settings_times_scores_and_model(night, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    summary = night["summary"]
    client = MlflowClient(tracking_uri=night["store"].as_uri())
    experiment = client.get_experiment_by_name("nightly-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert summary["tracking"]["mlflow_run_id"] == run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == f"nightly {RUN_DATE}"

    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["als.rank"] == "8" and params["ratings.weights.transaction"] == "10.0"
    assert params["evaluate.ks"] == "[5, 10, 20]" and params["gate.enabled"] == "true"
    assert set(summary["stage_seconds"]) == {"ingest", "aggregate", "train", "gate", "recommend"}
    for stage, seconds in summary["stage_seconds"].items():
        assert metrics[f"seconds.{stage}"] == pytest.approx(seconds)
    gate = summary["gate"]
    assert gate["metric"] == "ndcg@10" and gate["status"] == "promoted"
    assert metrics["holdout.ndcg_at_10.als"] == pytest.approx(gate["candidate_score"])
    assert metrics["holdout.ndcg_at_10.popular"] == pytest.approx(gate["baselines"]["popular"])
    assert metrics["holdout.ndcg_at_10.recent_popular"] == pytest.approx(gate["baselines"]["recent_popular"])
    assert metrics["recommend.users_scored"] == summary["recommend"]["users_scored"] == 300
    assert tags["sparkals.status"] == "succeeded" and tags["sparkals.gate"] == "promoted"
    assert tags["sparkals.model_version"] == summary["train"]["model_version"] == tags["sparkals.serving"]

    local = Path(client.download_artifacts(run.info.run_id, "model_metadata.json", str(night["root"] / "art")))
    metadata = json.loads(local.read_text())
    assert metadata["model_version"] == summary["train"]["model_version"]
    assert metadata["gate"]["status"] == "promoted" and metadata["parameters"]["rank"] == 8


def test_tracking_without_mlflow_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets when it is not installed
    with pytest.raises(TrackingError, match=r"pip install 'sparkals\[mlflow\]'"):
        open_tracker(TrackingSettings(mlflow_uri="file:///nowhere"))
    assert open_tracker(TrackingSettings()) is None  # off by default: mlflow is never imported


# Run inside private user and mount namespaces (`unshare -rm`): the read-only bind mount and the
# full tmpfs exist only for this process. As root, chmod would not stop a write; this does.
IN_NAMESPACE = r"""
set -eu
mount --bind "$OUT" "$READ_ONLY" && mount -o remount,bind,ro "$READ_ONLY"
mount -t tmpfs -o "size=$FULL_SIZE" tmpfs "$FULL"
cp -a "$OUT/." "$FULL/"
dd if=/dev/zero of="$FULL/filler" bs=64k 2>/dev/null || true  # until no space is left
exec "$PYTHON" -c "$SCRIPT" "$@"
"""
TWO_NIGHTS = r"""
import hashlib, json, os, sys
from pathlib import Path
from sparkals import cli

def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and p.name != "filler"}

full_before = digests(os.environ["FULL"])
codes = {name: cli.main(["nightly", *sys.argv[1:], "--set", f"output.root={os.environ[name]}"])
         for name in ("READ_ONLY", "FULL")}
print("RESULT " + json.dumps({"codes": codes, "full_before": full_before, "full_after": digests(os.environ["FULL"])}))
"""


@pytest.mark.slow
def test_a_read_only_or_full_output_root_fails_at_once_and_leaves_the_previous_night(night):
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -rm` (user and mount namespaces) for a read-only mount and a full tmpfs")
    root, out = night["root"], night["out"]
    before = _digests(out)
    size_kb = sum((root / "out" / name).stat().st_size for name in before) // 1024 + 2048
    places = {"READ_ONLY": root / "read_only", "FULL": root / "full"}
    for place in places.values():
        place.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", IN_NAMESPACE, "sh", "--run-date", RUN_DATE, *SETTINGS,
         "--set", f"input.path={night['events']}"],
        env={**os.environ, **{k: str(v) for k, v in places.items()}, "OUT": str(out), "FULL_SIZE": f"{size_kb}k",
             "PYTHON": sys.executable, "SCRIPT": TWO_NIGHTS},
        capture_output=True, text=True, timeout=LIMIT_S, stdin=subprocess.DEVNULL,
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not found:
        pytest.fail(f"the two nights did not report (exit {done.returncode})\n{done.stderr[-4000:]}")
    result = json.loads(found[0].split(" ", 1)[1])
    assert result["codes"] == {"READ_ONLY": 1, "FULL": 1}
    for where, reason in ((places["READ_ONLY"], "Read-only file system"), (places["FULL"], "No space left on device")):
        (message,) = [m for m in done.stderr.splitlines() if m.startswith(f"sparkals nightly: output.root {where} ")]
        assert "cannot be written" in message and reason in message and "nothing was changed" in message, message
    assert _digests(out) == before  # the read-only night wrote nothing where it could not
    assert result["full_after"] == result["full_before"] and len(result["full_before"]) == len(before)
