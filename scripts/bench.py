"""Benchmarks, on one machine in one run: writes bench_report.md and a JSON of the raw figures.

1. The nightly pipeline on generated logs of growing size (default 100k, 1M, 4M, 16M events):
   seconds per stage, peak driver JVM heap, the growth ratio between sizes, and beside it the
   single-machine path (scripts/single_machine.py: pandas + implicit, the `bench` extra) on the
   same log and settings, with the ratios: night without the gate / single machine, and what the
   gate adds to the night.
2. ALS training alone, Spark against `implicit` (the `bench` extra) on the same ratings, rank,
   iterations and regularisation: seconds per iteration and the ratio.
3. Scoring every user with seen items filtered: the blocked scorer, Spark's native
   recommendForAllUsers + anti-join, and implicit's `recommend` on the same factors.
4. Achieved GFLOP/s of training and scoring against an estimate of the machine's peak.

Every timing is the median of --repeats runs, with min and max.

    .venv/bin/python scripts/bench.py                       # everything, about an hour on 2 cores
    .venv/bin/python scripts/bench.py --sizes 1000000 --repeats 2 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import bench_scoring  # noqa: E402
import single_machine  # noqa: E402
from _bench_common import local_session, machine, spread, timed  # noqa: E402
from sparkals.stages import aggregate, generate, ingest, nightly, train  # noqa: E402
from sparkals.config import ALSSettings, Config, load_config  # noqa: E402
from sparkals.generate import GeneratorSpec  # noqa: E402
from sparkals.train import train_als  # noqa: E402
from sparkals.vocabulary import BLAS_CHOICES  # noqa: E402

RUN_DATE = dt.date(2026, 11, 1)
REPO = Path(__file__).resolve().parent.parent


def spec_for(events: int) -> GeneratorSpec:
    """Users and items grow with the log, as they do in a real shop (25 events per user)."""
    return GeneratorSpec(users=max(events // 25, 100), items=max(events // 250, 50), events=events, seed=7,
                         start=dt.date(2026, 7, 1), days=120)


def peak_heap_mb(spark: SparkSession, reset: bool = False) -> float:
    """Peak used heap of the driver JVM (all heap pools) since the last reset, in MiB."""
    jvm = spark.sparkContext._jvm
    total = 0
    for pool in jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans():
        if str(pool.getType().toString()) == "Heap memory":
            if reset:
                pool.resetPeakUsage()
            else:
                total += pool.getPeakUsage().getUsed()
    return round(total / 2**20, 1)


# The night as configured, and the same night without the gate: what the gate adds is the
# difference of the two, both measured, rather than the gate stage's own seconds (which left out
# what the gate's work costs the stages after it: caches, garbage, a JVM less warm). "night" runs
# into a fresh output root, as a first night does: its gate trains the holdout model. "scheduled"
# runs where the night before the test period ran first (not timed), as every night of a nightly
# schedule does: its gate measures that night's model (stages/holdout_model.py).
VARIANTS = {"night": [], "without_gate": ["gate.enabled=false"], "scheduled": []}
AFTER_HOLDOUT_NIGHT = {"scheduled"}


def holdout_night(spark: SparkSession, cfg: Config) -> None:
    """Ingest, aggregate and train of the night before the measured night's test period, as that
    night ran (its ingest accepts the log's later days, which do not change what it learns)."""
    night = RUN_DATE - dt.timedelta(days=cfg.evaluate.test_days)
    earlier = dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, max_future_days=3650))
    for stage in (ingest, aggregate, train):
        stage.run(spark, earlier, night)


def _night(spark: SparkSession, log: str, out: Path, overrides: list[str], after_holdout_night: bool = False
           ) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config([REPO / "conf" / "local.toml"], [f"input.path={log}", f"output.root={out}", *overrides])
    if after_holdout_night:
        holdout_night(spark, cfg)
    peak_heap_mb(spark, reset=True)
    started = time.perf_counter()
    summary = nightly.run(spark, cfg, RUN_DATE)
    total = time.perf_counter() - started
    report = out / "reports" / f"run_date={RUN_DATE}" / "metrics.json"
    holdout_model = json.loads(report.read_text()).get("holdout_model", {}).get("source") if report.exists() else None
    return {"total": total, **summary.stage_seconds,
            "peak_heap_mb": peak_heap_mb(spark), "holdout_model": holdout_model,
            "ratings": summary.aggregate.ratings, "users": summary.aggregate.users, "items": summary.aggregate.items}


