"""End to end: a generated log through `sparkals nightly`, and a real quality check of ALS."""

import datetime as dt
import json

import pytest
from pyspark.testing import assertDataFrameEqual
from pyspark.sql import Window
from pyspark.sql import functions as F

from native_scoring import top_n_indexed
from sparkals import cli
from sparkals.config import IngestSettings, InputSettings
from sparkals.errors import PipelineError
from sparkals.generate import GeneratorSpec, generate_events
from sparkals.ingest import accepted, parse_events
from sparkals.ratings import aggregate_ratings, build_indexes, index_ratings
from sparkals.stages import aggregate, generate
from sparkals.train import train_als

RUN_DATE = "2026-10-01"


@pytest.fixture(scope="module")
def event_log(spark, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("log") / "events")
    spec = GeneratorSpec(users=800, items=300, events=30_000, seed=11, start=dt.date(2026, 7, 1), days=90)
    generate.run(spark, spec, out)
    return out


def test_stage_without_its_input_says_what_to_run(spark, small_settings):
    with pytest.raises(PipelineError, match="run `sparkals ingest` first"):
        aggregate.run(spark, small_settings(), dt.date(2026, 10, 1))


def test_missing_input_path_is_a_clear_cli_error(spark, tmp_path, capsys):
    code = cli.main(["ingest", "--set", f"input.path={tmp_path}/nothing", "--set", f"output.root={tmp_path}"])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def _hit_rate(recs, held_out, users):
    """Share of test users with at least one held-out item in their list."""
    hits = recs.join(held_out, ["user_idx", "item_idx"]).select("user_idx").distinct().count()
    return hits / users


@pytest.mark.slow
def test_als_beats_random_and_most_popular_on_planted_tastes(spark):
    spec = GeneratorSpec(users=1500, items=600, events=150_000, seed=5, start=dt.date(2026, 7, 1), days=90)
    good = accepted(parse_events(generate_events(spark, spec), InputSettings(), IngestSettings(), dt.date(2026, 10, 1)))
    good = good.cache()  # read by both sides of the split and the counts below: generate and parse once
    cutoff = dt.datetime(2026, 9, 15)
    train_events = good.filter(F.col("ts") < F.lit(cutoff))
    test_events = good.filter(F.col("ts") >= F.lit(cutoff))
    ratings = aggregate_ratings(train_events, {"view": 1.0, "addtocart": 5.0, "transaction": 10.0})
    users, items = build_indexes(ratings)
    train = index_ratings(ratings, users, items).cache()
    seen = train.select("user_idx", "item_idx")
    held_out = (
        index_ratings(aggregate_ratings(test_events, {"view": 1.0, "addtocart": 5.0, "transaction": 10.0}), users, items)
        .select("user_idx", "item_idx").join(seen, ["user_idx", "item_idx"], "left_anti").cache()
    )
    test_users = held_out.select("user_idx").distinct().count()
    k = 10

    from sparkals.config import ALSSettings

    model = train_als(train, ALSSettings(rank=16, max_iter=8, reg_param=0.05, alpha=10.0,
                                         num_user_blocks=2, num_item_blocks=2)).model
    candidates = top_n_indexed(model, 60).join(seen, ["user_idx", "item_idx"], "left_anti")
    by_score = Window.partitionBy("user_idx").orderBy(F.desc("score"))
    als_top = candidates.withColumn("r", F.row_number().over(by_score)).filter(F.col("r") <= k)

    popular = train.groupBy("item_idx").agg(F.sum("rating").alias("score"))
    test_user_ids = held_out.select("user_idx").distinct()
    pop_top = (
        test_user_ids.crossJoin(popular).join(seen, ["user_idx", "item_idx"], "left_anti")
        .withColumn("r", F.row_number().over(by_score)).filter(F.col("r") <= k)
    )
    rand_top = (
        test_user_ids.crossJoin(popular.select("item_idx")).join(seen, ["user_idx", "item_idx"], "left_anti")
        .withColumn("score", F.rand(1))
        .withColumn("r", F.row_number().over(by_score)).filter(F.col("r") <= k)
    )
    als_hr = _hit_rate(als_top, held_out, test_users)
    pop_hr = _hit_rate(pop_top, held_out, test_users)
    rand_hr = _hit_rate(rand_top, held_out, test_users)
    for frame in (good, train, held_out):
        frame.unpersist()
    print(f"HR@{k}: als {als_hr:.3f} popular {pop_hr:.3f} random {rand_hr:.3f}")
    assert als_hr > 1.5 * pop_hr
    assert als_hr > 2 * rand_hr


