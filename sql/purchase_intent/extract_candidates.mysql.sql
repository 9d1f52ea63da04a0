-- MySQL / MariaDB form of extract_candidates.sql, the same query: there `||` is a logical OR (the
-- candidate id would silently become 0), so ids are built with concat(), and numbers are cast to
-- double (MariaDB has no `double precision` or `text` cast). Keep the two files in step: the parity
-- test runs both on the same events and compares every value.
-- purchase_intent: one row per (user, item) candidate and cutoff, point in time.
--
-- A partition ds holds the candidates whose label window closes on ds: for every day d in
-- [:start_day, :end_day] (days since 1970-01-01), cutoff c = d - :label_horizon_days + 1 and the
-- label window is days c..d. Candidates: pairs the user touched in the :candidate_days before c
-- (recent interest), plus pairs the user viewed, carted or favourited in the label window
-- (impressions). Three groups of columns:
--   serving-time features  computed only from events strictly before c (day_index < c);
--   privileged features    from the label window only, known after the fact (teacher input);
--   label                  bought: the user buys the item in the label window.
with recursive label_ends (end_day) as (
    select cast(:start_day as integer)
    union all
    select end_day + 1 from label_ends where end_day < :end_day
),

cutoffs as (
    select end_day, end_day - :label_horizon_days + 1 as cutoff_day
    from label_ends
),

history as (
    select c.cutoff_day, e.user_id, e.item_id, e.category_id, e.behavior, e.day_index
    from cutoffs as c
    join events as e
        on e.day_index >= c.cutoff_day - 28
        and e.day_index < c.cutoff_day
),

label_window as (
    select c.cutoff_day, e.user_id, e.item_id, e.category_id, e.behavior
    from cutoffs as c
    join events as e
        on e.day_index >= c.cutoff_day
        and e.day_index <= c.end_day
),

candidates as (
    select cutoff_day, user_id, item_id from history
    where day_index >= cutoff_day - :candidate_days
    union
    select cutoff_day, user_id, item_id from label_window
    where behavior <> 'buy'
),

item_categories as (
    select item_id, min(category_id) as category_id
    from (select item_id, category_id from history
          union all
          select item_id, category_id from label_window) as seen
    group by item_id
),

pair_history as (
    select
        cutoff_day, user_id, item_id,
        sum(case when behavior = 'pv' and day_index >= cutoff_day - 7 then 1 else 0 end) as ui_pv_7d,
        sum(case when behavior = 'cart' and day_index >= cutoff_day - 7 then 1 else 0 end) as ui_cart_7d,
        sum(case when behavior = 'fav' and day_index >= cutoff_day - 7 then 1 else 0 end) as ui_fav_7d,
        sum(case when behavior = 'buy' and day_index >= cutoff_day - 7 then 1 else 0 end) as ui_buy_7d,
        sum(case when behavior = 'buy' then 1 else 0 end) as ui_buy_28d,
        sum(case when day_index >= cutoff_day - 1 then 1 else 0 end) as ui_events_1d,
        count(*) as ui_events_28d,
        cutoff_day - max(day_index) as ui_recency_days
    from history
    group by cutoff_day, user_id, item_id
),

user_history as (
    select
        cutoff_day, user_id,
        sum(case when day_index >= cutoff_day - 1 then 1 else 0 end) as u_events_1d,
        sum(case when day_index >= cutoff_day - 7 then 1 else 0 end) as u_events_7d,
        sum(case when behavior = 'buy' and day_index >= cutoff_day - 7 then 1 else 0 end) as u_buy_7d,
        sum(case when behavior = 'buy' then 1 else 0 end) as u_buy_28d,
        count(distinct item_id) as u_items_28d,
        count(distinct day_index) as u_active_days_28d,
        cutoff_day - max(day_index) as u_recency_days
    from history
    group by cutoff_day, user_id
),

item_history as (
    select
        cutoff_day, item_id,
        sum(case when day_index >= cutoff_day - 1 then 1 else 0 end) as i_events_1d,
        sum(case when day_index >= cutoff_day - 7 then 1 else 0 end) as i_events_7d,
        sum(case when behavior = 'buy' and day_index >= cutoff_day - 7 then 1 else 0 end) as i_buy_7d,
        sum(case when behavior = 'buy' then 1 else 0 end) as i_buy_28d,
        count(distinct user_id) as i_users_28d
    from history
    group by cutoff_day, item_id
),

category_history as (
    select
        cutoff_day, category_id,
        sum(case when day_index >= cutoff_day - 7 then 1 else 0 end) as c_events_7d,
        sum(case when behavior = 'buy' then 1 else 0 end) as c_buy_28d
    from history
    group by cutoff_day, category_id
),

user_category_history as (
    select
        cutoff_day, user_id, category_id,
        sum(case when day_index >= cutoff_day - 7 then 1 else 0 end) as uc_events_7d,
        sum(case when behavior = 'buy' then 1 else 0 end) as uc_buy_28d
    from history
    group by cutoff_day, user_id, category_id
),

