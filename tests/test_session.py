"""SPARK_HOME handling: a Spark installation's own pyspark is used (findspark), the pip one is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sparkals.session import SparkHomeError, spark_home_to_use


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


def test_driver_java_options_add_the_log4j2_file_and_keep_the_users_options_last():
    from sparkals.config import SparkSettings
    from sparkals.session import LOG4J2_FILE, driver_java_options

    mine = "-XX:+UseSerialGC -Dfoo=1"
    options = driver_java_options(SparkSettings(master="local[2]", conf={"spark.driver.extraJavaOptions": mine}))
    assert options.startswith(f"-Dlog4j2.configurationFile=file:{LOG4J2_FILE}") and options.endswith(mine)
    assert Path(LOG4J2_FILE).is_file()
    own = "-Dlog4j2.configurationFile=file:/etc/mine.properties"
    assert driver_java_options(SparkSettings(master="yarn", conf={"spark.driver.extraJavaOptions": own})) == own