def _part_file_digests(folder):
    """Content hashes of the Parquet data files: names carry a random id, contents must not differ."""
    import hashlib

    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("part-*.parquet"))


@pytest.mark.slow
def test_nightly_writes_n_ranked_unseen_items_per_user_serves_light_users_and_reruns_identically(
        spark, event_log, tmp_path, capsys):
    """One night (and the same night again) answers for the whole chain: n distinct ranked items per
    user, seen items filtered, light users served the fallback, retention, model metadata, and a
    rerun identical to the byte."""
    out = tmp_path / "out"
    old = [out / "ratings" / "run_date=2026-08-01", out / "recommendations" / "run_date=2026-08-01"]
    for folder in old:  # a night more than retention.keep_days (30) before this one
        folder.mkdir(parents=True)
        (folder / "part-00000.parquet").write_bytes(b"old")
    args = [
        "nightly", "--run-date", RUN_DATE,
        "--set", f"input.path={event_log}", "--set", f"output.root={out}",
        "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2",
        "--set", "als.rank=8", "--set", "als.max_iter=4", "--set", "recommend.top_n=5",
        "--set", "spark.shuffle_partitions=2", "--set", "spark.log_level=ERROR",
        "--set", 'recommend.filter_events=["transaction", "addtocart"]',
        "--set", "ratings.min_user_items=25", "--set", "recommend.similar_items=true",
        "--set", "recommend.similar_top_n=3", "--set", "recommend.block_size=64",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "users scored" in printed and "recommendations" in printed
    target = out / "recommendations" / f"run_date={RUN_DATE}"
    recs = spark.read.parquet(str(target)).cache()
    events = spark.read.parquet(str(out / "events"))

    # n distinct items a user, ranked 1..n, scores never rising down the list.
    assert recs.columns == ["user_id", "rank", "item_id", "score", "source", "model_version"]
    per_user = recs.groupBy("user_id").agg(
        F.count("*").alias("n"), F.countDistinct("item_id").alias("distinct"),
        F.sort_array(F.collect_list("rank")).alias("ranks"),
    )
    assert per_user.filter((F.col("n") != 5) | (F.col("distinct") != 5)).count() == 0
    assert per_user.filter(F.col("ranks") != F.array(*[F.lit(i) for i in range(1, 6)])).count() == 0
    by_rank = Window.partitionBy("user_id").orderBy("rank")
    worse_than_next = recs.withColumn("next", F.lead("score").over(by_rank)).filter(F.col("next") > F.col("score"))
    assert worse_than_next.count() == 0

    # Every user of the raw log is served, only with items of the raw log.
    raw = spark.read.option("header", "true").csv(event_log)
    assert recs.join(raw, recs.user_id == raw.visitorid, "left_anti").count() == 0
    assert recs.join(raw, recs.item_id == raw.itemid, "left_anti").count() == 0
    assert per_user.count() == raw.select("visitorid").distinct().count()

    had = events.filter(F.col("event").isin("transaction", "addtocart")).select("user_id", "item_id").distinct()
    assert recs.join(had, ["user_id", "item_id"]).count() == 0
    assert recs.select("user_id").distinct().count() == events.select("user_id").distinct().count()

    # Users below ratings.min_user_items have no factors: exactly they are served the fallback.
    indexed = spark.read.parquet(str(out / "indexes" / f"run_date={RUN_DATE}" / "users")).select("user_id")
    light = events.select("user_id").distinct().join(indexed, "user_id", "left_anti")
    served = recs.groupBy("user_id").agg(F.collect_set("source").alias("sources"))
    assert 0 < light.count() < indexed.count() + light.count()
    assertDataFrameEqual(
        served.filter(F.array_contains("sources", "fallback")).select("user_id"), light
    )
    assert served.filter(F.size("sources") != 1).count() == 0

    marker = json.loads((target / "_SUCCESS").read_text())
    assert marker["rows"] == recs.count() and marker["users_fallback"] == light.count()
    latest = json.loads((out / "recommendations" / "_LATEST.json").read_text())
    assert latest["run_date"] == RUN_DATE and latest["path"] == str(target)

    similar = spark.read.parquet(str(out / "similar_items" / f"run_date={RUN_DATE}"))
    assert similar.columns == ["item_id", "rank", "similar_item_id", "score", "model_version"]
    assert similar.filter(F.col("item_id") == F.col("similar_item_id")).count() == 0
    assert similar.groupBy("item_id").count().filter("count != 3").count() == 0

    # The run's record, retention of nights older than retention.keep_days, the model and its metadata.
    summary = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    assert summary["ingest"]["rows_read"] == 30_000
    assert [r["path"] for r in summary["retention"]["removed"]] == [str(folder) for folder in old]
    assert not any(folder.exists() for folder in old)
    assert not (out / "checkpoints").exists() and not (out / "_LOCK.json").exists()
    assert summary["recommend"]["users_scored"] == per_user.count()
    (model_dir,) = [p for p in (out / "models").iterdir() if p.is_dir()]
    assert json.loads((out / "models" / "_CURRENT.json").read_text())["model_version"] == model_dir.name
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["parameters"]["rank"] == 8 and metadata["spark_version"]

    first_rows, first_files = recs.orderBy("user_id", "rank").collect(), _part_file_digests(target)
    recs.unpersist()
    assert cli.main(args) == 0  # the same night again: replaced, and the same to the byte
    again = spark.read.parquet(str(target))
    assert again.orderBy("user_id", "rank").collect() == first_rows
    assert _part_file_digests(target) == first_files


@pytest.mark.slow
def test_quality_gate_refuses_a_worse_model_and_keeps_serving_the_current_one(spark, event_log, tmp_path):
    out = tmp_path / "out"
    common = [
        "--set", f"input.path={event_log}", "--set", f"output.root={out}",
        "--set", "als.num_user_blocks=2", "--set", "als.num_item_blocks=2", "--set", "recommend.top_n=5",
        "--set", "spark.shuffle_partitions=2", "--set", "spark.log_level=ERROR", "--set", "evaluate.test_days=14",
    ]
    good = ["--set", "als.rank=8", "--set", "als.max_iter=6"]
    assert cli.main(["nightly", "--run-date", "2026-09-29", *common, *good]) == 0
    first = json.loads((out / "runs" / "run_date=2026-09-29" / "summary.json").read_text())
    assert first["status"] == "succeeded" and first["gate"]["status"] == "promoted"
    current = json.loads((out / "models" / "_CURRENT.json").read_text())
    assert current["model_version"] == first["train"]["model_version"]

    worse = ["--set", "als.rank=1", "--set", "als.max_iter=1",
             "--set", "retention.keep_days=1", "--set", "retention.keep_models=1"]
    assert cli.main(["nightly", "--run-date", RUN_DATE, *common, *worse]) == cli.GATED
    second = json.loads((out / "runs" / f"run_date={RUN_DATE}" / "summary.json").read_text())
    gate = second["gate"]
    assert second["status"] == "gated" and gate["status"] == "refused"
    assert gate["candidate_score"] < gate["floor"] < gate["current_score"]
    assert json.loads((out / "models" / "_CURRENT.json").read_text()) == current  # unchanged
    # Retention keeps the serving model and its night's outputs, and tonight's (the newest) model.
    assert second["retention"]["removed"] == [] and (out / "indexes" / "run_date=2026-09-29").exists()
    assert {p.name for p in (out / "models").iterdir() if p.is_dir()} == {
        current["model_version"], second["train"]["model_version"]
    }
    served = spark.read.parquet(str(out / "recommendations" / f"run_date={RUN_DATE}"))
    assert {r.model_version for r in served.select("model_version").distinct().collect()} == {current["model_version"]}
    assert served.groupBy("user_id").count().filter("count != 5").count() == 0
    assert second["revision"] and second["stage_seconds"].keys() == {"ingest", "aggregate", "train", "gate", "recommend"}
