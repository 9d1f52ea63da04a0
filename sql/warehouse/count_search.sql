-- What a search-log load leaves in the warehouse: pairs, judged pairs, queries, products.
select
    (select count(*) from search_pairs) as n_pairs,
    (select count(grade) from search_pairs) as n_judged,
    (select count(distinct query) from search_pairs) as n_queries,
    (select count(*) from search_products) as n_products
