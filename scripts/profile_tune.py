"""Where a tune trial spends its time: the holdout `sparkals tune` prepares, then --rounds trials
with the same settings, each part materialised on its own (which `run_trial` does not do; the
lists and metrics both on the driver, as trials take them when the sample fits
`evaluate.driver_max_cells`, and in Spark jobs), then --rounds whole trials as `run_trial` runs
them. One JVM: the first round pays for class loading and JIT.

    .venv/bin/python scripts/profile_tune.py --root /tmp/profile-tune --log /work/.bench/log-100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session  # noqa: E402
from bench import RUN_DATE  # noqa: E402
from sparkals import evaluate  # noqa: E402
from sparkals.config import load_config  # noqa: E402
from sparkals.driver_measure import measure_model  # noqa: E402
from sparkals.search import TuneHoldout, prepare, run_trial  # noqa: E402
from sparkals.stages import ingest  # noqa: E402
from sparkals.stages.common import open_holdout  # noqa: E402
from sparkals.train import train_als  # noqa: E402
from sparkals.tuning import TrialParams, trial_ratings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parts(data: TuneHoldout, params: TrialParams, cfg) -> dict[str, float]:
    laps: dict[str, float] = {}
    started = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        laps[name] = round(now - started[0], 2)
        started[0] = now

    settings = cfg.evaluate
    rated = trial_ratings(data.indexed, data.event_types, params.ratings(cfg.ratings)).cache()
    rated.count()
    lap("trial ratings")
    trained = train_als(rated, params.als(cfg.als))
    lap("ALS fit")
    if data.sample is not None:
        measure_model(trained.model, data.sample, settings.ks, data.n_items)
        lap("listed and measured on the driver")
    fitted = evaluate.FittedModel(trained.model, data.users, data.items, data.pairs, trained.seconds, data.item_users)
    lists = {"als": evaluate.model_lists(fitted, data.audience, data.seen, max(settings.ks)).cache()}
    lists["als"].count()
    lap("ALS lists (Spark)")
    evaluate.measure(lists, data.truth, settings.ks, data.n_items)
    lap("metrics and coverage (Spark)")
    rated.unpersist()
    return laps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output root to prepare (emptied first)")
    parser.add_argument("--log", required=True, help="an event log of scripts/bench.py (.bench/log-N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=["als.rank=32"], dest="overrides")
    args = parser.parse_args()
    spark = local_session(driver_memory="8g")
    shutil.rmtree(args.root, ignore_errors=True)
    cfg = load_config([REPO / "conf" / "local.toml"], [f"input.path={args.log}", f"output.root={args.root}", *args.overrides])
    ingest.run(spark, cfg, RUN_DATE)
    params = TrialParams(rank=cfg.als.rank, reg_param=cfg.als.reg_param, alpha=cfg.als.alpha,
                         confidence=cfg.ratings.confidence, weights=dict(cfg.ratings.weights))
    with open_holdout(spark, cfg, RUN_DATE) as (holdout, as_of):
        started = time.perf_counter()
        data = prepare(holdout, cfg.ratings, cfg.evaluate, as_of)
        print(json.dumps({"prepare": round(time.perf_counter() - started, 2), "training_ratings": data.pairs,
                          "items": data.n_items}), flush=True)
        for number in range(args.rounds):
            laps = parts(data, params, cfg)
            print(json.dumps({"round": number + 1, "seconds": round(sum(laps.values()), 2), **laps}), flush=True)
        for number in range(args.rounds):
            started = time.perf_counter()
            outcome = run_trial(data, params, cfg.ratings, cfg.als, cfg.evaluate)
            print(json.dumps({"whole trial": number + 1, "seconds": round(time.perf_counter() - started, 2),
                              "score": round(outcome.score, 5)}), flush=True)
        data.unpersist()


if __name__ == "__main__":
    main()