def bench_pipeline(spark: SparkSession, log: str, root: Path, repeats: int, overrides: list[str],
                   variants: list[str] | None = None) -> dict[str, Any]:
    """Nightly on `log` `repeats` times per variant, the variants taking turns (so that each meets
    the JVM as warm as the others; main() runs one unrecorded night first), each into a fresh output
    root: per-stage medians, the first variant's at the top level."""
    variants = variants or list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for n in range(repeats):
        for name in variants:
            runs[name].append(_night(spark, log, root / f"{name}{n}", [*overrides, *VARIANTS[name]],
                                     after_holdout_night=name in AFTER_HOLDOUT_NIGHT))
            print(f"  run {n + 1}/{repeats} {name}: {runs[name][-1]['total']:.1f}s "
                  f"(holdout model {runs[name][-1]['holdout_model']})", flush=True)
    first = runs[variants[0]]
    figures: dict[str, Any] = {key: first[0][key] for key in ("ratings", "users", "items")}
    figures["variant"] = variants[0]
    for key in ("total", *nightly.STAGES, "peak_heap_mb"):
        figures[key] = spread([r[key] for r in first])
    for name in variants[1:]:
        figures[name] = {key: spread([r[key] for r in runs[name]]) for key in ("total", *nightly.STAGES)}
        figures[name]["holdout_model"] = sorted({str(r["holdout_model"]) for r in runs[name]})
    return figures


def bench_single_machine(log: str, out: Path, repeats: int, rank: int) -> dict[str, Any]:
    """scripts/single_machine.py on the same log `repeats` times: per-step medians."""
    runs = [single_machine.run(log, str(out / f"single{n}"), rank=rank) for n in range(repeats)]
    figures: dict[str, Any] = {key: runs[0][key] for key in ("ratings", "users", "items")}
    for key in ("total", "read", "aggregate", "fit", "recommend", "write"):
        figures[key] = spread([r[key] for r in runs])
    return figures


def ratios(night: dict[str, Any], single: dict[str, Any] | None) -> dict[str, float]:
    """The night without its gate against the single-machine path, and what the gate adds to the
    night: the night with it over the night without it, both measured, on a first night (the gate
    trains) and on a scheduled one (the gate measures the model of the night before its test period),
    for the variants that ran (--only)."""
    first = night.get("variant", "night")
    totals = {name: (night if name == first else night[name])["total"]["median"]
              for name in VARIANTS if name == first or name in night}
    found = {}
    without = totals.get("without_gate")
    if without:
        for name, key in (("night", "gate_overhead"), ("scheduled", "gate_overhead_scheduled")):
            if name in totals:
                found[key] = round(totals[name] / without - 1.0, 3)
    if single:
        single_total = single["total"]["median"]
        if without:
            found["night_without_gate_over_single_machine"] = round(without / single_total, 2)
        for name, key in (("night", "night_over_single_machine"),
                          ("scheduled", "scheduled_night_over_single_machine")):
            if name in totals:
                found[key] = round(totals[name] / single_total, 2)
    return found


def als_flops_per_iteration(nnz: int, users: int, items: int, rank: int) -> float:
    """Implicit ALS, both half-steps: a rank-1 update per rating (2 r^2 flops each side) plus a
    Cholesky solve per row (r^3 / 3); the shared Y^T Y (2 n r^2) is small beside them."""
    return 2 * (2.0 * nnz * rank * rank) + (users + items) * rank**3 / 3 + 2.0 * (users + items) * rank * rank


