-- MySQL / MariaDB form of create_search_products.sql: a text key needs a length and compares byte for byte.
create table if not exists search_products (
    product_id  varchar(255) collate utf8mb4_bin primary key,
    title       text not null,
    description text,
    source      varchar(255) not null
)
