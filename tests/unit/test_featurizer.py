"""The student's featuriser sees every script, caps its work per text, and a saved student keeps the
featuriser it was trained with."""
import re
import zlib

import numpy as np
import pytest
import torch

from kd_tasks.storage import files
from kd_tasks.models import load_student
from kd_tasks.models.hashed_ngram import FEATURIZER_VERSION, MAX_GRAMS, HashedNgramStudent as Student, featurize, words

TITLES = {
    "arabic": "قميص رجالي أزرق",
    "hebrew": "חולצה כחולה לגברים",
    "chinese": "红色连衣裙",
    "emoji": "👗✨",
    "latin": "Roadster Men Navy Blue Shirt",
    "accented": "Café Crème Mug",
}


def test_every_script_gets_its_own_features():
    feats = {name: featurize(t, 1 << 15) for name, t in TITLES.items()}
    empty = featurize("", 1 << 15)
    assert all(f != empty for f in feats.values()), feats
    assert len({tuple(f) for f in feats.values()}) == len(TITLES), "two titles of different words collided"
    assert words("Nike Men Lunarswift+ 3") == ["nike", "men", "lunarswift", "+", "3"]
    assert words("ＳＨＩＲＴ") == words("shirt"), "full-width forms are normalised (NFKC + casefold)"


def test_version_1_is_kept_for_the_students_trained_with_it():
    assert all(featurize(TITLES[k], 1 << 15, featurizer=1) == featurize("", 1 << 15, featurizer=1)
               for k in ("arabic", "hebrew", "chinese", "emoji"))


@pytest.mark.parametrize("huge", ["word " * 200_000, "x" * 1_000_000, "🛒 " * 300_000])
def test_work_per_text_is_capped(huge):
    assert 0 < len(featurize(huge, 1 << 15)) <= MAX_GRAMS


def _featurize_v1(text, n_buckets):
    """The featuriser before versions were recorded, frozen here as the reference."""
    ws = re.findall(r"[a-z0-9]+", text.lower())
    grams = [f"w:{w}" for w in ws] + [f"b:{a}_{b}" for a, b in zip(ws, ws[1:])]
    for w in ws:
        p = f"<{w}>"
        grams += [f"c:{p[i:i + n]}" for n in (3, 4, 5) for i in range(len(p) - n + 1)]
    return [zlib.crc32(g.encode()) % n_buckets for g in (grams or ["<empty>"])]


def test_a_student_saved_before_featuriser_versions_predicts_the_same_logits(tmp_path):
    torch.manual_seed(0)
    student = Student(["a", "b", "c"], "small")
    for p in student.net.parameters():
        torch.nn.init.normal_(p)
    d = student.save(tmp_path / "old")
    cfg = files.read_json(d / "student.json", "", "")
    del cfg["featurizer"]  # what a student saved before this change holds
    files.write_json(d / "student.json", cfg)

    loaded = load_student(d)
    assert loaded.featurizer == 1 and FEATURIZER_VERSION == 2
    texts = ["Roadster Men Navy Blue Casual Shirt", "Café Crème Mug", "Nike Lunarswift+ 3", "红色连衣裙"]
    with torch.inference_mode():
        expected = []
        for t in texts:
            ids = torch.tensor(_featurize_v1(t, loaded.n_buckets))
            expected.append(loaded.net(ids, torch.tensor([0])).numpy()[0])
    np.testing.assert_allclose(loaded.logits(texts), np.stack(expected), rtol=1e-5, atol=1e-5)
    assert load_student(student.save(tmp_path / "new")).featurizer == 2


@pytest.mark.parametrize("texts,empty", [(["👗", "!!!", "..."], 2), (list(TITLES.values()), 0)])
def test_rows_that_featurise_to_nothing_are_counted(texts, empty):
    assert Student(["a", "b"], "small").empty_inputs(texts) == empty
