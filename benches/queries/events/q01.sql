select count(*) as events from events
