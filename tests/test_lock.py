"""The run lock: one run at a time per output root, shown with two real processes."""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkals import cli
from sparkals.config import LockSettings
from sparkals.errors import LockError
from sparkals.lock import RunLock

NIGHT = dt.date(2026, 11, 22)

# Another process: takes the lock through its own SparkSession, says so, holds it until its stdin closes.
HOLDER = """
import datetime as dt, sys
from pyspark.sql import SparkSession
from sparkals.config import LockSettings
from sparkals.lock import RunLock
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
with RunLock(spark, sys.argv[1], dt.date(2026, 11, 22), "nightly", LockSettings(heartbeat_seconds=1)):
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below root but the holder's lock (its heartbeat rewrites it), with its size and
    modification time: what a run touched."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*") if "_LOCK" not in p.name
    }


def _wait_for_heartbeat(path: Path, since: str) -> dict:
    """Poll (up to a minute: the machine is shared) until the lock's heartbeat moves past `since`."""
    for _ in range(240):
        try:
            content = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # between the heartbeat's write and rename
            content = {}
        if content.get("heartbeat_at", since) > since:
            return content
        time.sleep(0.25)
    raise AssertionError(f"the heartbeat of {path} never moved past {since}")


def test_a_second_run_stops_with_status_5_and_writes_nothing_while_another_process_holds_the_lock(
    spark, tmp_path, capsys
):
    root = tmp_path / "out"
    lock = root / "_LOCK.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        info = json.loads(lock.read_text())
        assert (info["pid"], info["run_date"], info["command"]) == (holder.pid, "2026-11-22", "nightly")
        beat = _wait_for_heartbeat(lock, info["heartbeat_at"])  # the holder is alive and says so
        assert beat["token"] == info["token"] and beat["started_at"] == info["started_at"]

        before = _files(root)
        args = ["--run-date", "2026-11-22", "--set", f"output.root={root}", "--set", "spark.log_level=ERROR"]
        assert cli.main(["nightly", *args]) == cli.LOCKED == 5
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "stopped before writing anything" in err and str(lock) in err
        assert cli.main(["clean", "--yes", *args]) == cli.LOCKED
        assert _files(root) == before  # no run record, no checkpoint folder, nothing

        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=120) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert not lock.exists()
    with RunLock(spark, str(lock), NIGHT, "nightly", LockSettings()):  # free again
        assert lock.exists()


def test_a_lock_without_heartbeat_for_stale_minutes_is_taken_over_with_a_warning(spark, tmp_path, caplog):
    lock = tmp_path / "_LOCK.json"
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=31)).isoformat(timespec="seconds")
    lock.write_text(json.dumps({
        "run_date": "2026-11-21", "command": "nightly", "host": "gone.example.com", "pid": 4242,
        "started_at": old, "heartbeat_at": old, "token": "dead",
    }))
    with RunLock(spark, str(lock), NIGHT, "train", LockSettings(stale_minutes=30)) as held:
        assert json.loads(lock.read_text())["token"] == held.info.token
    assert "taking over" in caplog.text and "gone.example.com (pid 4242)" in caplog.text
    assert not lock.exists()


def test_a_fresh_lock_is_not_taken_over_and_an_unreadable_one_ages_by_its_file_time(spark, tmp_path):
    lock = tmp_path / "_LOCK.json"
    recent = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=29)).isoformat(timespec="seconds")
    held = {"run_date": "2026-11-21", "command": "nightly", "host": "h", "pid": 1, "started_at": recent,
            "heartbeat_at": recent, "token": "live"}
    lock.write_text(json.dumps(held))
    with pytest.raises(LockError, match=r"`nightly` for run date 2026-11-21 on h \(pid 1\)"):
        RunLock(spark, str(lock), NIGHT, "nightly", LockSettings(stale_minutes=30)).acquire()
    assert json.loads(lock.read_text()) == held

    lock.write_text('{"run_date": "2026-')  # a holder cut short while writing: its file is a minute old
    with pytest.raises(LockError, match="cannot be read"):
        RunLock(spark, str(lock), NIGHT, "nightly", LockSettings(stale_minutes=30)).acquire()
    hour_ago = time.time() - 3600
    os.utime(lock, (hour_ago, hour_ago))
    with RunLock(spark, str(lock), NIGHT, "nightly", LockSettings(stale_minutes=30)):
        assert json.loads(lock.read_text())["command"] == "nightly"


def test_the_lock_is_released_and_its_heartbeat_stopped_when_the_run_fails(spark, tmp_path):
    lock = tmp_path / "_LOCK.json"
    held = RunLock(spark, str(lock), NIGHT, "nightly", LockSettings(stale_minutes=1, heartbeat_seconds=1))
    with pytest.raises(RuntimeError, match="a stage failed"):
        with held:
            first = json.loads(lock.read_text())
            _wait_for_heartbeat(lock, first["heartbeat_at"])
            assert held.heartbeat_alive
            raise RuntimeError("a stage failed")
    assert not lock.exists() and not held.heartbeat_alive


def test_a_failing_command_releases_the_lock_and_removes_checkpoint_files(spark, tmp_path, capsys):
    root = tmp_path / "out"
    (root / "checkpoints" / "left-by-a-killed-run").mkdir(parents=True)
    (root / "checkpoints" / "left-by-a-killed-run" / "rdd-1").write_text("x")
    code = cli.main(["train", "--run-date", "2026-11-22", "--set", f"output.root={root}"])
    assert code == 1 and "run `sparkals aggregate` first" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == []  # no lock, no checkpoints


def test_a_lock_taken_over_while_held_is_left_to_its_new_holder(spark, tmp_path, caplog):
    lock = tmp_path / "_LOCK.json"
    with RunLock(spark, str(lock), NIGHT, "nightly", LockSettings()) as held:
        taken = {**json.loads(lock.read_text()), "token": "someone-else", "host": "other"}
        lock.write_text(json.dumps(taken))
        assert not held.beat()
    assert json.loads(lock.read_text()) == taken
    assert "no longer this run's" in caplog.text


def test_an_output_root_no_run_can_write_to_is_a_clear_error(spark, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    code = cli.main(["train", "--run-date", "2026-11-22", "--set", f"output.root={tmp_path / 'a-file' / 'out'}"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot be written" in err and "the run lock" in err and "nothing was changed" in err
