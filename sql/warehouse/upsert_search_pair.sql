-- Insert or refresh one (query, product) pair (idempotent). An empty grade never erases a human
-- judgement already stored (load-search --clear-labels sets grades afterwards: set_search_grade.sql).
insert into search_pairs (pair_id, query, product_id, grade, searched_on, source)
values (:pair_id, :query, :product_id, :grade, :searched_on, :source)
on conflict (pair_id) do update set
    query = excluded.query,
    product_id = excluded.product_id,
    grade = coalesce(excluded.grade, search_pairs.grade),
    searched_on = excluded.searched_on,
    source = excluded.source
