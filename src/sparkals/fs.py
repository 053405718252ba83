"""Driver-side file operations through Hadoop's FileSystem, so that they work on any
storage Spark can reach (local disk, HDFS, S3) and never assume a driver-local path."""

from __future__ import annotations

import json
import uuid
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

__all__ = ["check_writable", "create_new", "delete", "exists", "glob_has_files", "list_names", "modified_at", "read_json", "read_text",
           "rename", "size", "write_json", "write_text"]

# A createFile() option of recent Hadoop (3.5.0, the client pyspark 4.3 ships, has it): the write lands at close() only if nothing is at the path, one
# conditional PUT (If-None-Match) on S3A with a store that supports it; other file systems ignore it.
CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite"


def _path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = _path(spark, path)
    return bool(fs.exists(hpath))


def glob_has_files(spark: SparkSession, pattern: str) -> bool:
    """True when the path or glob names at least one data file (hidden `_`/`.` files do not count)."""
    fs, hpath = _path(spark, pattern)
    statuses = fs.globStatus(hpath)
    if statuses is None:
        return False
    for status in statuses:
        if status.isFile():
            return True
        files = fs.listFiles(status.getPath(), True)
        while files.hasNext():
            name = files.next().getPath().getName()
            if not name.startswith(("_", ".")):
                return True
    return False


def create_new(spark: SparkSession, path: str, text: str) -> bool:
    """Create the small file `path` holding `text` only if nothing is there; False if something is.

    Whether two writers racing can both win depends on the storage: on local disk it is one
    exclusive create (O_EXCL through java.nio: Hadoop's local create(overwrite=false) checks, then
    creates); on HDFS the NameNode refuses a second create of a path; on S3A it is a conditional
    PUT (If-None-Match) where the Hadoop client and the store support it, else a check, then a PUT:
    two writers within the same moment can both succeed there, and the later one's content wins.
    """
    fs, hpath = _path(spark, path)
    data = bytearray(text.encode("utf-8"))
    if fs.getScheme() == "file":
        jvm = spark.sparkContext._jvm
        target = fs.pathToFile(hpath)
        target.getParentFile().mkdirs()
        nio = jvm.java.nio.file
        attributes = spark.sparkContext._gateway.new_array(nio.attribute.FileAttribute, 0)
        try:
            nio.Files.createFile(target.toPath(), attributes)  # the exclusive create: ours from here on
        except Py4JJavaError as err:
            if "FileAlreadyExistsException" in str(err.java_exception):
                return False
            raise
        options = spark.sparkContext._gateway.new_array(nio.OpenOption, 1)
        options[0] = nio.StandardOpenOption.WRITE
        try:
            nio.Files.write(target.toPath(), data, options)
        except Py4JJavaError:
            # A full disk lets the create through and fails the write: remove our empty file, or it
            # would read as another run's lock.
            nio.Files.deleteIfExists(target.toPath())
            raise
        # A checksum file left by an earlier file of this name (removed by hand) would not match.
        nio.Files.deleteIfExists(jvm.java.io.File(target.getParentFile(), f".{target.getName()}.crc").toPath())
        return True
    try:
        stream = fs.createFile(hpath).overwrite(False).recursive().opt(CONDITIONAL_CREATE, "true").build()
        try:
            stream.write(data)
        finally:
            stream.close()
    except Py4JJavaError as err:
        if "FileAlreadyExistsException" in str(err.java_exception):
            return False
        raise
    return True


def modified_at(spark: SparkSession, path: str) -> float:
    """Last modification of `path` in seconds since the epoch, by the storage's clock."""
    fs, hpath = _path(spark, path)
    return fs.getFileStatus(hpath).getModificationTime() / 1000.0


def size(spark: SparkSession, path: str) -> int:
    """Bytes below `path` (a file or a folder); 0 when it does not exist."""
    fs, hpath = _path(spark, path)
    return int(fs.getContentSummary(hpath).getLength()) if fs.exists(hpath) else 0


def delete(spark: SparkSession, path: str) -> None:
    fs, hpath = _path(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def rename(spark: SparkSession, source: str, target: str) -> None:
    """One rename on the file system: atomic on HDFS and local disk."""
    fs, src = _path(spark, source)
    _, dst = _path(spark, target)
    fs.mkdirs(dst.getParent())
    if not fs.rename(src, dst):
        raise OSError(f"could not rename {source} to {target}")


def list_names(spark: SparkSession, path: str) -> list[str]:
    fs, hpath = _path(spark, path)
    if not fs.exists(hpath):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(hpath))


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file (metadata, markers, pointers) whole: a temp file renamed over the
    old one in a single atomic rename, so a reader sees the old content or the new, never none."""
    fs, hpath = _path(spark, path)
    _, tmp = _path(spark, f"{path}.{uuid.uuid4().hex[:8]}.tmp")
    stream = fs.create(tmp, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    _replace(spark, tmp, hpath)


def _replace(spark: SparkSession, source: Any, target: Any) -> None:
    """Rename with overwrite (FileContext: atomic on HDFS and local disk); where the file system
    has no such rename, delete then rename."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    options = spark.sparkContext._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
    options[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
    try:
        jvm.org.apache.hadoop.fs.FileContext.getFileContext(target.toUri(), conf).rename(source, target, options)
        return
    except Py4JJavaError as err:
        if "UnsupportedFileSystemException" not in str(err) and "UnsupportedOperationException" not in str(err):
            raise
    fs = target.getFileSystem(conf)
    if fs.exists(target):
        fs.delete(target, False)
    if not fs.rename(source, target):
        raise OSError(f"could not write {target.toString()}")


def read_text(spark: SparkSession, path: str) -> str:
    fs, hpath = _path(spark, path)
    if not fs.exists(hpath):
        raise FileNotFoundError(path)
    jvm = spark.sparkContext._jvm
    stream = fs.open(hpath)
    try:
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def write_json(spark: SparkSession, path: str, payload: Any) -> None:
    write_text(spark, path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(spark: SparkSession, path: str) -> Any:
    return json.loads(read_text(spark, path))


def check_writable(spark: SparkSession, folder: str) -> None:
    """Create `folder` when missing, then write and delete a small probe file in it: an OSError
    with the file system's own reason (read-only, permission denied, no space left) when that
    fails, before anything else was written there."""
    fs, hpath = _path(spark, folder)
    _, probe = _path(spark, f"{folder}/_write_probe-{uuid.uuid4().hex[:8]}")
    try:
        if not fs.mkdirs(hpath):
            raise OSError(f"could not create the folder {folder}")
        stream = fs.create(probe, False)
        try:
            stream.write(bytearray(b"sparkals write probe\n"))
        finally:
            stream.close()
    except Py4JJavaError as err:
        _try_delete(fs, probe)
        raise OSError(err.java_exception.toString()) from err
    fs.delete(probe, False)


def _try_delete(fs: Any, path: Any) -> None:
    """Remove what a failed probe may have left (an empty file on a full disk); where nothing can
    be removed either (a read-only location), there is nothing left to remove."""
    try:
        fs.delete(path, False)
    except Py4JJavaError:
        return
