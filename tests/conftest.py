"""One local[2] SparkSession for the whole suite: UI off, few shuffle partitions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Benchmark baselines the tests also use as references (scripts/native_scoring.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


SHUFFLE_PARTITIONS = "2"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from sparkals.config import SparkSettings
    from sparkals.session import require_java, spark_conf

    require_java()
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("warehouse")
    builder = SparkSession.builder.config(map=spark_conf(SparkSettings(master="local[2]")))  # as `sparkals` would
    session = (
        builder.master("local[2]")
        .appName("sparkals-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", SHUFFLE_PARTITIONS)
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _shuffle_partitions_restored():
    """A command run in-process (`cli.main`) sets spark.sql.shuffle.partitions on the shared
    session to its configuration's value (base.toml: 200). Put the suite's value back after each
    test, or the tests after it run 200 tasks a shuffle (the planted-tastes test, after one such
    command: 101 s in the suite, 20 s alone)."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.conf.set("spark.sql.shuffle.partitions", SHUFFLE_PARTITIONS)


@pytest.fixture(scope="module", autouse=True)
def _release_cached_data():
    """Release every cached DataFrame and persisted RDD (ALS keeps its factors) when a module ends,
    so that no module's caches stay in the driver's 3 GB heap for the rest of the suite (1.8-2.9 GB
    were in use by the time test_pipeline ran)."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        return
    session.catalog.clearCache()
    persisted = session.sparkContext._jsc.getPersistentRDDs()
    for rdd_id in list(persisted.keys()):
        persisted[rdd_id].unpersist(False)


@pytest.fixture
def small_settings(tmp_path):
    """Layered config for fast tests: tiny ALS blocks, output under tmp_path."""

    def make(*overrides: str):
        from sparkals.config import load_config

        return load_config(
            [],
            [
                f"output.root={tmp_path / 'out'}",
                "spark.shuffle_partitions=2",
                "spark.log_level=ERROR",
                "als.num_user_blocks=2",
                "als.num_item_blocks=2",
                "als.max_iter=5",
                "als.rank=8",
                *overrides,
            ],
        )

    return make
