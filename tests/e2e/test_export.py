"""Export of the production student (torch.export) and its smoke test against the registry copy."""
import json

import pytest
import torch

from conftest import run_chain
from kd_tasks.storage import registry
from kd_tasks.use_cases import get_use_case
from kd_tasks.stages.export import ExportMismatchError, export_production, held_out_texts
from kd_tasks.models.hashed_ngram import HashedNgramStudent as Student, batch_inputs


def test_export_reproduces_registry_predictions(kd_home, tiny_teacher):
    run_chain()
    champ = registry.champion("product_category")
    result = export_production(get_use_case("product_category"))
    assert result["version"] == champ["version"] and result["rows_checked"] > 20
    info = json.loads((kd_home / "registry" / "product_category" / "exports" / champ["version"] /
                       "export.json").read_text())
    assert info["smoke_test"]["same_top1"] is True

    program = torch.export.load(result["path"]).module()
    student = Student.load(champ["path"])
    titles = ["Nike Men Black Running Shoes", "Titan Women Watch"]  # any batch size, any length
    with torch.inference_mode():
        got = program(*batch_inputs(titles, info["featurizer"]["n_buckets"])).numpy()
    assert (got.argmax(1) == student.logits(titles).argmax(1)).all()


def test_export_that_differs_is_not_published(kd_home, tiny_teacher, monkeypatch):
    run_chain()
    champ = registry.champion("product_category")
    real = Student.logits
    monkeypatch.setattr(Student, "logits", lambda self, texts, batch_size=512: real(self, texts)[:, ::-1].copy())
    with pytest.raises(ExportMismatchError, match="differs from the registry copy .* not published"):
        export_production(get_use_case("product_category"))
    assert not (kd_home / "registry" / "product_category" / "exports" / champ["version"]).exists()
    assert held_out_texts(get_use_case("product_category"), champ["manifest"]["data_window"])
