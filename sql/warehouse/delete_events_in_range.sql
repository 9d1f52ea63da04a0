-- Drop the events of the days a load covers, so reloading the same days is idempotent.
delete from events
where day_index >= :first_day
  and day_index <= :last_day
