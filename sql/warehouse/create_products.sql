-- The product catalogue the product_category use case reads: one row per listing.
-- category is NULL where no human has labelled the product yet.
create table if not exists products (
    product_id  text primary key,
    title       text not null,
    category    text,
    listed_on   date not null,
    source      text not null
)
