"""The one place that builds a SparkSession, local or on a cluster."""

from __future__ import annotations

import logging
import os
import sys
import shutil
import subprocess

from pyspark.sql import SparkSession

from sparkals.config import SparkSettings

log = logging.getLogger(__name__)


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
    if os.environ.get("SPARK_HOME") and not os.environ.get("SPARKALS_SKIP_FINDSPARK"):
        import findspark  # a Spark installation given through SPARK_HOME, not the pip package

        findspark.init()
    if settings.master.startswith("local"):
        # Local Python workers must see the same packages as the driver (this virtualenv).
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
