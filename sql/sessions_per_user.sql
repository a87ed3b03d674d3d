-- Sessions per user, with the first and last session start, by the window functions.
-- An app_open event always starts a new session.
-- Run: sessionize query data/events.parquet -f sql/sessions_per_user.sql
SELECT
  user_id,
  max(n) AS sessions,
  count(*) AS events,
  min(sid) AS first_session_id,
  max(sid) AS last_session_id
FROM (
  SELECT
    user_id,
    session_number(event_time, INTERVAL '30 minutes', event_type = 'app_open')
      OVER (PARTITION BY user_id ORDER BY event_time) AS n,
    session_id(event_time, INTERVAL '30 minutes', event_type = 'app_open')
      OVER (PARTITION BY user_id ORDER BY event_time) AS sid
  FROM events
  WHERE user_id IS NOT NULL AND session_id <> -1
)
GROUP BY user_id
ORDER BY sessions DESC, user_id
LIMIT 20;
