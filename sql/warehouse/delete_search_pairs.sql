-- Empty the search log before loading a different one (load-search --replace).
delete from search_pairs
