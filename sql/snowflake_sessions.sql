-- Sessionization as written for Snowflake, unchanged: lag() for the gap and
-- conditional_true_event() for the session counter. It finds the same sessions as session_number.
-- Run: sessionize query data/events.parquet -f sql/snowflake_sessions.sql
WITH gaps AS (
  SELECT
    user_id,
    event_time,
    event_time - lag(event_time) OVER (PARTITION BY user_id ORDER BY event_time) AS gap,
    session_number(event_time, INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time) AS n
  FROM events
  WHERE user_id IS NOT NULL
),
numbered AS (
  SELECT
    user_id,
    n,
    conditional_true_event(gap > INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time) + 1 AS snowflake_n
  FROM gaps
)
SELECT
  count(*) AS events,
  count(DISTINCT (user_id, n)) AS sessions,
  sum(CASE WHEN n = snowflake_n THEN 1 ELSE 0 END) AS events_where_both_agree
FROM numbered;
