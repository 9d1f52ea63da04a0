"""The same SQL gives the same rows, value for value, on SQLite, PostgreSQL and MariaDB: catalogue
loads, the product_category extract, streamed into shards."""
import pyarrow as pa
import pytest

from conftest import WAREHOUSE_ENGINES as ENGINES, engine_uri

from kd_tasks import warehouse
from kd_tasks.loaders import catalogue
from kd_tasks.storage import lake
from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.stages.extract import extract_partition



@pytest.fixture(scope="module")
def catalogue_rows(fashion_records):
    rows = catalogue.catalogue_rows(fashion_records[:400], source="fashion", text_column="productDisplayName",
                                    label_column="subCategory", id_column="id", end_date="2024-01-10", days=5)
    for r in rows[::7]:
        r["category"] = None  # unlabelled rows must come through as NULL everywhere
    rows[0]["product_id"], rows[1]["product_id"] = "SKU-ab", "SKU-AB"  # distinct ids on a case-blind collation
    return rows



def test_same_rows_from_sqlite_postgres_and_mariadb(tmp_path, request, catalogue_rows, kd_home):
    uc = PRODUCT_CATEGORY.with_overrides(extract_lookback_days=2, shard_rows=50)
    out = {}
    for engine in ENGINES:
        uri = engine_uri(engine, request, tmp_path)
        catalogue.load_products(uri, catalogue_rows, replace=True, batch_rows=64)  # several staged batches
        res = extract_partition(uc, "2024-01-09", uri, home=kd_home / engine)
        assert res["window"] == ["2024-01-08", "2024-01-09"]
        table = lake.read_extract(uc.name, "2024-01-09", home=kd_home / engine)
        assert res["shards"] == len(lake.shards(lake.extract_dir(uc.name, "2024-01-09", kd_home / engine), "", ""))
        assert res["shards"] == -(-table.num_rows // 50) > 1  # streamed into shards of shard_rows
        assert lake.partition_info(lake.extract_dir(uc.name, "2024-01-09", kd_home / engine))["dialect"] == \
            warehouse.dialect_of(uri)
        out[engine] = table.sort_by("product_id")  # byte order: the engines' collations differ
    expected = sorted((r for r in catalogue_rows if r["listed_on"] in ("2024-01-08", "2024-01-09")),
                      key=lambda r: r["product_id"])
    for engine in ENGINES:
        assert out[engine].schema == out["sqlite"].schema, engine
        assert out[engine].to_pylist() == out["sqlite"].to_pylist(), engine
    rows = out["mariadb"].to_pylist()
    assert [r["product_id"] for r in rows] == [r["product_id"] for r in expected]
    assert len({r["product_id"] for r in rows}) == len(rows)  # ids unique on every engine
    assert sum(r["category"] is None for r in rows) == sum(r["category"] is None for r in expected) > 0
    assert {r["listed_on"] for r in rows} == {"2024-01-08", "2024-01-09"}
    assert pa.types.is_string(out["mariadb"].schema.field("listed_on").type)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_reload_with_empty_labels_keeps_the_gold_labels(tmp_path, engine, request):
    uri = engine_uri(engine, request, tmp_path)
    full, blank = tmp_path / "full.csv", tmp_path / "blank.csv"
    full.write_text("sku,name,cat\n1,Red Shirt,Shirts\n2,Blue Jeans,Jeans\n3,Green Cap,\n")
    blank.write_text("sku,name,cat\n1,Red Shirt v2,\n2,Blue Jeans,\n3,Green Cap,Caps\n")
    catalogue.load_catalogue_file(uri, full, text_column="name", label_column="cat", id_column="sku", replace=True)
    catalogue.load_catalogue_file(uri, blank, text_column="name", label_column="cat", id_column="sku")
    rows = _products(uri)
    assert {k: r["category"] for k, r in rows.items()} == {"1": "Shirts", "2": "Jeans", "3": "Caps"}
    assert rows["1"]["title"] == "Red Shirt v2"
    assert catalogue.count_products(uri) == {"rows": 3, "labelled": 3}
    catalogue.load_catalogue_file(uri, blank, text_column="name", label_column="cat", id_column="sku",
                                  clear_labels=True)  # erasing labels is possible, when asked
    assert {k: r["category"] for k, r in _products(uri).items()} == {"1": None, "2": None, "3": "Caps"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_refused_file_leaves_the_table_as_it_was(tmp_path, engine, request):
    """Batches are staged and merged in one transaction: a bad row in a later batch loads nothing."""
    uri = engine_uri(engine, request, tmp_path)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("sku,name,cat\n1,Red Shirt,Shirts\n")
    catalogue.load_catalogue_file(uri, good, text_column="name", label_column="cat", id_column="sku", replace=True)
    bad.write_text("sku,name,cat\n" + "".join(f"{i},Item {i},C\n" for i in range(2, 30)) + "5,Again,C\n")
    with pytest.raises(ValueError, match=r"repeat an id of 'sku' \(row 29: '5 \(first at row 4\)'\)"):
        catalogue.load_catalogue_file(uri, bad, text_column="name", label_column="cat", id_column="sku",
                                      batch_rows=8)
    assert catalogue.count_products(uri) == {"rows": 1, "labelled": 1}


def _products(uri):
    return {r["product_id"]: r for r in warehouse.query_table(
        uri, "product_category/extract_products.sql", {"start_ds": "2000-01-01", "end_ds": "2100-01-01"}).to_pylist()}
