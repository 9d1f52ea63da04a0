-- The search_relevance use case's catalogue: the products a search can return (title, optional
-- description). Loaded with the pairs that name them (load-search).
create table if not exists search_products (
    product_id  text primary key,
    title       text not null,
    description text,
    source      text not null
)
