"""Configs reject unknown keys and bad values with a message that says what to do."""
import pytest

from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.config import ConfigError, DistillConfig, from_dict
from kd_tasks.nightly import resolve_use_case


def test_unknown_key_lists_known_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['temprature'\].*temperature"):
        from_dict(DistillConfig, {"temprature": 2.0})


@pytest.mark.parametrize("bad,match", [
    ({"temperature": 0}, "temperature must be > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"lookback_days": 0}, "lookback_days must be >= 1"),
])
def test_bad_values_rejected(bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DistillConfig, bad)


def test_student_size_is_checked_against_the_student_familys_own_sizes():
    with pytest.raises(ConfigError, match="student_size='huge' is unknown for the hashed_ngram_mlp student; choose one of"):
        resolve_use_case("product_category", {"student_size": "huge"})
    with pytest.raises(ConfigError, match="unknown for the tabular_mlp student"):
        resolve_use_case("purchase_intent", {"student_size": "huge"})


def test_dag_params_override_use_case_defaults():
    uc = resolve_use_case("product_category", {"temperature": 2.0, "alpha": 0.3, "dry_run": True,
                                               "extract_lookback_days": 5})
    assert uc.distill.temperature == 2.0 and uc.distill.alpha == 0.3
    assert uc.extract_lookback_days == 5
    assert PRODUCT_CATEGORY.distill.temperature == DistillConfig().temperature  # declaration untouched


def test_unknown_use_case():
    with pytest.raises(ConfigError, match="known: \\['product_category', 'purchase_intent', 'search_relevance'\\]"):
        resolve_use_case("sentiment", {})


def test_a_gate_metric_must_fit_the_task():
    from kd_tasks.use_cases.purchase_intent import USE_CASE as PURCHASE_INTENT

    with pytest.raises(ConfigError, match="gate metric 'macro_f1' is for multiclass tasks .* pick one of \\['auc', 'pr_auc'\\]"):
        PURCHASE_INTENT.with_overrides(gate={"metric": "macro_f1"})


def test_run_params_reach_the_intent_sql_and_unknown_sql_params_are_refused():
    from kd_tasks.use_cases.purchase_intent import USE_CASE as PURCHASE_INTENT
    from kd_tasks.nightly import resolve_use_case

    uc = resolve_use_case("purchase_intent", {"label_horizon_days": 7, "candidate_days": 28, "temperature": 4.0})
    assert uc.extract_params == {"label_horizon_days": 7, "candidate_days": 28} and uc.distill.temperature == 4.0
    assert resolve_use_case("purchase_intent", {"label_horizon_days": None}).extract_params == dict(
        PURCHASE_INTENT.extract_params)
    with pytest.raises(ConfigError, match="no extract params \\['horizon'\\]"):
        PURCHASE_INTENT.with_overrides(extract_params={"horizon": 3})


def test_the_teacher_reads_serving_then_privileged_columns():
    from kd_tasks.use_cases.purchase_intent import PRIVILEGED as INTENT_PRIVILEGED, SERVING as INTENT_SERVING, USE_CASE as PURCHASE_INTENT

    assert PURCHASE_INTENT.teacher_columns == INTENT_SERVING + INTENT_PRIVILEGED
    assert not set(PURCHASE_INTENT.input_columns) & set(INTENT_PRIVILEGED)  # the student never sees them
