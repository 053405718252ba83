"""What spark-submit ships: scripts/package.sh's zip, scripts/submit.sh's argument handling, the
Airflow example. The real submit to a cluster is in test_cluster.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    result = _run([str(REPO / "scripts" / "package.sh")], DIST_DIR=str(dist))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dist / "sparkals.zip")
    return dist


def test_zip_alone_imports_sparkals(dist):
    # -I -S: no site-packages, so no editable install of this checkout; only the zip and the stdlib.
    code = "import sys; sys.path.insert(0, sys.argv[1]); import sparkals.config; print(sparkals.config.__file__)"
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(dist / "sparkals.zip")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dist / "sparkals.zip" / "sparkals" / "config.py")


def test_zip_holds_every_module_and_no_bytecode(dist):
    names = set(zipfile.ZipFile(dist / "sparkals.zip").namelist())
    sources = {f"sparkals/{p.relative_to(REPO / 'src' / 'sparkals').as_posix()}"
               for p in (REPO / "src" / "sparkals").rglob("*.py") if "__pycache__" not in p.parts}
    assert sources and sources <= names
    assert "sparkals/py.typed" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_dist_copies_conf_and_jobs(dist):
    for folder in ("conf", "jobs"):
        expected = sorted(p.name for p in (REPO / folder).iterdir() if p.is_file())
        assert sorted(p.name for p in (dist / folder).iterdir()) == expected
        for name in expected:
            assert (dist / folder / name).read_bytes() == (REPO / folder / name).read_bytes()


def test_package_is_idempotent(dist):
    before = (dist / "sparkals.zip").read_bytes()
    (dist / "conf" / "stale.toml").write_text("# removed from conf/: must not survive a rebuild\n")
    result = _run([str(REPO / "scripts" / "package.sh")], DIST_DIR=str(dist))
    assert result.returncode == 0, result.stderr
    assert (dist / "sparkals.zip").read_bytes() == before
    assert not (dist / "conf" / "stale.toml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no JOB given"),
        (["--master"], "option --master needs a value"),
        (["--master", "local[1]", "nosuchjob"], "unknown job 'nosuchjob'"),
        (["../tests/conftest"], "unknown job '../tests/conftest'"),
        (["missing_app.py"], "no such application: missing_app.py"),
    ],
)
def test_submit_rejects_bad_arguments_with_usage(args, message):
    result = _run([str(REPO / "scripts" / "submit.sh"), *args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage: scripts/submit.sh [spark-submit options] JOB [job arguments]" in result.stderr


def test_submit_help_lists_the_jobs():
    result = _run([str(REPO / "scripts" / "submit.sh"), "--help"])
    assert result.returncode == 0
    for job in (REPO / "jobs").glob("*.py"):
        assert job.stem in result.stdout


def test_airflow_example_is_valid_python_running_the_packaged_nightly():
    path = REPO / "scripts" / "airflow_nightly_dag.py"
    tree = ast.parse(path.read_text(), str(path))
    compile(tree, str(path), "exec")
    (call,) = [node for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SparkSubmitOperator"]
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert "jobs/nightly.py" in keywords["application"]
    assert "sparkals.zip" in keywords["py_files"]
    assert "conf/cluster.toml" in keywords["files"]
    assert "'--run-date', '{{ ds }}'" in keywords["application_args"]
