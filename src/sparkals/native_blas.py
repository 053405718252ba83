"""Which BLAS and LAPACK MLlib's ALS runs on (`spark.blas`), and the JVM options that say so.

Why: an implicit ALS fit is mostly two netlib calls per rating and per user or item: `dspr` (a rank-1
update of a packed k x k matrix) and `dppsv` (its Cholesky solve). Without a native library, netlib
runs both as plain Java loops (its vector-API BLAS has no `dspr`): Java Flight Recorder put 54 % of
a 16M-event fit in `dspr` and 14 % in `dppsv`. Intel's MKL, from the `mkl` wheel (pip install
'sparkals[mkl]'), trained the same ratings 1.3-1.6x faster here, where the system's OpenBLAS
made no difference (BENCHMARKS.md, section 5). netlib loads a library named by a system property
(`dev.ludovic.netlib.{blas,lapack}.nativeLibPath`), so no system package and no root are needed.
"""

from __future__ import annotations

import os
from importlib import metadata

from sparkals.errors import SparkalsError
from sparkals.vocabulary import BLAS_CHOICES

__all__ = ["AUTO", "EXTRA", "MKL", "NETLIB", "BlasUnavailableError", "find_mkl", "jvm_options", "mkl_library"]

AUTO, MKL, NETLIB = BLAS_CHOICES
EXTRA = "mkl"  # pip install sparkals[mkl]
# MKL's own threads inside Spark's task threads would oversubscribe the cores; its calls here are
# small (32 x 32), so one thread each. An environment variable of the JVM that loads MKL.
THREADING_ENV = {"MKL_THREADING_LAYER": "SEQUENTIAL"}
_PROPERTY = "-Ddev.ludovic.netlib.{kind}.nativeLibPath={path}"


class BlasUnavailableError(SparkalsError):
    """`spark.blas = "mkl"` was asked for, but the `mkl` package is not installed."""


def find_mkl() -> str | None:
    """The path of MKL's single dynamic library (`libmkl_rt.so.N`) that the `mkl` package
    installed into this Python environment, or None without it."""
    try:
        dist = metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name.startswith("libmkl_rt.so"):
            path = os.path.realpath(dist.locate_file(file))
            if os.path.isfile(path):
                return path
    return None


def mkl_library(setting: str, local: bool) -> str | None:
    """The MKL library MLlib should load for `spark.blas` = `setting`, or None for netlib's own
    choice (the system's libblas/liblapack when installed, else its Java code).

    "auto": MKL on a local master when the `mkl` package is installed; a cluster's executors are
    left to netlib, since the driver cannot know what their machines have. "mkl": MKL everywhere,
    at the path the driver's environment has it (every node needs the same environment, as it needs
    sparkals' other dependencies), or an error that names the extra. "netlib": netlib's choice."""
    if setting not in BLAS_CHOICES:
        raise ValueError(f"spark.blas must be one of {', '.join(BLAS_CHOICES)}, not {setting!r}")
    if setting == NETLIB or (setting == AUTO and not local):
        return None
    path = find_mkl()
    if path is None and setting == MKL:
        raise BlasUnavailableError(
            f"spark.blas = \"mkl\" needs Intel MKL, which is not installed: pip install 'sparkals[{EXTRA}]', "
            "or set spark.blas = \"auto\""
        )
    return path


def jvm_options(library: str) -> list[str]:
    """The system properties that make netlib load `library` for both BLAS and LAPACK."""
    return [_PROPERTY.format(kind=kind, path=library) for kind in ("blas", "lapack")]
