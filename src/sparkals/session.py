"""The one place that builds a SparkSession, local or on a cluster."""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING

from sparkals.config import SparkSettings

if TYPE_CHECKING:  # pyspark is imported only after use_spark_home() had its chance
    from pyspark.sql import SparkSession

__all__ = ["JavaMissingError", "SparkHomeError", "build_session", "java_major_version", "require_java",
           "spark_home_to_use", "use_spark_home"]

log = logging.getLogger(__name__)


class SparkHomeError(RuntimeError):
    """SPARK_HOME is set but is not a Spark installation whose pyspark could be used."""


def spark_home_to_use() -> str | None:
    """The Spark installation whose own pyspark should be imported, or None to import the pip one.

    None when SPARK_HOME is unset, when SPARKALS_SKIP_FINDSPARK is set, or when the pyspark Python
    would import already lives under SPARK_HOME: the pip package (whose folder spark-submit exports
    as SPARK_HOME) or a distribution's pyspark.zip that spark-submit put on PYTHONPATH.
    """
    home = os.environ.get("SPARK_HOME")
    if not home or os.environ.get("SPARKALS_SKIP_FINDSPARK"):
        return None
    home = os.path.realpath(home)
    spec = importlib.util.find_spec("pyspark")  # finds without importing
    origin = spec.origin if spec and spec.origin else ""
    if origin and os.path.realpath(origin).startswith(home + os.sep):
        return None
    if not glob.glob(os.path.join(home, "python", "lib", "py4j-*.zip")):
        raise SparkHomeError(
            f"SPARK_HOME={home} is not a Spark installation (no python/lib/py4j-*.zip); "
            "point it at an unpacked Spark distribution, or unset it to use the pip pyspark"
        )
    return home


def use_spark_home() -> str | None:
    """Put SPARK_HOME's pyspark first on sys.path (findspark) so Python and JVM Spark match.

    Must run before anything imports pyspark: once it is imported, findspark changes nothing.
    Returns the installation used, or None.
    """
    home = spark_home_to_use()
    if home is None:
        return None
    if "pyspark" in sys.modules:
        warnings.warn(
            f"pyspark was imported from {sys.modules['pyspark'].__file__} before SPARK_HOME={home} could be "
            "used; Python and JVM Spark versions may differ",
            stacklevel=2,
        )
        return None
    import findspark

    # findspark would also set PYSPARK_PYTHON to this interpreter; leave that choice to the user.
    python = os.environ.get("PYSPARK_PYTHON")
    findspark.init(home)
    if python is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    return home


class JavaMissingError(RuntimeError):
    """No usable Java runtime: Spark cannot start."""


def java_major_version() -> int | None:
    """Major version of the `java` Spark will use (JAVA_HOME first, then PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            major = int(token.split(".")[1]) if head == "1" else int("".join(c for c in head if c.isdigit()))
            return major
    return None


def require_java(minimum: int = 17) -> None:
    """Fail early with a clear message rather than with a Py4J stack trace."""
    found = java_major_version()
    if found is None:
        raise JavaMissingError(
            f"Java {minimum}+ is required by Spark but no `java` was found; "
            "install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME."
        )
    if found < minimum:
        raise JavaMissingError(f"Java {minimum}+ is required by Spark, found Java {found}; set JAVA_HOME.")


def build_session(settings: SparkSettings) -> SparkSession:
    """Create (or reuse) the session; under spark-submit an empty master leaves the choice to it."""
    from pyspark.sql import SparkSession

    if settings.master.startswith("local"):
        # Local Python workers (the scorer's mapInArrow) must see the driver's packages (this virtualenv).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.ui.showConsoleProgress", str(settings.console_progress).lower())
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    log.info("spark %s session ready (master %s)", spark.version, spark.sparkContext.master)
    return spark
