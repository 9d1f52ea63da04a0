"""Names from outside become paths only through their grammar, and only as direct children."""
import pytest

from kd_tasks import names
from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.storage.runs import RunDir


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", "a\x00b"])
def test_child_refuses_anything_but_a_plain_name(tmp_path, name):
    with pytest.raises(names.InputError):
        names.child(tmp_path, name)


@pytest.mark.parametrize("run_id", ["..", "../../etc", ".", "manual__2024-01-01T00:00:00+00:00", "a/../../b"])
def test_a_run_directory_stays_under_runs(tmp_path, run_id):
    runs = tmp_path / "runs" / "product_category"
    d = RunDir.create(PRODUCT_CATEGORY.name, run_id, tmp_path).path
    assert d.parent == runs and d.is_dir() and not d.name.startswith(".")


@pytest.mark.parametrize("value,ok", [("0123456789ab", True), ("0123456789AB", False), ("../0123456789", False),
                                      ("0123456789abc", False), (None, False)])
def test_a_version_is_a_content_hash(value, ok):
    if ok:
        assert names.version(value) == value
    else:
        with pytest.raises(names.InputError, match="is not valid: it must match"):
            names.version(value)
