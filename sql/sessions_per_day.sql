-- Sessions, active users and average session length per day (UTC).
-- Sessions by a 30-minute inactivity timeout; out-of-session events (session_id = -1, such as push
-- notifications) and events without a user are left out, as in Amplitude.
-- Run: sessionize query data/events.parquet -f sql/sessions_per_day.sql
WITH sessions AS (
  SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s
  FROM events
  WHERE user_id IS NOT NULL AND session_id <> -1
  GROUP BY user_id
)
SELECT
  CAST(s['started_at'] AS DATE) AS day,
  count(*) AS sessions,
  count(DISTINCT user_id) AS users,
  round(avg(date_part('epoch', s['ended_at']) - date_part('epoch', s['started_at'])) / 60, 2) AS avg_length_minutes
FROM sessions
GROUP BY 1
ORDER BY 1;
