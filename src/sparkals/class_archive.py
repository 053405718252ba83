"""A class-data-sharing (CDS) archive of the driver JVM's classes, for local runs that start a JVM.

Why: a night on a laptop is a new JVM every time, and a new JVM spends seconds loading and verifying
the classes of Spark, Scala and Hadoop before any work (the archive of one night holds 200 MB of
them). Java (13 and later) can dump the classes one run loaded into an archive
(`-XX:ArchiveClassesAtExit`) and map it in later runs (`-XX:SharedArchiveFile`): a cold 100k-event nightly took 64.8 s instead of 68.0 s, after a first
run 26 s longer that wrote the archive (BENCHMARKS.md, scripts/bench_cold.py). Off by default.

The first run writes the archive under a temporary name when its JVM exits; this process waits for
that exit and renames the file into place, so a run never maps a half-written archive. The JVM
checks an archive against its own version and class path and ignores one that does not match.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["AUTO", "JVM_OPTIONS", "archive_path", "jvm_options", "publish_at_exit"]

log = logging.getLogger(__name__)

AUTO = "auto"
# The JVM warns about every class it cannot archive (generated reflection accessors, old class
# files): nothing a user can act on, so CDS logging stays off.
JVM_OPTIONS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
_EXIT_WAIT_SECONDS = 120


def _cache_dir() -> Path:
    base = os.environ.get("SPARKALS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sparkals"
    )
    return Path(base) / "jvm"


def _runtime_key(java: str) -> str:
    """What the archive depends on: the java binary and the Spark jars (pyspark's own folder)."""
    import pyspark

    source = f"{os.path.realpath(java)}|{pyspark.__version__}|{os.path.dirname(os.path.realpath(pyspark.__file__))}"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def archive_path(setting: str, java: str | None) -> Path | None:
    """The archive `spark.class_archive` names: None when empty (off), one per Java (`java`, the
    binary Spark will use) and Spark installation under the cache folder (`$SPARKALS_CACHE_DIR`,
    else `~/.cache/sparkals`) when "auto", else the path given."""
    if not setting:
        return None
    if setting == AUTO:
        return _cache_dir() / f"driver-{_runtime_key(java or 'java')}.jsa"
    return Path(setting).expanduser()


def jvm_options(path: Path) -> tuple[list[str], Path | None]:
    """Driver JVM options that use the archive at `path`, or that write it when it does not exist
    yet; and the temporary file such a run writes (None when the archive is only read)."""
    if path.is_file():
        return [f"-XX:SharedArchiveFile={path}", *JVM_OPTIONS], None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only home: run without, as before
        log.warning("class archive: cannot create %s (%s); the JVM starts without one", path.parent, err)
        return [], None
    _remove_abandoned(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    return [f"-XX:ArchiveClassesAtExit={partial}", *JVM_OPTIONS], partial


def _remove_abandoned(path: Path) -> None:
    """Temporary archives of processes that are gone (killed before they could rename theirs)."""
    for partial in path.parent.glob(f"{path.name}.*.partial"):
        pid = partial.name[len(path.name) + 1:-len(".partial")]
        if pid.isdigit() and not _running(int(pid)):
            partial.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _publish(partial: Path, path: Path, jvm: subprocess.Popen[Any] | None) -> None:
    """Stop Spark, let the JVM exit (it dumps the archive as it does) and move the archive into place."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    if jvm is None:
        return
    try:
        if jvm.stdin:
            jvm.stdin.close()  # PySpark's JVM exits when this process's end of its stdin closes
        jvm.wait(timeout=_EXIT_WAIT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("class archive: the driver JVM did not exit (%s); %s not kept", err, partial)
    if jvm.returncode == 0 and partial.is_file() and partial.stat().st_size > 0:
        os.replace(partial, path)
        log.info("class archive written to %s: later runs start their JVM faster", path)
    else:
        partial.unlink(missing_ok=True)


def publish_at_exit(partial: Path, path: Path) -> None:
    """When this process ends, wait for the driver JVM it started to write `partial`, then rename
    it to `path` (an atomic rename: concurrent runs see the whole archive or none)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    atexit.register(_publish, partial, path, getattr(gateway, "proc", None))
