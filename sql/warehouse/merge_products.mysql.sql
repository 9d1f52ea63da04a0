-- MySQL / MariaDB form of merge_products.sql (no ON CONFLICT: ON DUPLICATE KEY UPDATE). category is
-- assigned first, so it still reads the stored value.
insert into products (product_id, title, category, listed_on, source)
select product_id, title, category, listed_on, source
from products_staging
on duplicate key update
    category = case when :clear_labels = 1 then values(category)
                    else coalesce(values(category), products.category) end,
    title = values(title),
    listed_on = values(listed_on),
    source = values(source)
