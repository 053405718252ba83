import datetime as dt
import math
import random

import pytest
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.testing import assertDataFrameEqual

from sparkals.metrics import (
    catalogue_coverage,
    catalogue_coverage_at,
    catalogue_coverage_of,
    exclude_seen,
    exclude_seen_truth,
    ranking_metrics,
    ranking_metrics_of,
)
from sparkals.popularity import popular_items, popularity_recs

RECS = "user_id string, item_id string, rank int"
PAIRS = "user_id string, item_id string"


def recs_of(spark, lists: dict[str, list[str]], schema: str = RECS):
    """{user: [item at rank 1, item at rank 2, ...]} as a recs DataFrame."""
    rows = [(u, item, r) for u, items in lists.items() for r, item in enumerate(items, start=1)]
    return spark.createDataFrame(rows, schema)


def pairs_of(spark, sets: dict[str, list[str]]):
    return spark.createDataFrame([(u, i) for u, items in sets.items() for i in items], PAIRS)


def approx(expected: dict[str, float]):
    return pytest.approx(expected, rel=1e-12, abs=1e-15)


def lg(p: int) -> float:
    """Discount of position p: 1 / log2(p + 1)."""
    return 1.0 / math.log2(p + 1)


# u1: list a b c d e, truth {b, d, z} (z never recommended; b listed twice in truth, counts once)
# u2: list x y (shorter than most K), truth {x}
# u3: list a b c, no truth -> not evaluated
# u4: no list, truth {a} -> evaluated, all zeros
# Evaluated users: u1, u2, u4 -> 3; with recommendations: u1, u2 -> 2/3.
@pytest.fixture(scope="module")
def example(spark):
    recs = recs_of(spark, {"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y"], "u3": ["a", "b", "c"]})
    truth = pairs_of(spark, {"u1": ["b", "d", "z", "b"], "u2": ["x"], "u4": ["a"]})
    return ranking_metrics(recs, truth, [1, 3, 5, 10])


def test_metrics_at_1(example):
    # u1 top1 [a]: no hit -> all 0.   u2 top1 [x]: hit at 1.   u4: 0.
    # u2: precision 1/1, recall 1/1, capped 1/min(1,1), ndcg lg(1)/lg(1) = 1, map (1/1)/min(1,1) = 1.
    assert example[1] == approx({
        "precision": 1 / 3, "recall": 1 / 3, "recall_capped": 1 / 3, "ndcg": 1 / 3, "map": 1 / 3,
        "hit_rate": 1 / 3, "users_evaluated": 3, "users_with_recs": 2 / 3,
    })


def test_metrics_at_3(example):
    # u1 top3 [a b c], hit b at 2; |T| = 3, m = min(3, 3) = 3
    #   precision 1/3, recall 1/3, capped 1/3
    #   ndcg lg(2) / (lg(1) + lg(2) + lg(3))
    #   map  (precision@2 = 1/2) / 3 = 1/6
    # u2 top3 [x y] (shorter than K), hit x at 1; |T| = 1, m = 1
    #   precision 1/3 (still divided by K), recall 1, capped 1, ndcg 1, map 1
    # u4 zeros
    u1_ndcg = lg(2) / (lg(1) + lg(2) + lg(3))
    assert example[3] == approx({
        "precision": (1 / 3 + 1 / 3 + 0) / 3,
        "recall": (1 / 3 + 1 + 0) / 3,
        "recall_capped": (1 / 3 + 1 + 0) / 3,
        "ndcg": (u1_ndcg + 1 + 0) / 3,
        "map": (1 / 6 + 1 + 0) / 3,
        "hit_rate": 2 / 3,
        "users_evaluated": 3,
        "users_with_recs": 2 / 3,
    })


