"""The nightly job on a real Spark standalone cluster, submitted with scripts/submit.sh.

One master and two one-core workers on 127.0.0.1, started from the pip pyspark's own bin/spark-class:
the same code path as a production submit (packaging, --py-files, executors in other JVMs with their
own Python workers), only small. Every process started here is killed, by process group, at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
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
    cluster = Cluster(url=url, webui=webui, env={k: v for k, v in env.items() if k != "SPARK_HOME"})
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


def _submit(cluster: Cluster, args: list[str], logs: Path) -> tuple[str, str]:
    """scripts/submit.sh against the cluster; returns (stdout, stderr), fails with the tails on error."""
    command = [
        str(REPO / "scripts" / "submit.sh"), "--master", cluster.url,
        "--conf", "spark.executor.memory=1g", "--conf", "spark.cores.max=2",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
        # Short-lived JVMs on a 2-core box: the C1 compiler only, and no parallel GC threads.
        "--conf", f"spark.driver.extraJavaOptions={FAST_JVM}", "--conf", f"spark.executor.extraJavaOptions={FAST_JVM}",
        *args,
    ]
    env = {**cluster.env, "DIST_DIR": str(logs / "dist")}
    env.pop("PYSPARK_PYTHON", None)  # submit.sh's own default (the .venv Python) is under test
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    out_path, err_path = logs / "submit.out", logs / "submit.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=SUBMIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _stop_group(proc)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if code != 0:
        what = f"did not finish in {SUBMIT_LIMIT_S}s" if code is None else f"exited {code}"
        pytest.fail(
            f"submit.sh {what}: {' '.join(command)}\n--- stdout ---\n{stdout[-3000:]}\n"
            f"--- stderr ---\n{_tail(err_path, 60)}\n{cluster.log_tails()}"
        )
    return stdout, stderr


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


def test_nightly_on_a_standalone_cluster(cluster, spark, tmp_path):
    events = tmp_path / "events"
    spec = GeneratorSpec(users=300, items=100, events=20_000, seed=3, start=dt.date(2026, 8, 1), days=60)
    generate.run(spark, spec, str(events))
    out = tmp_path / "out"

    stdout, stderr = _submit(cluster, [
        "nightly", "--config", "conf/cluster.toml", "--run-date", RUN_DATE,
        "--set", f"input.path={events}", "--set", f"output.root={out}",
        "--set", "als.rank=8", "--set", "als.max_iter=3",
        "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2",
        "--set", "spark.shuffle_partitions=4", "--set", f"recommend.top_n={TOP_N}",
    ], tmp_path)

    assert "users scored" in stdout
    # The driver ran the packaged code, not the editable install of this checkout. (spark-submit
    # sends a Python driver's stderr, where sparkals logs, to its stdout.)
    (loaded,) = [line for line in (stdout + stderr).splitlines() if "INFO sparkals: sparkals " in line]
    assert f"{tmp_path / 'dist' / 'sparkals.zip'}" in loaded, loaded
    # It ran on this cluster, with the resources asked for.
    (app,) = _finished_apps(cluster, "sparkals")
    assert app["memoryperexecutor"] == 1024
    assert app["cores"] == 2, app

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
