"""The demo's teacher passes its teacher gate: the real MiniLM, fine-tuned on the synthetic catalogue's
scarce gold rows as ``make demo`` does, beats TF-IDF + LR and the gold-only student on validation with
a tie-excluding interval, and is published strong."""
from kd_tasks.home import default_warehouse_uri
from kd_tasks.loaders import catalogue
from kd_tasks.loaders.synthetic import generate_catalogue
from kd_tasks.nightly import bootstrap, resolve_use_case
from kd_tasks.storage.teachers import read_verdict

DEMO_DS, DEMO_DAYS, DEMO_ROWS, DEMO_GOLD = "2024-01-10", 10, 8000, 0.15  # seed-demo's defaults, as make demo runs it


def test_the_demo_teacher_beats_its_baselines(kd_home):
    uri = default_warehouse_uri()
    catalogue.load_products(uri, generate_catalogue(DEMO_ROWS, DEMO_DAYS, DEMO_DS, DEMO_GOLD), replace=True)
    boot = bootstrap(resolve_use_case("product_category", {}), DEMO_DS, uri,
                     train={"validation_share": 0.2})  # the Makefile's DEMO_VALIDATION_SHARE
    verdict = boot["verdict"]
    assert boot["published"] and not verdict["weak"], verdict["reason"]
    assert verdict["validation_rows"] >= 150
    assert set(verdict["baselines"]) == {"tfidf_lr", "student_gold_only"}
    for name, b in verdict["baselines"].items():
        assert b["beaten"] and b["interval"][0] > 0, (name, b)
    assert read_verdict(boot["path"])["weak"] is False  # every night's report reads it from the manifest
