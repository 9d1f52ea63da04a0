-- Insert or refresh one listing (idempotent: loading the same file twice changes nothing).
insert into products (product_id, title, category, listed_on, source)
values (:product_id, :title, :category, :listed_on, :source)
on conflict (product_id) do update set
    title = excluded.title,
    category = excluded.category,
    listed_on = excluded.listed_on,
    source = excluded.source
