"""The blocked scorer: exact against brute force, seen and excluded items never returned,
users without factors served the fallback, item-to-item similarity by cosine."""

import numpy as np
import pytest
from pyspark.sql import functions as F

from sparkals.score import FALLBACK_SOURCE, ItemMatrix, block_rows, item_matrix, score_all, similar_items, top_n


def test_top_n_keeps_best_in_order_skips_masked_and_breaks_ties_by_item():
    scores = np.array([[1.0, 3.0, 2.0, -np.inf], [5.0, 5.0, 1.0, 0.0]], dtype=np.float32)
    rows, cols, ranks = top_n(scores, 2)
    assert rows.tolist() == [0, 0, 1, 1]
    assert cols.tolist() == [1, 2, 0, 1]  # row 1: a tie at 5.0, lower item first
    assert ranks.tolist() == [1, 2, 1, 2]
    rows, cols, ranks = top_n(scores, 10)  # more than the catalogue: everything not masked
    assert cols[rows == 0].tolist() == [1, 2, 0] and ranks[rows == 0].tolist() == [1, 2, 3]
    assert cols[rows == 1].tolist() == [0, 1, 2, 3]


def _reference_top_n(scores, n):
    """Each row sorted by (score descending, column), -inf dropped, the first n: what top_n must give."""
    found = []
    for row, values in enumerate(scores):
        columns = [c for c in np.lexsort((np.arange(len(values)), -values)) if values[c] > -np.inf][:n]
        found += [(row, int(c), rank) for rank, c in enumerate(columns, start=1)]
    return found


