-- Average session length overall, by the aggregate functions: no sort of the input.
-- Run: sessionize query data/events.parquet -f sql/average_session_length.sql
CREATE VIEW per_user AS
SELECT
  user_id,
  session_count(event_time, INTERVAL '30 minutes') AS sessions,
  session_seconds(event_time, INTERVAL '30 minutes') AS seconds
FROM events
WHERE user_id IS NOT NULL AND session_id <> -1
GROUP BY user_id;

SELECT
  sum(sessions) AS sessions,
  round(sum(seconds) / sum(sessions), 1) AS avg_length_seconds,
  round(sum(seconds) / count(*), 1) AS time_spent_per_user_seconds
FROM per_user;