def peak_gflops() -> dict[str, Any]:
    """A stated estimate: cores x clock x single-precision flops per cycle (AVX2+FMA: 32, AVX-512: 64)."""
    mhz, flags = 0.0, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if ("avx2" in flags and "fma" in flags) else 8
    cores = os.cpu_count() or 1
    return {"cores": cores, "mhz": mhz, "flops_per_cycle_fp32": per_cycle,
            "peak_gflops_fp32": round(cores * mhz / 1000 * per_cycle, 1)}


def bench_training(spark: SparkSession, ratings_path: str, rank: int, repeats: int, reg: float = 0.05,
                   alpha: float = 10.0) -> dict[str, Any]:
    """Seconds per ALS iteration, Spark and implicit, as (t(2k) - t(k)) / k: set-up cancels out."""
    spark.sparkContext.setCheckpointDir(str(Path(ratings_path).parent.parent / "checkpoints"))
    ratings = spark.read.parquet(ratings_path).cache()
    nnz, users, items = ratings.agg(F.count("*"), F.max("user_idx") + 1, F.max("item_idx") + 1).first()
    result: dict[str, Any] = {"nnz": nnz, "users": users, "items": items, "rank": rank}

    def spark_fit(iterations: int) -> None:
        train_als(ratings, ALSSettings(rank=rank, max_iter=iterations, reg_param=reg, alpha=alpha,
                                       num_user_blocks=4, num_item_blocks=4))

    short, long = timed(lambda: spark_fit(5), repeats, warmup=1), timed(lambda: spark_fit(10), repeats)
    result["spark_seconds_per_iteration"] = round((long["median"] - short["median"]) / 5, 3)
    result["spark_runs"] = {"iters_5": short, "iters_10": long}
    try:
        import implicit
        import scipy.sparse as sparse
        from threadpoolctl import threadpool_limits
    except ImportError:
        result["implicit"] = "not installed: pip install -e '.[bench]'"
        return result
    frame = ratings.toPandas()
    matrix = sparse.csr_matrix((frame.rating.to_numpy("float32"), (frame.user_idx.to_numpy(), frame.item_idx.to_numpy())),
                               shape=(users, items))

    def implicit_fit(iterations: int) -> None:
        with threadpool_limits(1, "blas"):
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=rank, regularization=reg, alpha=alpha, iterations=iterations, use_cg=False,
                random_state=1, num_threads=os.cpu_count() or 1)
            model.fit(matrix, show_progress=False)

    short_i, long_i = timed(lambda: implicit_fit(5), repeats), timed(lambda: implicit_fit(10), repeats)
    result["implicit_seconds_per_iteration"] = round((long_i["median"] - short_i["median"]) / 5, 3)
    result["implicit_runs"] = {"iters_5": short_i, "iters_10": long_i}
    result["spark_over_implicit"] = round(
        result["spark_seconds_per_iteration"] / max(result["implicit_seconds_per_iteration"], 1e-9), 2)
    flops = als_flops_per_iteration(nnz, users, items, rank)
    result["gflops"] = {"spark": round(flops / max(result["spark_seconds_per_iteration"], 1e-9) / 1e9, 2),
                        "implicit": round(flops / max(result["implicit_seconds_per_iteration"], 1e-9) / 1e9, 2)}
    ratings.unpersist()
    return result