def test_metrics_at_5(example):
    # u1 top5 [a b c d e], hits b at 2 and d at 4; |T| = 3, m = min(5, 3) = 3
    #   precision 2/5, recall 2/3, capped 2/3
    #   ndcg (lg(2) + lg(4)) / (lg(1) + lg(2) + lg(3))
    #   map  (precision@2 = 1/2 + precision@4 = 2/4) / 3 = 1/3
    # u2: precision 1/5, recall 1, capped 1, ndcg 1, map 1.   u4: zeros.
    u1_ndcg = (lg(2) + lg(4)) / (lg(1) + lg(2) + lg(3))
    assert example[5] == approx({
        "precision": (2 / 5 + 1 / 5 + 0) / 3,
        "recall": (2 / 3 + 1 + 0) / 3,
        "recall_capped": (2 / 3 + 1 + 0) / 3,
        "ndcg": (u1_ndcg + 1 + 0) / 3,
        "map": (1 / 3 + 1 + 0) / 3,
        "hit_rate": 2 / 3,
        "users_evaluated": 3,
        "users_with_recs": 2 / 3,
    })


def test_k_larger_than_every_list(example):
    # K = 10: nothing changes but the precision denominator: u1 2/10, u2 1/10.
    assert example[10]["precision"] == pytest.approx((2 / 10 + 1 / 10 + 0) / 3, rel=1e-12)
    assert example[10]["recall"] == pytest.approx(example[5]["recall"], rel=1e-12)
    assert example[10]["ndcg"] == pytest.approx(example[5]["ndcg"], rel=1e-12)
    assert example[10]["map"] == pytest.approx(example[5]["map"], rel=1e-12)


def test_recall_and_recall_capped_differ_when_truth_is_longer_than_k(spark):
    # truth {a b c d}, list [a b]: at K=2, recall = 2/4, recall_capped = 2/min(2, 4) = 1,
    # map = (1/1 + 2/2) / min(2, 4) = 1, ndcg = (lg(1) + lg(2)) / (lg(1) + lg(2)) = 1.
    got = ranking_metrics(recs_of(spark, {"u": ["a", "b"]}), pairs_of(spark, {"u": ["a", "b", "c", "d"]}), [2])[2]
    assert (got["recall"], got["recall_capped"], got["map"]) == pytest.approx((0.5, 1.0, 1.0), rel=1e-12)
    assert got["ndcg"] == pytest.approx(1.0, rel=1e-12)


def test_rank_decides_not_score(spark):
    # Equal scores; the ranks put p before q. truth {q}: at K=1 no hit; swapping the ranks gives a hit.
    schema = "user_id string, item_id string, rank int, score double"
    truth = pairs_of(spark, {"u": ["q"]})
    p_first = spark.createDataFrame([("u", "p", 1, 0.5), ("u", "q", 2, 0.5)], schema)
    q_first = spark.createDataFrame([("u", "p", 2, 0.5), ("u", "q", 1, 0.5)], schema)
    assert ranking_metrics(p_first, truth, [1])[1]["precision"] == 0.0
    assert ranking_metrics(q_first, truth, [1])[1]["precision"] == 1.0


def test_items_sharing_a_rank_are_ordered_by_item(spark):
    # b and a both at rank 1: a takes position 1, b position 2. truth {b}: no hit at K=1,
    # hit at K=2 at position 2 -> ndcg@2 = lg(2) / lg(1), map@2 = (1/2) / min(2, 1).
    recs = spark.createDataFrame([("u", "b", 1), ("u", "a", 1)], RECS)
    got = ranking_metrics(recs, pairs_of(spark, {"u": ["b"]}), [1, 2])
    assert got[1]["hit_rate"] == 0.0
    assert (got[2]["ndcg"], got[2]["map"]) == pytest.approx((lg(2), 0.5), rel=1e-12)


