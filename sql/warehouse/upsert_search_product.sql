-- Insert or refresh one product of a search-log load (idempotent). An empty description never erases
-- a stored one.
insert into search_products (product_id, title, description, source)
values (:product_id, :title, :description, :source)
on conflict (product_id) do update set
    title = excluded.title,
    description = coalesce(excluded.description, search_products.description),
    source = excluded.source
