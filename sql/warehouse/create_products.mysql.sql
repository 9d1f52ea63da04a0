-- MySQL / MariaDB form of create_products.sql: a text primary key needs a length, and ids compare
-- byte for byte (the default collation is case-insensitive: "AB-1" and "ab-1" are two listings).
create table if not exists products (
    product_id  varchar(255) collate utf8mb4_bin primary key,
    title       text not null,
    category    varchar(255),
    listed_on   date not null,
    source      varchar(255) not null
)
