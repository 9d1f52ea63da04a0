"""Catalogue loading: the user's columns, derived ids, unlabelled rows, clear errors."""
import pytest

from kd_tasks import warehouse

from kd_tasks.loaders import catalogue
from kd_tasks.loaders.synthetic import generate_catalogue


def test_each_dialect_reads_its_own_form_of_a_query_else_the_default():
    name = "purchase_intent/extract_candidates.sql"
    assert warehouse.sql_path(name, "sqlite").name == "extract_candidates.sql"
    assert warehouse.sql_path(name, "postgresql").name == "extract_candidates.sql"
    for dialect in ("mysql", "mariadb"):  # MariaDB reads the MySQL family's form
        assert warehouse.sql_path(name, dialect).name == "extract_candidates.mysql.sql"
    assert "||" not in warehouse.read_sql(name, "mariadb") and "||" in warehouse.read_sql(name, "sqlite")
    assert warehouse.sql_path("product_category/extract_products.sql", "mariadb").name == "extract_products.sql"
    # the hash recorded with every partition covers every form: editing the MySQL form changes it
    forms = [p.name for p in warehouse.sql_forms(name)]
    assert forms == ["extract_candidates.sql", "extract_candidates.mysql.sql"]


def test_csv_without_id_column_gets_stable_ids_and_keeps_unlabelled_rows(tmp_path):
    f = tmp_path / "shop.csv"
    f.write_text("name,cat\nRed Shirt,Shirts\nRed Shirt,Shirts\nBlue Jeans,\n,Shirts\n")
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    assert catalogue.load_catalogue_file(uri, f, text_column="name", label_column="cat") == 3
    first = warehouse.query_table(uri, "product_category/extract_products.sql",
                                  {"start_ds": "2000-01-01", "end_ds": "2100-01-01"}).to_pylist()
    # loading again changes nothing: same derived ids, upserted
    catalogue.load_catalogue_file(uri, f, text_column="name", label_column="cat")
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
        catalogue.load_catalogue_file(f"sqlite:///{tmp_path / 'wh.db'}", f, text_column="title",
                                      label_column="category")


def test_synthetic_catalogue_is_deterministic_and_partly_labelled():
    a, b = generate_catalogue(500, seed=3), generate_catalogue(500, seed=3)
    assert a == b and a != generate_catalogue(500, seed=4)
    labelled = sum(r["category"] is not None for r in a) / len(a)
    assert 0.2 < labelled < 0.4
    assert len({r["listed_on"] for r in a}) == 10


def _products(uri):
    return {r["product_id"]: r for r in warehouse.query_table(
        uri, "product_category/extract_products.sql", {"start_ds": "2000-01-01", "end_ds": "2100-01-01"}).to_pylist()}


@pytest.mark.parametrize("body,match", [
    ("sku,name,cat\n1,Red Shirt,A\n2,Blue Jeans,B\n1,Green Cap,C\n",
     r"1 row\(s\) repeat an id of 'sku' \(row 3: '1 \(first at row 1\)'\); nothing was loaded"),
    ("sku,name,cat\n1,Red Shirt,A\n,Blue Jeans,B\n", r"1 row\(s\) have an empty 'sku' \(row 2: ''\)"),
])
def test_ids_that_would_collapse_rows_are_refused_with_the_rows_named(tmp_path, body, match):
    f, uri = tmp_path / "shop.csv", f"sqlite:///{tmp_path / 'wh.db'}"
    f.write_text(body)
    with pytest.raises(ValueError, match=match):
        catalogue.load_catalogue_file(uri, f, text_column="name", label_column="cat", id_column="sku")
    assert not (tmp_path / "wh.db").exists() or catalogue.count_products(uri)["rows"] == 0


def test_dates_are_parsed_strictly(tmp_path):
    f, uri = tmp_path / "shop.csv", f"sqlite:///{tmp_path / 'wh.db'}"
    f.write_text("sku,name,cat,created\n1,Red Shirt,A,2024-01-09T10:00:00\n2,Blue Jeans,B,10/01/2024\n"
                 "3,Cap,C,2024-02-30\n")
    with pytest.raises(ValueError, match=r"2 row\(s\) have a 'created' that is not an ISO date YYYY-MM-DD "
                                         r"\(row 2: '10/01/2024', row 3: '2024-02-30'\)"):
        catalogue.load_catalogue_file(uri, f, text_column="name", label_column="cat", id_column="sku",
                                      date_column="created")
    f.write_text("sku,name,cat,created\n1,Red Shirt,A,2024-01-09T10:00:00\n2,Blue Jeans,B,2024-01-10\n")
    catalogue.load_catalogue_file(uri, f, text_column="name", label_column="cat", id_column="sku",
                                  date_column="created")
    assert {k: r["listed_on"] for k, r in _products(uri).items()} == {"1": "2024-01-09", "2": "2024-01-10"}


def test_a_missing_title_column_names_the_option_that_exists(tmp_path):
    f = tmp_path / "shop.csv"
    f.write_text("id,name,cat\n1,Red Shirt,A\n")
    with pytest.raises(ValueError, match="title column 'title' is not in the file.*--text-column"):
        catalogue.load_catalogue_file(f"sqlite:///{tmp_path / 'wh.db'}", f, text_column="title", label_column="cat")


def test_a_file_in_another_encoding_names_the_row_and_the_option(tmp_path):
    f = tmp_path / "shop.csv"
    f.write_bytes("name,cat\nRed Shirt,A\nCaf\u00e9 Mug,B\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"data row 2 .*is not valid utf-8.*--encoding latin-1"):
        catalogue.load_catalogue_file(f"sqlite:///{tmp_path / 'wh.db'}", f, text_column="name", label_column="cat")
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    assert catalogue.load_catalogue_file(uri, f, encoding="latin-1", text_column="name", label_column="cat") == 2
    assert sorted(r["title"] for r in _products(uri).values()) == ["Caf\u00e9 Mug", "Red Shirt"]


@pytest.mark.parametrize("uri,shown", [
    ("postgresql://kd:s3cr3t-pw@db.internal:5432/wh", "postgresql://kd:***@db.internal:5432/wh"),
    ("mongodb://kd:s3cr3t-pw@db/wh?ssl=1", "mongodb://kd:***@db/wh?ssl=1"),
    ("postgresql://db/wh?user=kd&password=s3cr3t-pw", "postgresql://db/wh?user=kd&password=***"),
    ("sqlite:////tmp/wh.db", "sqlite:////tmp/wh.db"),
])
def test_uris_are_shown_without_their_password(uri, shown):
    assert warehouse.redact(uri) == shown
    if uri.startswith("mongodb"):  # no SQLAlchemy dialect: refused, the password never shown
        with pytest.raises(ValueError) as exc:
            warehouse.dialect_of(uri)
        assert "s3cr3t-pw" not in str(exc.value) and shown in str(exc.value)
