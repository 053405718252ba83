"""The one place that builds a SparkSession, local or on a cluster."""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING

from sparkals import class_archive, native_blas
from sparkals.config import SparkSettings

if TYPE_CHECKING:  # pyspark is imported only after use_spark_home() had its chance
    from pyspark.sql import SparkSession

__all__ = [
    "LOCAL_MASTER_CONF", "JavaMissingError", "SparkHomeError", "blas_to_load", "build_session", "driver_java_options",
    "executor_blas_conf", "java_binary",
    "java_major_version", "missing_native_blas", "require_java", "spark_conf", "spark_home_to_use", "starts_jvm",
    "use_spark_home",
]

log = logging.getLogger(__name__)

# The driver's log4j2 set-up (console to stderr, WARN, and the loggers whose warnings no user can
# act on, each with the reason): given to driver JVMs this process starts.
LOG4J2_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
EXECUTOR_JAVA_OPTIONS = "spark.executor.extraJavaOptions"
# What a local master sets unless [spark.conf] says otherwise. Its executors are the driver's own
# threads, so listing a folder partitioned by day in a Spark job of one task per day folder (what
# Spark does past 32 folders, for the many executors of a cluster reading a big store) costs more
# than listing it on the driver: reading 120 days of events took 0.65 s against 0.09 s (1M-event
# log; BENCHMARKS.md, section 5), and a night reads them in several stages. A cluster keeps the default.
LOCAL_MASTER_CONF = {"spark.sql.sources.parallelPartitionDiscovery.threshold": "10000"}


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


def java_binary() -> str | None:
    """The `java` Spark will use: JAVA_HOME's first, then the one on PATH; None without either."""
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", "java") if home else shutil.which("java")


def java_major_version() -> int | None:
    """Major version of the `java` Spark will use (`java_binary`), or None."""
    java = java_binary()
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


def starts_jvm() -> bool:
    """True when the next getOrCreate launches the driver JVM from this process: no JVM yet, and
    not under spark-submit (which started one and passes its port). Only then do driver JVM options
    and environment take effect."""
    from pyspark import SparkContext

    return "PYSPARK_GATEWAY_PORT" not in os.environ and SparkContext._gateway is None


def missing_native_blas() -> list[str]:
    """The native libraries MLlib's netlib would try (`blas`, `lapack`) that this machine lacks."""
    return [name for name in ("blas", "lapack") if ctypes.util.find_library(name) is None]


def driver_java_options(settings: SparkSettings, extra: list[str] | None = None, blas_library: str | None = None) -> str:
    """`spark.driver.extraJavaOptions` for a driver JVM this process starts: the user's own
    (`[spark.conf]`) last, so that theirs win, after `extra` (the class archive's) and
    - sparkals' log4j2 file (log4j2.properties beside this module), unless the user names one;
    - with `blas_library` (MKL, native_blas.py), netlib told to load it for BLAS and LAPACK;
    - else, on a local master, no attempt to load native BLAS or LAPACK the machine does not have:
      the attempt prints "netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed" from native code
      (no logger can quieten it) and MLlib then uses its Java BLAS, as it does with this option.
      Installing libblas3/libopenblas0 and liblapack3 makes it use the native ones instead.
    """
    own = settings.conf.get(DRIVER_JAVA_OPTIONS, "")
    options = []
    if "log4j2.configurationFile" not in own and os.path.isfile(LOG4J2_FILE):
        options.append(f"-Dlog4j2.configurationFile=file:{LOG4J2_FILE}")
    if blas_library:
        options += native_blas.jvm_options(blas_library)
    elif settings.master.startswith("local"):
        options += [f"-Ddev.ludovic.netlib.{name}.allowNative=false" for name in missing_native_blas()]
    return " ".join([*options, *(extra or []), own]).strip()


