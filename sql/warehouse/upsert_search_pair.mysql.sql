-- MySQL / MariaDB form of upsert_search_pair.sql. grade is assigned first, so it still reads the stored value.
insert into search_pairs (pair_id, query, product_id, grade, searched_on, source)
values (:pair_id, :query, :product_id, :grade, :searched_on, :source)
on duplicate key update
    grade = coalesce(values(grade), search_pairs.grade),
    query = values(query),
    product_id = values(product_id),
    searched_on = values(searched_on),
    source = values(source)
