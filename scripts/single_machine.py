"""The single-machine path sparkals is compared with: pandas + `implicit` on one machine.

What a data scientist's notebook does with the same log and the same settings as `sparkals nightly`:
read the CSV files, keep the weighted event types, weight and sum them per (user, item), BM25
confidence (implicit's own `bm25_weight`, the formula sparkals' default follows), a CSR matrix,
fit implicit's ALS (Cholesky, like Spark), recommend the top N with purchased items filtered, and
write Parquet. Each step is timed; `run` returns the seconds per step.

    .venv/bin/python scripts/single_machine.py LOG_FOLDER OUT_FOLDER [--rank 32] [--iterations 10]

Needs the `bench` extra (implicit, scipy, threadpoolctl).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WEIGHTS = {"view": 1.0, "addtocart": 5.0, "transaction": 10.0}


def _require_bench_extra() -> tuple[Any, Any, Any]:
    try:
        import implicit
        import scipy.sparse as sparse
        from threadpoolctl import threadpool_limits
    except ImportError as err:
        raise SystemExit(f"the single-machine path needs the bench extra: pip install -e '.[bench]' ({err})") from err
    return implicit, sparse, threadpool_limits


def run(log: str, out: str, rank: int = 32, iterations: int = 10, reg: float = 0.01, alpha: float = 1.0,
        top_n: int = 10, k1: float = 100.0, b: float = 0.8) -> dict[str, float]:
    """The whole path on the CSV files under `log`; seconds per step and in total."""
    implicit, sparse, threadpool_limits = _require_bench_extra()
    from implicit.nearest_neighbours import bm25_weight

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    files = sorted(glob.glob(os.path.join(log, "**", "*.csv"), recursive=True))
    events = pd.concat((pd.read_csv(f, usecols=["visitorid", "event", "itemid"], dtype={"event": "category"})
                        for f in files), ignore_index=True)
    lap("read")
    events = events[events.event.isin(list(WEIGHTS))]
    events["weight"] = events.event.map(WEIGHTS).astype("float32")
    ratings = events.groupby(["visitorid", "itemid"], sort=False, observed=True).weight.sum().reset_index()
    users, user_idx = np.unique(ratings.visitorid.to_numpy(), return_inverse=True)
    items, item_idx = np.unique(ratings.itemid.to_numpy(), return_inverse=True)
    matrix = sparse.csr_matrix((ratings.weight.to_numpy("float32"), (user_idx, item_idx)),
                               shape=(len(users), len(items)))
    bought = events[events.event == "transaction"]
    bought_users = np.searchsorted(users, bought.visitorid.to_numpy())
    bought_items = np.searchsorted(items, bought.itemid.to_numpy())
    purchased = sparse.csr_matrix((np.ones(len(bought), np.float32), (bought_users, bought_items)),
                                  shape=matrix.shape)
    purchased.data[:] = 1.0  # duplicates summed: back to one
    confidence = bm25_weight(matrix, K1=k1, B=b).tocsr().astype(np.float32)
    lap("aggregate")
    with threadpool_limits(1, "blas"):
        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=rank, regularization=reg, alpha=alpha, iterations=iterations, use_cg=False,
            random_state=1, num_threads=os.cpu_count() or 1)
        model.fit(confidence, show_progress=False)
        lap("fit")
        ids = np.arange(len(users))
        recommended, scores = model.recommend(ids, purchased, N=top_n, filter_already_liked_items=True)
    lap("recommend")
    table = pa.table({
        "user_id": np.repeat(users, top_n), "rank": np.tile(np.arange(1, top_n + 1, dtype=np.int32), len(users)),
        "item_id": items[recommended.ravel()], "score": scores.ravel().astype(np.float32),
    })
    Path(out).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, os.path.join(out, "recommendations.parquet"))
    lap("write")
    seconds["total"] = round(sum(seconds.values()), 3)
    seconds.update(ratings=int(matrix.nnz), users=int(len(users)), items=int(len(items)))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    parser.add_argument("out")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(run(args.log, args.out, args.rank, args.iterations), indent=2))


if __name__ == "__main__":
    main()
