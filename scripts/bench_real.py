"""Quality on real logs and on generated ones: ALS with the old and the current defaults, the two
popularity baselines, and the `implicit` library, all on the same holdout, measured by the same
Spark metric code. The evidence behind the defaults (BENCHMARKS.md, "Real data").

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python scripts/bench_real.py                 # every data set, about 15 minutes on 2 cores
    .venv/bin/python scripts/bench_real.py --only steam    # one of: generated, retailrocket, retailrocket_l1, steam

Real data comes from SPARKALS_DATA (default ../shared/data beside the repository); a data set that
is not there is reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import local_session, machine  # noqa: E402
from sparkals import fs  # noqa: E402
from sparkals.config import Config, load_config  # noqa: E402
from sparkals.evaluate import relevance  # noqa: E402
from sparkals.generate import GeneratorSpec  # noqa: E402
from sparkals.metrics import ranking_metrics  # noqa: E402
from sparkals.ratings import build_ratings  # noqa: E402
from sparkals.stages import evaluate, generate, ingest  # noqa: E402
from sparkals.stages.common import open_holdout, read_exclusion_file  # noqa: E402
from sparkals.vocabulary import ITEM_ID, RANK, USER_ID  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPARKALS_DATA", REPO.parent / "shared" / "data"))
K = 10
# The defaults before they were chosen on real data (2026-11-24).
OLD_DEFAULTS = ['ratings.confidence="raw"', "als.alpha=10.0", "als.reg_param=0.05", "als.rank=32", "als.max_iter=10"]
# implicit's regularisation is not scaled by each row's count as Spark's regParam is: 0.1 there is
# close to 0.01 here (measured on Steam with a NumPy ALS using Spark's scaling).
IMPLICIT_REGULARIZATION = 0.1

DATA_SETS: dict[str, dict[str, Any]] = {
    "generated": {"run_date": "2026-11-01", "configs": [], "overrides": []},
    "retailrocket": {"run_date": "2015-09-18", "configs": [], "overrides": [],
                     "path": DATA / "retailrocket_sample" / "events_sample_normalized.csv"},
    "retailrocket_l1": {"run_date": "2015-09-18", "configs": [],
                        "overrides": ['evaluate.split="leave_last_n"', "evaluate.leave_last_n=1"],
                        "path": DATA / "retailrocket_sample" / "events_sample_normalized.csv"},
    "steam": {"run_date": "2026-11-24", "configs": [REPO / "conf" / "steam.toml"], "overrides": [],
              "path": DATA / "steam_200k" / "steam-200k.csv.gz"},
}


def _config(spec: dict[str, Any], work: Path, name: str, extra: list[str]) -> Config:
    return load_config(
        [REPO / "conf" / "local.toml", *spec["configs"]],
        [f"input.path={spec['path']}", f"output.root={work / name}", "spark.shuffle_partitions=8", *spec["overrides"],
         *extra],
    )


def _systems(spark: Any, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """ALS and both baselines at K, from the report the evaluate stage writes."""
    started = time.perf_counter()
    result = evaluate.run(spark, cfg, run_date)
    report = fs.read_json(spark, result.report.replace("report.html", "metrics.json"))
    at_k = {name: values[str(K)] for name, values in report["systems"].items()}
    return {
        "ndcg": {name: round(v["ndcg"], 5) for name, v in at_k.items()},
        "hit_rate": {name: round(v["hit_rate"], 5) for name, v in at_k.items()},
        "users_evaluated": report["data"]["test_users"], "cold_test_users": report["data"]["cold_test_users"],
        "train_ratings": report["data"]["train_ratings"], "seconds": round(time.perf_counter() - started, 1),
    }


def _implicit(spark: Any, cfg: Config, run_date: dt.date) -> dict[str, Any]:
    """implicit's ALS on the same split and the same ratings as sparkals' current defaults, its lists
    measured by sparkals' metric code on the same warm test users."""
    try:
        import implicit
        import numpy as np
        import scipy.sparse as sparse
        from threadpoolctl import threadpool_limits
    except ImportError:
        return {"skipped": "implicit not installed: pip install -e '.[bench]'"}
    with open_holdout(spark, cfg, run_date) as (holdout, as_of):
        ratings = build_ratings(holdout.train, cfg.ratings, as_of, read_exclusion_file(spark, cfg)).toPandas()
        truth, _ = relevance(holdout, cfg.evaluate)
        users = ratings[USER_ID].astype("category")
        items = ratings[ITEM_ID].astype("category")
        # Spark's confidence is 1 + alpha * r; implicit 0.7 takes the values as the confidence itself.
        confidence = (1.0 + cfg.als.alpha * ratings["rating"].to_numpy(np.float64)).astype(np.float32)
        matrix = sparse.csr_matrix((confidence, (users.cat.codes.to_numpy(), items.cat.codes.to_numpy())))
        row_of = {user: row for row, user in enumerate(users.cat.categories)}
        warm_truth = truth.filter(truth[USER_ID].isin(list(row_of)))
        scored = [r[USER_ID] for r in warm_truth.select(USER_ID).distinct().collect()]
        started = time.perf_counter()
        with threadpool_limits(1, "blas"):
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=cfg.als.rank, regularization=IMPLICIT_REGULARIZATION, alpha=1.0,
                iterations=cfg.als.max_iter, random_state=cfg.als.seed, num_threads=os.cpu_count() or 1)
            model.fit(matrix, show_progress=False)
            rows = np.array([row_of[u] for u in scored])
            ids, _ = model.recommend(rows, matrix[rows], N=K, filter_already_liked_items=True)
        seconds = time.perf_counter() - started
        recs = spark.createDataFrame(
            [(u, str(items.cat.categories[j]), rank) for n, u in enumerate(scored)
             for rank, j in enumerate(ids[n], start=1) if j >= 0],
            f"{USER_ID} string, {ITEM_ID} string, {RANK} int",
        )
        measured = ranking_metrics(recs, warm_truth, [K])[K]
    return {"ndcg": round(measured["ndcg"], 5), "hit_rate": round(measured["hit_rate"], 5),
            "users_evaluated": measured["users_evaluated"], "fit_and_recommend_seconds": round(seconds, 2),
            "parameters": {"factors": cfg.als.rank, "regularization": IMPLICIT_REGULARIZATION,
                           "confidence": f"1 + {cfg.als.alpha} * r ({cfg.ratings.confidence})",
                           "iterations": cfg.als.max_iter}}


