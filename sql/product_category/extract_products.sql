-- Listings of the extract window [:start_ds, :end_ds] (inclusive dates, bound by the driver).
with source as (
    select
        product_id,
        title,
        category,
        cast(listed_on as char(10)) as listed_on  -- portable: date to YYYY-MM-DD text
    from products
),

windowed as (
    select * from source
    where listed_on >= :start_ds
      and listed_on <= :end_ds
)

select product_id, title, category, listed_on
from windowed
order by product_id
