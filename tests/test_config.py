import re
from pathlib import Path

import pytest

from sparkals.config import Config, ConfigError, load_config, read_toml

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_base_toml_documents_exactly_the_defaults():
    assert load_config([CONF / "base.toml"]).to_dict() == Config().to_dict()


def test_every_base_key_has_a_comment():
    lines = (CONF / "base.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            assert lines[number - 1].lstrip().startswith("#"), f"undocumented key: {line}"


@pytest.mark.parametrize("name", ["local.toml", "cluster.toml"])
def test_shipped_configs_load(name):
    cfg = load_config([CONF / "base.toml", CONF / name])
    assert cfg.als.rank >= 1


def test_local_runs_in_process_and_cluster_leaves_master_to_spark_submit():
    assert load_config([CONF / "local.toml"]).spark.master.startswith("local")
    assert load_config([CONF / "cluster.toml"]).spark.master == ""


def test_later_layers_win(tmp_path):
    override = tmp_path / "mine.toml"
    override.write_text("[als]\nrank = 64\n[ratings.weights]\nview = 0.5\n")
    cfg = load_config([override], ["als.rank=128", "recommend.top_n=5"])
    assert cfg.als.rank == 128
    assert cfg.recommend.top_n == 5
    assert cfg.ratings.weights == {"view": 0.5, "addtocart": 5.0, "transaction": 10.0}


def test_set_parses_values_as_toml_and_bare_words_as_strings():
    cfg = load_config([], ["als.alpha=40", "input.path=/data/x y", "spark.console_progress=true"])
    assert cfg.als.alpha == 40.0 and isinstance(cfg.als.alpha, float)
    assert cfg.input.path == "/data/x y"
    assert cfg.spark.console_progress is True


@pytest.mark.parametrize(
    "override, message",
    [
        ("als.rnak=3", "unknown setting 'als.rnak'"),
        ("als.rank=many", "als.rank must be an integer"),
        ("als.rank=0", "als.rank must be at least 1"),
        ("input.format=xml", "input.format must be csv, json or parquet"),
        ("als.num_user_blocks=-1", "als.num_user_blocks must be 0 (one block per core) or more"),
        ("als.intermediate_storage_level=RAM", "als.intermediate_storage_level must be one of MEMORY_AND_DISK"),
        ("rank", "must look like section.key=value"),
        ('evaluate.split="daily"', "evaluate.split must be time, leave_last_n or random"),
        ("evaluate.test_fraction=1.5", "evaluate.test_fraction must be between 0 and 1"),
        ("gate.min_lift=-0.1", "gate.min_lift must not be negative"),
        ("tune.trials=0", "tune.trials must be at least 1"),
        ("tune.parallelism=0", "tune.parallelism must be at least 1"),
        ("tune.ranks=[]", "tune.ranks must list at least one rank"),
        ('tune.confidences=["sqrt"]', "tune.confidences must list at least one of raw, log1p, bm25 or tfidf"),
        ("tune.alpha_range=[10.0, 1.0]", "tune.alpha_range must be two positive numbers [low, high] with low <= high"),
        ("tune.reg_param_range=[0.0, 1.0]", "tune.reg_param_range must be two positive numbers"),
        ("tune.weight_range=[1.0]", "tune.weight_range must be two positive numbers"),
        ("tune.reg_params=[0.1]", "unknown setting 'tune.reg_params'"),
        ("lock.heartbeat_seconds=700", "lock.heartbeat_seconds (700) must be at most a third of lock.stale_minutes"),
        ("lock.stale_minutes=0", "lock.stale_minutes and lock.heartbeat_seconds must be at least 1"),
        ("retention.keep_days=-1", "retention.keep_days and retention.keep_models must not be negative"),
    ],
)
def test_bad_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config([], [override])


def test_als_blocks_of_0_are_one_per_core_and_local_toml_asks_for_that(spark):
    from sparkals.train import build_als
    cfg = load_config([CONF / "local.toml"])
    assert (cfg.als.num_user_blocks, cfg.als.num_item_blocks) == (0, 0)
    als = build_als(cfg.als, spark.sparkContext.defaultParallelism)
    assert als.getNumUserBlocks() == als.getNumItemBlocks() == spark.sparkContext.defaultParallelism
    fixed = build_als(load_config([], ["als.num_user_blocks=3", "als.num_item_blocks=5"]).als, 2)
    assert (fixed.getNumUserBlocks(), fixed.getNumItemBlocks()) == (3, 5)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")


def test_fingerprint_changes_with_settings():
    assert load_config().fingerprint() == load_config().fingerprint()
    assert load_config().fingerprint() != load_config([], ["als.rank=7"]).fingerprint()
    # How runs are guarded and cleaned up after does not rename tonight's model.
    assert load_config().fingerprint() == load_config([], ["retention.keep_days=3", "lock.stale_minutes=9"]).fingerprint()


def test_list_settings_are_checked_item_by_item():
    from dataclasses import dataclass, field

    from sparkals.config import _merge

    @dataclass
    class Lists:
        ks: list[int] = field(default_factory=lambda: [5, 10])

    target = Lists()
    _merge(target, {"ks": [1, 2, 3]}, "x")
    assert target.ks == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"x\.ks\[1\] must be an integer"):
        _merge(target, {"ks": [1, "two"]}, "x")
    with pytest.raises(ConfigError, match=r"x\.ks must be a list"):
        _merge(target, {"ks": 3}, "x")


def test_a_log_without_time_needs_a_split_and_ratings_without_time():
    timeless = 'input.columns.timestamp=""'
    with pytest.raises(ConfigError, match=r'evaluate\.split = "time" needs event times.*set evaluate\.split = "random"'):
        load_config([], [timeless])
    with pytest.raises(ConfigError, match="ratings.half_life_days needs event times"):
        load_config([], [timeless, 'evaluate.split="random"', "ratings.half_life_days=7"])
    cfg = load_config([], [timeless, 'evaluate.split="random"'])
    assert cfg.input.columns.timestamp == "" and cfg.evaluate.split == "random"


def test_shipped_mappings_load():
    steam = load_config([CONF / "base.toml", CONF / "steam.toml"])
    assert (steam.input.columns.timestamp, steam.evaluate.split, steam.input.header) == ("", "random", False)
    assert steam.input.events["purchase"] == "transaction" and steam.ratings.weights["play"] == 1.0
