import datetime as dt

from pyspark.sql import functions as F

from sparkals.generate import RETAIL_ROCKET_COLUMNS, GeneratorSpec, generate_events

SPEC = GeneratorSpec(users=500, items=400, events=40_000, seed=3, start=dt.date(2026, 7, 1), days=90)


def test_same_seed_same_log_whatever_the_partitioning(spark):
    first = generate_events(spark, SPEC)
    again = generate_events(spark, SPEC).repartition(7)
    assert first.columns == RETAIL_ROCKET_COLUMNS
    assert first.exceptAll(again).count() == 0 and again.exceptAll(first).count() == 0


def test_funnel_shares_and_transaction_ids(spark):
    log = generate_events(spark, SPEC)
    shares = {r.event: r["count"] / SPEC.events for r in log.groupBy("event").count().collect()}
    assert 0.95 < shares["view"] < 0.975
    assert 0.02 < shares["addtocart"] < 0.032
    assert 0.007 < shares["transaction"] < 0.015
    assert log.filter((F.col("event") == "transaction") != F.col("transactionid").isNotNull()).count() == 0


def test_ids_and_times_stay_in_range(spark):
    log = generate_events(spark, SPEC)
    stats = log.agg(
        F.countDistinct("visitorid"), F.countDistinct("itemid"), F.min("timestamp"), F.max("timestamp")
    ).first()
    assert 0.5 * SPEC.users < stats[0] <= SPEC.users
    assert stats[1] <= SPEC.items
    start = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc).timestamp() * 1000
    assert start <= stats[2] and stats[3] < start + SPEC.days * 86_400_000


def test_item_popularity_is_skewed(spark):
    counts = sorted((r["count"] for r in generate_events(spark, SPEC).groupBy("itemid").count().collect()), reverse=True)
    top_tenth = sum(counts[: len(counts) // 10])
    assert top_tenth > 0.3 * sum(counts)
