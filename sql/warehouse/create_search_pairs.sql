-- (query, product) pairs from search logs. grade is the human relevance judgement (Home Depot: the
-- mean rating on 1..3), NULL where no human judged the pair (the teacher still scores it). searched_on
-- is the night the pair belongs to; the query is the use case's grouping key.
create table if not exists search_pairs (
    pair_id     text primary key,
    query       text not null,
    product_id  text not null,
    grade       double precision,
    searched_on date not null,
    source      text not null
)
