"""Where a night's time goes, by stage and by Spark job: runs `nightly` --rounds times into a fresh
--root in one JVM with Spark's event log on, then reads the log back and prints, for each round and
stage, its wall seconds, its Spark jobs, the seconds during which one of them was running (the rest
is the driver: Python, planning, file-system calls), how busy the machine's cores were from its
first job's start to its last job's end (on Linux: /proc/stat, sampled every half second; a stage
well below 100 % waits on something, one near it is bound by its work and would gain nothing from
running beside another) and its longest jobs by call site. Stages are told apart by the job group
each stage sets (`sparkals.<stage>`, stages/common.py's `timed`).

    .venv/bin/python scripts/profile_night.py --root /tmp/profile-night --log .bench/log-1000000 \\
        --set gate.enabled=false --rounds 2

With --scheduled, the night before the test period runs first (unprofiled: ingest, aggregate and
train, as scripts/bench.py's scheduled variant runs it), so the gate reuses that night's model as a
nightly schedule's gate does.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session, profile_arguments, profile_config  # noqa: E402
from bench import RUN_DATE, holdout_night  # noqa: E402
from sparkals.stages import nightly  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ROUND = "sparkals.profile.round"  # a local property: every job of a round carries the round's number


def busy_seconds(intervals: list[tuple[int, int]]) -> float:
    """Seconds covered by at least one of the (start, end) millisecond intervals."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total, reach = total + end - start, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total / 1000


class CpuSampler:
    """The machine's CPU time counters (/proc/stat's first line) every `every` seconds in a daemon
    thread, so that a period's busy share of all cores can be read off afterwards. Without
    /proc/stat (not Linux) it samples nothing and every share is None."""

    def __init__(self, every: float = 0.5, stat: Path = Path("/proc/stat")) -> None:
        self.samples: list[tuple[float, int, int]] = []  # (epoch ms, busy jiffies, all jiffies)
        self._every, self._stat, self._stop = every, stat, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CpuSampler":
        if self._stat.exists():
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self._every):
            self._sample()
        self._sample()  # once more on stop, so that the last period has a sample after its end

    def _sample(self) -> None:
        self.samples.append((time.time() * 1000, *cpu_counters(self._stat.read_text())))

    def busy_share(self, start_ms: float, end_ms: float) -> float | None:
        """Busy share of all cores between the last sample at or before `start_ms` and the first at
        or after `end_ms` (a period shorter than two samples apart reads a little wider)."""
        before = [s for s in self.samples if s[0] <= start_ms]
        after = [s for s in self.samples if s[0] >= end_ms]
        if not before or not after:
            return None
        (_, busy0, all0), (_, busy1, all1) = before[-1], after[0]
        return (busy1 - busy0) / (all1 - all0) if all1 > all0 else None


def cpu_counters(proc_stat: str) -> tuple[int, int]:
    """(busy, all) jiffies of /proc/stat's "cpu" line: idle and iowait are the time not busy. Its
    first eight fields only: guest time, after them, is already counted in user time."""
    fields = [int(value) for value in proc_stat.splitlines()[0].split()[1:9]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def read_jobs(event_log: Path) -> list[dict[str, Any]]:
    """Each job of the log: its round, stage, call site, submission and completion (ms)."""
    jobs: dict[int, dict[str, Any]] = {}
    # Spark 4 rolls its event log: a folder of events_<n>_<app> files, read in order of n.
    parts = sorted(event_log.glob("events_*"), key=lambda part: int(part.name.split("_")[1])) if event_log.is_dir() else [event_log]
    for part in parts:
        for line in part.read_text().splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerJobStart":
                props = event.get("Properties", {})
                stages = event.get("Stage Infos", [])
                jobs[event["Job ID"]] = {
                    "round": props.get(ROUND), "stage": (props.get("spark.jobGroup.id") or "-").removeprefix("sparkals."),
                    "site": stages[-1]["Stage Name"] if stages else "?", "start": event["Submission Time"],
                }
            elif event["Event"] == "SparkListenerJobEnd" and event["Job ID"] in jobs:
                jobs[event["Job ID"]]["end"] = event["Completion Time"]
    return [job for job in jobs.values() if "end" in job]


def summary(jobs: list[dict[str, Any]], walls: dict[str, dict[str, float]], top: int,
            cpu: CpuSampler | None = None) -> list[dict[str, Any]]:
    """One row per round and stage: wall s, jobs, busy s, the cores' busy share from its first job
    to its last (None without `cpu`), the longest call sites (s, jobs)."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        grouped[(job["round"], job["stage"])].append(job)
    rows = []
    for (round_number, stage), group in sorted(grouped.items(), key=lambda kv: min(j["start"] for j in kv[1])):
        sites: dict[str, list[float]] = defaultdict(list)
        for job in group:
            sites[job["site"]].append((job["end"] - job["start"]) / 1000)
        longest = sorted(sites.items(), key=lambda kv: -sum(kv[1]))[:top]
        rows.append({
            "round": round_number, "stage": stage, "wall": walls.get(str(round_number), {}).get(stage),
            "jobs": len(group), "busy": round(busy_seconds([(j["start"], j["end"]) for j in group]), 2),
            "cpu": cpu.busy_share(min(j["start"] for j in group), max(j["end"] for j in group)) if cpu else None,
            "longest": [(site, round(sum(times), 2), len(times)) for site, times in longest],
        })
    return rows


def main() -> None:
    args = profile_arguments(__doc__ or "", rounds=2, extra=lambda parser: parser.add_argument(
        "--scheduled", action="store_true", help="run the night before the test period first"))
    cfg = profile_config(args, REPO / "conf" / "local.toml")
    log_dir = Path(args.root + "-eventlog")
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.iterdir():  # Spark 4 writes a folder per application (a rolled log)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    spark = local_session(conf={"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(log_dir),
                                "spark.eventLog.compress": "false"})
    if args.scheduled:
        holdout_night(spark, cfg)  # its jobs carry no round: left out below
    walls: dict[str, dict[str, float]] = {}
    with CpuSampler() as cpu:
        for round_number in range(1, args.rounds + 1):
            spark.sparkContext.setLocalProperty(ROUND, str(round_number))
            result = nightly.run(spark, cfg, RUN_DATE)
            walls[str(round_number)] = {**result.stage_seconds, "night": result.seconds}
            print(json.dumps({"round": round_number, "status": result.status, **walls[str(round_number)]}), flush=True)
    spark.stop()
    (event_log,) = log_dir.iterdir()
    jobs = [job for job in read_jobs(event_log) if job["round"] is not None]
    for row in summary(jobs, walls, top=6, cpu=cpu):
        share = "" if row["cpu"] is None else f", cores {row['cpu']:.0%} busy"
        print(f"round {row['round']} {row['stage']:>10}: wall {row['wall']} s, {row['jobs']} jobs, busy {row['busy']} s{share}")
        for site, seconds, count in row["longest"]:
            print(f"      {seconds:7.2f} s {count:3d} x {site}")


if __name__ == "__main__":
    main()
