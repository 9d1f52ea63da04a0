-- Judged search pairs up to :end_ds with their product titles: what the cross-encoder teacher is
-- fine-tuned on (held-out queries are removed afterwards by the stable hash of the query, so the
-- evaluation queries never train the teacher).
select
    sp.pair_id,
    sp.query,
    sp.product_id,
    p.title,
    sp.grade,
    cast(sp.searched_on as char(10)) as searched_on
from search_pairs sp
join search_products p on p.product_id = sp.product_id
where sp.grade is not null
  and cast(sp.searched_on as char(10)) <= :end_ds
order by sp.pair_id