def test_duplicate_recommendations_count_once_at_their_best_rank(spark):
    # List a, a, b (a twice): read as [a, b]. truth {a, b}.
    # K=2: hits a@1, b@2 -> precision 2/2 = 1 (had the second a held a slot: [a, a] -> 1/2).
    # truth {a}: precision@2 = 1/2 (counting a twice would give 2/2).
    recs = recs_of(spark, {"u": ["a", "a", "b"]})
    assert ranking_metrics(recs, pairs_of(spark, {"u": ["a", "b"]}), [2])[2]["precision"] == 1.0
    assert ranking_metrics(recs, pairs_of(spark, {"u": ["a"]}), [2])[2]["precision"] == 0.5


def test_any_key_types(spark):
    # Integer users and long items (ALS indexes or raw numeric ids): hit at 2 of 2, truth size 1.
    recs = spark.createDataFrame([(7, 2**40, 1), (7, 5, 2)], "user_id int, item_id long, rank int")
    truth = spark.createDataFrame([(7, 5)], "user_id int, item_id long")
    got = ranking_metrics(recs, truth, [2])[2]
    assert (got["precision"], got["map"]) == pytest.approx((0.5, 0.5), rel=1e-12)


def test_no_evaluated_user_gives_nan(spark):
    got = ranking_metrics(recs_of(spark, {"u": ["a"]}), pairs_of(spark, {}), [5])[5]
    assert got["users_evaluated"] == 0
    assert all(math.isnan(got[name]) for name in ("precision", "recall", "ndcg", "map", "hit_rate"))


@pytest.mark.parametrize("ks", [[], [0], [5, -1], [2.5]])
def test_cutoffs_must_be_positive_integers(spark, ks):
    with pytest.raises(ValueError, match="positive integers"):
        ranking_metrics(recs_of(spark, {"u": ["a"]}), pairs_of(spark, {"u": ["a"]}), ks)


# ---- cross-check with Spark's own RankingEvaluator ----

EVALUATOR_NAMES = {
    "precision": "precisionAtK",
    "recall": "recallAtK",
    "ndcg": "ndcgAtK",
    "map": "meanAveragePrecisionAtK",
}


def evaluator_frame(spark, lists: dict[int, list[int]], truths: dict[int, set[int]]):
    """One row per user with truth, the way RankingEvaluator wants it (array<double> columns)."""
    rows = [([float(i) for i in lists.get(u, [])], [float(i) for i in sorted(t)]) for u, t in truths.items()]
    return spark.createDataFrame(rows, "prediction array<double>, label array<double>")


@pytest.fixture(scope="module")
def random_example(spark):
    rng = random.Random(20261101)
    items = list(range(40))
    lists = {u: rng.sample(items, rng.randint(0, 25)) for u in range(30)}
    # Users 25..29 get no truth; truth sizes 1..15, so |T| > K and |T| < K both occur.
    truths = {u: set(rng.sample(items, rng.randint(1, 15))) for u in range(25)}
    lists[3] = []  # evaluated, no recommendation
    del lists[4]  # evaluated, absent from recs
    recs = recs_of(spark, {str(u): [str(i) for i in lst] for u, lst in lists.items()})
    truth = pairs_of(spark, {str(u): [str(i) for i in t] for u, t in truths.items()})
    return lists, truths, recs, truth


def test_definitions_agree_with_spark_ranking_evaluator(spark, random_example):
    lists, truths, recs, truth = random_example
    ks = [1, 3, 5, 10, 20, 30]
    ours = ranking_metrics(recs, truth, ks)
    frame = evaluator_frame(spark, lists, truths)
    assert ours[5]["users_evaluated"] == 25
    for k in ks:
        for name, spark_name in EVALUATOR_NAMES.items():
            theirs = RankingEvaluator(metricName=spark_name, k=k).evaluate(frame)
            assert ours[k][name] == pytest.approx(theirs, rel=1e-12, abs=1e-15), (k, name)


