-- MySQL / MariaDB form of create_events.sql: indexed text columns need a length.
create table if not exists events (
    user_id     varchar(64) collate utf8mb4_bin not null,
    item_id     varchar(64) collate utf8mb4_bin not null,
    category_id varchar(64) collate utf8mb4_bin not null,
    behavior    varchar(8) not null,
    event_time  varchar(19) not null,
    event_date  varchar(10) not null,
    day_index   integer not null,
    source      varchar(64) not null
)
