"""Benchmark: approximate top-N (recommend.method = "ann", a faiss HNSW index) against the exact
blocked scorer, on generated factors (issue 16).

Factors: rank 32, items around 256 "genre" directions with log-normal norms (popular items are
long vectors, as ALS item factors are), users around the same directions; each user has seen a
few popular items (1 % of users several hundred), so the seen filter and the exact fallback run.

1. Libraries, in one process: build time, index size, recall@10 against exact and milliseconds
   per query for each search width (faiss `efSearch`, hnswlib `ef`), on a sample of users.
2. Through Spark at the full size: `score_all(method="ann")` for every user, the index build
   counted, against `score_all(method="exact")` timed on two samples of users and extrapolated
   linearly (intercept + slope) to every user; recall@10 of the ANN lists against the exact ones
   of the sampled users; peak RSS of the Python workers.
3. Break-even for `auto`: both methods for every user on smaller catalogues (items drawn from the
   same factors), exact measured in full.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python scripts/bench_ann.py --json benchmarks_ann.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import DataFrame, SparkSession  # noqa: E402

from _bench_common import local_session, machine  # noqa: E402
from sparkals.ann import AnnParams  # noqa: E402
from sparkals.score import ItemMatrix, item_matrix, score_all  # noqa: E402

TOP_N = 10


def generate(users: int, items: int, rank: int, seed: int) -> dict[str, np.ndarray]:
    """Clustered factors with popularity in the item norms, and seen lists of popular items."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, rank)).astype(np.float32) / np.sqrt(rank)

    def around(count: int) -> np.ndarray:
        vectors = centres[rng.integers(0, len(centres), count)] + 0.7 * rng.normal(size=(count, rank)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    item_factors = (0.3 * around(items) * rng.lognormal(0.0, 0.5, size=(items, 1))).astype(np.float32)
    user_factors = (0.3 * around(users)).astype(np.float32)
    popular = np.argsort(-np.linalg.norm(item_factors, axis=1))[: max(items // 100, 500)]
    counts = np.where(rng.random(users) < 0.01, 300, rng.geometric(1 / 8, users) - 1)
    seen = [np.sort(rng.choice(popular, min(int(c), len(popular)), replace=False)).astype(np.int32) for c in counts]
    return {"items": item_factors, "users": user_factors, "seen": seen}


def _list_array(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)),
                                    pa.array(matrix.ravel()))


def write_inputs(data: dict[str, np.ndarray], workdir: Path, files: int = 8) -> None:
    """Item factors as ALS writes them (`id`, `features`) and users (`key`, `features`, `seen`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    items = pa.table({"id": pa.array(np.arange(len(data["items"]), dtype=np.int32)), "features": _list_array(data["items"])})
    pq.write_table(items, workdir / "items.parquet")
    users = pa.table({
        "key": pa.array(np.arange(len(data["users"]), dtype=np.int32)),
        "features": _list_array(data["users"]),
        "seen": pa.array(data["seen"], type=pa.list_(pa.int32())),
    })
    (workdir / "users").mkdir(exist_ok=True)
    step = -(-users.num_rows // files)
    for part in range(files):
        pq.write_table(users.slice(part * step, step), workdir / "users" / f"part-{part}.parquet")


def exact_truth(users: np.ndarray, seen: list[np.ndarray], items: np.ndarray, n: int) -> list[set[int]]:
    """Each sampled user's exact top-n item rows, seen items masked (NumPy, blocks of 64 users)."""
    truth: list[set[int]] = []
    for start in range(0, len(users), 64):
        scores = users[start:start + 64] @ items.T
        for row, mask in enumerate(seen[start:start + 64]):
            scores[row, mask] = -np.inf
        truth += [set(r.tolist()) for r in np.argpartition(scores, len(items) - n, axis=1)[:, len(items) - n:]]
    return truth


def recall(found: list[list[int]] | np.ndarray, truth: list[set[int]]) -> float:
    return float(np.mean([len(set(np.asarray(f).tolist()) & t) / len(t) for f, t in zip(found, truth)]))


def compare_libraries(data: dict[str, np.ndarray], sample: np.ndarray, efs: list[int], m: int, ef_construction: int
                      ) -> dict[str, Any]:
    """Build and search each installed library on the same items and sampled users (one search
    thread, as in a Spark task; the build with the library's default threads, as on the driver):
    recall of the unfiltered top 10, the index's own quality (section 2 measures it with the
    seen filter, through the scorer)."""
    items, users = data["items"], data["users"][sample]
    started = time.perf_counter()
    truth = exact_truth(users, [np.empty(0, dtype=np.int32)] * len(sample), items, TOP_N)
    out: dict[str, Any] = {"sample_users": len(sample), "exact_numpy_ms_per_user": round(
        (time.perf_counter() - started) / len(sample) * 1e3, 3)}
    k = TOP_N

    def kept(labels: np.ndarray) -> np.ndarray:
        return labels

    import faiss

    index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    started = time.perf_counter()
    index.add(items)
    entry: dict[str, Any] = {"version": faiss.__version__, "build_s": round(time.perf_counter() - started, 2),
                             "index_mib": round(faiss.serialize_index(index).nbytes / 2**20, 1), "curve": []}
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    for ef in efs:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, k)
        started = time.perf_counter()
        _, labels = index.search(users, k, params=params)
        ms = (time.perf_counter() - started) / len(sample) * 1e3
        entry["curve"].append({"ef": ef, "recall_at_10": round(recall(kept(labels), truth), 4), "ms_per_query": round(ms, 4)})
        print(f"faiss ef={ef}: {entry['curve'][-1]}", flush=True)
    faiss.omp_set_num_threads(threads)
    out["faiss"] = entry
    del index
    try:
        import hnswlib
    except ImportError:
        out["hnswlib"] = "not installed"
        return out
    index = hnswlib.Index(space="ip", dim=items.shape[1])
    index.init_index(len(items), ef_construction=ef_construction, M=m)
    started = time.perf_counter()
    index.add_items(items)
    entry = {"build_s": round(time.perf_counter() - started, 2), "curve": []}
    for ef in efs:
        index.set_ef(max(ef, k))
        started = time.perf_counter()
        labels, _ = index.knn_query(users, k, num_threads=1)
        ms = (time.perf_counter() - started) / len(sample) * 1e3
        entry["curve"].append({"ef": ef, "recall_at_10": round(recall(kept(labels), truth), 4), "ms_per_query": round(ms, 4)})
        print(f"hnswlib ef={ef}: {entry['curve'][-1]}", flush=True)
    out["hnswlib"] = entry
    return out


