"""Where a tune trial spends its time: the holdout `sparkals tune` prepares, then --rounds trials
with the same settings, each part materialised on its own (which `run_trial` does not do; the
lists and metrics both on the driver, as trials take them when the sample fits
`evaluate.driver_max_cells`, and in Spark jobs), then --rounds whole trials as `run_trial` runs
them. One JVM: the first round pays for class loading and JIT.

    .venv/bin/python scripts/profile_tune.py --root /tmp/profile-tune --log /work/.bench/log-100000
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Laps, local_session, profile_arguments, profile_config  # noqa: E402
from bench import RUN_DATE  # noqa: E402
from sparkals import evaluate  # noqa: E402
from sparkals.driver_measure import measure_model  # noqa: E402
from sparkals.search import TuneHoldout, prepare, run_trial  # noqa: E402
from sparkals.stages import ingest  # noqa: E402
from sparkals.stages.common import open_holdout  # noqa: E402
from sparkals.train import train_als  # noqa: E402
from sparkals.tuning import TrialParams, trial_ratings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parts(data: TuneHoldout, params: TrialParams, cfg) -> Laps:
    lap = Laps()
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
    return lap


def main() -> None:
    args = profile_arguments(__doc__, rounds=3)
    spark = local_session(driver_memory="8g")
    cfg = profile_config(args, REPO / "conf" / "local.toml")
    ingest.run(spark, cfg, RUN_DATE)
    params = TrialParams(rank=cfg.als.rank, reg_param=cfg.als.reg_param, alpha=cfg.als.alpha,
                         confidence=cfg.ratings.confidence, weights=dict(cfg.ratings.weights))
    with open_holdout(spark, cfg, RUN_DATE) as (holdout, as_of):
        started = time.perf_counter()
        data = prepare(holdout, cfg.ratings, cfg.evaluate, as_of)
        print(json.dumps({"prepare": round(time.perf_counter() - started, 2), "training_ratings": data.pairs,
                          "items": data.n_items}), flush=True)
        for number in range(args.rounds):
            print(parts(data, params, cfg).line(number + 1), flush=True)
        for number in range(args.rounds):
            started = time.perf_counter()
            outcome = run_trial(data, params, cfg.ratings, cfg.als, cfg.evaluate)
            print(json.dumps({"whole trial": number + 1, "seconds": round(time.perf_counter() - started, 2),
                              "score": round(outcome.score, 5)}), flush=True)
        data.unpersist()


if __name__ == "__main__":
    main()
