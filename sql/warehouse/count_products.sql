-- What a load leaves in the catalogue: every listing, and those with a gold label.
select
    count(*) as n_rows,
    count(category) as n_labelled
from products
