select user_id, count(*) as events
from events
where dt = '2026-02-10'
group by user_id
order by events desc, user_id
limit 10
