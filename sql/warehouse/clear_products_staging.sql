-- Empty the staging table after a merge (the next batch of the same load starts clean).
delete from products_staging