def blas_to_load(settings: SparkSettings, local: bool, launching: bool) -> str | None:
    """The MKL library MLlib should load (spark.blas, native_blas.py), or None for netlib's own
    choice. A driver JVM this process is about to start inherits MKL's threading from its
    environment; one already running (spark-submit) cannot take it on a local master."""
    library = native_blas.mkl_library(settings.blas, local)
    if library and local and not launching:
        if settings.blas == native_blas.MKL:
            log.warning("spark.blas = \"mkl\": the driver JVM was started before sparkals (spark-submit), so it "
                        "loads netlib's own choice; start it with --driver-java-options \"%s\" for MKL",
                        " ".join(native_blas.jvm_options(library)))
        return None
    if library and launching:
        for key, value in native_blas.THREADING_ENV.items():
            os.environ.setdefault(key, value)
    return library


def executor_blas_conf(settings: SparkSettings, blas_library: str | None) -> dict[str, str]:
    """What a cluster's executors need to load `blas_library` (spark.blas = "mkl"): its netlib
    options before the user's own `spark.executor.extraJavaOptions`, and MKL's threading (one
    thread a task). Nothing for a local master, whose executors are the driver's threads."""
    if not blas_library or settings.master.startswith("local"):
        return {}
    own = settings.conf.get(EXECUTOR_JAVA_OPTIONS, "")
    conf = {EXECUTOR_JAVA_OPTIONS: " ".join([*native_blas.jvm_options(blas_library), own]).strip()}
    return conf | {f"spark.executorEnv.{key}": value for key, value in native_blas.THREADING_ENV.items()
                   if f"spark.executorEnv.{key}" not in settings.conf}


def spark_conf(settings: SparkSettings) -> dict[str, str]:
    """The Spark settings a session gets on top of the master, app name and the few fixed ones:
    `LOCAL_MASTER_CONF` on a local master, then the user's `[spark.conf]`, which wins."""
    local = LOCAL_MASTER_CONF if settings.master.startswith("local") else {}
    return {**local, **settings.conf}


def build_session(settings: SparkSettings) -> SparkSession:
    """Create (or reuse) the session; under spark-submit an empty master leaves the choice to it."""
    from pyspark.sql import SparkSession

    launching = starts_jvm()
    local = settings.master.startswith("local")
    if local:
        # Local Python workers (the scorer's mapInArrow) must see the driver's packages (this virtualenv).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if launching:
            # Everything runs on this machine: bind to loopback instead of letting Spark warn
            # "Your hostname ... resolves to a loopback address" and pick an interface itself.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.ui.showConsoleProgress", str(settings.console_progress).lower())
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    blas_library = blas_to_load(settings, local, launching)
    for key, value in {**spark_conf(settings), **executor_blas_conf(settings, blas_library)}.items():
        builder = builder.config(key, value)
    archive = class_archive.archive_path(settings.class_archive, java_binary()) if launching and local else None
    archive_options, partial = class_archive.jvm_options(archive) if archive else ([], None)
    if launching:
        builder = builder.config(DRIVER_JAVA_OPTIONS, driver_java_options(settings, archive_options, blas_library))
    spark = builder.getOrCreate()
    if archive and partial:
        class_archive.publish_at_exit(partial, archive)
    spark.sparkContext.setLogLevel(settings.log_level)
    log.info("spark %s session ready (master %s%s)", spark.version, spark.sparkContext.master,
             _blas_note(local, blas_library))
    return spark


def _blas_note(local: bool, blas_library: str | None) -> str:
    """What the session line says of MLlib's BLAS on a local master."""
    if blas_library:
        return f"; MLlib uses Intel MKL ({blas_library})"
    missing = missing_native_blas() if local else []
    if missing:
        return (f"; MLlib uses its Java BLAS: no native {' or '.join(missing)} library here "
                f"(Intel MKL trained 1.3-1.6x faster: pip install 'sparkals[{native_blas.EXTRA}]', README, Performance)")
    return ""
