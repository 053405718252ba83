"""What fold-in is worth, and what a refresh costs (BENCHMARKS.md, "Fold-in and refresh").

Quality: users new since the model. A model is trained on the events up to a cutoff C; the users with
no event by C but events in (C, R] are "new": production folds them in from those events (or, with
recommend.fold_in off, serves them the popular fallback) and is judged on what they do in (R, R + h].
The same users scored by a model retrained on everything up to R (what the next nightly would give
them) is the ceiling. Steam has no time: there, a fifth of the users (by a hash of the id) is left out
of training, and half of each such user's items (by hash) is the history, the other half the truth.

    .venv/bin/python scripts/bench_fold_in.py                      # quality on every data set
    .venv/bin/python scripts/bench_fold_in.py --only generated
    .venv/bin/python scripts/bench_fold_in.py --speed              # refresh of 10k users vs a nightly, 64k items

Real data comes from SPARKALS_DATA (default ../shared/data beside the repository).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from _bench_common import local_session, machine  # noqa: E402
from bench_real import DATA_SETS, REPO, _config, data_set  # noqa: E402
from sparkals.config import Config, load_config  # noqa: E402
from sparkals.evaluate import fit_model  # noqa: E402
from sparkals.fold_in import FoldInParams  # noqa: E402
from sparkals.generate import GeneratorSpec  # noqa: E402
from sparkals.metrics import exclude_seen_truth, ranking_metrics  # noqa: E402
from sparkals.popularity import fallback_scores  # noqa: E402
from sparkals.ratings import build_indexes, build_ratings, index_ratings  # noqa: E402
from sparkals.recommend import recommend_top_n  # noqa: E402
from sparkals.split import user_items  # noqa: E402
from sparkals.stages import generate, ingest, nightly, refresh  # noqa: E402
from sparkals.stages.common import read_events  # noqa: E402
from sparkals.paths import Paths  # noqa: E402
from sparkals.vocabulary import EVENT, EVENT_DATE, ITEM_ID, USER_ID  # noqa: E402

K = 10
# (cutoff C, refresh day R, end of the test period) per timed data set.
WINDOWS = {
    "generated": (dt.date(2026, 7, 30), dt.date(2026, 8, 13), dt.date(2026, 8, 27)),
    "retailrocket": (dt.date(2015, 8, 18), dt.date(2015, 9, 1), dt.date(2015, 9, 18)),
}


def _timed_split(events: DataFrame, cutoff: dt.date, refresh_day: dt.date, end: dt.date) -> dict[str, DataFrame]:
    day = F.col(EVENT_DATE)
    train = events.filter(day <= F.lit(cutoff))
    known = events.filter(day <= F.lit(refresh_day))
    new = (
        events.filter(day <= F.lit(refresh_day)).groupBy(USER_ID)
        .agg(F.min(EVENT_DATE).alias("first")).filter(F.col("first") > F.lit(cutoff)).select(USER_ID)
    )
    test = events.filter((day > F.lit(refresh_day)) & (day <= F.lit(end))).join(new, USER_ID, "left_semi")
    return {"train": train, "known": known, "new": new, "test": test}


def _random_split(events: DataFrame) -> dict[str, DataFrame]:
    """No time: a fifth of the users are new; half of each one's items (by hash) is history."""
    is_new = (F.abs(F.xxhash64(F.lit(17), USER_ID)) % 5) == 0
    in_history = (F.abs(F.xxhash64(F.lit(29), USER_ID, ITEM_ID)) % 2) == 0
    train = events.filter(~is_new)
    history = events.filter(is_new & in_history)
    test = events.filter(is_new & ~in_history)
    return {"train": train, "known": train.unionByName(history), "new": history.select(USER_ID).distinct(),
            "test": test}


def _lists(model: Any, audience: DataFrame, users: DataFrame, items: DataFrame, seen: DataFrame, **options: Any):
    return recommend_top_n(model, audience, users, items, K, seen=seen, **options).select(USER_ID, ITEM_ID, "rank")


def new_user_quality(cfg: Config, split: dict[str, DataFrame], as_of: dt.date, refresh_day: dt.date) -> dict[str, Any]:
    """NDCG / hit rate @K of fold-in, the popular fallback and a retrained model for the new users."""
    fitted = fit_model(split["train"], cfg.ratings, cfg.als, as_of)
    known_ratings = build_ratings(split["known"], cfg.ratings, refresh_day).cache()
    users, items = (index.cache() for index in build_indexes(known_ratings, fitted.users, fitted.items))
    indexed = index_ratings(known_ratings, users, items).cache()
    history = split["known"].join(split["new"], USER_ID, "left_semi")
    seen = user_items(history).cache()
    relevant = split["test"].filter(F.col(EVENT).isin(list(cfg.evaluate.relevant_events)))
    truth = exclude_seen_truth(user_items(relevant), seen).cache()
    audience = truth.select(USER_ID).distinct().join(indexed.join(users, "user_idx").select(USER_ID).distinct(),
                                                     USER_ID, "left_semi").cache()
    fallback = fallback_scores(split["known"], indexed, items, refresh_day, cfg.recommend.fallback_days)
    systems = {
        "fold_in": _lists(fitted.model, audience, users, items, seen, ratings=indexed,
                          fold_in=FoldInParams(cfg.als.alpha, cfg.als.reg_param), fallback=fallback),
        "popular_fallback": _lists(fitted.model, audience, users, items, seen, fallback=fallback),
    }
    retrained = fit_model(split["known"], cfg.ratings, cfg.als, refresh_day)
    systems["retrained"] = recommend_top_n(retrained.model, audience, retrained.users, retrained.items, K,
                                           seen=seen).select(USER_ID, ITEM_ID, "rank")
    result: dict[str, Any] = {"new_users_measured": audience.count(), "relevant_pairs": truth.join(audience, USER_ID,
                                                                                                   "left_semi").count()}
    for name, recs in systems.items():
        measured = ranking_metrics(recs, truth.join(audience, USER_ID, "left_semi"), [K])[K]
        result[name] = {"ndcg": round(measured["ndcg"], 5), "hit_rate": round(measured["hit_rate"], 5),
                        "recall": round(measured["recall"], 5)}
    for frame in (known_ratings, users, items, indexed, seen, truth, audience):
        frame.unpersist()
    return result


