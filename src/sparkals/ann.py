"""Approximate maximum-inner-product search over the item factors: a faiss HNSW graph built once
on the driver, shipped to the executors once as serialized bytes (a broadcast), and loaded once per
Python worker.

The scorer (score.py) asks this module for candidates only; filtering seen items, the exact
fallback and the output rows stay there. faiss is an optional dependency (`sparkals[ann]`):
it is imported when an index is built or loaded, never at import time.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sparkals.config import RecommendSettings
from sparkals.errors import SparkalsError
from sparkals.vocabulary import SCORING_METHODS

__all__ = [
    "AnnIndex", "AnnParams", "AnnUnavailableError", "SerializedIndex", "ShippedIndex", "build_index",
    "choose_method", "load_index", "require_faiss", "search", "ship_index",
]

if TYPE_CHECKING:
    from pyspark import Broadcast, SparkContext

log = logging.getLogger("sparkals.ann")

EXTRA = "ann"  # pip install sparkals[ann]


class AnnUnavailableError(SparkalsError):
    """`recommend.method = "ann"` was asked for, but faiss (the extra `sparkals[ann]`) is not installed."""


@dataclass(frozen=True)
class AnnParams:
    """The index's settings (recommend.ann_* in the config).

    `ef_search`: candidates kept while walking the graph (wider: better recall, slower);
    `m`, `ef_construction`: links per item and build-time width (the graph's quality and size);
    `max_extra`: at most this many candidates beyond N asked for a user's seen items;
    `min_items`: the catalogue size from which `auto` uses the index;
    `build_threads`: the driver's threads building the graph (0: all its cores; 1: the same graph
    on every rerun, several threads link items in an order that depends on their timing)."""

    # The defaults are the config's (RecommendSettings, the one source of truth).
    ef_search: int = RecommendSettings.ann_ef
    m: int = RecommendSettings.ann_m
    ef_construction: int = RecommendSettings.ann_ef_construction
    max_extra: int = RecommendSettings.ann_max_extra
    min_items: int = RecommendSettings.ann_min_items
    build_threads: int = RecommendSettings.ann_build_threads

    @classmethod
    def from_settings(cls, settings: RecommendSettings) -> "AnnParams":
        """The index's settings as configured (recommend.ann_*)."""
        return cls(
            ef_search=settings.ann_ef, m=settings.ann_m, ef_construction=settings.ann_ef_construction,
            max_extra=settings.ann_max_extra, min_items=settings.ann_min_items,
            build_threads=settings.ann_build_threads,
        )


@dataclass(frozen=True)
class SerializedIndex:
    """What the executors receive: the faiss index as bytes, and the item matrix row of each of
    its vectors (the items any user may get: excluded items are left out of the graph)."""

    data: np.ndarray  # uint8, faiss.serialize_index
    positions: np.ndarray  # int64, index label -> ItemMatrix row

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.positions.nbytes)


@dataclass(frozen=True)
class AnnIndex:
    """A loaded index: search it with `search`."""

    index: Any  # faiss.IndexHNSWFlat
    positions: np.ndarray


def require_faiss() -> Any:
    """The faiss module, or an error that names the extra to install."""
    try:
        import faiss
    except ImportError as err:
        raise AnnUnavailableError(
            f"recommend.method = \"ann\" needs faiss, which is not installed: pip install 'sparkals[{EXTRA}]' "
            "(faiss-cpu), or set recommend.method = \"exact\""
        ) from err
    return faiss


def _faiss_installed() -> bool:
    try:
        require_faiss()
    except AnnUnavailableError:
        return False
    return True


def choose_method(method: str, items: int, params: AnnParams) -> str:
    """"exact" or "ann" for a catalogue of `items`: `auto` takes the index from `params.min_items`
    items on (where the index measured faster: BENCHMARKS.md, section 4), and stays exact, with a
    warning, when faiss is missing."""
    if method not in SCORING_METHODS:
        raise ValueError(f"scoring method must be one of {SCORING_METHODS}, not {method!r}")
    if method != "auto":
        return method
    if items < params.min_items:
        return "exact"
    if not _faiss_installed():
        log.warning(
            "%d items: approximate scoring would be faster, but faiss is not installed "
            "(pip install 'sparkals[%s]'); scoring exactly", items, EXTRA,
        )
        return "exact"
    return "ann"


def build_index(factors: np.ndarray, positions: np.ndarray, params: AnnParams) -> SerializedIndex:
    """An HNSW graph over `factors[positions]` by inner product, serialized for a broadcast, built
    with `params.build_threads` threads (0: all cores)."""
    faiss = require_faiss()
    vectors = np.ascontiguousarray(factors[positions], dtype=np.float32)
    index = faiss.IndexHNSWFlat(int(factors.shape[1]), params.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(params.build_threads or os.cpu_count() or 1)
    try:
        index.add(vectors)
    finally:
        faiss.omp_set_num_threads(threads)
    return SerializedIndex(data=faiss.serialize_index(index), positions=np.asarray(positions, dtype=np.int64))


@dataclass(frozen=True)
class ShippedIndex:
    """A broadcast index and the token its loaded copy is cached under in each Python worker
    (a worker's Broadcast objects do not carry the broadcast's id)."""

    shared: "Broadcast[SerializedIndex]"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def ship_index(context: "SparkContext", serialized: SerializedIndex) -> ShippedIndex:
    """Send the index to the executors once: a broadcast, fetched once per executor."""
    return ShippedIndex(context.broadcast(serialized))


# Indexes loaded in this Python worker, by token: workers are reused across tasks, so each night's
# index is deserialized once per worker, not once per partition or batch.
_LOADED: dict[str, AnnIndex] = {}


def load_index(shipped: ShippedIndex) -> AnnIndex:
    """The shipped index, deserialized on first use in this process and kept (one at a time)."""
    found = _LOADED.get(shipped.token)
    if found is None:
        faiss = require_faiss()
        faiss.omp_set_num_threads(1)  # a Spark task has one core: no thread pool of its own
        serialized: SerializedIndex = shipped.shared.value
        _LOADED.clear()  # a new night's index replaces the last one
        found = _LOADED[shipped.token] = AnnIndex(faiss.deserialize_index(serialized.data), serialized.positions)
    return found


def search(index: AnnIndex, queries: np.ndarray, k: int, ef_search: int) -> np.ndarray:
    """The ItemMatrix rows of the `k` best items per query by inner product (-1 where the graph
    gave fewer than k); ef_search is widened to k when smaller."""
    faiss = require_faiss()
    params = faiss.SearchParametersHNSW()
    params.efSearch = max(ef_search, k)
    _, labels = index.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return np.where(labels >= 0, index.positions[np.maximum(labels, 0)], -1)
