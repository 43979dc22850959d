select dt, count(*) as events, sum(amount) as amount from events group by dt order by dt
