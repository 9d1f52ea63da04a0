"""Configs reject unknown keys and bad values with a message that says what to do."""
import pytest

from kd_tasks.config import PRODUCT_CATEGORY, ConfigError, DistillConfig, from_dict
from kd_tasks.nightly import resolve_use_case


def test_unknown_key_lists_known_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['temprature'\].*temperature"):
        from_dict(DistillConfig, {"temprature": 2.0})


@pytest.mark.parametrize("bad,match", [
    ({"temperature": 0}, "temperature must be > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"student_size": "huge"}, "choose one of"),
    ({"lookback_days": 0}, "lookback_days must be >= 1"),
])
def test_bad_values_rejected(bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DistillConfig, bad)


def test_dag_params_override_use_case_defaults():
    uc = resolve_use_case("product_category", {"temperature": 2.0, "alpha": 0.3, "dry_run": True,
                                               "extract_lookback_days": 5})
    assert uc.distill.temperature == 2.0 and uc.distill.alpha == 0.3
    assert uc.extract_lookback_days == 5
    assert PRODUCT_CATEGORY.distill.temperature == DistillConfig().temperature  # declaration untouched


def test_unknown_use_case():
    with pytest.raises(ConfigError, match="known: \\['product_category'\\]"):
        resolve_use_case("sentiment", {})
