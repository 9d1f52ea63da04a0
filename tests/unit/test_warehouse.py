"""Catalogue loading: the user's columns, derived ids, unlabelled rows, clear errors."""
import pytest

from kd_tasks import warehouse
from kd_tasks.synthetic import generate_catalogue


def test_bind_rewrites_placeholders_for_psycopg2_only():
    sql = "select * from t where a >= :start_ds and b like 'x%' and c = :end_ds"
    assert warehouse.bind(sql, "sqlite") == sql
    assert warehouse.bind(sql, "postgresql") == (
        "select * from t where a >= %(start_ds)s and b like 'x%%' and c = %(end_ds)s")


def test_csv_without_id_column_gets_stable_ids_and_keeps_unlabelled_rows(tmp_path):
    f = tmp_path / "shop.csv"
    f.write_text("name,cat\nRed Shirt,Shirts\nRed Shirt,Shirts\nBlue Jeans,\n,Shirts\n")
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    assert warehouse.load_catalogue_file(uri, f, text_column="name", label_column="cat") == 3
    first = warehouse.query_table(uri, "product_category/extract_products.sql",
                                  {"start_ds": "2000-01-01", "end_ds": "2100-01-01"}).to_pylist()
    # loading again changes nothing: same derived ids, upserted
    warehouse.load_catalogue_file(uri, f, text_column="name", label_column="cat")
    again = warehouse.query_table(uri, "product_category/extract_products.sql",
                                  {"start_ds": "2000-01-01", "end_ds": "2100-01-01"}).to_pylist()
    assert first == again and len(first) == 3
    assert len({r["product_id"] for r in first}) == 3  # duplicate titles get distinct ids
    assert sorted(r["category"] or "" for r in first) == ["", "Shirts", "Shirts"]


def test_missing_label_column_names_the_columns_and_the_flag(tmp_path):
    f = tmp_path / "shop.csv"
    f.write_text("id,title,department\n1,Red Shirt,Tops\n")
    with pytest.raises(ValueError, match=r"label column 'category' is not in the file; its columns are "
                                         r"\['id', 'title', 'department'\].*--label-column"):
        warehouse.load_catalogue_file(f"sqlite:///{tmp_path / 'wh.db'}", f, text_column="title",
                                      label_column="category")


def test_synthetic_catalogue_is_deterministic_and_partly_labelled():
    a, b = generate_catalogue(500, seed=3), generate_catalogue(500, seed=3)
    assert a == b and a != generate_catalogue(500, seed=4)
    labelled = sum(r["category"] is not None for r in a) / len(a)
    assert 0.2 < labelled < 0.4
    assert len({r["listed_on"] for r in a}) == 10