def data_set(spark: Any, name: str, spec: dict[str, Any], work: Path) -> dict[str, Any] | None:
    """`spec` with the path of its log: the demo's log generated into `work` once, a real one as
    found; None when a real log is not there."""
    if name == "generated":
        spec = {**spec, "path": work / "generated-log"}
        if not (spec["path"] / "_SUCCESS").exists():
            demo = GeneratorSpec(users=20_000, items=3_000, events=500_000, start=dt.date(2026, 7, 1), days=120)
            generate.run(spark, demo, str(spec["path"]))
    return spec if Path(spec["path"]).exists() else None


def bench(spark: Any, name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    run_date = dt.date.fromisoformat(spec["run_date"])
    found = data_set(spark, name, spec, work)
    if found is None:
        return {"skipped": f"{spec['path']} is not there (set SPARKALS_DATA)"}
    spec = found
    current = _config(spec, work, name, [])
    counts = ingest.run(spark, current, run_date)
    result: dict[str, Any] = {"input": str(spec["path"]), "rows_read": counts.rows_read, "accepted": counts.accepted,
                              "split": current.evaluate.split}
    print(f"{name}: old defaults", flush=True)
    result["old_defaults"] = _systems(spark, _config(spec, work, name, OLD_DEFAULTS), run_date)
    print(f"{name}: current defaults", flush=True)
    result["new_defaults"] = _systems(spark, current, run_date)
    print(f"{name}: implicit", flush=True)
    result["implicit"] = _implicit(spark, current, run_date)
    result["defaults"] = {"ratings": {k: v for k, v in dataclasses.asdict(current.ratings).items()
                                      if k in ("confidence", "weights")},
                          "als": {k: v for k, v in dataclasses.asdict(current.als).items()
                                  if k in ("rank", "max_iter", "reg_param", "alpha")}}
    print(json.dumps({name: result}, indent=2), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DATA_SETS), help="comma-separated data sets")
    parser.add_argument("--workdir", default=".bench/real")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    spark = local_session()
    work = Path(args.workdir).resolve()
    results: dict[str, Any] = {"measured_at": dt.datetime.now().isoformat(timespec="minutes"), "machine": machine(spark)}
    for name in args.only.split(","):
        results[name] = bench(spark, name, DATA_SETS[name], work)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
