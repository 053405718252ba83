"""One run at a time per output root: a lock file, `output.root/_LOCK.json`, created atomically
before a run writes anything, refreshed by a heartbeat while it runs and removed when it ends.

A second run finds the lock and stops at once (LockError, exit status 5). A lock whose heartbeat is
older than `lock.stale_minutes` belongs to a run that died without removing it (killed, its machine
lost): the next run takes it over and warns. Ages compare the holder's clock with the taker's, so
the machines' clocks must agree to well within `lock.stale_minutes` (NTP). How atomic the create is
depends on the storage (fs.create_new): local disk and HDFS, yes; S3, only with conditional writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.sql import SparkSession

from sparkals import fs
from sparkals.config import LockSettings
from sparkals.errors import LockError, unwritable_root

__all__ = ["LockInfo", "RunLock", "age_seconds"]

log = logging.getLogger(__name__)

ATTEMPTS = 3  # create, find a stale lock, take it over: at most this many rounds


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class LockInfo:
    """What the lock file says: who holds it, since when, and when it last showed life."""

    run_date: str
    command: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: str
    token: str  # tells this run's lock from a later holder's

    def describe(self) -> str:
        return f"`{self.command}` for run date {self.run_date} on {self.host} (pid {self.pid}) since {self.started_at}"


def age_seconds(heartbeat_at: str, now: dt.datetime) -> float:
    """Seconds since the ISO time `heartbeat_at`."""
    return (now - dt.datetime.fromisoformat(heartbeat_at)).total_seconds()


class RunLock:
    """`with RunLock(...)`: hold the lock at `path` for the block; a daemon thread on the driver
    refreshes the heartbeat every `settings.heartbeat_seconds` and stops when the block ends."""

    def __init__(
        self, spark: SparkSession, path: str, run_date: dt.date, command: str, settings: LockSettings
    ) -> None:
        self.spark, self.path, self.settings = spark, path, settings
        started = _now().isoformat(timespec="seconds")
        self.info = LockInfo(str(run_date), command, socket.gethostname(), os.getpid(), started, started,
                             uuid.uuid4().hex)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    @property
    def heartbeat_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def acquire(self) -> None:
        """Create the lock, taking over a stale one; LockError when a live run holds it."""
        for _ in range(ATTEMPTS):
            if self._create():
                break
            holder, age = self._holder()
            if age is None:  # released between our create and our read: try again
                continue
            if age <= self.settings.stale_minutes * 60:
                raise LockError(self._held_message(holder, age))
            log.warning(
                "lock: taking over %s from %s: no heartbeat for %.0f min (lock.stale_minutes = %d); "
                "that run is taken to be dead", self.path, holder.describe() if holder else "an unreadable lock",
                age / 60, self.settings.stale_minutes,
            )
            fs.delete(self.spark, self.path)
        else:
            raise LockError(f"could not take the lock {self.path}: other runs took it at the same time; try later")
        holder, _ = self._holder()
        if holder is None or holder.token != self.info.token:  # a store without atomic create: lost the race
            raise LockError(self._held_message(holder, 0.0))
        log.info("lock: holding %s", self.path)
        self._thread = threading.Thread(target=self._beat_until_stopped, name="sparkals-lock-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> bool:
        """Refresh the heartbeat if the lock is still this run's; False when it is not."""
        holder, _ = self._holder()
        if holder is None or holder.token != self.info.token:
            return False
        self.info = dataclasses.replace(self.info, heartbeat_at=_now().isoformat(timespec="seconds"))
        fs.write_json(self.spark, self.path, dataclasses.asdict(self.info))
        return True

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(30, self.settings.heartbeat_seconds))
        try:
            holder, _ = self._holder()
            if holder is not None and holder.token == self.info.token:
                fs.delete(self.spark, self.path)
                log.info("lock: released %s", self.path)
            else:
                log.warning("lock: %s is no longer this run's (%s); left in place", self.path,
                            holder.describe() if holder else "gone or unreadable")
        except Py4JError as err:  # do not hide the run's own error behind this one
            log.warning("lock: could not remove %s (%s); the next run takes it over after lock.stale_minutes",
                        self.path, str(err).splitlines()[0])

    def _create(self) -> bool:
        text = json.dumps(dataclasses.asdict(self.info), indent=2, sort_keys=True) + "\n"
        try:
            return fs.create_new(self.spark, self.path, text)
        except Py4JJavaError as err:
            # A store that refuses a conditional create with an error of its own: the lock is there.
            if fs.exists(self.spark, self.path):
                return False
            reason = str(err.java_exception).splitlines()[0]
            raise unwritable_root(self.path.rsplit("/", 1)[0], f"the run lock {self.path}: {reason}") from err

    def _holder(self) -> tuple[LockInfo | None, float | None]:
        """(the lock's content or None when unreadable, its heartbeat's age in seconds or None when
        there is no lock). An unreadable lock (cut short) is aged by its file's modification time."""
        now = _now()
        try:
            content = json.loads(fs.read_text(self.spark, self.path))
            info = LockInfo(**{field.name: content[field.name] for field in dataclasses.fields(LockInfo)})
            return info, age_seconds(info.heartbeat_at, now)
        except FileNotFoundError:
            return None, None
        except (ValueError, TypeError, KeyError, Py4JJavaError):
            try:
                return None, now.timestamp() - fs.modified_at(self.spark, self.path)
            except Py4JJavaError:
                return None, None

    def _held_message(self, holder: LockInfo | None, age: float) -> str:
        who = holder.describe() if holder else "a run whose lock file cannot be read"
        return (
            f"another run is writing to this output root: {who} holds {self.path} (last heartbeat {age:.0f} s ago). "
            "This run stopped before writing anything. Wait for that run to end; if it died, the next run "
            f"takes its lock over once its heartbeat is older than lock.stale_minutes ({self.settings.stale_minutes}), "
            f"or delete {self.path} once you are sure it is not running"
        )

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                if not self.beat():
                    log.error("lock: %s was taken over by another run while this one was still running; "
                              "stopped refreshing it", self.path)
                    return
            except (Py4JError, OSError) as err:  # the storage hiccuped: try again at the next beat
                log.warning("lock: heartbeat on %s failed: %s", self.path, str(err).splitlines()[0])
