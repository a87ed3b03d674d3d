//! Mixpanel: the raw export API's newline-delimited JSON, one `{"event": ..., "properties": {...}}`
//! per line, the properties holding `time` (epoch seconds; milliseconds in newer projects, told
//! apart by magnitude), `distinct_id`, `$insert_id`, `$device_id` and `$user_id`
//! (<https://developer.mixpanel.com/reference/raw-event-export>).
//!
//! The actor is `distinct_id` (Mixpanel's identity). Mixpanel has no session id.

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const MIXPANEL: Source = Source {
    name: "mixpanel",
    title: "a Mixpanel export",
    documented_at: "https://developer.mixpanel.com/reference/raw-event-export",
    signature: &[&["event"], &["properties"]],
    session_key: None,
    default_actors: &[],
    sdk_actors: &[],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let properties = raw.first(&["properties"]).unwrap_or_default();
    let get = |key: &str| format!("json_get_str({properties}, '{key}')");
    Mapping {
        user_id: format!(
            "COALESCE({}, CAST(json_get_int({properties}, 'distinct_id') AS VARCHAR))",
            get("distinct_id")
        ),
        device_id: Some(get("$device_id")),
        event_time: raw.time(
            &format!("json_get_float({properties}, 'time')"),
            EpochUnit::Auto,
        ),
        event_type: raw.coalesce_text(&["event"]),
        session_id: None,
        insert_id: Some(get("$insert_id")),
        event_properties: Some(format!("CAST({properties} AS VARCHAR)")),
        platform: None,
    }
}