def quality(spark: Any, name: str, work: Path) -> dict[str, Any]:
    spec = data_set(spark, name, DATA_SETS[name], work)
    if spec is None:
        return {"skipped": f"{DATA_SETS[name]['path']} is not there (set SPARKALS_DATA)"}
    run_date = dt.date.fromisoformat(spec["run_date"])
    cfg = _config(spec, work, name, [])
    ingest.run(spark, cfg, run_date)
    spark.sparkContext.setCheckpointDir(str(work / "checkpoints"))
    events = read_events(spark, Paths(cfg.output.root), run_date).cache()
    if name in WINDOWS:
        cutoff, refresh_day, end = WINDOWS[name]
        split, as_of, protocol = _timed_split(events, cutoff, refresh_day, end), cutoff, (
            f"time: model on events up to {cutoff}; new users' history ({cutoff}, {refresh_day}]; "
            f"truth ({refresh_day}, {end}]")
    else:
        split, as_of, refresh_day = _random_split(events), run_date, run_date
        protocol = "random: a fifth of the users left out of training; half of each one's items history, half truth"
    started = time.perf_counter()
    result = {"protocol": protocol, **new_user_quality(cfg, split, as_of, refresh_day),
              "seconds": round(time.perf_counter() - started, 1)}
    events.unpersist()
    print(json.dumps({name: result}, indent=2), flush=True)
    return result


def speed(spark: Any, work: Path, users: int, items: int, events: int, changed: int) -> dict[str, Any]:
    """A full nightly (gate on) against a refresh in which `changed` users have new events, same log."""
    start, days = dt.date(2026, 7, 1), 120
    night = start + dt.timedelta(days=days - 1)
    log = work / f"speed-{events}"
    if not (log / "base" / "_SUCCESS").exists():
        generate.run(spark, GeneratorSpec(users=users, items=items, events=events, seed=3, start=start, days=days),
                     str(log / "base"))
        # The next day: `changed` users (ids shared with the log, so most are known users) act again.
        later = GeneratorSpec(users=changed, items=items, events=changed * 3, seed=4,
                              start=night + dt.timedelta(days=1), days=1)
        generate.run(spark, later, str(log / "later-staged"))
    cfg = load_config([REPO / "conf" / "local.toml"], [
        f"input.path={log}/base", f"output.root={work / 'speed-out'}", "spark.shuffle_partitions=8",
        "retention.keep_days=0", "retention.keep_models=0"])
    started = time.perf_counter()
    nightly.run(spark, cfg, night)
    nightly_seconds = time.perf_counter() - started
    # The refresh reads the log with the next day's events in it.
    both = load_config([REPO / "conf" / "local.toml"], [
        f"input.path={log}/{{base,later-staged}}", f"output.root={work / 'speed-out'}", "spark.shuffle_partitions=8"])
    started = time.perf_counter()
    result = refresh.run(spark, both, night + dt.timedelta(days=1))
    refresh_seconds = time.perf_counter() - started
    return {"log": {"users": users, "items": items, "events": events, "changed_users": changed},
            "nightly_seconds": round(nightly_seconds, 1), "refresh_seconds": round(refresh_seconds, 1),
            "refresh_over_nightly": round(refresh_seconds / nightly_seconds, 3),
            "refresh": {k: v for k, v in result.__dict__.items() if k.startswith("users_") or k == "rows"},
            "refresh_stage_seconds": {"ingest": result.ingest.seconds, "aggregate": result.aggregate.seconds}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="generated,retailrocket,steam")
    parser.add_argument("--speed", action="store_true", help="time a refresh against a nightly instead")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=".bench/fold_in")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    spark = local_session()
    work = Path(args.workdir).resolve()
    results: dict[str, Any] = {"measured_at": dt.datetime.now().isoformat(timespec="minutes"), "machine": machine(spark)}
    if args.speed:
        results["speed"] = speed(spark, work, users=50_000, items=64_000, events=args.events, changed=10_000)
        print(json.dumps(results["speed"], indent=2), flush=True)
    else:
        for name in args.only.split(","):
            results[name] = quality(spark, name, work)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
