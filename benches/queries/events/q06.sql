select * from events where event_id = 4242424
