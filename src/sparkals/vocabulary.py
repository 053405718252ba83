"""One vocabulary for every module: the column names, and the fixed sets of values a setting may take.

`user_id` / `item_id` are ids as they came in (strings); `user_idx` / `item_idx` are the dense int32
indexes ALS learns on. A name means the same thing in every module. No pyspark here: the config checks
import the value sets before Spark is set up.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = [
    "USER_ID", "ITEM_ID", "USER_IDX", "ITEM_IDX", "RATING", "EVENT", "TS", "EVENT_DATE", "QUANTITY",
    "TRANSACTION_ID", "RANK", "SCORE", "SOURCE", "MODEL_VERSION", "SEEN", "FEATURES", "HISTORY",
    "CONFIDENCE_TRANSFORMS", "METRIC_NAMES", "INPUT_FORMATS", "SPLIT_METHODS", "TIMED_SPLITS", "UNKNOWN_EVENT_RULES",
    "SCORING_METHODS", "BLAS_CHOICES",
    "MissingColumnError", "require_columns",
]

# Ids as they came in, and their int32 indexes.
USER_ID = "user_id"
ITEM_ID = "item_id"
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

# Clean events (what ingest writes) and ratings.
EVENT = "event"
TS = "ts"
EVENT_DATE = "event_date"
QUANTITY = "quantity"
TRANSACTION_ID = "transaction_id"
RATING = "rating"

# Scoring and recommendations.
RANK = "rank"
SCORE = "score"
SOURCE = "source"
MODEL_VERSION = "model_version"
SEEN = "seen"  # array of item indexes a user must not be recommended
FEATURES = "features"  # latent factors, as Spark's ALSModel names them
HISTORY = "history"  # array of (item_idx, rating) a user without factors is folded in from

# Fixed value sets, declared once; the config checks import them.
CONFIDENCE_TRANSFORMS = ("raw", "log1p", "bm25", "tfidf")
METRIC_NAMES = ("precision", "recall", "recall_capped", "ndcg", "map", "hit_rate")
INPUT_FORMATS = ("csv", "json", "parquet")
SPLIT_METHODS = ("time", "leave_last_n", "random")
TIMED_SPLITS = ("time", "leave_last_n")  # the splits that need event times
UNKNOWN_EVENT_RULES = ("quarantine", "drop")
# Top-N scoring: every item, an approximate index (faiss), or the index from a catalogue size on.
SCORING_METHODS = ("exact", "ann", "auto")
# The BLAS and LAPACK of MLlib's ALS (native_blas.py): MKL where installed, MKL, or netlib's own choice.
BLAS_CHOICES = ("auto", "mkl", "netlib")


class MissingColumnError(ValueError):
    """A DataFrame handed to a pure function lacks a column it needs (a programming error, not bad input)."""


def require_columns(frame: Any, needed: Sequence[str], where: str) -> None:
    """Fail with the missing column named, and the columns `frame` (a DataFrame) has."""
    present = list(frame.columns)
    missing = [name for name in needed if name not in present]
    if missing:
        raise MissingColumnError(
            f"{where} needs column {', '.join(map(repr, missing))}; got {', '.join(present) or 'no columns'}"
        )
