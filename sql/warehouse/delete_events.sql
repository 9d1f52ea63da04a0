-- Empty the event log before loading a different one (load-events --replace).
delete from events