pair_label_window as (
    select
        cutoff_day, user_id, item_id,
        sum(case when behavior = 'pv' then 1 else 0 end) as ui_pv_after,
        sum(case when behavior = 'cart' then 1 else 0 end) as ui_cart_after,
        sum(case when behavior = 'fav' then 1 else 0 end) as ui_fav_after,
        max(case when behavior = 'buy' then 1 else 0 end) as bought,
        sum(case when behavior = 'buy' then 1 else 0 end) as ui_buys
    from label_window
    group by cutoff_day, user_id, item_id
),

user_label_window as (
    select
        cutoff_day, user_id,
        sum(case when behavior <> 'buy' then 1 else 0 end) as u_browse_after,
        sum(case when behavior = 'buy' then 1 else 0 end) as u_buys,
        count(distinct item_id) as u_items_after
    from label_window
    group by cutoff_day, user_id
),

item_label_window as (
    select
        cutoff_day, item_id,
        sum(case when behavior = 'buy' then 1 else 0 end) as i_buys,
        count(distinct user_id) as i_users_after
    from label_window
    group by cutoff_day, item_id
),

assembled as (
    select
        concat(k.user_id, ':', k.item_id, '@', k.cutoff_day) as candidate_id,
        k.cutoff_day,
        k.user_id,
        k.item_id,
        ic.category_id,
        -- serving-time features (strictly before the cutoff)
        cast(coalesce(ph.ui_pv_7d, 0) as double) as ui_pv_7d,
        cast(coalesce(ph.ui_cart_7d, 0) as double) as ui_cart_7d,
        cast(coalesce(ph.ui_fav_7d, 0) as double) as ui_fav_7d,
        cast(coalesce(ph.ui_buy_7d, 0) as double) as ui_buy_7d,
        cast(coalesce(ph.ui_buy_28d, 0) as double) as ui_buy_28d,
        cast(coalesce(ph.ui_events_1d, 0) as double) as ui_events_1d,
        cast(coalesce(ph.ui_events_28d, 0) as double) as ui_events_28d,
        cast(coalesce(ph.ui_recency_days, 29) as double) as ui_recency_days,
        cast(coalesce(uh.u_events_1d, 0) as double) as u_events_1d,
        cast(coalesce(uh.u_events_7d, 0) as double) as u_events_7d,
        cast(coalesce(uh.u_buy_7d, 0) as double) as u_buy_7d,
        cast(coalesce(uh.u_buy_28d, 0) as double) as u_buy_28d,
        cast(coalesce(uh.u_items_28d, 0) as double) as u_items_28d,
        cast(coalesce(uh.u_active_days_28d, 0) as double) as u_active_days_28d,
        cast(coalesce(uh.u_recency_days, 29) as double) as u_recency_days,
        cast(coalesce(ih.i_events_1d, 0) as double) as i_events_1d,
        cast(coalesce(ih.i_events_7d, 0) as double) as i_events_7d,
        cast(coalesce(ih.i_buy_7d, 0) as double) as i_buy_7d,
        cast(coalesce(ih.i_buy_28d, 0) as double) as i_buy_28d,
        cast(coalesce(ih.i_users_28d, 0) as double) as i_users_28d,
        cast(coalesce(ch.c_events_7d, 0) as double) as c_events_7d,
        cast(coalesce(ch.c_buy_28d, 0) as double) as c_buy_28d,
        cast(coalesce(uch.uc_events_7d, 0) as double) as uc_events_7d,
        cast(coalesce(uch.uc_buy_28d, 0) as double) as uc_buy_28d,
        -- privileged features (label window; never available when the student serves)
        cast(coalesce(pl.ui_pv_after, 0) as double) as ui_pv_after,
        cast(coalesce(pl.ui_cart_after, 0) as double) as ui_cart_after,
        cast(coalesce(pl.ui_fav_after, 0) as double) as ui_fav_after,
        cast(coalesce(ul.u_browse_after, 0) as double) as u_browse_after,
        cast(coalesce(ul.u_buys, 0) - coalesce(pl.ui_buys, 0) as double) as u_buy_other_after,
        cast(coalesce(ul.u_items_after, 0) as double) as u_items_after,
        cast(coalesce(il.i_buys, 0) - coalesce(pl.ui_buys, 0) as double) as i_buy_other_after,
        cast(coalesce(il.i_users_after, 0) as double) as i_users_after,
        -- label
        coalesce(pl.bought, 0) as bought
    from candidates as k
    left join item_categories as ic on ic.item_id = k.item_id
    left join pair_history as ph
        on ph.cutoff_day = k.cutoff_day and ph.user_id = k.user_id and ph.item_id = k.item_id
    left join user_history as uh on uh.cutoff_day = k.cutoff_day and uh.user_id = k.user_id
    left join item_history as ih on ih.cutoff_day = k.cutoff_day and ih.item_id = k.item_id
    left join category_history as ch on ch.cutoff_day = k.cutoff_day and ch.category_id = ic.category_id
    left join user_category_history as uch
        on uch.cutoff_day = k.cutoff_day and uch.user_id = k.user_id and uch.category_id = ic.category_id
    left join pair_label_window as pl
        on pl.cutoff_day = k.cutoff_day and pl.user_id = k.user_id and pl.item_id = k.item_id
    left join user_label_window as ul on ul.cutoff_day = k.cutoff_day and ul.user_id = k.user_id
    left join item_label_window as il on il.cutoff_day = k.cutoff_day and il.item_id = k.item_id
)

select * from assembled
order by candidate_id
