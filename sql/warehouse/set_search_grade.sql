-- A reload with --clear-labels: the pair's grade becomes the file's, empty ones included.
update search_pairs set grade = :grade where pair_id = :pair_id