def worker_peak_rss_mib() -> dict[str, float]:
    """Peak RSS (VmHWM) of each Python process under this driver's JVM: the pyspark daemon and its
    workers, which Spark reuses across tasks, so the figure covers every task they ran (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in mine} - mine
        grew, mine = bool(more), mine | more
    peaks: dict[str, float] = {}
    for pid in sorted(mine - {os.getpid()}):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            if not Path(f"/proc/{pid}/comm").read_text().startswith("python"):  # not the JVM
                continue
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "")
        if line:
            peaks[str(pid)] = round(int(line.split()[1]) / 1024, 1)
    return peaks


class _BuildTimes(logging.Handler):
    """Keeps the index build's seconds that score_all logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("approximate index"):
            self.seconds.append(float(record.args[1]))


BUILD_TIMES = _BuildTimes()


def timed_run(make: Callable[[], DataFrame], path: str) -> float:
    """Seconds from the call of the scorer (where the index is built) to its output written."""
    started = time.perf_counter()
    make().write.mode("overwrite").parquet(path)
    return time.perf_counter() - started


def lists_of(spark: SparkSession, path: str, keys: np.ndarray) -> dict[int, list[int]]:
    rows = spark.read.parquet(path).where(f"key in ({','.join(map(str, keys.tolist()))})").toPandas()
    return {int(k): g.sort_values("rank")["item_idx"].tolist() for k, g in rows.groupby("key")}


