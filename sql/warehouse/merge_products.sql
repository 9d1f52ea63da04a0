-- Insert or refresh the staged listings (idempotent: loading the same file twice changes nothing).
-- An empty category never erases a gold label already stored, unless :clear_labels = 1.
insert into products (product_id, title, category, listed_on, source)
select product_id, title, category, listed_on, source
from products_staging
where true
on conflict (product_id) do update set
    title = excluded.title,
    category = case when :clear_labels = 1 then excluded.category
                    else coalesce(excluded.category, products.category) end,
    listed_on = excluded.listed_on,
    source = excluded.source