def test_spark_ranking_evaluator_counts_users_without_truth_as_zero(spark, random_example):
    # The difference documented in sparkals.metrics: give the evaluator rows for the 5 users
    # without truth (empty labels) and its mean is ours scaled by 25 / 30.
    lists, truths, recs, truth = random_example
    with_empty = {**truths, **{u: set() for u in range(25, 30)}}
    theirs = RankingEvaluator(metricName="precisionAtK", k=5).evaluate(evaluator_frame(spark, lists, with_empty))
    ours = ranking_metrics(recs, truth, [5])[5]["precision"]
    assert theirs == pytest.approx(ours * 25 / 30, rel=1e-12)


def test_spark_ranking_evaluator_counts_a_repeated_prediction_twice(spark):
    # The other documented difference: prediction [1, 1], label [1] -> Spark precision@2 = 2/2;
    # ours reads the list as [1] -> 1/2.
    frame = spark.createDataFrame([([1.0, 1.0], [1.0])], "prediction array<double>, label array<double>")
    assert RankingEvaluator(metricName="precisionAtK", k=2).evaluate(frame) == 1.0
    ours = ranking_metrics(recs_of(spark, {"u": ["1", "1"]}), pairs_of(spark, {"u": ["1"]}), [2])[2]
    assert ours["precision"] == 0.5


# ---- coverage, seen items, popularity ----


def test_catalogue_coverage_counts_distinct_items_in_top_k(spark):
    # top 2: u1 {a, b}, u2 {a, d} -> {a, b, d} = 3 of 10 items. (c and e are below the cut.)
    recs = recs_of(spark, {"u1": ["a", "b", "c"], "u2": ["a", "d", "e"]})
    assert catalogue_coverage(recs, 2, 10) == pytest.approx(0.3)
    assert catalogue_coverage(recs, 3, 10) == pytest.approx(0.5)  # {a, b, c, d, e}
    with pytest.raises(ValueError):
        catalogue_coverage(recs, 2, 0)
    # Every K in one job: the same shares.
    assert catalogue_coverage_at(recs, [1, 2, 3, 5], 10) == pytest.approx({1: 0.1, 2: 0.3, 3: 0.5, 5: 0.5})


def test_exclude_seen_removes_training_items_and_renumbers(spark):
    schema = "user_id string, item_id string, rank int, score double"
    recs = spark.createDataFrame(
        [("u1", "a", 1, 0.9), ("u1", "b", 2, 0.8), ("u1", "c", 3, 0.7), ("u1", "d", 4, 0.6), ("u2", "a", 1, 0.5)], schema
    )
    seen = pairs_of(spark, {"u1": ["b", "zz"], "u3": ["a"]})  # (u3, a) and (u1, zz) match nothing
    expected = spark.createDataFrame(
        [("u1", "a", 1, 0.9), ("u1", "c", 2, 0.7), ("u1", "d", 3, 0.6), ("u2", "a", 1, 0.5)], schema
    )
    assertDataFrameEqual(exclude_seen(recs, seen), expected)


def test_exclude_seen_truth(spark):
    truth = pairs_of(spark, {"u1": ["a", "b"], "u2": ["a"]})
    seen = pairs_of(spark, {"u1": ["a"], "u2": ["b"]})
    assertDataFrameEqual(exclude_seen_truth(truth, seen), pairs_of(spark, {"u1": ["b"], "u2": ["a"]}))


EVENTS = "user_id string, item_id string, event_date date"


def test_popular_items_counts_distinct_users(spark):
    d1, d2 = dt.date(2026, 10, 1), dt.date(2026, 10, 20)
    train = spark.createDataFrame(
        [
            ("u1", "i1", d1), ("u1", "i1", d2), ("u2", "i1", d1), ("u3", "i1", d1),  # i1: 3 users (u1 twice)
            ("u1", "i2", d2), ("u2", "i2", d2),  # i2: 2 users
            ("u4", "i4", d2), ("u3", "i3", d1),  # i3, i4: 1 user each, tie -> i3 first
        ],
        EVENTS,
    )
    schema = "item_id string, rank int, score double"
    assertDataFrameEqual(
        popular_items(train, 3),
        spark.createDataFrame([("i1", 1, 3.0), ("i2", 2, 2.0), ("i3", 3, 1.0)], schema),
    )
    # Since 10-20: i2 2 users, i1 1 (u1), i4 1 -> tie i1 before i4.
    assertDataFrameEqual(
        popular_items(train, 5, since=d2),
        spark.createDataFrame([("i2", 1, 2.0), ("i1", 2, 1.0), ("i4", 3, 1.0)], schema),
    )


