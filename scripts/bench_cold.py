"""The night as a user runs it: `sparkals nightly` as a new process each time (JVM start, class
loading and JIT included), with and without the driver JVM's class archive (`spark.class_archive`),
the two taking turns. Wall seconds per run and the pipeline's own seconds (the stages' total the
night records in its summary.json: what is left once the process has started), and the medians,
to stdout and --out as JSON. With
--scheduled each timed night runs where the night before its test period ran first (ingest,
aggregate and train in a process of its own, not timed), as on every night of a nightly schedule:
its gate measures that night's model instead of training one (stages/holdout_model.py).

    .venv/bin/python scripts/bench_cold.py --events 100000 --repeats 3 --out /tmp/cold.json
    .venv/bin/python scripts/bench_cold.py --events 100000 --repeats 2 --scheduled
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import spread  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


RUN_DATE = dt.date(2026, 11, 1)
HOLDOUT_NIGHT = RUN_DATE - dt.timedelta(days=7)  # evaluate.test_days = 7


def _holdout_night(args: list[str]) -> None:
    """Ingest, aggregate and train of the night before the test period, in one new process (its
    ingest accepts the later days of the log, which do not change what it learns)."""
    stages = [[stage, "--run-date", str(HOLDOUT_NIGHT), *args, "--set", "ingest.max_future_days=3650"]
              for stage in ("ingest", "aggregate", "train")]
    script = f"import sys; from sparkals import cli; sys.exit(max(cli.main(a) for a in {stages!r}))"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)


def night(log: Path, out: Path, archive: str, overrides: list[str], scheduled: bool = False) -> tuple[float, float]:
    """Wall seconds of the `sparkals nightly` process, and its stages' total from its summary.json."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["--config", str(REPO / "conf" / "local.toml"), "--set", f"input.path={log}", "--set", f"output.root={out}",
            "--set", f"spark.class_archive={archive}", *[x for o in overrides for x in ("--set", o)]]
    if scheduled:
        _holdout_night(args)
    command = [sys.executable, "-m", "sparkals.cli", "nightly", "--run-date", str(RUN_DATE), *args]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    if scheduled:  # a scheduled night whose gate trained would be timed under the wrong name
        report = json.loads((out / "reports" / f"run_date={RUN_DATE}" / "metrics.json").read_text())
        if report["holdout_model"]["source"] != "reused":
            sys.exit(f"the scheduled night's gate trained its holdout model: {report['holdout_model']['reason']}")
    summary = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    return seconds, sum(summary["stage_seconds"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="the .bench/log-N that scripts/bench.py generated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=["als.rank=32"], dest="overrides")
    parser.add_argument("--scheduled", action="store_true", help="run the night before the test period first")
    parser.add_argument("--workdir", default=str(REPO / ".bench"), help="where scripts/bench.py keeps its logs")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    log = Path(args.workdir) / f"log-{args.events}"
    if not log.is_dir():
        sys.exit(f"no {log}: run scripts/bench.py --sizes {args.events} --only pipeline first")
    with tempfile.TemporaryDirectory() as work:
        archive = str(Path(work) / "driver.jsa")
        first, _ = night(log, Path(work) / "out", archive, args.overrides, args.scheduled)  # writes the archive
        runs: dict[str, list[tuple[float, float]]] = {"with_archive": [], "without_archive": []}
        for _ in range(args.repeats):
            runs["with_archive"].append(night(log, Path(work) / "out", archive, args.overrides, args.scheduled))
            runs["without_archive"].append(night(log, Path(work) / "out", "", args.overrides, args.scheduled))
            print(json.dumps({k: [round(x, 1) for x in v[-1]] for k, v in runs.items()}), flush=True)
    result: dict = {"events": args.events, "overrides": args.overrides, "scheduled": args.scheduled,
                    "first_run_writing_the_archive": round(first, 2), "cpus": os.cpu_count()}
    for name, values in runs.items():
        result[name] = spread([wall for wall, _ in values])
        result[f"{name}_pipeline_seconds"] = spread([stages for _, stages in values])
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
