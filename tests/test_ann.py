"""Approximate top-N (recommend.method = "ann"): the same lists as the exact scorer when the index
searches the whole catalogue, seen and excluded items never returned at any search width, users
the filter leaves short served by the exact path, the same columns and `source`, and a clear
error naming the extra when faiss is missing."""

import sys

import numpy as np
import pyarrow as pa
import pytest

from sparkals.ann import AnnParams, AnnUnavailableError, choose_method, load_index, require_faiss, ship_index
from sparkals.score import ItemMatrix, index_items, item_matrix, score_all, score_block, score_block_ann, similar_items


def _catalogue(rng, n_items=300, rank=8, excluded=(3, 7, 11)):
    ids = np.sort(rng.choice(100_000, n_items, replace=False)).astype(np.int32)
    factors = rng.normal(size=(n_items, rank)).astype(np.float32)
    return ItemMatrix(ids=ids, factors=factors, excluded=np.array(excluded, dtype=np.int64))


def _block(users, seen):
    features = [None if u is None else [float(x) for x in u] for u in users]
    return pa.RecordBatch.from_arrays(
        [pa.array([f"u{i}" for i in range(len(users))]), pa.array(features, pa.list_(pa.float32())),
         pa.array(seen, pa.list_(pa.int32()))],
        names=["key", "features", "seen"],
    )


def _loaded(spark, items, params):
    return load_index(ship_index(spark.sparkContext, index_items(items, params)))


def _ranked(frame):
    return frame.sort_values(["key", "rank"]).reset_index(drop=True)


def test_ann_at_full_search_width_equals_exact_through_spark(spark):
    rng = np.random.default_rng(5)
    factors = spark.createDataFrame([(int(i), [float(x) for x in rng.normal(size=6)]) for i in range(0, 600, 2)],
                                    "id int, features array<float>")
    items = item_matrix(
        factors,
        fallback=spark.createDataFrame([(i, float(i % 17)) for i in range(0, 600, 2)], "item_idx int, score double"),
        excluded=spark.createDataFrame([(4,), (40,), (400,)], "item_idx int"),
    )
    rows = [(f"u{u}", None if u % 9 == 0 else [float(x) for x in rng.normal(size=6)],
             sorted(int(i) for i in rng.choice(items.ids, rng.integers(0, 30), replace=False)))
            for u in range(80)]
    users = spark.createDataFrame(rows, "key string, features array<float>, seen array<int>")
    wide = AnnParams(ef_search=len(items.ids), max_extra=64)

    exact = score_all(users, items, 10, block_size=16)
    approx = score_all(users, items, 10, block_size=16, method="ann", ann=wide)
    assert approx.schema == exact.schema
    got, expected = _ranked(approx.toPandas()), _ranked(exact.toPandas())
    assert got[["key", "rank", "item_idx", "source"]].equals(expected[["key", "rank", "item_idx", "source"]])
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5, atol=1e-5)
    assert set(got["source"]) == {"als", "fallback"}

    key = ["item_idx", "rank"]
    similar = [similar_items(factors, 4, method=method, ann=wide).toPandas().sort_values(key).reset_index(drop=True)
               for method in ("exact", "ann")]
    assert similar[1][key + ["similar_item_idx"]].equals(similar[0][key + ["similar_item_idx"]])


def test_seen_and_excluded_items_never_come_back_and_short_users_get_the_exact_list(spark):
    rng = np.random.default_rng(3)
    items = _catalogue(rng)
    users = rng.normal(size=(40, items.rank)).astype(np.float32)
    exact_scores = users @ items.factors.T
    exact_scores[:, items.excluded] = -np.inf
    # Each user has seen their own 15 best items: a search for N candidates finds only seen ones.
    seen = [sorted(items.ids[np.argsort(-row)[:15]].tolist()) for row in exact_scores]
    seen[1] = sorted(np.delete(items.ids, items.excluded).tolist())  # with the excluded ones: nothing left
    seen[2] = sorted(np.delete(items.ids, [50, 60]).tolist())  # two servable items left
    block = _block(list(users), seen)
    expected = _ranked(score_block(block, items, 10, "key").to_pandas())

    for ef, max_extra in ((10, 0), (10, 4), (40, 256)):  # no extra: every user is short of N
        params = AnnParams(ef_search=ef, max_extra=max_extra)
        got = _ranked(pa.Table.from_batches(
            list(score_block_ann(block, items, _loaded(spark, items, params), 10, "key", params, 7))).to_pandas())
        for u in range(len(users)):
            mine = got[got.key == f"u{u}"]
            assert not set(mine["item_idx"]) & (set(seen[u]) | set(items.ids[items.excluded].tolist()))
        assert got.groupby("key").size().drop(["u2"]).eq(10).all() and len(set(got.key)) == len(users) - 1
        assert "u1" not in set(got.key) and sorted(got[got.key == "u2"]["item_idx"]) == sorted(items.ids[[50, 60]])
        if max_extra == 0:  # every list came from the exact path
            assert got[["key", "rank", "item_idx"]].equals(expected[["key", "rank", "item_idx"]])