def bench_implicit_recommend(data: dict[str, Any], event_types: list[str], n: int, repeats: int) -> dict[str, Any]:
    """implicit's `recommend` (filter_already_liked_items) on Spark's own factors and seen pairs."""
    try:
        import implicit
        import numpy as np
        import scipy.sparse as sparse
        from threadpoolctl import threadpool_limits
    except ImportError:
        return {"implicit": "not installed"}
    model = data["model"]
    users = model.userFactors.toPandas().sort_values("id")
    items = model.itemFactors.toPandas().sort_values("id")
    user_rows, item_rows = int(users.id.max()) + 1, int(items.id.max()) + 1
    user_factors = np.zeros((user_rows, model.rank), np.float32)
    user_factors[users.id.to_numpy()] = np.stack(users.features.to_numpy())
    item_factors = np.zeros((item_rows, model.rank), np.float32)
    item_factors[items.id.to_numpy()] = np.stack(items.features.to_numpy())
    seen = bench_scoring.seen_pairs(data, event_types).toPandas()
    seen = seen[(seen.user_idx < user_rows) & (seen.item_idx < item_rows)]
    liked = sparse.csr_matrix((np.ones(len(seen), np.float32), (seen.user_idx, seen.item_idx)),
                              shape=(user_rows, item_rows))
    reference = implicit.cpu.als.AlternatingLeastSquares(factors=model.rank, num_threads=os.cpu_count() or 1)
    reference.user_factors, reference.item_factors = user_factors, item_factors
    ids = users.id.to_numpy()

    def run() -> None:
        with threadpool_limits(1, "blas"):
            reference.recommend(ids, liked[ids], N=n, filter_already_liked_items=True)

    figures = timed(run, repeats, warmup=1)
    return {"seconds": figures, "users_per_second": round(len(ids) / figures["median"])}


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = ["# Benchmarks", "", f"Measured {results['measured_at']} by `scripts/bench.py` "
             "(medians of several runs, min-max in brackets).", "", "## Machine", "", "```json",
             json.dumps(results["machine"], indent=2), "```", "", "## Nightly pipeline", "",
             "| events | ratings | users | items | night s | without gate s | ingest | aggregate | train | gate "
             "| recommend | peak heap MiB | single machine s | night without gate / single | gate adds "
             "| scheduled night s | its gate adds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, fig in results["pipeline"].items():
        single, ratio = fig.get("single_machine"), fig.get("ratios", {})
        lines.append(
            f"| {size} | {fig['ratings']:,} | {fig['users']:,} | {fig['items']:,} | "
            f"{fig['total']['median']} [{fig['total']['min']}-{fig['total']['max']}] | "
            f"{fig['without_gate']['total']['median']} | {fig['ingest']['median']} | "
            f"{fig['aggregate']['median']} | {fig['train']['median']} | {fig['gate']['median']} | "
            f"{fig['recommend']['median']} | {fig['peak_heap_mb']['median']} | "
            f"{single['total']['median'] if single else 'n/a'} | "
            f"{ratio.get('night_without_gate_over_single_machine', 'n/a')}x | {ratio.get('gate_overhead', 0):.0%} | "
            f"{fig['scheduled']['total']['median']} | {ratio.get('gate_overhead_scheduled', 0):.0%} |")
    for pair, ratio in results.get("growth", {}).items():
        lines.append(f"\nGrowth {pair}: events x{ratio['events']:.0f}, total time x{ratio['total']:.2f}")
    lines += ["", "## ALS training: Spark vs implicit", "", "```json", json.dumps(results.get("training", {}), indent=2),
              "```", "", "## Scoring every user with seen items filtered", "", "```json",
              json.dumps(results.get("scoring", {}), indent=2), "```", "", "## Peak estimate", "", "```json",
              json.dumps(results["peak"], indent=2), "```", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,4000000,16000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--training-size", type=int, default=0, help="events of the log ALS and scoring are timed on "
                        "(default: the largest size)")
    parser.add_argument("--workdir", default=".bench")
    parser.add_argument("--out", default=str(REPO), help="folder for bench_report.md and benchmarks.json")
    parser.add_argument("--only", choices=["all", "pipeline", "without-gate", "scheduled", "training"], default="all",
                        help="pipeline: only the nightly runs; without-gate: only the night without the gate and "
                             "the single-machine path (the first target's ratio, a third of the time at 16M); "
                             "scheduled: the same and the scheduled night with the gate (the night before its test "
                             "period trained first, untimed); "
                             "training: only ALS Spark vs implicit, on the ratings of an earlier run (e.g. "
                             "before/after installing a native BLAS)")
    parser.add_argument("--big", type=int, default=10_000_000,
                        help="logs of at least this many events run the pipeline once, not --repeats times")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override for nightly")
    parser.add_argument("--blas", choices=BLAS_CHOICES, default="auto",
                        help="spark.blas of the JVM every night runs in (auto: MKL when the bench extra installed it)")
    args = parser.parse_args()

    spark = local_session(driver_memory="8g", blas=args.blas)
    work = Path(args.workdir).resolve()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {"measured_at": dt.datetime.now().isoformat(timespec="minutes"),
                               "machine": machine(spark), "peak": peak_gflops(), "pipeline": {}}
    overrides = [f"als.rank={args.rank}", *args.overrides]
    train_size = args.training_size or sizes[-1]
    ratings_path = str(work / f"out-{train_size}" / "night0" / "ratings" / f"run_date={RUN_DATE}")
    if args.only == "training":
        result = bench_training(spark, ratings_path, args.rank, args.repeats)
        result["spark_blas"] = results["machine"]["spark_blas"]
        print(json.dumps(result, indent=2))
        Path(args.out, "training.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    for size in sizes:
        log = work / f"log-{size}"
        if not (log / "_SUCCESS").exists():
            print(f"generating {size:,} events", flush=True)
            generate.run(spark, spec_for(size), str(log))
        print(f"nightly on {size:,} events", flush=True)
        repeats = 1 if size >= args.big else args.repeats
        variants = {"without-gate": ["without_gate"], "scheduled": ["without_gate", "scheduled"]}.get(
            args.only, list(VARIANTS))
        if size == sizes[0]:  # the JVM's first night (class loading, JIT) would land on one variant only
            print("  warm-up night (not recorded)", flush=True)
            _night(spark, str(log), work / f"out-{size}" / "warmup", [*overrides, *VARIANTS[variants[0]]])
        night = bench_pipeline(spark, str(log), work / f"out-{size}", repeats, overrides, variants)
        try:
            night["single_machine"] = bench_single_machine(str(log), work / f"out-{size}", repeats, args.rank)
        except SystemExit as missing:  # the bench extra is not installed
            night["single_machine"] = None
            print(f"  single machine: skipped, {missing}", flush=True)
        night["ratios"] = ratios(night, night["single_machine"])
        print(f"  {json.dumps(night['ratios'])}", flush=True)
        results["pipeline"][f"{size:,}"] = night
        Path(args.out, "benchmarks.partial.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.only in ("pipeline", "without-gate", "scheduled"):
        Path(args.out, "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    data_dir = Path(os.environ.get("SPARKALS_DATA", REPO.parent / "shared" / "data"))
    if not data_dir.exists():
        results["real_data"] = f"skipped: {data_dir} is not there"
    keys = list(results["pipeline"])
    results["growth"] = {
        f"{a} -> {b}": {"events": sizes[i + 1] / sizes[i],
                        "total": results["pipeline"][b]["total"]["median"] / results["pipeline"][a]["total"]["median"]}
        for i, (a, b) in enumerate(zip(keys, keys[1:]))
    }
    print(f"ALS training, Spark vs implicit, on the {train_size:,}-event ratings", flush=True)
    results["training"] = bench_training(spark, ratings_path, args.rank, args.repeats)
    Path(args.out, "benchmarks.partial.json").write_text(json.dumps(results, indent=2) + "\n")
    print("scoring", flush=True)
    data = bench_scoring.prepare(spark, spec_for(train_size), args.rank, str(work / "scoring"))
    scoring = bench_scoring.bench(spark, data, 10, args.repeats, [1024, 4096],
                                  {"purchases": ["transaction"], "all_events": ["view", "addtocart", "transaction"]})
    for label, types in (("purchases", ["transaction"]), ("all_events", ["view", "addtocart", "transaction"])):
        scoring[label]["implicit_recommend"] = bench_implicit_recommend(data, types, 10, args.repeats)
    results["scoring"] = scoring
    out = Path(args.out)
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    # BENCHMARKS.md is written by hand from these figures (it says what was changed and why).
    write_markdown(results, out / "bench_report.md")
    print(f"wrote {out / 'bench_report.md'} and {out / 'benchmarks.json'}")
    spark.stop()


if __name__ == "__main__":
    main()
