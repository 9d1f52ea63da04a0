"""A new teacher version relabels the training window; labels of two versions are never mixed."""
import json

from conftest import DS, TINY_TEACHER_TRAIN, run_chain
from kd_tasks.storage import lake, registry
from kd_tasks.home import default_warehouse_uri
from kd_tasks.stages.extract import extract_partition
from kd_tasks.models import load_teacher
from kd_tasks.nightly import bootstrap, resolve_use_case


def test_new_teacher_relabels_the_window_and_the_report_says_so(kd_home, tiny_teacher, tiny_base):
    uc = resolve_use_case("product_category")
    earlier = "2024-01-09"
    extract_partition(uc, earlier, default_warehouse_uri())  # an older partition inside the window
    first = run_chain(extract_lookback_days=1)
    assert first["labelled"]["labelled"] == [earlier, DS]
    old_version = first["labelled"]["teacher_version"]

    again = run_chain(run_id="same_teacher", extract_lookback_days=1)
    assert again["labelled"]["labelled"] == [] and again["labelled"]["reused"] == [earlier, DS]

    # another seed gives another tiny teacher, weak like the first: it is refused, the teacher stays
    refused = bootstrap(uc, DS, default_warehouse_uri(), base_model=str(tiny_base), force=True,
                        train={**TINY_TEACHER_TRAIN, "seed": 1})
    assert refused["trained"] and not refused["published"] and refused["verdict"]["weak"]
    assert refused["version"] == old_version != refused["rejected_version"]
    assert load_teacher(uc.resolved_teacher_dir()).version == old_version
    new = bootstrap(uc, DS, default_warehouse_uri(), base_model=str(tiny_base), force=True,
                    train={**TINY_TEACHER_TRAIN, "seed": 1}, publish_weak=True)
    assert new["published"] and new["version"] == refused["rejected_version"] != old_version
    after = run_chain(run_id="new_teacher", extract_lookback_days=1)
    assert after["labelled"]["teacher_version"] == new["version"]
    assert after["labelled"]["labelled"] == [earlier, DS], "the whole window is relabelled"
    for day in (earlier, DS):
        assert lake.soft_label_path("product_category", new["version"], day).exists()
        assert lake.soft_label_path("product_category", old_version, day).exists()  # old labels kept, unused
    report = json.loads(open(after["report"]).read())
    assert report["soft_labels"]["labelled"] == [earlier, DS]
    assert report["evaluation"]["teacher_version"] == new["version"]
    distilled = json.loads((kd_home / "runs" / "product_category" / "new_teacher" / "distill.json").read_text())
    assert distilled["teacher_version"] == new["version"]
    assert registry.champion("product_category") is not None