def test_recommendations_keep_their_columns_and_sources_with_ann(spark):
    from sparkals.config import ALSSettings
    from sparkals.recommend import recommend_top_n
    from sparkals.train import train_als

    rng = np.random.default_rng(11)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 60, 900), rng.integers(0, 90, 900))})
    ratings = spark.createDataFrame([(u, i, 1.0) for u, i in pairs], "user_idx int, item_idx int, rating double")
    model = train_als(ratings, ALSSettings(rank=4, max_iter=2, num_user_blocks=2, num_item_blocks=2)).model
    users = spark.createDataFrame([(f"user{u}", u) for u in range(60)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"item{i}", i) for i in range(90)], "item_id string, item_idx int")
    audience = spark.createDataFrame([(f"user{u}",) for u in range(0, 60, 3)] + [("newcomer",)], "user_id string")
    seen = spark.createDataFrame([(f"user{u}", f"item{i}") for u, i in pairs if u % 3 == 0], "user_id string, item_id string")
    options = dict(seen=seen, excluded=spark.createDataFrame([("item5",)], "item_id string"),
                   fallback=spark.createDataFrame([(i, float(90 - i)) for i in range(90)], "item_idx int, score double"))
    wide = AnnParams(ef_search=90)

    exact = recommend_top_n(model, audience, users, items, 5, **options)
    approx = recommend_top_n(model, audience, users, items, 5, **options, method="ann", ann=wide)
    assert approx.schema == exact.schema
    cols = ["user_id", "rank", "item_id", "source"]
    got, expected = (f.toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True) for f in (approx, exact))
    assert got[cols].equals(expected[cols])
    assert set(got.loc[got.user_id == "newcomer", "source"]) == {"fallback"}


def test_the_index_is_loaded_once_per_worker_and_broadcast(spark):
    items = _catalogue(np.random.default_rng(1), n_items=50)
    shared = ship_index(spark.sparkContext, index_items(items, AnnParams()))
    assert load_index(shared) is load_index(shared)
    assert load_index(shared).index.ntotal == 50 - len(items.excluded)  # excluded items are not in the graph


def test_one_build_thread_gives_the_same_index_for_the_same_factors():
    items = _catalogue(np.random.default_rng(4), n_items=3000)
    first, second = (index_items(items, AnnParams(ef_construction=16, build_threads=1)) for _ in range(2))
    assert np.array_equal(first.data, second.data) and np.array_equal(first.positions, second.positions)


def test_auto_uses_the_index_from_the_break_even_on():
    params = AnnParams(min_items=1000)
    assert choose_method("auto", 999, params) == "exact"
    assert choose_method("auto", 1000, params) == "ann"
    assert choose_method("exact", 10**7, params) == "exact" and choose_method("ann", 10, params) == "ann"
    with pytest.raises(ValueError, match="auto"):
        choose_method("fast", 10, params)


def test_without_faiss_ann_names_the_extra_and_auto_stays_exact(spark, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(AnnUnavailableError, match=r"pip install 'sparkals\[ann\]'"):
        require_faiss()
    items = _catalogue(np.random.default_rng(2), n_items=20)
    users = spark.createDataFrame([("u", [1.0] * 8, None)], "key string, features array<float>, seen array<int>")
    with pytest.raises(AnnUnavailableError, match=r"recommend.method = \"exact\""):
        score_all(users, items, 3, method="ann")
    assert choose_method("auto", 10**7, AnnParams(min_items=10)) == "exact"
    assert score_all(users, items, 3, method="auto", ann=AnnParams(min_items=10)).count() == 3


def test_config_rejects_an_unknown_scoring_method():
    from sparkals.config import ConfigError, load_config

    assert load_config([], ["recommend.method=ann"]).recommend.method == "ann"
    with pytest.raises(ConfigError, match="recommend.method must be exact, ann or auto"):
        load_config([], ["recommend.method=fast"])
