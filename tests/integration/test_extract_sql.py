"""The extraction SQL gives the same rows on the embedded SQLite and on the running PostgreSQL."""
import pyarrow.parquet as pq

from kd_tasks.loaders import catalogue
from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.stages.extract import extract_partition


def test_same_rows_from_sqlite_and_postgres(tmp_path, pg_uri, fashion_records, kd_home):
    rows = catalogue.catalogue_rows(fashion_records[:400], source="fashion", text_column="productDisplayName",
                                    label_column="subCategory", id_column="id", end_date="2024-01-10", days=5)
    for r in rows[::7]:
        r["category"] = None  # unlabelled rows must come through as NULL on both
    sqlite_uri = f"sqlite:///{tmp_path / 'wh.db'}"
    catalogue.load_products(sqlite_uri, rows, replace=True)
    catalogue.load_products(pg_uri, rows, replace=True)

    uc = PRODUCT_CATEGORY.with_overrides(extract_lookback_days=2)
    out = {}
    for name, uri in (("sqlite", sqlite_uri), ("postgres", pg_uri)):
        res = extract_partition(uc, "2024-01-09", uri, home=kd_home / name)
        out[name] = pq.read_table(res["path"]).to_pylist()
        assert res["window"] == ["2024-01-08", "2024-01-09"]
    expected = sorted((r for r in rows if r["listed_on"] in ("2024-01-08", "2024-01-09")),
                      key=lambda r: r["product_id"])
    assert out["sqlite"] == out["postgres"]
    assert [r["product_id"] for r in out["postgres"]] == [r["product_id"] for r in expected]
    assert sum(r["category"] is None for r in out["postgres"]) == sum(r["category"] is None for r in expected) > 0
    assert {r["listed_on"] for r in out["postgres"]} == {"2024-01-08", "2024-01-09"}
