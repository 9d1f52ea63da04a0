-- Gold-labelled listings up to :end_ds: what the teacher is fine-tuned on (held-out rows are
-- removed afterwards by the stable id hash, so the evaluation slice never trains the teacher).
with source as (
    select
        product_id,
        title,
        category,
        cast(listed_on as char(10)) as listed_on  -- portable: date to YYYY-MM-DD text
    from products
),

labelled as (
    select * from source
    where category is not null
      and listed_on <= :end_ds
)

select product_id, title, category, listed_on
from labelled
order by product_id
