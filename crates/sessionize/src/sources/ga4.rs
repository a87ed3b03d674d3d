//! Google Analytics 4: the BigQuery export, written as Parquet (`event_timestamp` INT64 µs,
//! `event_name`, `user_pseudo_id`, `user_id`, `platform`, `event_params` as a list of
//! `{key, value {string_value, int_value, float_value, double_value}}`;
//! <https://support.google.com/analytics/answer/7029846>).
//!
//! `user_id` is the user id and `device_id` the pseudo id (the device); the actor is the user id,
//! else the pseudo id; the SDK's session key is the
//! `ga_session_id` parameter (epoch seconds of the session's start), which GA4 pairs with
//! `user_pseudo_id`. The parameters become `event_properties` as a JSON object (`ga4_params`), so
//! chart specs read `event.page_location`.

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const GA4: Source = Source {
    name: "ga4",
    title: "a GA4 export",
    documented_at: "https://support.google.com/analytics/answer/7029846",
    signature: &[&["event_timestamp"], &["event_name"], &["user_pseudo_id"]],
    session_key: Some("the ga_session_id parameter"),
    default_actors: &["user_id", "device_id"],
    sdk_actors: &["device_id"],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let params = raw.first(&["event_params"]);
    Mapping {
        user_id: raw.coalesce_text(&["user_id"]),
        device_id: Some(raw.coalesce_text(&["user_pseudo_id"])),
        event_time: raw.time(
            "\"event_timestamp\"",
            EpochUnit::Microseconds,
            "event_timestamp",
        ),
        event_type: raw.coalesce_text(&["event_name"]),
        session_id: params.as_ref().map(|p| {
            format!("CAST(TRY_CAST(ga4_param({p}, 'ga_session_id') AS DOUBLE) AS BIGINT)")
        }),
        insert_id: None,
        event_properties: params.map(|p| format!("ga4_params({p})")),
        platform: raw
            .first(&["platform"])
            .map(|p| format!("CAST({p} AS VARCHAR)")),
    }
}