def popular_list(spark, items: list[str]):
    rows = [(item, r, float(100 - r)) for r, item in enumerate(items, start=1)]
    return spark.createDataFrame(rows, "item_id string, rank int, score double")


def test_popularity_recs_skip_training_items_and_keep_n(spark):
    popular = popular_list(spark, ["p1", "p2", "p3", "p4", "p5", "p6"])
    users = spark.createDataFrame([("u1",), ("u2",), ("u3",)], "user_id string")
    # u1 saw p1 and p3 (and an unpopular item): draws from p1..p5 -> p2, p4, p5.
    # u2 saw p1..p4: draws from p1..p7 (only 6 exist) -> p5, p6: fewer than n, all there is.
    # u3 saw nothing: p1, p2, p3.
    seen = pairs_of(spark, {"u1": ["p1", "p3", "other"], "u2": ["p1", "p2", "p3", "p4"]})
    expected = spark.createDataFrame(
        [("u1", "p2", 1, 98.0), ("u1", "p4", 2, 96.0), ("u1", "p5", 3, 95.0),
         ("u2", "p5", 1, 95.0), ("u2", "p6", 2, 94.0),
         ("u3", "p1", 1, 99.0), ("u3", "p2", 2, 98.0), ("u3", "p3", 3, 97.0)],
        "user_id string, item_id string, rank int, score double",
    )
    assertDataFrameEqual(popularity_recs(users, popular, 3, seen), expected)


def test_popularity_recs_without_seen_is_the_same_list_for_everyone(spark):
    popular = popular_list(spark, ["p1", "p2", "p3"])
    users = spark.createDataFrame([("u1",), ("u2",), ("u1",)], "user_id string")
    expected = spark.createDataFrame(
        [("u1", "p1", 1, 99.0), ("u1", "p2", 2, 98.0), ("u2", "p1", 1, 99.0), ("u2", "p2", 2, 98.0)],
        "user_id string, item_id string, rank int, score double",
    )
    assertDataFrameEqual(popularity_recs(users, popular, 2), expected)


def test_several_lists_measured_in_one_pass_equal_each_measured_alone(spark):
    """The evaluation measures ALS and the baselines in one job: each list must come out exactly as
    if measured alone, including a list for nobody (zeros, every truth user still evaluated) and
    lists whose users overlap."""
    truth = pairs_of(spark, {"u1": ["b", "d", "z"], "u2": ["x"], "u4": ["a"]})
    lists = {
        "als": recs_of(spark, {"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y"], "u3": ["a"]}),
        "popular": recs_of(spark, {"u1": ["d", "b"], "u2": ["a", "b"], "u4": ["a", "z"]}),
        "empty": recs_of(spark, {}),
    }
    together = ranking_metrics_of(lists, truth, [1, 2, 5])
    covered = catalogue_coverage_of(lists, [1, 2, 5], n_items=10)
    for name, recs in lists.items():
        alone = ranking_metrics(recs, truth, [1, 2, 5])
        assert together[name].keys() == alone.keys()
        for k in alone:
            assert together[name][k] == approx(alone[k]), (name, k)
        assert covered[name] == catalogue_coverage_at(recs, [1, 2, 5], n_items=10), name
    assert together["empty"][5]["users_evaluated"] == 3 and together["empty"][5]["ndcg"] == 0.0
    assert together["popular"][2]["hit_rate"] == pytest.approx(2 / 3)  # u1 and u4; u2 has no hit
