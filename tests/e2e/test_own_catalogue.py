"""The bring-your-own path as a newcomer takes it: a third-party catalogue as a CSV file, loaded with
only a share of its labels kept (``load-catalogue --gold-fraction``), a teacher bootstrapped on that
gold, and a night that labels, distils and judges every listing, labelled or not."""
import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from conftest import DS, TINY_TEACHER_TRAIN, run_chain
from kd_tasks.cli import main
from kd_tasks.home import default_warehouse_uri
from kd_tasks.loaders.catalogue import count_products
from kd_tasks.nightly import bootstrap, resolve_use_case
from kd_tasks.storage import lake

ROWS, GOLD_FRACTION = 600, 0.3


def test_a_csv_with_a_gold_fraction_runs_a_night(kd_home, tmp_path, fashion_records, tiny_base, capsys):
    shop = tmp_path / "shop.csv"
    with open(shop, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["sku", "title", "category"])
        for r in fashion_records[:ROWS]:
            out.writerow([r["id"], r["productDisplayName"], r["masterCategory"]])
    assert main(["load-catalogue", str(shop), "--text-column", "title", "--label-column", "category", "--id-column",
                 "sku", "--gold-fraction", str(GOLD_FRACTION), "--end-date", DS, "--days", "3"]) == 0
    assert "categories kept on 30% of them" in capsys.readouterr().out
    held = count_products(default_warehouse_uri())
    assert held["rows"] >= ROWS - 5 and 0.2 * held["rows"] <= held["labelled"] <= 0.4 * held["rows"], held

    boot = bootstrap(resolve_use_case("product_category"), DS, default_warehouse_uri(), base_model=str(tiny_base),
                     train=TINY_TEACHER_TRAIN)
    manifest = json.loads((kd_home / "teachers" / "product_category" / "kd_manifest.json").read_text())
    trained_on = manifest["train_rows"] + manifest["provenance"]["validation_rows"]
    # the teacher saw the kept labels only, less the fixed held-out slice (20% of the rows)
    assert 0.6 * held["labelled"] <= trained_on < held["labelled"], (trained_on, held)
    assert boot["verdict"]["validation_rows"] == manifest["provenance"]["validation_rows"]

    night = run_chain(DS)  # the three invented listing days up to DS, as the README says to run them
    extracted = pq.read_table(lake.extract_path("product_category", DS)).num_rows
    assert extracted == held["rows"]
    soft = pq.read_table(lake.soft_label_path("product_category", manifest["version"], DS))
    assert soft.num_rows == extracted  # unlabelled listings get soft labels too
    report = json.loads(Path(night["report"]).read_text())
    distill = json.loads((Path(night["report"]).parent / "distill.json").read_text())
    assert distill["gold_rows"] < 0.5 * distill["train_rows"], distill  # the student learns mostly from the teacher
    assert report["gate"]["decision"] in ("promote", "hold") and report["evaluation"]["models"]["student"]["macro_f1"] > 0
