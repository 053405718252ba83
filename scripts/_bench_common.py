"""Shared by the benchmark scripts: a local session, the machine's description, and timing as
the median of several runs with its spread (never a single run)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pyspark.sql import SparkSession


def local_session(cores: int = 2, driver_memory: str = "6g", shuffle_partitions: int = 8,
                  conf: dict[str, str] | None = None, blas: str = "auto") -> SparkSession:
    """`conf`: more settings for the new JVM (scripts/als_conf_ab.py's variants); `blas`: as
    `spark.blas` (MKL where the bench extra installed it)."""
    from sparkals.config import SparkSettings
    from sparkals.session import blas_to_load, driver_java_options, require_java, spark_conf

    require_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use this virtualenv too
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("sparkals-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
    )
    # What `sparkals` gives a local master (session.spark_conf), then `conf`.
    settings = SparkSettings(master=f"local[{cores}]", blas=blas, conf=conf or {})
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    library = blas_to_load(settings, local=True, launching=True)
    spark = builder.config("spark.driver.extraJavaOptions", driver_java_options(settings, blas_library=library)).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def timed(run: Callable[[], Any], repeats: int = 3, warmup: int = 0) -> dict[str, Any]:
    """Median, min and max seconds of `repeats` runs (after `warmup` unrecorded ones)."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return spread(seconds, digits=3)


class Laps:
    """Seconds between consecutive calls, by name: where a run of parts, each materialised on its
    own, spends its time (scripts/profile_gate.py, scripts/profile_tune.py)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now

    def line(self, round_number: int) -> str:
        """The round's parts as one JSON line, with their sum."""
        return json.dumps({"round": round_number, "seconds": round(sum(self.seconds.values()), 2), **self.seconds})


def profile_arguments(
    description: str, rounds: int, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The profilers' command line: --root (an output root, emptied before use), --log (an event
    log of scripts/bench.py), --rounds, --set (settings over conf/local.toml; rank 32 as bench.py),
    and what `extra` adds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output root to prepare (emptied first)")
    parser.add_argument("--log", required=True, help="an event log of scripts/bench.py (.bench/log-N)")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--set", action="append", default=["als.rank=32"], dest="overrides")
    if extra:
        extra(parser)
    return parser.parse_args()


def profile_config(args: argparse.Namespace, local_toml: Path) -> Any:
    """A fresh output root for a profile: `args.root` emptied, the configuration over `local_toml`."""
    from sparkals.config import load_config

    shutil.rmtree(args.root, ignore_errors=True)
    return load_config([local_toml], [f"input.path={args.log}", f"output.root={args.root}", *args.overrides])


def spread(values: list[float], digits: int = 2) -> dict[str, Any]:
    """Median, min, max and every value of several runs of one measurement."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
        return out.splitlines()[0] if out else "unknown"
    except OSError:
        return "not found"


def _native_blas(spark: SparkSession) -> str:
    """Which BLAS Spark's netlib found: native (e.g. OpenBLAS) or the Java fallback."""
    try:
        jvm = spark.sparkContext._jvm
        blas = str(jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())
        library = jvm.java.lang.System.getProperty("dev.ludovic.netlib.blas.nativeLibPath")
        return f"{blas} ({library})" if library else blas
    except Exception as err:  # reported, not hidden: the machine line says what happened
        return f"unknown ({type(err).__name__})"


def machine(spark: SparkSession) -> dict[str, Any]:
    """What the figures were measured on: cores, memory, versions, BLAS."""
    import numpy
    import pyspark

    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "spark": pyspark.__version__,
        "java": _java_version(),
        "spark_master": spark.sparkContext.master,
        "spark_blas": _native_blas(spark),
        "numpy": numpy.__version__,
        "numpy_blas": _numpy_blas(),
    }


def _numpy_blas() -> str:
    import numpy

    try:
        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception as err:
        return f"unknown ({type(err).__name__})"
