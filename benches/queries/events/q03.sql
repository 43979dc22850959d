select event_type, count(*) as events, avg(amount) as avg_amount
from events
where dt >= '2026-01-25' and dt < '2026-02-01'
group by event_type
order by event_type
