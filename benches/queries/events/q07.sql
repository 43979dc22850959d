select date_trunc('hour', ts) as hour, count(*) as events
from events
where dt = '2026-01-15'
group by date_trunc('hour', ts)
order by hour
