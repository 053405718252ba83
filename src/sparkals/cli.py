"""`sparkals` console script; `jobs/<name>.py` calls the same `main` for spark-submit."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from sparkals.session import use_spark_home

# Before the first pyspark import: with SPARK_HOME set to a Spark installation, its pyspark wins.
use_spark_home()

import sparkals  # noqa: E402
from sparkals.config import Config, ConfigError, load_config  # noqa: E402
from sparkals.errors import LockError, SparkalsError  # noqa: E402
from sparkals.generate import GeneratorSpec  # noqa: E402
from sparkals.vocabulary import INPUT_FORMATS  # noqa: E402

log = logging.getLogger("sparkals")

GATED = 4  # exit status: the run finished, but the new model was refused by the quality gate
LOCKED = LockError.exit_status  # 5: another run holds output.root's lock; this one wrote nothing

HELPS = {
    "ingest": "read, validate and store the event log as clean Parquet events",
    "aggregate": "turn clean events into indexed implicit ratings",
    "train": "fit ALS (implicitPrefs) and save the model with its metadata",
    "gate": "measure tonight's model on the holdout; it serves if it beats popularity and the serving model",
    "recommend": "write top-N recommendations per user as Parquet",
    "refresh": "between nightly runs: ingest, then rescore only the users active since the serving model "
               "(fold-in for new users); never trains",
    "nightly": "run ingest, aggregate, train, gate and recommend in order for one run date",
    "evaluate": "measure ALS against popularity baselines on a holdout; write a report",
    "tune": "search ALS, confidence and event-weight settings on the holdout (optuna); write the best as TOML",
    "clean": "remove outputs older than retention.keep_days days before the run date and models beyond "
             "retention.keep_models",
}


def _stage(name: str) -> Callable[..., Any]:
    """The stage's `run`, imported only once a session may be built (pyspark after findspark)."""
    from sparkals.stages import aggregate, evaluate, gate, ingest, nightly, recommend, refresh, train, tune

    modules = {"ingest": ingest, "aggregate": aggregate, "train": train, "gate": gate, "recommend": recommend,
               "refresh": refresh, "nightly": nightly, "evaluate": evaluate, "tune": tune}
    return modules[name].run


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-22") from err


def _common(parser: argparse.ArgumentParser, run_date: bool = True) -> None:
    parser.add_argument(
        "--config", action="append", default=[], metavar="PATH",
        help="TOML file layered over the defaults (conf/base.toml); repeatable, later wins",
    )
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set als.rank=64; repeatable",
    )
    if run_date:
        parser.add_argument(
            "--run-date", type=_date, default=dt.date.today(), help="the night being processed (default: today)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkals", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic Retail Rocket style event log")
    _common(gen, run_date=False)
    gen.add_argument("--users", type=int, default=GeneratorSpec.users)
    gen.add_argument("--items", type=int, default=GeneratorSpec.items)
    gen.add_argument("--events", type=int, default=GeneratorSpec.events)
    gen.add_argument("--seed", type=int, default=GeneratorSpec.seed)
    gen.add_argument("--start", type=_date, default=GeneratorSpec.start, help="first day of the log")
    gen.add_argument("--days", type=int, default=GeneratorSpec.days, help="length of the log in days")
    gen.add_argument("--format", choices=list(INPUT_FORMATS), default="csv")
    gen.add_argument("--out", required=True, help="folder to write the log to")

    for name, text in HELPS.items():
        _common(sub.add_parser(name, help=text))
    mode = sub.choices["clean"].add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    mode.add_argument("--yes", action="store_true", help="remove it")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def print_summary(command: str, result: Any) -> None:
    """The short human summary on stdout; the full record is JSON beside the outputs."""
    if command != "nightly":
        print(json.dumps(dataclasses.asdict(result), indent=2, sort_keys=True, default=str))
        return
    ingest, agg, train, gate, rec = result.ingest, result.aggregate, result.train, result.gate, result.recommend
    print(f"run date          {result.run_date}")
    print(f"events read       {ingest.rows_read:,} ({ingest.accepted:,} accepted)")
    print(f"users / items     {agg.users:,} / {agg.items:,}")
    print(f"ratings           {agg.ratings:,}")
    print(f"training time     {train.train_seconds:.1f}s (model {train.model_version})")
    if gate.candidate_score is not None:
        serving = gate.serving or "no model: fallback for everyone"
        print(f"holdout {gate.metric:<9} {gate.candidate_score:.4f} ({gate.status}; serving {serving})")
        against = ", ".join(
            f"{name} {score:.4f} ({'n/a' if gate.lift[name] is None else f'{gate.lift[name]:+.0%}'})"
            for name, score in gate.baselines.items()
        )
        print(f"baselines         {against}")
    print(f"users scored      {rec.users_scored:,} ({rec.users_fold_in:,} new since the model: folded in; "
          f"{rec.users_fallback:,} without ratings: popular fallback)")
    print(f"recommendations   {rec.path}")
    print(f"total time        {result.seconds:.1f}s")


@contextmanager
def _exclusive(spark: Any, cfg: Config, command: str, run_date: dt.date, writes: bool = True) -> Iterator[None]:
    """A command that writes below output.root holds its lock while it runs (a second one stops with
    exit status 5 before writing anything), and removes Spark's checkpoint files when it ends."""
    if not writes:
        yield
        return
    from sparkals.lock import RunLock
    from sparkals.paths import Paths
    from sparkals.stages.clean import remove_checkpoints

    paths = Paths(cfg.output.root)
    if not cfg.lock.enabled:
        log.info("lock.enabled is false: nothing stops another run from writing to %s at the same time", paths.root)
    lock = RunLock(spark, paths.lock, run_date, command, cfg.lock) if cfg.lock.enabled else None
    if lock:
        lock.acquire()
    try:
        yield
    finally:
        remove_checkpoints(spark, paths)
        if lock:
            lock.release()


def _gated(result: Any) -> bool:
    """The run finished, but the quality gate refused tonight's model."""
    return getattr(result, "status", None) == "gated" or getattr(result, "refused", False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        cfg: Config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"sparkals: configuration error: {err}", file=sys.stderr)
        return 2

    from sparkals.session import JavaMissingError, build_session, require_java

    try:
        require_java()
    except JavaMissingError as err:
        print(f"sparkals: {err}", file=sys.stderr)
        return 3
    # Which copy of the code runs (the --py-files zip, an install): the first question on a cluster.
    log.info("sparkals %s from %s", sparkals.__version__, os.path.dirname(sparkals.__file__))
    spark = build_session(cfg.spark)
    try:
        if args.command == "generate":
            spec = GeneratorSpec(
                users=args.users, items=args.items, events=args.events,
                seed=args.seed, start=args.start, days=args.days,
            )
            from sparkals.stages import generate

            result = generate.run(spark, spec, args.out, args.format)
        elif args.command == "clean":
            from sparkals.stages import clean

            with _exclusive(spark, cfg, args.command, args.run_date, writes=args.yes):
                result = clean.run(spark, cfg, args.run_date, dry_run=args.dry_run)
        else:
            with _exclusive(spark, cfg, args.command, args.run_date):
                result = _stage(args.command)(spark, cfg, args.run_date)
    except SparkalsError as err:
        print(f"sparkals {args.command}: {err}", file=sys.stderr)
        return err.exit_status
    print_summary(args.command, result)
    if _gated(result):
        print(f"sparkals {args.command}: the quality gate refused tonight's model; the previous one, if any, "
              "was served, else the fallback (the run record says why)", file=sys.stderr)
        return GATED
    return 0


if __name__ == "__main__":
    sys.exit(main())
