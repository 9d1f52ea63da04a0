"""Search logs into the warehouse (load-search) on SQLite, PostgreSQL and MariaDB: latin-1 files, bad
rows reported or refused with the rows named, grades kept across reloads, a stable night per query,
and the real Home Depot pairs loaded whole."""
import csv
import gzip

import pytest

from conftest import WAREHOUSE_ENGINES as ENGINES, engine_uri

from kd_tasks import cli, warehouse
from kd_tasks.loaders import search

HEADER = ["id", "product_uid", "product_title", "search_term", "relevance"]
COLUMNS = dict(query_column="search_term", text_column="product_title", grade_column="relevance",
               product_id_column="product_uid", grade_range=(1.0, 3.0))



def _write(path, rows, encoding="latin-1"):
    with gzip.open(path, "wt", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def _pairs(uri):
    sql = "select query, product_id, grade, searched_on from search_pairs order by query, product_id"
    with warehouse.connect(uri) as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def _title(uri, product_id):
    from sqlalchemy import text

    with warehouse.connect(uri) as conn:
        return conn.execute(text("select title from search_products where product_id = :id"), {"id": product_id}).scalar()


ROWS = [[1, 100001, "Simpson Strong-Tie 12-Gauge Angle", "angle bracket", 3],
        [2, 100001, "Simpson Strong-Tie 12-Gauge Angle", "l bracket", 2.5],
        [3, 100002, "Heat Gun 30\u00b0 Nozzle", "heat gun", ""],  # a degree sign (latin-1 byte 0xb0); unjudged
        [4, 100003, "BEHR Deck Stain", "", 2],  # no query: skipped, reported
        [5, 100004, "Chrome Faucet", "angle bracket", 1.33],
        [6, 100004, "Chrome Kitchen Faucet", "kitchen faucet", 2.67]]  # product 100004 retitled: first title kept


@pytest.mark.parametrize("engine", ENGINES)
def test_a_latin1_log_loads_with_its_bad_rows_reported(tmp_path, request, engine, capsys):
    uri = engine_uri(engine, request, tmp_path)
    path = _write(tmp_path / "log.csv.gz", ROWS)
    with pytest.raises(ValueError, match=r"is not valid utf-8 .* --encoding latin-1"):
        search.load_search_file(uri, path, **COLUMNS)  # the default encoding names the fix
    rc = cli.main(["--warehouse", uri, "load-search", str(path), "--query-column", "search_term", "--text-column",
                   "product_title", "--grade-column", "relevance", "--grade-range", "1", "3", "--product-id-column",
                   "product_uid", "--encoding", "latin-1", "--replace", "--end-date", "2024-01-10", "--days", "5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "loaded 5 pairs (4 judged) of 6 rows and 3 products" in out
    assert "skipped 1 rows without a query (first: rows 4)" in out
    assert "1 rows name a product with another title than its first row (first: rows 6)" in out
    assert "the warehouse now holds 5 pairs (4 judged) of 4 queries and 3 products" in out
    assert _title(uri, "100002") == "Heat Gun 30\u00b0 Nozzle" and _title(uri, "100004") == "Chrome Faucet"
    pairs = _pairs(uri)
    assert [(q, p, g) for q, p, g, _ in pairs] == [("angle bracket", "100001", 3.0), ("angle bracket", "100004", 1.33),
                                                  ("heat gun", "100002", None), ("kitchen faucet", "100004", 2.67),
                                                  ("l bracket", "100001", 2.5)]
    nights = {}
    for q, _, _, night in pairs:
        nights.setdefault(q, set()).add(str(night)[:10])
    assert all(len(n) == 1 for n in nights.values())  # a query's pairs share one night
    assert nights["angle bracket"] == {search.query_night("angle bracket", "2024-01-10", 5)}
    assert all("2024-01-06" <= min(n) <= "2024-01-10" for n in nights.values())

    # a reload without grades keeps them; --clear-labels lets it erase them
    _write(tmp_path / "ungraded.csv.gz", [[1, 100001, "Simpson Strong-Tie 12-Gauge Angle", "angle bracket", ""]])
    search.load_search_file(uri, tmp_path / "ungraded.csv.gz", encoding="latin-1", **COLUMNS)
    assert ("angle bracket", "100001", 3.0) in [p[:3] for p in _pairs(uri)]
    search.load_search_file(uri, tmp_path / "ungraded.csv.gz", encoding="latin-1", clear_labels=True, **COLUMNS)
    assert ("angle bracket", "100001", None) in [p[:3] for p in _pairs(uri)]


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_grades_and_repeated_pairs_refuse_the_file_and_load_nothing(tmp_path, request, engine):
    uri = engine_uri(engine, request, tmp_path)
    search.load_search_file(uri, _write(tmp_path / "good.csv.gz", ROWS[:2]), encoding="latin-1", replace=True,
                            **COLUMNS)
    many = [[i, 200000 + i, f"Item {i}", f"query {i}", 2] for i in range(40)]
    for rows, match in (([*many, [99, 1, "Bolt", "bolt", "3.5"]], r"1 row\(s\) have a 'relevance' that is not a "
                                                                     r"number in \[1, 3\] \(row 41: '3.5'\)"),
                        ([*many, [99, 1, "Bolt", "bolt", "high"]], r"row 41: 'high'"),
                        ([*many, [99, 200003, "Item 3", "query 3", 1]], r"repeat a \(query, product\) pair \(row 41: "
                                                                        r"\"'query 3' with 200003 \(first at row 4\)")):
        with pytest.raises(ValueError, match=match):
            search.load_search(uri, search.SearchRows(iter(dict(zip(HEADER, map(str, r))) for r in rows),
                                                      source="bad.csv", **COLUMNS), batch_rows=8)
        assert search.count_search(uri) == {"pairs": 2, "judged": 2, "queries": 2, "products": 1}
    with pytest.raises(ValueError, match=r"the grade column 'score' is not in the file; its columns are .* "
                                         r"--grade-column"):
        search.load_search_file(uri, tmp_path / "good.csv.gz", encoding="latin-1",
                                **{**COLUMNS, "grade_column": "score"})


def test_the_home_depot_pairs_load_whole(tmp_path, datasets_dir):
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    summary = search.load_search_file(uri, datasets_dir / "homedepot_search_relevance" / "train.csv.gz",
                                      encoding="latin-1", **COLUMNS)
    assert summary["pairs"] == summary["judged"] == summary["rows"] == 74_067 and summary["skipped"] == {}
    assert summary["retitled"]["rows"] == 24  # 24 rows name a product by another title: the first is kept
    assert search.count_search(uri) == {"pairs": 74_067, "judged": 74_067, "queries": 11_795, "products": 54_667}
