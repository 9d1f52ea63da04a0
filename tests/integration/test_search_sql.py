"""The search-relevance SQL on SQLite, PostgreSQL and MariaDB over a hand-made search log: a night's
extract is its pairs, judged or not, plus sampled catalogue products per query that it was not shown
with (unjudged, never a duplicate); the teacher's SQL is every judged pair up to the date."""
import pytest

from conftest import WAREHOUSE_ENGINES as ENGINES, engine_uri

from kd_tasks import warehouse
from kd_tasks.loaders.search import SearchRows, load_search
from kd_tasks.stages.extract import sql_params
from kd_tasks.use_cases import get_use_case

USE_CASE = get_use_case("search_relevance")
# (query, product id, title, grade, date)
LOG = [("angle bracket", "100001", "Simpson Strong-Tie 12-Gauge Angle", "3", "2024-01-01"),
       ("angle bracket", "100002", "BEHR Premium Textured DeckOver", "1", "2024-01-01"),
       ("deck over", "100002", "BEHR Premium Textured DeckOver", "3", "2024-01-01"),
       ("deck over", "100003", "Deck board screws", "", "2024-01-01"),  # unjudged: the teacher scores it
       ("wood screws", "100003", "Deck board screws", "2.33", "2024-01-02"),
       ("led bulb", "100004", "60W LED bulb", "2.67", "2024-01-02")]
CATALOGUE_ONLY = [("x", f"2{i:05d}", f"Catalogue product {i}", "", "2023-12-01") for i in range(7)]


def _load(uri):
    records = [{"q": q, "pid": pid, "title": t, "grade": g, "date": d} for q, pid, t, g, d in LOG + CATALOGUE_ONLY]
    rows = SearchRows(records, source="hand", query_column="q", text_column="title", grade_column="grade",
                      product_id_column="pid", date_column="date", grade_range=(1.0, 3.0))
    return load_search(uri, rows, replace=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_extract_and_gold_sql(engine, request, tmp_path):
    uri = engine_uri(engine, request, tmp_path)
    _load(uri)
    params = sql_params(USE_CASE, "2024-01-01", "2024-01-01")
    table = warehouse.query_table(uri, USE_CASE.extract_sql, {**params, "sampled_candidates": 3})
    rows = table.to_pylist()
    assert table.column_names == ["pair_id", "query", "product_id", "title", "grade", "searched_on"]
    logged = [r for r in rows if not r["pair_id"].startswith("sampled:")]
    assert sorted((r["query"], r["product_id"], r["grade"]) for r in logged) == [
        ("angle bracket", "100001", 3.0), ("angle bracket", "100002", 1.0),
        ("deck over", "100002", 3.0), ("deck over", "100003", None)]
    assert {r["searched_on"] for r in rows} == {"2024-01-01"}
    sampled = [r for r in rows if r["pair_id"].startswith("sampled:")]
    by_query = {}
    for r in sampled:
        assert r["grade"] is None and r["title"]
        by_query.setdefault(r["query"], []).append(r["product_id"])
    # 3 slots per query over 11 catalogue products (stride 7919): distinct products, none it was shown with
    assert set(by_query) == {"angle bracket", "deck over"}
    shown = {(r["query"], r["product_id"]) for r in logged}
    for q, products in by_query.items():
        assert len(products) == len(set(products)) and 1 <= len(products) <= 3
        assert not {(q, p) for p in products} & shown
    assert len({r["pair_id"] for r in rows}) == len(rows)  # ids unique: the extract refuses duplicates
    # the same rows every time, on every engine (the sample is a stride from the query's rank)
    again = warehouse.query_table(uri, USE_CASE.extract_sql, {**params, "sampled_candidates": 3}).to_pylist()
    assert again == rows
    gold = warehouse.query_table(uri, USE_CASE.teacher_sql, sql_params(USE_CASE, "1970-01-01", "2024-01-02"))
    assert sorted(gold.column("grade").to_pylist()) == [1.0, 2.33, 2.67, 3.0, 3.0]


def test_the_sample_is_the_same_on_every_engine(request, tmp_path):
    samples = {}
    for engine in ENGINES:
        uri = engine_uri(engine, request, tmp_path / engine)
        (tmp_path / engine).mkdir()
        _load(uri)
        table = warehouse.query_table(uri, USE_CASE.extract_sql,
                                      {**sql_params(USE_CASE, "2024-01-01", "2024-01-02"), "sampled_candidates": 4})
        samples[engine] = sorted(table.column("pair_id").to_pylist())
    assert samples["sqlite"] == samples["postgresql"] == samples["mariadb"]
    assert sum(p.startswith("sampled:") for p in samples["sqlite"]) >= 8