def spark_compare(spark: SparkSession, users: DataFrame, matrix: ItemMatrix, params: AnnParams, samples: list[int],
                  workdir: Path, exact_full: bool) -> dict[str, Any]:
    """ANN for every user (build counted) against exact: measured in full, or on two samples and
    extrapolated; recall of the sampled users' ANN lists against their exact ones."""
    total = users.count()
    out: dict[str, Any] = {"items": len(matrix.ids), "users": total}
    keys = np.sort(np.random.default_rng(0).choice(total, max(samples), replace=False))
    exact_times = {}
    warm = users.where(f"key in ({','.join(map(str, keys[:100].tolist()))})")
    timed_run(lambda: score_all(warm, matrix, TOP_N, block_size=1024), str(workdir / "warm_up"))  # workers, broadcast paths
    for size in samples:
        chosen = users.where(f"key in ({','.join(map(str, keys[:size].tolist()))})")
        exact_times[size] = timed_run(lambda: score_all(chosen, matrix, TOP_N, block_size=1024),
                                      str(workdir / f"exact_{size}"))
        print(f"exact, {size} users x {len(matrix.ids)} items: {exact_times[size]:.1f} s", flush=True)
    out["exact_sample_s"] = {str(k): round(v, 2) for k, v in exact_times.items()}
    small, big = min(samples), max(samples)
    slope = (exact_times[big] - exact_times[small]) / max(big - small, 1)
    out["exact_extrapolated_s"] = round(exact_times[small] + slope * (total - small), 1)
    out["exact_proportional_s"] = round(exact_times[big] * total / big, 1)
    out["exact_s_per_1k_users"] = round(slope * 1000, 3)
    out["worker_peak_rss_mib_after_exact"] = worker_peak_rss_mib()
    if exact_full:
        out["exact_s"] = round(timed_run(lambda: score_all(users, matrix, TOP_N, block_size=1024),
                                         str(workdir / "exact_all")), 2)
        print(f"exact, all {total} users: {out['exact_s']} s", flush=True)
    ann_s = timed_run(lambda: score_all(users, matrix, TOP_N, block_size=1024, method="ann", ann=params),
                      str(workdir / "ann_all"))
    out["ann_s"] = round(ann_s, 2)
    out["ann_build_s"] = BUILD_TIMES.seconds[-1] if BUILD_TIMES.seconds else None
    out["worker_peak_rss_mib_after_ann"] = worker_peak_rss_mib()
    print(f"ann, all {total} users (index build of {out['ann_build_s']} s included): {ann_s:.1f} s", flush=True)
    exact_lists = lists_of(spark, str(workdir / f"exact_{big}"), keys)
    ann_lists = lists_of(spark, str(workdir / "ann_all"), keys)
    out["recall_at_10"] = round(float(np.mean([
        len(set(ann_lists.get(k, [])) & set(v)) / len(v) for k, v in exact_lists.items() if v])), 4)
    out["short_users"] = int(sum(len(ann_lists.get(k, [])) < TOP_N for k in exact_lists))
    # Measured in full, else the lower of the two extrapolations (the speed-up is not flattered).
    reference = out.get("exact_s", min(out["exact_extrapolated_s"], out["exact_proportional_s"]))
    out["speedup"] = round(reference / ann_s, 2)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--efs", default="16,32,64,128,256,512")
    parser.add_argument("--ef", type=int, default=AnnParams().ef_search, help="search width of the Spark runs")
    parser.add_argument("--m", type=int, default=AnnParams().m)
    parser.add_argument("--ef-construction", type=int, default=AnnParams().ef_construction)
    parser.add_argument("--build-threads", type=int, default=AnnParams().build_threads)
    parser.add_argument("--library-sample", type=int, default=1000, help="users of the recall curve")
    parser.add_argument("--exact-samples", default="1000,10000", help="users of the two exact runs at full size")
    parser.add_argument("--break-even-items", default="10000,30000,100000")
    parser.add_argument("--only", choices=["libraries", "spark", "break_even"], default=None)
    parser.add_argument("--workdir", default=".bench/ann")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("sparkals.score").setLevel(logging.INFO)  # the index build's time and size
    logging.getLogger("sparkals.score").addHandler(BUILD_TIMES)

    workdir = Path(args.workdir).resolve()
    data = generate(args.users, args.items, args.rank, seed=16)
    write_inputs(data, workdir)
    params = AnnParams(ef_search=args.ef, m=args.m, ef_construction=args.ef_construction,
                       build_threads=args.build_threads)
    results: dict[str, Any] = {
        "measured_at": dt.datetime.now().strftime("%Y-%m-%dT%H:%M"),
        "spec": {"users": args.users, "items": args.items, "rank": args.rank, "top_n": TOP_N,
                 "ann": {"ef_search": params.ef_search, "m": params.m, "ef_construction": params.ef_construction,
                         "max_extra": params.max_extra, "build_threads": params.build_threads},
                 "seen_pairs": int(sum(len(s) for s in data["seen"]))},
    }
    if args.only in (None, "libraries"):
        sample = np.sort(np.random.default_rng(1).choice(args.users, args.library_sample, replace=False))
        results["libraries"] = compare_libraries(data, sample, [int(e) for e in args.efs.split(",")], args.m,
                                                 args.ef_construction)
    spark = local_session()
    results["machine"] = machine(spark)
    results["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    users = spark.read.parquet(str(workdir / "users"))
    items = spark.read.parquet(str(workdir / "items.parquet"))
    if args.only in (None, "spark"):
        matrix = item_matrix(items)
        results["spark"] = spark_compare(spark, users, matrix, params, [int(s) for s in args.exact_samples.split(",")],
                                         workdir, exact_full=False)
        del matrix
    if args.only in (None, "break_even"):
        results["break_even"] = []
        for size in [int(s) for s in args.break_even_items.split(",")]:
            matrix = item_matrix(items.where(f"id < {size}"))
            entry = spark_compare(spark, users.selectExpr("key", "features", f"filter(seen, x -> x < {size}) as seen"),
                                  matrix, params, [1000, 3000], workdir, exact_full=True)
            results["break_even"].append(entry)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
