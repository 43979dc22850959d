select country, count(distinct user_id) as users from events group by country order by country
