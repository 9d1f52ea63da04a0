-- MySQL / MariaDB form of upsert_search_product.sql (ON DUPLICATE KEY UPDATE).
insert into search_products (product_id, title, description, source)
values (:product_id, :title, :description, :source)
on duplicate key update
    description = coalesce(values(description), search_products.description),
    title = values(title),
    source = values(source)
