"""Typed configuration: defaults here, TOML files layered over them, then `--set` overrides.

The dataclass defaults are the single source of truth; `conf/base.toml` documents every key
and a test keeps the two equal. Code reads typed attributes (`cfg.als.rank`), never dict keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from sparkals.errors import SparkalsError
from sparkals.vocabulary import (
    BLAS_CHOICES, CONFIDENCE_TRANSFORMS, INPUT_FORMATS, METRIC_NAMES, SCORING_METHODS, SPLIT_METHODS, TIMED_SPLITS,
    UNKNOWN_EVENT_RULES,
)

__all__ = [
    "ALSSettings", "Config", "ConfigError", "EvaluateSettings", "GateSettings", "IngestSettings", "InputColumns",
    "InputSettings", "LockSettings", "OutputSettings", "RatingsSettings", "RecommendSettings", "RetentionSettings",
    "SparkSettings", "TrackingSettings", "TuneSettings", "load_config", "parse_override", "read_toml",
]

# Sections about running, not computing: they do not enter the fingerprint.
OPERATIONAL = ("lock", "retention", "tracking")

# Storage levels ALS may keep its blocks at (Spark's names; the intermediate level cannot be NONE).
STORAGE_LEVELS = ("MEMORY_AND_DISK", "MEMORY_ONLY", "MEMORY_AND_DISK_SER", "MEMORY_ONLY_SER", "DISK_ONLY")


def _one_of(values: tuple[str, ...]) -> str:
    """"a, b or c": the allowed values of a setting, for its error message."""
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]


class ConfigError(SparkalsError, ValueError):
    """A configuration file or override is wrong; the message says which key and why."""


@dataclass
class SparkSettings:
    master: str = ""
    app_name: str = "sparkals"
    shuffle_partitions: int = 200
    log_level: str = "WARN"
    console_progress: bool = False
    class_archive: str = ""
    blas: str = "auto"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class InputColumns:
    user: str = "visitorid"
    item: str = "itemid"
    event: str = "event"
    timestamp: str = "timestamp"
    timestamp_unit: str = "ms"
    quantity: str = ""
    transaction_id: str = "transactionid"


@dataclass
class InputSettings:
    path: str = "data/events"
    format: str = "csv"
    header: bool = True
    delimiter: str = ","
    constant_event: str = "transaction"
    lookback_days: int = 0
    partition_column: str = ""
    columns: InputColumns = field(default_factory=InputColumns)
    events: dict[str, str] = field(
        default_factory=lambda: {"view": "view", "addtocart": "addtocart", "transaction": "transaction"}
    )


@dataclass
class IngestSettings:
    unknown_events: str = "quarantine"
    min_event_date: str = "2000-01-01"
    max_future_days: int = 1
    max_quarantine_share: float = 0.05


@dataclass
class OutputSettings:
    root: str = "output"


@dataclass
class RatingsSettings:
    weights: dict[str, float] = field(
        default_factory=lambda: {"view": 1.0, "addtocart": 5.0, "transaction": 10.0}
    )
    half_life_days: float = 0.0
    confidence: str = "bm25"
    epsilon: float = 1.0
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    min_user_items: int = 1
    min_item_users: int = 1
    k_core: bool = False
    k_core_max_rounds: int = 50
    max_user_items: int = 0
    exclude_items: list[str] = field(default_factory=list)
    exclude_items_path: str = ""


@dataclass
class ALSSettings:
    rank: int = 64
    max_iter: int = 10
    reg_param: float = 0.01
    alpha: float = 1.0
    nonnegative: bool = False
    num_user_blocks: int = 10
    num_item_blocks: int = 10
    checkpoint_interval: int = 5
    seed: int = 42
    intermediate_storage_level: str = "MEMORY_AND_DISK"
    final_storage_level: str = "MEMORY_AND_DISK"


@dataclass
class RecommendSettings:
    top_n: int = 10
    filter_events: list[str] = field(default_factory=lambda: ["transaction"])
    filter_lookback_days: int = 0
    active_days: int = 0
    fallback: bool = True
    fallback_days: int = 30
    fold_in: bool = True
    block_size: int = 1024
    block_memory_mb: int = 256
    similar_items: bool = False
    similar_top_n: int = 10
    method: str = "auto"
    ann_min_items: int = 50_000
    ann_ef: int = 160
    ann_m: int = 16
    ann_ef_construction: int = 20
    ann_max_extra: int = 256
    ann_build_threads: int = 0


@dataclass
class EvaluateSettings:
    split: str = "time"
    cutoff_date: str = ""
    test_days: int = 7
    leave_last_n: int = 1
    test_fraction: float = 0.2
    seed: int = 42
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    relevant_events: list[str] = field(default_factory=lambda: ["view", "addtocart", "transaction"])
    exclude_seen: bool = True
    recent_days: int = 7
    metric: str = "ndcg"
    metric_k: int = 10
    max_test_users: int = 50_000
    driver_max_cells: int = 4_000_000_000


@dataclass
class TuneSettings:
    trials: int = 20
    parallelism: int = 2
    seed: int = 42
    ranks: list[int] = field(default_factory=lambda: [32, 64])
    reg_param_range: list[float] = field(default_factory=lambda: [0.001, 1.0])
    alpha_range: list[float] = field(default_factory=lambda: [0.5, 50.0])
    confidences: list[str] = field(default_factory=lambda: ["raw", "log1p", "bm25"])
    search_weights: bool = True
    weight_range: list[float] = field(default_factory=lambda: [0.5, 50.0])


@dataclass
class GateSettings:
    enabled: bool = True
    max_drop: float = 0.1
    min_lift: float = 0.05


@dataclass
class LockSettings:
    enabled: bool = True
    stale_minutes: int = 30
    heartbeat_seconds: int = 60


@dataclass
class RetentionSettings:
    keep_days: int = 30
    keep_models: int = 5


@dataclass
class TrackingSettings:
    mlflow_uri: str = ""
    experiment: str = "sparkals"


@dataclass
class Config:
    spark: SparkSettings = field(default_factory=SparkSettings)
    input: InputSettings = field(default_factory=InputSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    ratings: RatingsSettings = field(default_factory=RatingsSettings)
    als: ALSSettings = field(default_factory=ALSSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    tune: TuneSettings = field(default_factory=TuneSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    lock: LockSettings = field(default_factory=LockSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    def validate(self) -> "Config":
        """Reject values that would only fail later, deep inside a Spark job."""
        if self.input.format not in INPUT_FORMATS:
            raise ConfigError(f"input.format must be {_one_of(INPUT_FORMATS)}, not {self.input.format!r}")
        if not self.input.columns.timestamp_unit:
            raise ConfigError("input.columns.timestamp_unit must be ms, s, iso or a datetime pattern")
        for name in ("user", "item"):
            if not getattr(self.input.columns, name):
                raise ConfigError(f"input.columns.{name} must name a column")
        if not self.input.columns.timestamp:
            self._validate_without_time()
        if self.ingest.unknown_events not in UNKNOWN_EVENT_RULES:
            raise ConfigError(
                f"ingest.unknown_events must be {_one_of(UNKNOWN_EVENT_RULES)}, not {self.ingest.unknown_events!r}"
            )
        if not 0.0 <= self.ingest.max_quarantine_share <= 1.0:
            raise ConfigError("ingest.max_quarantine_share must be between 0 and 1")
        try:
            dt.date.fromisoformat(self.ingest.min_event_date)
        except ValueError as err:
            raise ConfigError(f"ingest.min_event_date must be a date like 2000-01-01: {err}") from err
        if self.spark.blas not in BLAS_CHOICES:
            raise ConfigError(f"spark.blas must be {_one_of(BLAS_CHOICES)}, not {self.spark.blas!r}")
        if self.input.lookback_days < 0:
            raise ConfigError("input.lookback_days must not be negative")
        for name in ("rank", "max_iter", "checkpoint_interval"):
            if getattr(self.als, name) < 1:
                raise ConfigError(f"als.{name} must be at least 1")
        for name in ("num_user_blocks", "num_item_blocks"):
            if getattr(self.als, name) < 0:
                raise ConfigError(f"als.{name} must be 0 (one block per core) or more")
        for name in ("intermediate_storage_level", "final_storage_level"):
            if getattr(self.als, name) not in STORAGE_LEVELS:
                raise ConfigError(f"als.{name} must be one of {', '.join(STORAGE_LEVELS)}, not {getattr(self.als, name)!r}")
        if self.als.reg_param < 0 or self.als.alpha < 0:
            raise ConfigError("als.reg_param and als.alpha must not be negative")
        for name in ("top_n", "block_size", "block_memory_mb", "similar_top_n", "fallback_days"):
            if getattr(self.recommend, name) < 1:
                raise ConfigError(f"recommend.{name} must be at least 1")
        if self.recommend.filter_lookback_days < 0 or self.recommend.active_days < 0:
            raise ConfigError("recommend.filter_lookback_days and recommend.active_days must not be negative")
        if self.recommend.method not in SCORING_METHODS:
            raise ConfigError(f"recommend.method must be {_one_of(SCORING_METHODS)}, not {self.recommend.method!r}")
        for name in ("ann_ef", "ann_m", "ann_ef_construction"):
            if getattr(self.recommend, name) < 1:
                raise ConfigError(f"recommend.{name} must be at least 1")
        if min(self.recommend.ann_min_items, self.recommend.ann_max_extra, self.recommend.ann_build_threads) < 0:
            raise ConfigError(
                "recommend.ann_min_items, recommend.ann_max_extra and recommend.ann_build_threads must not be negative"
            )
        if not self.ratings.weights:
            raise ConfigError("ratings.weights must name at least one event type")
        if self.ratings.confidence not in CONFIDENCE_TRANSFORMS:
            raise ConfigError(
                f"ratings.confidence must be {_one_of(CONFIDENCE_TRANSFORMS)}, not {self.ratings.confidence!r}"
            )
        if self.ratings.half_life_days < 0 or self.ratings.epsilon <= 0:
            raise ConfigError("ratings.half_life_days must not be negative and ratings.epsilon must be positive")
        if not 0.0 <= self.ratings.bm25_b <= 1.0:
            raise ConfigError("ratings.bm25_b must be between 0 and 1")
        self._validate_evaluation()
        self._validate_operations()
        return self

    def _validate_operations(self) -> None:
        lock, kept = self.lock, self.retention
        if lock.stale_minutes < 1 or lock.heartbeat_seconds < 1:
            raise ConfigError("lock.stale_minutes and lock.heartbeat_seconds must be at least 1")
        if lock.heartbeat_seconds * 3 > lock.stale_minutes * 60:
            raise ConfigError(
                f"lock.heartbeat_seconds ({lock.heartbeat_seconds}) must be at most a third of lock.stale_minutes "
                f"({lock.stale_minutes} min): a live run's lock must never look stale"
            )
        if kept.keep_days < 0 or kept.keep_models < 0:
            raise ConfigError("retention.keep_days and retention.keep_models must not be negative (0: keep everything)")

    def _validate_without_time(self) -> None:
        """A log without time (`input.columns.timestamp = ""`): nothing may depend on event times."""
        if self.ratings.half_life_days > 0:
            raise ConfigError(
                "ratings.half_life_days needs event times, but input.columns.timestamp is \"\" (a log without "
                "time): set ratings.half_life_days = 0"
            )
        if self.evaluate.split in TIMED_SPLITS:
            raise ConfigError(
                f"evaluate.split = \"{self.evaluate.split}\" needs event times, but input.columns.timestamp is \"\" "
                "(a log without time): set evaluate.split = \"random\""
            )

    def _validate_evaluation(self) -> None:
        ev = self.evaluate
        if ev.split not in SPLIT_METHODS:
            raise ConfigError(f"evaluate.split must be {_one_of(SPLIT_METHODS)}, not {ev.split!r}")
        if ev.cutoff_date:
            try:
                dt.date.fromisoformat(ev.cutoff_date)
            except ValueError as err:
                raise ConfigError(f"evaluate.cutoff_date must be a date like 2026-10-25 or \"\": {err}") from err
        if not 0.0 < ev.test_fraction < 1.0:
            raise ConfigError("evaluate.test_fraction must be between 0 and 1 (exclusive)")
        if ev.max_test_users < 0:
            raise ConfigError("evaluate.max_test_users must not be negative (0: every test user)")
        if ev.driver_max_cells < 0:
            raise ConfigError("evaluate.driver_max_cells must not be negative (0: always in Spark jobs)")
        if ev.test_days < 1 or ev.leave_last_n < 1 or ev.recent_days < 1:
            raise ConfigError("evaluate.test_days, evaluate.leave_last_n and evaluate.recent_days must be at least 1")
        if not ev.ks or min(ev.ks) < 1:
            raise ConfigError("evaluate.ks must list cut-offs of at least 1")
        if ev.metric not in METRIC_NAMES:
            raise ConfigError(f"evaluate.metric must be {_one_of(METRIC_NAMES)}, not {ev.metric!r}")
        if ev.metric_k not in ev.ks:
            raise ConfigError(f"evaluate.metric_k ({ev.metric_k}) must be one of evaluate.ks {ev.ks}")
        self._validate_tune()
        if not 0.0 <= self.gate.max_drop <= 1.0:
            raise ConfigError("gate.max_drop must be between 0 and 1")
        if self.gate.min_lift < 0:
            raise ConfigError("gate.min_lift must not be negative (0.05: beat the best baseline by 5 %)")
        if self.tracking.mlflow_uri and not self.tracking.experiment:
            raise ConfigError("tracking.experiment must name the MLflow experiment the nights are logged to")

    def _validate_tune(self) -> None:
        tune = self.tune
        for name in ("trials", "parallelism"):
            if getattr(tune, name) < 1:
                raise ConfigError(f"tune.{name} must be at least 1, not {getattr(tune, name)}")
        if not tune.ranks or min(tune.ranks) < 1:
            raise ConfigError(f"tune.ranks must list at least one rank, each at least 1, not {tune.ranks}")
        bad = [c for c in tune.confidences if c not in CONFIDENCE_TRANSFORMS]
        if not tune.confidences or bad:
            raise ConfigError(
                f"tune.confidences must list at least one of {_one_of(CONFIDENCE_TRANSFORMS)}, not {tune.confidences}"
            )
        for name in ("reg_param_range", "alpha_range", "weight_range"):
            bounds = getattr(tune, name)
            if len(bounds) != 2 or min(bounds) <= 0 or bounds[0] > bounds[1]:
                raise ConfigError(
                    f"tune.{name} must be two positive numbers [low, high] with low <= high "
                    f"(searched on a log scale), not {bounds}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short stable hash of every setting that shapes the outputs: tells two runs' configurations
        apart (and names the model). How a run is guarded and cleaned up after (OPERATIONAL) is left
        out, so that changing it does not rename tonight's model."""
        settings = {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL}
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check (and gently convert) a TOML value to the dataclass field's type."""
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, not {value!r}")
        (item_kind,) = typing.get_args(kind)
        return [_coerce(v, item_kind, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, not {value!r}")
        _, value_kind = typing.get_args(kind)
        return {str(k): _coerce(v, value_kind, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, not {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, not {value!r}")
    raise ConfigError(f"{where}: unsupported setting type {kind!r}")


def _merge(target: Any, updates: Mapping[str, Any], where: str) -> None:
    """Layer a TOML table onto a dataclass in place; unknown keys are errors, not ignored."""
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for key, value in updates.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown setting {path!r}; known here: {', '.join(sorted(names))}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path} must be a table")
            _merge(current, value, path)
        elif typing.get_origin(hints[key]) is dict:
            merged = dict(current)
            merged.update(_coerce(value, hints[key], path))
            setattr(target, key, merged)
        else:
            setattr(target, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> dict[str, Any]:
    """Turn `section.key=value` into a nested table; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    keys = [k.strip() for k in dotted.strip().split(".") if k.strip()]
    if not keys:
        raise ConfigError(f"override {text!r} names no key")
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    table: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        table = {key: table}
    return table


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from err


def load_config(paths: Iterable[str | Path] = (), overrides: Iterable[str] = ()) -> Config:
    """Defaults, then each TOML file in order, then each `section.key=value` override."""
    cfg = Config()
    for path in paths:
        _merge(cfg, read_toml(path), "")
    for text in overrides:
        _merge(cfg, parse_override(text), "")
    return cfg.validate()
