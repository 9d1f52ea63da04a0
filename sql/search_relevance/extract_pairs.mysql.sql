-- MySQL / MariaDB: the same query with concat() for ||, which is OR in MySQL.
-- Search pairs of the extract window [:start_ds, :end_ds] (inclusive dates, bound by the driver) with
-- their product titles, judged or not (the teacher scores every pair, as it would pairs from search
-- logs), plus for each query :sampled_candidates catalogue products it was not shown with: unjudged
-- extra candidates the teacher scores too, so the students also learn what an unrelated product
-- looks like (the contrast a retriever over the whole catalogue needs). The sample is a fixed stride
-- through the catalogue from the query's rank in the window: the same data gives the same rows.
with recursive slots(k) as (
    select 0
    union all
    select k + 1 from slots where k + 1 < :sampled_candidates
),

window_pairs as (
    select
        sp.pair_id,
        sp.query,
        sp.product_id,
        p.title,
        sp.grade,
        cast(sp.searched_on as char(10)) as searched_on  -- portable: date to YYYY-MM-DD text
    from search_pairs sp
    join search_products p on p.product_id = sp.product_id
    where cast(sp.searched_on as char(10)) >= :start_ds
      and cast(sp.searched_on as char(10)) <= :end_ds
),

queries as (
    select query, min(searched_on) as searched_on, row_number() over (order by query) as q_rank
    from window_pairs
    group by query
),

catalogue as (
    select product_id, title,
           row_number() over (order by product_id) - 1 as p_rank,
           count(*) over () as n_products
    from search_products
),

sampled as (
    select distinct q.query, c.product_id, c.title, q.searched_on
    from queries q
    cross join slots s
    join catalogue c on c.p_rank = ((q.q_rank * :sampled_candidates + s.k) * 7919) % c.n_products
)

select pair_id, query, product_id, title, grade, searched_on
from window_pairs
union all
select concat('sampled:', s.product_id, ':', s.query) as pair_id, s.query, s.product_id, s.title,
       null as grade, s.searched_on
from sampled s
where not exists (select 1 from window_pairs w where w.query = s.query and w.product_id = s.product_id)
order by pair_id
