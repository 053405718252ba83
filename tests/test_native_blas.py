"""spark.blas: MLlib's ALS on Intel MKL (the `mkl` extra) instead of netlib's Java code, loaded by path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparkals import native_blas
from sparkals.config import ConfigError, SparkSettings, load_config
from sparkals.session import driver_java_options, executor_blas_conf

REPO = Path(__file__).resolve().parent.parent
FAKE_MKL = "/opt/mkl/lib/libmkl_rt.so.3"


def test_auto_takes_mkl_on_a_local_master_only_and_netlib_never(monkeypatch):
    monkeypatch.setattr(native_blas, "find_mkl", lambda: FAKE_MKL)
    assert native_blas.mkl_library("auto", local=True) == FAKE_MKL
    assert native_blas.mkl_library("auto", local=False) is None  # a cluster's machines: not the driver's to guess
    assert native_blas.mkl_library("mkl", local=False) == FAKE_MKL
    assert native_blas.mkl_library("netlib", local=True) is None
    monkeypatch.setattr(native_blas, "find_mkl", lambda: None)
    assert native_blas.mkl_library("auto", local=True) is None


def test_mkl_without_the_extra_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setattr(native_blas, "find_mkl", lambda: None)
    with pytest.raises(native_blas.BlasUnavailableError, match=r"pip install 'sparkals\[mkl\]'"):
        native_blas.mkl_library("mkl", local=True)


def test_an_unknown_blas_setting_fails_when_the_configuration_loads():
    with pytest.raises(ConfigError, match="spark.blas must be auto, mkl or netlib"):
        load_config([REPO / "conf" / "local.toml"], ["spark.blas=openblas"])


def test_the_jvm_options_name_the_library_for_blas_and_lapack_and_keep_the_users_last():
    mine = "-Dfoo=1"
    local = SparkSettings(master="local[2]", conf={"spark.driver.extraJavaOptions": mine})
    options = driver_java_options(local, blas_library=FAKE_MKL)
    assert f"-Ddev.ludovic.netlib.blas.nativeLibPath={FAKE_MKL}" in options
    assert f"-Ddev.ludovic.netlib.lapack.nativeLibPath={FAKE_MKL}" in options
    assert "allowNative=false" not in options and options.endswith(mine)
    assert executor_blas_conf(local, FAKE_MKL) == {}  # a local master's executors are the driver's threads

    cluster = SparkSettings(master="yarn", conf={"spark.executor.extraJavaOptions": mine})
    conf = executor_blas_conf(cluster, FAKE_MKL)
    assert conf["spark.executor.extraJavaOptions"] == " ".join([*native_blas.jvm_options(FAKE_MKL), mine])
    assert conf["spark.executorEnv.MKL_THREADING_LAYER"] == "SEQUENTIAL"
    assert executor_blas_conf(cluster, None) == {}


# One tiny fit, in a new process on MKL and in the suite's session (netlib's own choice).
FIT = """
import json
from sparkals.config import SparkSettings
from sparkals.session import build_session
import test_native_blas
spark = build_session(SparkSettings(master="local[1]", shuffle_partitions=2, blas="mkl"))
jvm = spark.sparkContext._jvm
factors = test_native_blas.item_factors(spark)
maps = open(f"/proc/{jvm.java.lang.ProcessHandle.current().pid()}/maps").read()
blas = jvm.dev.ludovic.netlib.blas.NativeBLAS.getInstance().getClass().getName()
print(json.dumps({"blas": blas, "mkl_mapped": "libmkl" in maps, "factors": factors}))
"""


def item_factors(spark) -> dict[str, list[float]]:
    """A small implicit ALS fit's item factors, by item id."""
    from pyspark.ml.recommendation import ALS

    ratings = spark.createDataFrame(
        [(u, i, float(1 + (u * i) % 5)) for u in range(60) for i in range(40) if (u + i) % 3], ["user", "item", "rating"]
    )
    model = ALS(rank=8, maxIter=5, implicitPrefs=True, seed=1, userCol="user", itemCol="item").fit(ratings)
    return {str(row.id): list(row.features) for row in model.itemFactors.collect()}


@pytest.mark.slow
@pytest.mark.skipif(native_blas.find_mkl() is None, reason="the mkl extra is not installed (pip install 'sparkals[mkl]')")
def test_mllib_trains_on_mkl_and_learns_what_it_learns_without_it(spark, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "PYSPARK_GATEWAY_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    on_mkl = json.loads(done.stdout.strip().splitlines()[-1])
    assert on_mkl["blas"] == "dev.ludovic.netlib.blas.JNIBLAS" and on_mkl["mkl_mapped"]
    here = item_factors(spark)  # the suite's JVM: started without spark.blas, so netlib's own choice
    ids = sorted(here)
    assert sorted(on_mkl["factors"]) == ids
    mkl = np.array([on_mkl["factors"][i] for i in ids])
    java = np.array([here[i] for i in ids])
    np.testing.assert_allclose(mkl, java, rtol=1e-3, atol=1e-4)  # the same model, up to rounding
