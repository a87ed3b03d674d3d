-- The sessions table of Fivetran's dbt model amplitude__sessions, as plain SQL over a view `events`,
-- with sessions derived by a 30-minute inactivity timeout (what `sessionize sessions` does by default).
-- Run: sessionize query data/events.parquet -f sql/amplitude__sessions.sql --output sessions.parquet
-- Written in plain SQL (window functions, casts, ||) so it can be read and checked against
-- `sessionize sessions`, which computes the same rows faster with session_table (no window sort),
-- session_key, utc_day and epoch_seconds (see `sessionize sessions --print-sql`).
WITH ev AS (
  -- Events without a user or a time take no part in sessions.
  SELECT CAST(user_id AS VARCHAR) AS user_id, event_time
  FROM events
  WHERE user_id IS NOT NULL AND event_time IS NOT NULL
),
sessions AS (
  -- One row per session, by the aggregate function: no sort of the events.
  SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s
  FROM ev
  GROUP BY user_id
),
base AS (
  SELECT
    user_id,
    s['session_id'] AS session_id,
    s['event_count'] AS events_per_session,
    s['started_at'] AS session_started_at,
    s['ended_at'] AS session_ended_at
  FROM sessions
),
ranked AS (
  SELECT
    *,
    row_number() OVER (PARTITION BY user_id ORDER BY session_started_at, session_ended_at, session_id)
      AS user_session_number,
    -- The previous session when the user's sessions are ordered by their end, as in the dbt model.
    lag(session_ended_at) OVER (PARTITION BY user_id ORDER BY session_ended_at, session_started_at, session_id)
      AS last_session_ended_at
  FROM base
)
SELECT
  '' AS source_relation,
  user_id || '-' || CAST(session_id AS VARCHAR) AS unique_session_id,
  user_id,
  events_per_session,
  session_started_at,
  session_ended_at,
  -- dbt's datediff in seconds: each time cut to the second.
  CAST(CAST(date_part('epoch', date_trunc('second', session_ended_at)) AS BIGINT)
     - CAST(date_part('epoch', date_trunc('second', session_started_at)) AS BIGINT) AS DOUBLE) / 60
    AS session_length_in_minutes,
  CAST(session_started_at AS DATE) AS session_started_at_day,
  CAST(session_ended_at AS DATE) AS session_ended_at_day,
  user_session_number,
  last_session_ended_at,
  CAST(last_session_ended_at AS DATE) AS last_session_ended_at_day,
  CAST(CASE WHEN user_session_number = 1 THEN 1 ELSE 0 END AS INT) AS is_first_user_session,
  CAST(CAST(date_part('epoch', date_trunc('second', session_started_at)) AS BIGINT)
     - CAST(date_part('epoch', date_trunc('second', last_session_ended_at)) AS BIGINT) AS DOUBLE) / 60
    AS minutes_in_between_sessions,
  session_id,
  -- Exact length; event_time is in microseconds.
  CAST(arrow_cast(session_ended_at - session_started_at, 'Int64') AS DOUBLE) / 1000000 AS session_length_seconds
FROM ranked;
