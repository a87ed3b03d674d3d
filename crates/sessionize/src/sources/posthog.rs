//! PostHog: its events export (`uuid`, `event`, `distinct_id`, `timestamp` as ISO-8601 text with
//! an offset, `properties` JSON holding `$session_id`, `$device_id`, `$current_url`;
//! <https://posthog.com/docs/data/events>).
//!
//! The actor is `distinct_id`; the SDK's session key is `$session_id` (a UUIDv7 text), turned into
//! an Int64 by `session_key_id`.

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const POSTHOG: Source = Source {
    name: "posthog",
    title: "a PostHog export",
    documented_at: "https://posthog.com/docs/data/events",
    signature: &[&["uuid"], &["distinct_id"], &["event"], &["timestamp"]],
    session_key: Some("$session_id in properties"),
    default_actors: &[],
    sdk_actors: &[],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let properties = raw.properties(&["properties"]);
    let get = |key: &str| properties.as_ref().map(|p| p.text(key));
    Mapping {
        user_id: raw.coalesce_text(&["distinct_id"]),
        device_id: get("$device_id"),
        event_time: raw.time("\"timestamp\"", EpochUnit::Auto),
        event_type: raw.coalesce_text(&["event"]),
        session_id: get("$session_id").map(|s| format!("session_key_id({s})")),
        insert_id: Some(raw.coalesce_text(&["uuid"])),
        event_properties: properties.as_ref().map(|p| p.json()),
        platform: None,
    }
}
