"""The quality gate's decision: beat the best popularity baseline by gate.min_lift, and do not
fall more than gate.max_drop below the serving model."""

from sparkals.config import GateSettings
from sparkals.stages.gate import decide

SETTINGS = GateSettings(max_drop=0.1, min_lift=0.05)
BASELINES = {"popular": 0.10, "recent_popular": 0.12}


def test_a_model_that_beats_the_best_baseline_is_promoted_with_its_lift_over_each():
    got = decide("m2", None, "ndcg@10", 0.15, BASELINES, SETTINGS)
    assert (got.status, got.serving, got.reason) == ("promoted", "m2", None)
    assert got.lift == {"popular": 0.5, "recent_popular": 0.25}


def test_a_model_below_the_best_baseline_plus_min_lift_never_serves():
    # 0.125 beats recent_popular (0.12) but by 4 %, not 5 %: refused, and with no model serving, none serves.
    got = decide("m1", None, "ndcg@10", 0.125, BASELINES, SETTINGS)
    assert (got.status, got.serving) == ("refused", None)
    assert "does not beat the best baseline, recent_popular 0.12000" in got.reason
    assert "gate.min_lift 5%" in got.reason
    # With a model serving, that one stays.
    current = {"model_version": "m0", "score": 0.2}
    assert decide("m1", current, "ndcg@10", 0.125, BASELINES, SETTINGS).serving == "m0"


def test_beating_the_baselines_is_not_enough_when_the_serving_model_was_much_better():
    current = {"model_version": "m1", "score": 0.30}
    got = decide("m2", current, "ndcg@10", 0.20, BASELINES, SETTINGS)
    assert (got.status, got.serving, got.floor, got.current_score) == ("refused", "m1", 0.27, 0.30)
    assert "more than gate.max_drop 10%" in got.reason
    ok = decide("m2", current, "ndcg@10", 0.28, BASELINES, SETTINGS)
    assert (ok.status, ok.serving) == ("promoted", "m2")


def test_both_failures_are_named_and_a_zero_score_never_passes():
    current = {"model_version": "m1", "score": 0.30}
    got = decide("m2", current, "ndcg@10", 0.01, BASELINES, SETTINGS)
    assert got.reason.count(";") == 1 and "baseline" in got.reason and "max_drop" in got.reason
    zero = decide("m2", None, "ndcg@10", 0.0, {"popular": 0.0, "recent_popular": 0.0}, SETTINGS)
    assert zero.status == "refused" and zero.lift == {"popular": None, "recent_popular": None}
