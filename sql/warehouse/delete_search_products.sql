-- Empty the search catalogue before loading a different one (load-search --replace).
delete from search_products
