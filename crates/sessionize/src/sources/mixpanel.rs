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
    let properties = raw.properties(&["properties"]);
    let read = |f: &dyn Fn(&super::Properties) -> String, null: &str| {
        properties.as_ref().map_or_else(|| null.to_string(), f)
    };
    let text = "CAST(NULL AS VARCHAR)";
    Mapping {
        user_id: read(&|p| p.id("distinct_id"), text),
        device_id: Some(read(&|p| p.text("$device_id"), text)),
        event_time: raw.time(
            &read(&|p| p.number("time"), "CAST(NULL AS DOUBLE)"),
            EpochUnit::Auto,
        ),
        event_type: raw.coalesce_text(&["event"]),
        session_id: None,
        insert_id: Some(read(&|p| p.text("$insert_id"), text)),
        event_properties: properties.as_ref().map(|p| p.json()),
        platform: None,
    }
}
