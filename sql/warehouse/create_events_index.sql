-- Every purchase_intent query filters events by a day range around its cutoff.
create index if not exists events_day_index on events (day_index, user_id, item_id)
