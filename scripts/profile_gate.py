"""Where a scheduled night's gate spends its time: its parts run one after the other, each result
materialised (which the gate itself does not do). First, into a fresh --root, the night before the
test period (ingest, aggregate, train, as scripts/bench.py's scheduled variant runs it) and the
night's ingest; then seconds per part, for --rounds rounds in one JVM (the first pays for class
loading and JIT). Parts marked "(as the gate)" are what the gate runs when its test sample is
bounded within evaluate.driver_max_cells; those marked "(Spark)", what it runs otherwise.

    .venv/bin/python scripts/profile_gate.py --root /tmp/profile-1M --log .bench/log-1000000
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Laps, local_session, profile_arguments, profile_config  # noqa: E402
from bench import RUN_DATE, holdout_night  # noqa: E402
from sparkals import evaluate  # noqa: E402
from sparkals.driver_measure import collect_sample  # noqa: E402
from sparkals.stages import ingest  # noqa: E402
from sparkals.stages.common import open_holdout  # noqa: E402
from sparkals.stages.holdout_model import REUSED, reusable_model  # noqa: E402
from sparkals.vocabulary import USER_ID  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def profile(spark, cfg, run_date: dt.date) -> Laps:
    lap = Laps()
    settings = cfg.evaluate
    with open_holdout(spark, cfg, run_date) as (holdout, _):
        lap("events read, cached and split")
        fitted, said = reusable_model(spark, cfg, holdout)
        if said["source"] != REUSED:
            sys.exit(f"the gate would train here: {said['reason']}")
        lap("reuse check (digest) and model loaded")
        truth, seen = evaluate.relevance(holdout, settings, exclude=False)
        sample = collect_sample(truth, seen if settings.exclude_seen else None, fitted.users, fitted.items)
        lap("relevance sets collected (what the gate does within evaluate.driver_max_cells)")
        evaluate.measure_on_driver(fitted, holdout, sample, settings, fitted.items.count(), True)
        lap("listed and measured on the driver (as the gate)")
        all_truth, seen = evaluate.relevance(holdout, settings)
        truth = all_truth.join(fitted.users.select(USER_ID), USER_ID, "left_semi").cache()
        seen, audience = seen.cache(), truth.select(USER_ID).distinct().cache()
        audience.count(), seen.count(), truth.count()
        lap("relevance sets and audience (Spark)")
        n = max(settings.ks)
        lists = {"als": evaluate.model_lists(fitted, audience, seen, n).cache()}
        lists["als"].count()
        lap("ALS lists (Spark)")
        lists.update(evaluate.baseline_lists(holdout, fitted.item_users, audience, seen, n, settings.recent_days))
        for name in evaluate.BASELINES:
            lists[name] = lists[name].cache()
            lists[name].count()
        lap("baseline lists (Spark)")
        evaluate.measure(lists, truth, settings.ks, fitted.items.count())
        lap("metrics and coverage (Spark)")
        holdout.__dict__.pop("sizes", None)  # counted once by open_holdout: count again for the lap
        holdout.sizes, fitted.users.count()
        lap("report counts (as the gate)")
        evaluate.relevant_counts(all_truth, fitted.users)
        lap("relevant counts (Spark)")
    return lap


def main() -> None:
    args = profile_arguments(__doc__, rounds=2)
    spark = local_session(driver_memory="8g")
    cfg = profile_config(args, REPO / "conf" / "local.toml")
    holdout_night(spark, cfg)
    ingest.run(spark, cfg, RUN_DATE)
    for number in range(args.rounds):
        print(profile(spark, cfg, RUN_DATE).line(number + 1), flush=True)


if __name__ == "__main__":
    main()
