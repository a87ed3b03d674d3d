//! Amplitude: the Export API (a zip of `.json.gz` files of one JSON event per line) and the
//! Parquet/S3 export, documented at
//! <https://amplitude.com/docs/apis/analytics/export>, and Fivetran's `event` table (what the
//! dbt_amplitude package reads, <https://fivetran.com/docs/connectors/applications/amplitude>).
//!
//! Their columns are the names the commands read: `user_id`, `device_id`, `event_time` (UTC text in
//! JSON and CSV, a timestamp or text in Parquet), `event_type`, `session_id` (epoch milliseconds of
//! the session's start; -1 out of session), `$insert_id` / `_insert_id` / `insert_id`,
//! `event_properties`, `user_properties`; Fivetran's event id is `id`. No mapping is needed.

use super::Source;

pub const AMPLITUDE: Source = Source {
    name: "amplitude",
    title: "an Amplitude export",
    documented_at: "https://amplitude.com/docs/apis/analytics/export",
    signature: &[
        &["user_id"],
        &["event_time"],
        &["event_type"],
        &["session_id"],
    ],
    session_key: Some("session_id (-1 out of session)"),
    default_actors: &[],
    sdk_actors: &[],
    mapping: None,
};

pub const AMPLITUDE_FIVETRAN: Source = Source {
    name: "amplitude-fivetran",
    title: "Fivetran's Amplitude event table",
    documented_at: "https://fivetran.com/docs/connectors/applications/amplitude",
    signature: &[&["id"], &["_insert_id"], &["event_time"], &["event_type"]],
    session_key: Some("session_id (-1 out of session)"),
    default_actors: &[],
    sdk_actors: &[],
    mapping: None,
};
