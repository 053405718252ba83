"""The nightly job on a real Spark standalone cluster, submitted with scripts/submit.sh.

One master and two one-core workers on 127.0.0.1, started from the pip pyspark's own bin/spark-class:
the same code path as a production submit (packaging, --py-files, executors in other JVMs with their
own Python workers), only small. Every process started here is killed, by process group, at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from pyspark.sql import functions as F

from sparkals.stages import generate
from sparkals.generate import GeneratorSpec

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-10-01"
TOP_N = 5
# Safety nets for a hung cluster, not performance checks: the whole module takes about 2 minutes.
STARTUP_LIMIT_S = 120
SUBMIT_LIMIT_S = 600
# A frozen executor is let go after this long when it holds no task, and another is tried.
FREEZE_RETRY_S = 0.05
# A frozen executor's log is read once it has not grown for this long (see _settled_log).
LOG_SETTLE_S = 0.3
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _free_port() -> int:
    """A port nobody listens on now (the daemons bind it a moment later: good enough on a test box)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} was not written)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop a process and everything it started (executors, Python workers): its whole group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, or a leader that ignored TERM
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class Cluster:
    url: str
    webui: str
    env: dict[str, str]
    logs: list[Path] = field(default_factory=list)
    work_dirs: list[Path] = field(default_factory=list)  # where the workers start their executors

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.webui}/json/", timeout=5) as response:
            return json.load(response)

    def log_tails(self) -> str:
        return "\n".join(f"--- {log.name} ---\n{_tail(log)}" for log in self.logs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    import pyspark

    root = tmp_path_factory.mktemp("standalone")
    spark_home = Path(pyspark.__file__).parent
    conf_dir = root / "conf"  # empty: no spark-defaults.conf or spark-env.sh of this machine leaks in
    conf_dir.mkdir()
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(root / "local"),
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_DAEMON_JAVA_OPTS": FAST_JVM,
    }
    port, webui_port = _free_port(), _free_port()
    url, webui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master",
                   "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui_port)],
    }
    for n in (1, 2):
        commands[f"worker{n}"] = [
            spark_class, "org.apache.spark.deploy.worker.Worker", url, "--cores", "1", "--memory", "1g",
            "--host", "127.0.0.1", "--webui-port", str(_free_port()), "--work-dir", str(root / f"work{n}"),
        ]
    cluster = Cluster(url=url, webui=webui, env={k: v for k, v in env.items() if k != "SPARK_HOME"},
                      work_dirs=[root / "work1", root / "work2"])
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            log = root / f"{name}.log"
            cluster.logs.append(log)
            with log.open("wb") as out:
                procs[name] = subprocess.Popen(
                    command, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
        _wait_for_workers(cluster, procs, expected=2)
        yield cluster
    finally:
        for proc in reversed(list(procs.values())):
            _stop_group(proc)


def _wait_for_workers(cluster: Cluster, procs: dict[str, subprocess.Popen], expected: int) -> None:
    """Poll the master's JSON until `expected` workers are ALIVE; fail with the logs if not."""
    deadline = time.monotonic() + STARTUP_LIMIT_S
    last = "master not answering yet"
    while time.monotonic() < deadline:
        dead = {name: proc.returncode for name, proc in procs.items() if proc.poll() is not None}
        if dead:
            pytest.fail(f"standalone cluster process exited early {dead}\n{cluster.log_tails()}")
        try:
            alive = cluster.state().get("aliveworkers", 0)
            last = f"{alive} of {expected} workers registered"
            if alive >= expected:
                return
        except (urllib.error.URLError, OSError, ValueError) as err:
            last = f"master web UI {cluster.webui}: {err}"
        time.sleep(0.5)
    pytest.fail(f"standalone cluster not up after {STARTUP_LIMIT_S}s ({last})\n{cluster.log_tails()}")


@dataclass
class Submission:
    proc: subprocess.Popen
    command: list[str]
    out: Path
    err: Path

    def output(self) -> str:
        """What the driver printed so far (a Python driver's stderr goes to spark-submit's stdout)."""
        return "".join(path.read_text(errors="replace") for path in (self.out, self.err) if path.exists())


def _start_submit(cluster: Cluster, args: list[str], logs: Path, conf: tuple[str, ...] = ()) -> Submission:
    """scripts/submit.sh against the cluster, in the background; `conf` adds (or overrides) --conf."""
    command = [
        str(REPO / "scripts" / "submit.sh"), "--master", cluster.url,
        "--conf", "spark.executor.memory=1g", "--conf", "spark.cores.max=2",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
        # Short-lived JVMs on a 2-core box: the C1 compiler only, and no parallel GC threads.
        "--conf", f"spark.driver.extraJavaOptions={FAST_JVM}", "--conf", f"spark.executor.extraJavaOptions={FAST_JVM}",
        *[option for setting in conf for option in ("--conf", setting)],
        *args,
    ]
    env = {**cluster.env, "DIST_DIR": str(logs / "dist")}
    env.pop("PYSPARK_PYTHON", None)  # submit.sh's own default (the .venv Python) is under test
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    out_path, err_path = logs / "submit.out", logs / "submit.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    return Submission(proc, command, out_path, err_path)


def _finish(cluster: Cluster, submission: Submission) -> tuple[str, str]:
    """Wait for a submission; returns (stdout, stderr), fails with the tails on error."""
    try:
        code = submission.proc.wait(timeout=SUBMIT_LIMIT_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _stop_group(submission.proc)
    stdout = submission.out.read_text(errors="replace")
    stderr = submission.err.read_text(errors="replace")
    if code != 0:
        what = f"did not finish in {SUBMIT_LIMIT_S}s" if code is None else f"exited {code}"
        pytest.fail(
            f"submit.sh {what}: {' '.join(submission.command)}\n--- stdout ---\n{stdout[-3000:]}\n"
            f"--- stderr ---\n{_tail(submission.err, 60)}\n{cluster.log_tails()}"
        )
    return stdout, stderr


def _submit(cluster: Cluster, args: list[str], logs: Path) -> tuple[str, str]:
    """scripts/submit.sh against the cluster; returns (stdout, stderr), fails with the tails on error."""
    return _finish(cluster, _start_submit(cluster, args, logs))


def _finished_apps(cluster: Cluster, name: str) -> list[dict]:
    return [app for app in cluster.state()["completedapps"] if app["name"] == name]


def test_executors_import_sparkals_from_the_shipped_zip(cluster, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.appName('sparkals-probe').getOrCreate()\n"
        "def where(_):\n"
        "    import sparkals.config\n"
        "    return sparkals.config.__file__\n"
        "found = spark.sparkContext.parallelize(range(8), 8).map(where).collect()\n"
        "print('EXECUTOR_SPARKALS ' + json.dumps(sorted(set(found))))\n"
        "spark.stop()\n"
    )
    stdout, _ = _submit(cluster, [str(probe)], tmp_path)
    (line,) = [line for line in stdout.splitlines() if line.startswith("EXECUTOR_SPARKALS ")]
    paths = json.loads(line.split(" ", 1)[1])
    # Not the editable install in .venv: the zip that spark-submit shipped to the executor.
    assert paths and all("sparkals.zip" in path for path in paths), paths


def _nightly_args(events: Path, out: Path) -> list[str]:
    return [
        "nightly", "--config", "conf/cluster.toml", "--run-date", RUN_DATE,
        "--set", f"input.path={events}", "--set", f"output.root={out}",
        "--set", "als.rank=8", "--set", "als.max_iter=3",
        "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2",
        "--set", "spark.shuffle_partitions=4", "--set", f"recommend.top_n={TOP_N}",
    ]


@dataclass(frozen=True)
class Night:
    events: Path
    out: Path
    stdout: str
    stderr: str
    app: dict
    logs: Path


@pytest.fixture(scope="module")
def undisturbed(cluster, spark, tmp_path_factory) -> Night:
    """The nightly job on the cluster, nothing killed: the reference of the tests below."""
    logs = tmp_path_factory.mktemp("undisturbed")
    events = logs / "events"
    spec = GeneratorSpec(users=300, items=100, events=20_000, seed=3, start=dt.date(2026, 8, 1), days=60)
    generate.run(spark, spec, str(events))
    seen = {app["id"] for app in _finished_apps(cluster, "sparkals")}
    stdout, stderr = _submit(cluster, _nightly_args(events, logs / "out"), logs)
    (app,) = [app for app in _finished_apps(cluster, "sparkals") if app["id"] not in seen]
    return Night(events, logs / "out", stdout, stderr, app, logs)


def test_nightly_on_a_standalone_cluster(undisturbed, spark):
    stdout, stderr, out, events = undisturbed.stdout, undisturbed.stderr, undisturbed.out, undisturbed.events
    assert "users scored" in stdout
    # The driver ran the packaged code, not the editable install of this checkout. (spark-submit
    # sends a Python driver's stderr, where sparkals logs, to its stdout.)
    (loaded,) = [line for line in (stdout + stderr).splitlines() if "INFO sparkals: sparkals " in line]
    assert f"{undisturbed.logs / 'dist' / 'sparkals.zip'}" in loaded, loaded
    # It ran on this cluster, with the resources asked for.
    assert undisturbed.app["memoryperexecutor"] == 1024
    assert undisturbed.app["cores"] == 2, undisturbed.app

    recs = spark.read.parquet(str(out / "recommendations" / f"run_date={RUN_DATE}"))
    per_user = recs.groupBy("user_id").agg(
        F.count("*").alias("n"), F.countDistinct("item_id").alias("distinct"),
        F.sort_array(F.collect_list("rank")).alias("ranks"),
    )
    assert per_user.filter((F.col("n") != TOP_N) | (F.col("distinct") != TOP_N)).count() == 0
    assert per_user.filter(F.col("ranks") != F.array(*[F.lit(i) for i in range(1, TOP_N + 1)])).count() == 0
    raw = spark.read.option("header", "true").csv(str(events))
    users = raw.select("visitorid").distinct().count()
    assert per_user.count() == users > 0
    summary = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    assert summary["ingest"]["rows_read"] == 20_000
    assert summary["recommend"]["users_scored"] == users


def _executors(cluster: Cluster) -> dict[int, Path]:
    """This cluster's executor JVMs (CoarseGrainedExecutorBackend processes started in one of our
    workers' work folders: other people's Spark on this machine is never touched), pid to the
    executor's folder, where its stderr log is. Found by scanning /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if (b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in argv
                and any(work in cwd.parents for work in cluster.work_dirs)):
            found[int(entry.name)] = cwd
    return found


# How an executor logs a task starting and ending (finished, failed, or killed by the driver).
TASK_LINE = re.compile(r"Executor: (Running|Finished|Exception in|Executor killed) task .*?\(TID (\d+)\)")


def _settled_log(executor_log: Path, limit_s: float = 5.0) -> str:
    """A frozen executor's log, once the worker has copied all of it.

    The standalone worker copies an executor's stderr into this file through a pipe, so the file
    can lag the JVM by a few lines: a task's `Finished task` line (logged before its result is
    sent) can still be in the pipe when the JVM is frozen. Read then, a task whose result the
    driver already has looks unfinished, and killing its executor loses no running task. A frozen
    JVM writes nothing more, so the file is read once its size has held still for LOG_SETTLE_S."""
    size, still_since, deadline = -1, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = executor_log.stat().st_size if executor_log.exists() else 0
        if now != size:
            size, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= LOG_SETTLE_S:
            break
        time.sleep(0.05)
    return executor_log.read_text(errors="replace") if executor_log.exists() else ""


def _unfinished_tasks(executor_log: Path) -> set[str]:
    """Task ids the executor's log says it started and has not ended. The executor logs
    `Finished task` before it sends the result, so the driver has no result of these."""
    running: set[str] = set()
    for state, tid in TASK_LINE.findall(_settled_log(executor_log)):
        (running.add if state == "Running" else running.discard)(tid)
    return running


@dataclass(frozen=True)
class Kill:
    phase: str
    executor: str
    pid: int
    tasks: tuple[str, ...]


def _driver_running_tasks(ui: str) -> dict[str, int]:
    """Tasks the driver counts as running, per executor id, from its REST API (`ui`: its web UI)."""
    with urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=5) as response:
        (app,) = json.load(response)
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app['id']}/executors", timeout=5) as response:
        return {executor["id"]: executor["activeTasks"] for executor in json.load(response)}


def _kill_an_executor_during(
    cluster: Cluster, submission: Submission, driver_ui: str, phase: str, begun: str, ended: str
) -> Kill:
    """Once the driver has logged `begun`, SIGKILL an executor JVM while it runs a task of that phase.

    A phase on test-sized data lasts seconds, made of tasks of milliseconds, so asking the driver
    which executor runs a task and killing it then misses now and then. Instead the executors are
    frozen (SIGSTOP) in turn. A frozen executor is killed when both sides say it holds a task: its
    own log shows a task it has not finished, and the driver (`driver_ui`, asked after the freeze)
    counts a task running on it. Else it is let go (SIGCONT) and the next one is tried. The driver's
    word matters: a task whose result reached the driver just before the freeze, or one the
    driver no longer tracks, would be lost without the driver losing a running task."""
    deadline = time.monotonic() + SUBMIT_LIMIT_S
    while time.monotonic() < deadline:
        if submission.proc.poll() is not None:
            pytest.fail(f"the night ended before the {phase} kill\n{submission.output()[-3000:]}")
        said = submission.output()
        if ended in said:
            pytest.fail(f"{phase} ended before an executor could be killed during it\n{said[-3000:]}")
        if begun not in said:
            time.sleep(0.1)
            continue
        for pid, folder in _executors(cluster).items():
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            tasks = _unfinished_tasks(folder / "stderr")
            if tasks and _driver_running_tasks(driver_ui).get(folder.name, 0) > 0:
                os.kill(pid, signal.SIGKILL)
                return Kill(phase, folder.name, pid, tuple(sorted(tasks)))
            os.kill(pid, signal.SIGCONT)
            time.sleep(FREEZE_RETRY_S)
    pytest.fail(f"no {phase} work to interrupt in {SUBMIT_LIMIT_S}s")


def _recommendations(spark, out: Path) -> list:
    recs = spark.read.parquet(str(out / "recommendations" / f"run_date={RUN_DATE}"))
    return recs.select("user_id", "rank", "item_id", "score", "source").orderBy("user_id", "rank").collect()


@pytest.mark.slow
def test_a_night_survives_losing_an_executor_in_training_and_in_scoring(cluster, spark, undisturbed, tmp_path):
    """Two SIGKILLs of an executor JVM, one while ALS trains and one while users are scored, each
    while one of its tasks runs: the driver re-runs the lost tasks (and whatever shuffle output or
    cached blocks died with the executor) on the other, and the standalone worker starts a new one.

    How the moment is found: the driver logs `train: started` / `recommend: scoring with` when the
    phase begins and `train: done` / `recommend: scored` when it ends; in between, the executor JVMs
    (found in /proc) are frozen in turn until one is caught holding a task it has not finished
    (its own log says so, and the driver's REST API counts a task running on it), and that one is
    killed.

    The recommendations equal the undisturbed night's: the same items at the same ranks from the
    same source, the scores to a few float roundings (1e-6 relative). Why: ALS's random start is
    seeded per block, so a recomputed block starts where it did; lost partitions are recomputed from
    the same files. Why not to the bit: a recomputation can fetch the same ratings in another order,
    and each user's normal equations are then summed in another order; the sums are in double
    precision (a difference near 1e-16) and the factors are kept as float (resolution 6e-8), so a
    factor changes by one rounding when a value lies that close to a float rounding boundary. Every
    run up to 2026-11-25 was equal to the bit; on 2026-11-30 three runs in a row were not (the code
    before and after the gate's holdout model reuse), the one inspected with 91 of 1,500 scores one
    rounding apart (1.4e-7 relative) and no item moved."""
    out = tmp_path / "out"
    # gate.enabled=false: the gate's holdout evaluation would train a second ALS that this test does
    # not need (the undisturbed night's gate promoted the same model, so the same model scores).
    args = [*_nightly_args(undisturbed.events, out), "--set", "gate.enabled=false"]
    ui_port = _free_port()  # the driver's UI, for its REST API: which executor runs a task
    submission = _start_submit(cluster, args, tmp_path, conf=("spark.ui.enabled=true", f"spark.ui.port={ui_port}"))
    driver_ui = f"http://127.0.0.1:{ui_port}"
    try:
        kills = [
            _kill_an_executor_during(cluster, submission, driver_ui, "training", "train: started", "train: done"),
            _kill_an_executor_during(cluster, submission, driver_ui, "scoring", "recommend: scoring with",
                                     "recommend: scored"),
        ]
    except BaseException:
        _stop_group(submission.proc)
        raise
    stdout, stderr = _finish(cluster, submission)
    said = stdout + stderr
    for kill in kills:
        assert f"Lost executor {kill.executor} " in said, (kill, said[-3000:])
        about = "\n".join(line for line in said.splitlines() if f"executor {kill.executor}" in line.lower())
        assert f"ExecutorLostFailure (executor {kill.executor} exited" in said, (kill, about)  # a running task was lost
        assert any(f"(TID {tid}) " in line for line in about.splitlines() for tid in kill.tasks), (kill, about)
    summary = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    assert summary["status"] == "succeeded", summary
    got, expected = _recommendations(spark, out), _recommendations(spark, undisturbed.out)
    assert len(got) == len(expected)
    listed = [((a.user_id, a.rank, a.item_id, a.source), (b.user_id, b.rank, b.item_id, b.source))
              for a, b in zip(got, expected)]
    moved = [(a, b) for a, b in listed if a != b]
    assert not moved, (kills, len(moved), moved[:5])
    rounded = [(a, b) for a, b in zip(got, expected) if a.score != pytest.approx(b.score, rel=1e-6)]
    assert not rounded, (kills, len(rounded), rounded[:5])
