select device, event_type, count(*) as events, sum(amount) as amount
from events
where country = 'DE' and amount > 100
group by device, event_type
order by device, event_type
