"""`sparkals refresh`: a nightly, then new events (new users, and purchases by known ones), then a
refresh that rescores only the users active since the model, folding in the new ones, and keeps
every other user's rows; it never trains."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from sparkals import cli
from sparkals.generate import GeneratorSpec
from sparkals.stages import generate

START = dt.date(2026, 8, 1)
NIGHT = START + dt.timedelta(days=39)  # the nightly: the last day of the generated log
LATER = NIGHT + dt.timedelta(days=2)  # the refresh
NEW_USERS = [f"new{i}" for i in range(6)]
STRANGER = "new-stranger"  # only an item the model has never seen: no fold-in possible


def _settings(log: str, out: str) -> list[str]:
    overrides = [
        f"input.path={log}", f"output.root={out}", "als.num_user_blocks=2", "als.num_item_blocks=2", "als.rank=8",
        "als.max_iter=4", "recommend.top_n=5", "spark.shuffle_partitions=2", "spark.log_level=ERROR",
        "gate.enabled=false",
    ]
    return [arg for value in overrides for arg in ("--set", value)]


def _ms(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp() * 1000)


@pytest.mark.slow
def test_refresh_rescores_active_users_folds_in_new_ones_and_keeps_the_rest(spark, tmp_path, capsys):
    log, out = str(tmp_path / "log"), tmp_path / "out"
    generate.run(spark, GeneratorSpec(users=300, items=120, events=9_000, seed=5, start=START, days=40), log)
    assert cli.main(["nightly", "--run-date", str(NIGHT), *_settings(log, str(out))]) == 0
    night = spark.read.parquet(str(out / "recommendations" / f"run_date={NIGHT}")).cache()
    models_before = sorted(p.name for p in (out / "models").iterdir())

    # Two days later: returning users buy their first recommendation; new users arrive.
    firsts = night.filter(F.col("rank") == 1).orderBy("user_id").limit(10).select("user_id", "item_id").collect()
    popular = [row["item_id"] for row in night.groupBy("item_id").count().orderBy(F.desc("count"), "item_id").limit(4).collect()]
    lines = ["timestamp,visitorid,event,itemid,transactionid"]
    lines += [f"{_ms(LATER, 9)},{row['user_id']},transaction,{row['item_id']},t-{row['user_id']}" for row in firsts]
    for n, user in enumerate(NEW_USERS):
        lines += [f"{_ms(LATER, 10)},{user},view,{popular[n % 4]},", f"{_ms(LATER, 11)},{user},addtocart,{popular[(n + 1) % 4]},"]
    lines.append(f"{_ms(LATER, 12)},{STRANGER},view,item-never-seen-before,")
    (tmp_path / "log" / "later.csv").write_text("\n".join(lines) + "\n")

    capsys.readouterr()
    assert cli.main(["refresh", "--run-date", str(LATER), *_settings(log, str(out))]) == 0
    printed = json.loads(capsys.readouterr().out)
    refreshed = spark.read.parquet(str(out / "recommendations" / f"run_date={LATER}")).cache()

    assert sorted(p.name for p in (out / "models").iterdir()) == models_before  # nothing trained
    source = {row["user_id"]: row["source"] for row in refreshed.select("user_id", "source").distinct().collect()}
    assert {user: source[user] for user in NEW_USERS} == {user: "fold_in" for user in NEW_USERS}
    assert source[STRANGER] == "fallback"
    assert printed["users_fold_in"] == len(NEW_USERS) and printed["users_fallback"] == 1
    assert printed["users_rescored"] == len(firsts) + len(NEW_USERS) + 1

    bought = {(row["user_id"], row["item_id"]) for row in firsts}
    got = {(row["user_id"], row["item_id"]) for row in refreshed.select("user_id", "item_id").collect()}
    assert not bought & got  # today's purchases are filtered for every rescored user
    rescored = {row["user_id"] for row in firsts} | set(NEW_USERS) | {STRANGER}
    assert refreshed.filter(~F.col("user_id").isin(*rescored)).exceptAll(night).count() == 0
    assert night.filter(~F.col("user_id").isin(*rescored)).exceptAll(refreshed).count() == 0
    assert printed["users_kept"] == night.select("user_id").distinct().count() - len(firsts)

    latest = json.loads((out / "recommendations" / "_LATEST.json").read_text())
    assert latest["run_date"] == str(LATER) and latest["refreshed_from"].endswith(f"run_date={NIGHT}")
    assert json.loads((out / "runs" / f"run_date={LATER}" / "refresh.json").read_text())["rows"] == refreshed.count()

    # A model that does not match the indexes (here: its metadata says another rank) stops the next
    # refresh before it writes anything.
    (metadata_path,) = list((out / "models").glob("*/metadata.json"))
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "parameters": {**metadata["parameters"], "rank": 99}}))
    (metadata_path.parent / ".metadata.json.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old text
    capsys.readouterr()
    tomorrow = LATER + dt.timedelta(days=1)
    assert cli.main(["refresh", "--run-date", str(tomorrow), *_settings(log, str(out))]) == 1
    assert "does not match the index tables" in capsys.readouterr().err
    assert not (out / "ratings" / f"run_date={tomorrow}").exists() and not (out / "runs" / f"run_date={tomorrow}").exists()


def test_refresh_without_a_serving_model_says_to_run_the_nightly(spark, tmp_path, capsys):
    code = cli.main(["refresh", "--run-date", "2026-10-01", *_settings(str(tmp_path / "log"), str(tmp_path / "out"))])
    assert code == 1
    assert "run `sparkals nightly` first" in capsys.readouterr().err
    assert not [path for path in (tmp_path / "out").rglob("*") if path.is_file()]  # the lock came and went
