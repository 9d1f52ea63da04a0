-- A load's rows land here first (batched plain inserts), then merge_products.sql moves them into
-- products in one statement. Temporary: private to the loading connection, gone after it.
create temporary table if not exists products_staging (
    product_id  varchar(255) not null,
    title       text not null,
    category    varchar(255),
    listed_on   date not null,
    source      varchar(255) not null
)
