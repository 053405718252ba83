"""SPARK_HOME handling: a Spark installation's own pyspark is used (findspark), the pip one is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sparkals.config import SparkSettings
from sparkals.session import LOCAL_MASTER_CONF, SparkHomeError, spark_conf, spark_home_to_use


def _fake_spark_home(root: Path, init: str = "") -> Path:
    """The layout findspark needs: python/pyspark/ and python/lib/py4j-*.zip."""
    (root / "python" / "pyspark").mkdir(parents=True)
    (root / "python" / "pyspark" / "__init__.py").write_text(init)
    (root / "python" / "lib").mkdir()
    zipfile.ZipFile(root / "python" / "lib" / "py4j-0.0-src.zip", "w").close()
    return root


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "PYSPARK_PYTHON")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)


def test_no_spark_home_means_the_pip_pyspark(monkeypatch):
    monkeypatch.delenv("SPARK_HOME", raising=False)
    assert spark_home_to_use() is None


def test_spark_home_of_the_pip_package_is_left_alone(monkeypatch):
    # What spark-submit of the pip package exports: findspark must not run there.
    import pyspark

    monkeypatch.setenv("SPARK_HOME", str(Path(pyspark.__file__).parent))
    assert spark_home_to_use() is None


def test_a_spark_installation_is_used(monkeypatch, tmp_path):
    home = _fake_spark_home(tmp_path / "spark")
    monkeypatch.setenv("SPARK_HOME", str(home))
    assert spark_home_to_use() == str(home.resolve())
    monkeypatch.setenv("SPARKALS_SKIP_FINDSPARK", "1")
    assert spark_home_to_use() is None


def test_a_spark_home_that_is_no_installation_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    with pytest.raises(SparkHomeError, match="not a Spark installation"):
        spark_home_to_use()


def test_cli_imports_the_installations_pyspark_before_the_pip_one(tmp_path):
    home = _fake_spark_home(tmp_path / "spark", init="raise ImportError('pyspark of the Spark installation')\n")
    result = _python("import sparkals.cli", SPARK_HOME=str(home))
    assert result.returncode != 0
    assert "pyspark of the Spark installation" in result.stderr


def test_findspark_leaves_pyspark_python_unset(tmp_path):
    home = _fake_spark_home(tmp_path / "spark", init="MARK = 'installation'\n")
    code = (
        "import os; from sparkals.session import use_spark_home; use_spark_home(); import pyspark; "
        "print(pyspark.MARK, os.environ.get('PYSPARK_PYTHON'))"
    )
    result = _python(code, SPARK_HOME=str(home))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["installation", "None"]


def test_a_local_master_lists_partition_folders_on_the_driver_unless_the_user_says_otherwise():
    key = "spark.sql.sources.parallelPartitionDiscovery.threshold"
    assert spark_conf(SparkSettings(master="local[*]"))[key] == LOCAL_MASTER_CONF[key] == "10000"
    assert key not in spark_conf(SparkSettings(master="spark://head:7077"))
    assert key not in spark_conf(SparkSettings(master=""))  # spark-submit's choice: a cluster, often
    assert spark_conf(SparkSettings(master="local[2]", conf={key: "32"}))[key] == "32"


def test_driver_java_options_add_the_log4j2_file_and_keep_the_users_options_last():
    from sparkals.config import SparkSettings
    from sparkals.session import LOG4J2_FILE, driver_java_options

    mine = "-XX:+UseSerialGC -Dfoo=1"
    options = driver_java_options(SparkSettings(master="local[2]", conf={"spark.driver.extraJavaOptions": mine}))
    assert options.startswith(f"-Dlog4j2.configurationFile=file:{LOG4J2_FILE}") and options.endswith(mine)
    assert Path(LOG4J2_FILE).is_file()
    own = "-Dlog4j2.configurationFile=file:/etc/mine.properties"
    assert driver_java_options(SparkSettings(master="yarn", conf={"spark.driver.extraJavaOptions": own})) == own


def test_the_class_archive_is_off_auto_per_installation_or_a_given_path(monkeypatch, tmp_path):
    from sparkals.class_archive import archive_path, jvm_options
    from sparkals.session import java_binary

    monkeypatch.setenv("SPARKALS_CACHE_DIR", str(tmp_path / "cache"))
    java = java_binary()
    assert archive_path("", java) is None
    auto = archive_path("auto", java)
    assert auto.parent == tmp_path / "cache" / "jvm" and auto.name.startswith("driver-") and auto.suffix == ".jsa"
    assert archive_path("auto", java) == auto  # the same Java and Spark: the same archive
    assert archive_path(str(tmp_path / "a.jsa"), java) == tmp_path / "a.jsa"

    abandoned = auto.parent / f"{auto.name}.999999999.partial"  # a killed run's (no such pid)
    auto.parent.mkdir(parents=True)
    abandoned.write_bytes(b"half")
    options, partial = jvm_options(auto)  # none yet: this run writes one, under a temporary name
    assert not abandoned.exists()
    assert options[0] == f"-XX:ArchiveClassesAtExit={partial}" and partial.parent == auto.parent
    assert partial != auto and auto.parent.is_dir()
    auto.write_bytes(b"archive")
    options, partial = jvm_options(auto)  # there is one: later runs map it
    assert options[0] == f"-XX:SharedArchiveFile={auto}" and partial is None
    assert all(option.startswith("-Xlog:cds") for option in options[1:])


@pytest.mark.slow
def test_a_first_run_writes_the_class_archive_and_the_next_one_maps_it(tmp_path):
    archive = tmp_path / "driver.jsa"

    def generate(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sparkals.cli", "generate", "--events", "2000", "--users", "50",
                   "--items", "20", "--out", str(tmp_path / "log"), "--set", "spark.master=local[1]",
                   "--set", f"spark.class_archive={archive}", *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "PYSPARK_GATEWAY_PORT")}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    first = generate()
    assert first.returncode == 0, first.stderr[-2000:]
    assert archive.is_file() and archive.stat().st_size > 10**7
    assert not list(tmp_path.glob("*.partial"))  # renamed into place once the JVM had written it
    assert "[cds]" not in first.stderr and "[warning]" not in first.stderr
    # -Xshare:on makes the JVM refuse to start unless it can map the archive.
    strict = tmp_path / "strict.toml"
    strict.write_text('[spark.conf]\n"spark.driver.extraJavaOptions" = "-Xshare:on"\n')
    written = archive.stat().st_mtime_ns
    second = generate("--config", str(strict))
    assert second.returncode == 0, second.stderr[-2000:]
    assert archive.stat().st_mtime_ns == written
