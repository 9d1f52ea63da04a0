-- Behaviour logs the purchase_intent use case reads: one row per event.
-- day_index (days since 1970-01-01 of event_date) keeps date arithmetic portable between engines.
create table if not exists events (
    user_id     text not null,
    item_id     text not null,
    category_id text not null,
    behavior    text not null,
    event_time  text not null,
    event_date  text not null,
    day_index   integer not null,
    source      text not null
)