@pytest.mark.parametrize("cols", [7, 300, 1280, 5000, 20_011])  # narrow rows, and wide ones ranked by groups
@pytest.mark.parametrize("n", [1, 10, 40])
def test_top_n_equals_a_full_sort_with_ties_at_the_cut_going_to_the_first_columns(cols, n):
    """Ties are planted at and around each row's cut (repeated scores, rows of one value, rows
    shorter than n once masked): the kept columns are those of a full sort by (score, column)."""
    rng = np.random.default_rng(cols * 100 + n)
    scores = rng.standard_normal((60, cols)).astype(np.float32)
    scores[rng.integers(0, 60, 3 * cols), rng.integers(0, cols, 3 * cols)] = -np.inf
    scores[::7] = np.round(scores[::7], 1)  # a few values shared by many columns
    scores[3] = 1.0  # one value everywhere
    scores[5, :] = -np.inf
    scores[5, cols // 2] = 2.0  # one item left
    scores[9, max(1, cols - n // 2):] = -np.inf  # fewer than n left when the row is narrow
    best = np.sort(scores, axis=1)[:, ::-1][:, min(n, cols) - 1]
    for row in range(10, 20):  # the row's n-th best score repeated in many columns past the first
        scores[row, rng.integers(0, cols, 5)] = best[row]
    rows, columns, ranks = top_n(scores.copy(), n)
    assert list(zip(rows.tolist(), columns.tolist(), ranks.tolist())) == _reference_top_n(scores, n)


def test_block_rows_respects_the_memory_budget():
    assert block_rows(items=1000, block_size=4096, memory_mb=1) == 262  # 1 MiB / (4 B x 1000)
    assert block_rows(items=10, block_size=4096, memory_mb=256) == 4096
    assert block_rows(items=10**9, block_size=4096, memory_mb=1) == 1


def _factors_frame(spark, ids, factors, name="id"):
    rows = [(int(i), [float(x) for x in vec]) for i, vec in zip(ids, factors)]
    return spark.createDataFrame(rows, f"{name} int, features array<float>")


def _brute_force(user_vecs, item_ids, item_vecs, seen, excluded, n):
    """Score every item, mask, full sort (ties by item index): the answer the scorer must give."""
    lists = []
    for vec, user_seen in zip(user_vecs, seen):
        scores = item_vecs.astype(np.float64) @ vec.astype(np.float64)
        allowed = [j for j, item in enumerate(item_ids) if item not in user_seen and item not in excluded]
        ranked = sorted(allowed, key=lambda j: (-scores[j], item_ids[j]))[:n]
        lists.append([int(item_ids[j]) for j in ranked])
    return lists


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blocked_scorer_equals_brute_force_and_never_returns_seen_items(spark, seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, rank, n = 60, 40, 6, 7
    item_ids = np.sort(rng.choice(10_000, n_items, replace=False)).astype(np.int32)
    item_vecs = rng.normal(size=(n_items, rank)).astype(np.float32)
    user_vecs = rng.normal(size=(n_users, rank)).astype(np.float32)
    # Some users have seen nearly everything: they get fewer than n items, never a seen one.
    seen = [set(rng.choice(item_ids, rng.integers(0, n_items - 2 if u % 10 == 0 else 10), replace=False).tolist())
            for u in range(n_users)]
    seen[0] |= {99_999}  # an item the model does not know is ignored
    excluded = set(rng.choice(item_ids, 3, replace=False).tolist())

    items = _factors_frame(spark, item_ids, item_vecs)
    matrix = item_matrix(items, excluded=spark.createDataFrame([(int(i),) for i in excluded], "item_idx int"))
    users = spark.createDataFrame(
        [(f"u{u}", [float(x) for x in user_vecs[u]], sorted(int(i) for i in seen[u])) for u in range(n_users)],
        "key string, features array<float>, seen array<int>",
    )
    got = score_all(users, matrix, n, block_size=7).toPandas()  # 7: blocks that do not divide the batch

    expected = _brute_force(user_vecs, item_ids, item_vecs, seen, excluded, n)
    for u in range(n_users):
        mine = got[got.key == f"u{u}"].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        assert mine["item_idx"].tolist() == expected[u], f"user u{u}"
        assert not set(mine["item_idx"]) & (seen[u] | excluded)
        available = n_items - len((seen[u] - {99_999}) | excluded)
        assert len(mine) == min(n, available)
        np.testing.assert_allclose(
            mine["score"].to_numpy(), [float(item_vecs[list(item_ids).index(i)] @ user_vecs[u]) for i in mine["item_idx"]],
            rtol=1e-4, atol=1e-4,
        )
    assert set(got["source"]) == {"als"}


def test_users_without_factors_get_the_fallback_minus_what_they_have_seen(spark):
    items = _factors_frame(spark, [1, 2, 3, 4], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    popular = spark.createDataFrame([(1, 0.5), (2, 0.9), (3, 0.7), (77, 5.0)], "item_idx int, score double")
    matrix = item_matrix(items, fallback=popular)
    users = spark.createDataFrame(
        [("cold", None, [2]), ("new", None, None), ("warm", [1.0, 0.0], [3])],
        "key string, features array<float>, seen array<int>",
    )
    got = {key: rows for key, rows in score_all(users, matrix, 2).toPandas().groupby("key")}
    assert got["cold"]["item_idx"].tolist() == [3, 1] and set(got["cold"]["source"]) == {FALLBACK_SOURCE}
    assert got["new"]["item_idx"].tolist() == [2, 3]  # item 77 has no factors: not servable
    assert got["warm"]["item_idx"].tolist() == [1, 4] and set(got["warm"]["source"]) == {"als"}
    # Item 4 was never popular: a fallback list never includes it, even when asked for more.
    cold_all = score_all(users.filter("key = 'new'"), matrix, 10).toPandas()
    assert cold_all["item_idx"].tolist() == [2, 3, 1]


def test_without_a_fallback_users_without_factors_get_nothing(spark):
    matrix = item_matrix(_factors_frame(spark, [1, 2], [[1.0], [2.0]]))
    users = spark.createDataFrame([("cold", None, None)], "key string, features array<float>, seen array<int>")
    assert score_all(users, matrix, 2).count() == 0


def test_similar_items_rank_by_cosine_and_leave_the_item_itself_out(spark):
    vectors = {1: [1.0, 0.0], 2: [0.9, 0.1], 3: [0.0, 1.0], 4: [-1.0, 0.0], 5: [2.0, 0.1]}
    items = _factors_frame(spark, list(vectors), list(vectors.values()))
    got = similar_items(items, 2).toPandas()
    first = got[got["item_idx"] == 1].sort_values("rank")
    assert first["similar_item_idx"].tolist() == [5, 2]  # 5 points the same way as 1 despite its length
    unit = {k: np.array(v) / np.linalg.norm(v) for k, v in vectors.items()}
    assert first["score"].tolist() == pytest.approx([unit[1] @ unit[5], unit[1] @ unit[2]], abs=1e-5)
    assert (got["item_idx"] != got["similar_item_idx"]).all()
    assert got.groupby("item_idx").size().eq(2).all()


def test_positions_of_unknown_items_are_minus_one():
    matrix = ItemMatrix(ids=np.array([3, 8, 20], dtype=np.int32), factors=np.zeros((3, 1), np.float32))
    assert matrix.positions(np.array([8, 3, 4, 25, 20])).tolist() == [1, 0, -1, -1, 2]


def test_blocked_scorer_agrees_with_native_recommend_plus_anti_join_on_a_trained_model(spark):
    from sparkals.config import ALSSettings
    from native_scoring import native_top_n_filtered
    from sparkals.train import train_als

    rng = np.random.default_rng(7)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 150, 3000), rng.zipf(1.5, 3000) % 120)}
    ratings = spark.createDataFrame([(u, i, 1.0 + (u * i) % 3) for u, i in sorted(pairs)], "user_idx int, item_idx int, rating double")
    model = train_als(ratings, ALSSettings(rank=6, max_iter=3, num_user_blocks=2, num_item_blocks=2)).model
    seen = ratings.select("user_idx", "item_idx")
    native = native_top_n_filtered(model, seen, 5).toPandas().sort_values(["user_idx", "rank"])

    users = model.userFactors.select(F.col("id").alias("key"), "features").join(
        seen.groupBy(F.col("user_idx").alias("key")).agg(F.collect_list("item_idx").alias("seen")), "key", "left"
    )
    mine = score_all(users, item_matrix(model.itemFactors), 5).toPandas().sort_values(["key", "rank"])
    assert len(mine) == len(native)
    # Same items at each rank unless two scores are equal to float precision; scores always agree.
    np.testing.assert_allclose(mine["score"].to_numpy(), native["score"].to_numpy(), rtol=1e-4, atol=1e-5)
    same = (mine["item_idx"].to_numpy() == native["item_idx"].to_numpy()).mean()
    assert same > 0.99, f"only {same:.1%} of the (user, rank) cells agree"


def test_fallback_ranks_by_recent_distinct_users_then_by_all_time_users(spark):
    import datetime as dt

    from sparkals.popularity import fallback_scores

    day = dt.date(2026, 11, 1)
    rows = [
        # item a (index 0): none in the last 7 days
        ("u1", "a", "2026-09-01"), ("u2", "a", "2026-09-03"),
        # item b (1): 1 user recently, twice; item c (2): 2 users recently
        ("u1", "b", "2026-10-30"), ("u1", "b", "2026-10-31"),
        ("u4", "c", "2026-10-31"), ("u5", "c", "2026-10-28"),
        # item d: recent but not in the item index (cannot be recommended)
        ("u1", "d", "2026-10-31"),
    ]
    events = spark.createDataFrame(rows, "user_id string, item_id string, d string").select(
        "user_id", "item_id", F.to_date("d").alias("event_date"))
    items = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], "item_id string, item_idx int")
    # All-time users per item come from the ratings (one row per user and item): a 3, b 1, c 2.
    ratings = spark.createDataFrame([(u, 0) for u in range(3)] + [(0, 1), (3, 2), (4, 2)], "user_idx int, item_idx int")
    scores = {r["item_idx"]: r["score"] for r in fallback_scores(events, ratings, items, day, 7).collect()}
    # recent distinct users + all-time users / (most all-time users + 1)
    assert scores == pytest.approx({0: 0 + 3 / 4, 1: 1 + 1 / 4, 2: 2 + 2 / 4})
    assert sorted(scores, key=scores.get, reverse=True) == [2, 1, 0]
