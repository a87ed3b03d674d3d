//! PostHog: its events export (`uuid`, `event`, `distinct_id`, `timestamp` as ISO-8601 text with
//! an offset, `properties` JSON holding `$session_id`, `$device_id`, `$current_url`;
//! <https://posthog.com/docs/data/events>).
//!
//! An anonymous visitor's `distinct_id` is its `$device_id` until `identify` gives it the user's
//! (<https://posthog.com/docs/product-analytics/identify>), so `user_id` is a `distinct_id` that
//! is not the device's and `device_id` is `$device_id`; the actor is the user id, else the device,
//! and `--stitch device_id=user_id` joins a device's anonymous events to the user it identifies
//! as. The SDK's session key is `$session_id` (a UUIDv7 text the browser keeps across
//! `identify`), turned into an Int64 by `session_key_id`; it belongs to the device, so SDK
//! sessions take the device as the actor (else `distinct_id`, for events without a device).

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const POSTHOG: Source = Source {
    name: "posthog",
    title: "a PostHog export",
    documented_at: "https://posthog.com/docs/data/events",
    signature: &[&["uuid"], &["distinct_id"], &["event"], &["timestamp"]],
    session_key: Some("$session_id in properties"),
    default_actors: &["user_id", "device_id"],
    sdk_actors: &["device_id", "user_id"],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let properties = raw.properties(&["properties"]);
    let get = |key: &str| properties.as_ref().map(|p| p.text(key));
    let distinct = raw.coalesce_text(&["distinct_id"]);
    let device = get("$device_id");
    Mapping {
        user_id: match &device {
            Some(device) => format!(
                "CASE WHEN {distinct} IS NOT DISTINCT FROM {device} THEN NULL ELSE {distinct} END"
            ),
            None => distinct.clone(),
        },
        device_id: device,
        event_time: raw.time("\"timestamp\"", EpochUnit::Auto, "timestamp"),
        event_type: raw.coalesce_text(&["event"]),
        session_id: get("$session_id").map(|s| format!("session_key_id({s})")),
        insert_id: Some(raw.coalesce_text(&["uuid"])),
        event_properties: properties.as_ref().map(|p| p.json()),
        platform: None,
    }
}
