-- One listing of a load, into the staging table.
insert into products_staging (product_id, title, category, listed_on, source)
values (:product_id, :title, :category, :listed_on, :source)
