-- MySQL / MariaDB form of create_search_pairs.sql: text keys need a length and compare byte for byte.
create table if not exists search_pairs (
    pair_id     varchar(255) collate utf8mb4_bin primary key,
    query       text not null,
    product_id  varchar(255) collate utf8mb4_bin not null,
    grade       double,
    searched_on date not null,
    source      varchar(255) not null
)
