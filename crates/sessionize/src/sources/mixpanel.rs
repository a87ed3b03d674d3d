//! Mixpanel: the raw export API's newline-delimited JSON, one `{"event": ..., "properties": {...}}`
//! per line, the properties holding `time` (epoch seconds; milliseconds in newer projects, told
//! apart by magnitude), `distinct_id`, `$insert_id`, `$device_id` and `$user_id`
//! (<https://developer.mixpanel.com/reference/raw-event-export>).
//!
//! The raw export keeps each event's `distinct_id` as it was sent: the device's (`$device_id`, or
//! `$device:ID` under Simplified ID Merge) until the user is identified, the user's after
//! (<https://docs.mixpanel.com/docs/tracking-methods/id-management/identifying-users-simplified>).
//! So `user_id` is `$user_id`, else a `distinct_id` that is not the device's, and `device_id` is
//! `$device_id` (else the ID of a `$device:` distinct id); the actor is the user id, else the
//! device, and `--stitch device_id=user_id` joins a device's anonymous events to the user it
//! identifies as. Mixpanel has no session id.

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const MIXPANEL: Source = Source {
    name: "mixpanel",
    title: "a Mixpanel export",
    documented_at: "https://developer.mixpanel.com/reference/raw-event-export",
    signature: &[&["event"], &["properties"]],
    session_key: None,
    default_actors: &["user_id", "device_id"],
    sdk_actors: &[],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let properties = raw.properties(&["properties"]);
    let read = |f: &dyn Fn(&super::Properties) -> String, null: &str| {
        properties.as_ref().map_or_else(|| null.to_string(), f)
    };
    let text = "CAST(NULL AS VARCHAR)";
    let distinct = read(&|p| p.id("distinct_id"), text);
    let device = read(&|p| p.text("$device_id"), text);
    Mapping {
        user_id: format!(
            "COALESCE({}, CASE WHEN ({distinct} IS NOT DISTINCT FROM {device}) \
             OR starts_with({distinct}, '$device:') THEN NULL ELSE {distinct} END)",
            read(&|p| p.text("$user_id"), text)
        ),
        device_id: Some(format!(
            "COALESCE({device}, CASE WHEN starts_with({distinct}, '$device:') \
             THEN substr({distinct}, 9) END)"
        )),
        event_time: raw.time(
            &read(&|p| p.time("time"), "CAST(NULL AS DOUBLE)"),
            EpochUnit::Auto,
            "properties.time",
        ),
        event_type: raw.coalesce_text(&["event"]),
        session_id: None,
        insert_id: Some(read(&|p| p.text("$insert_id"), text)),
        event_properties: properties.as_ref().map(|p| p.json()),
        platform: None,
    }
}
