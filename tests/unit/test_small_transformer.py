"""The small transformer student cut from the teacher: the layers it keeps are the teacher's, weight
for weight and in what they compute, and it distils, saves and loads like any student."""
import json

import numpy as np
import pytest
import torch

from kd_tasks.models import load_student
from kd_tasks.models.small_transformer import TeacherLayersStudent, kept_layers
from kd_tasks.stages.distill import train_student
from kd_tasks.stages.window import Window

LABELS = ["Apparel", "Footwear", "Watches"]
TEXTS = ["Nike Men Black Running Shoes", "Titan Women Analog Watch", "Roadster Men Blue Tshirt",
         "Puma Unisex White Sneakers", "Fastrack Men Digital Watch", "Levis Women Slim Jeans"] * 5
GOLD = ["Footwear", "Watches", "Apparel", "Footwear", "Watches", "Apparel"] * 5


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_base):
    """A 4-layer BERT sequence classifier with MiniLM's tokenizer and a teacher manifest."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("teacher")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(LABELS))
    BertForSequenceClassification(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    (d / "kd_manifest.json").write_text(json.dumps({"family": "hf_sequence_classifier", "label_names": LABELS,
                                                    "max_length": 24, "version": "0123456789ab"}))
    return d


def test_kept_layers_are_evenly_spaced():
    assert kept_layers(6, 3) == [0, 2, 4] and kept_layers(6, 2) == [0, 3] and kept_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        kept_layers(2, 3)


def test_the_student_is_the_teachers_layers(teacher_dir):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    student = TeacherLayersStudent.create(LABELS, "small", TEXTS, teacher_dir=teacher_dir)
    assert student.layers == [0, 2] and student.net.config.num_hidden_layers == 2
    assert student.num_parameters() < sum(p.numel() for p in teacher.parameters())
    t_state, s_state = teacher.state_dict(), student.net.state_dict()
    for name, value in s_state.items():  # same shapes, same values, layer j = teacher layer layers[j]
        source = name
        for j, i in enumerate(student.layers):
            source = source.replace(f"encoder.layer.{j}.", f"encoder.layer.{i}.") if f"encoder.layer.{j}." in name \
                else source
        assert torch.equal(value, t_state[source]), name
    ids = torch.tensor(student.tokenizer(TEXTS[:4], padding=True)["input_ids"])
    with torch.no_grad():
        hidden = teacher.bert.embeddings(input_ids=ids)
        assert torch.equal(student.net.bert.embeddings(input_ids=ids), hidden)
        for j, i in enumerate(student.layers):  # each kept layer computes what the teacher's layer computes
            assert torch.equal(student.net.bert.encoder.layer[j](hidden)[0], teacher.bert.encoder.layer[i](hidden)[0])


def test_it_distils_saves_and_loads(teacher_dir, tmp_path):
    from kd_tasks.config import DistillConfig

    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    with torch.no_grad():
        logits = teacher(**TeacherLayersStudent.create(LABELS, "small", teacher_dir=teacher_dir).tokenizer(
            TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    window = Window([str(i) for i in range(len(TEXTS))], TEXTS, GOLD, logits, LABELS, np.zeros(len(TEXTS), bool), [])
    config = DistillConfig(epochs=3, learning_rate=1e-3, batch_size=8, student_size="small")
    student = train_student(window, config, None, "student", family="teacher_layers_transformer",
                            teacher_dir=teacher_dir)
    out = student.logits(TEXTS)
    assert out.shape == (len(TEXTS), len(LABELS)) and np.isfinite(out).all()
    student.save(tmp_path / "s")
    again = load_student(tmp_path / "s")
    assert isinstance(again, TeacherLayersStudent) and again.layers == [0, 2]
    assert np.allclose(again.logits(TEXTS), out, atol=1e-5)
    with pytest.raises(ValueError, match="starts from the teacher's layers"):
        train_student(window, config, None, "student", family="teacher_layers_transformer")


def test_sparse_embedding_steps_only_the_tokens_a_batch_uses(teacher_dir):
    """With ``sparse_embedding`` a step reads and writes the rows of the batch's tokens alone (the rest
    of the 30,522-token vocabulary keeps its weights, not even weight decay touches it), and the
    training forward through those rows computes what the plain forward computes."""
    from kd_tasks.models.training import fit

    student = TeacherLayersStudent.create(LABELS, "small", teacher_dir=teacher_dir)
    prepared = student.prepare(TEXTS[:6])
    idx = torch.arange(6)
    before = student.net.bert.embeddings.word_embeddings.weight.detach().clone()
    student.net.train()
    with torch.no_grad():
        torch.manual_seed(1)  # the same dropout masks in both forwards
        plain = student.forward_rows(prepared, idx)
        opt = student.optimizer(1e-2, sparse=True)
        torch.manual_seed(1)
        assert torch.allclose(student.forward_rows(prepared, idx), plain, atol=1e-6)
    gold = torch.tensor([LABELS.index(g) for g in GOLD[:6]])
    fit(student.net, idx, lambda rows: torch.nn.functional.cross_entropy(student.forward_rows(prepared, rows),
                                                                          gold[rows]), opt, 1, 6, None, "test")
    after = student.net.bert.embeddings.word_embeddings.weight.detach()
    used = np.zeros(len(before), bool)
    used[np.unique(prepared[0][prepared[1] > 0])] = True
    changed = (after != before).any(dim=1).numpy()
    assert changed[used].all() and not changed[~used].any()
