-- Append one behaviour event (behavior: pv, cart, fav or buy).
insert into events (user_id, item_id, category_id, behavior, event_time, event_date, day_index, source)
values (:user_id, :item_id, :category_id, :behavior, :event_time, :event_date, :day_index, :source)
