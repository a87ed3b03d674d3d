//! Segment: the warehouse `tracks` / `pages` tables (`anonymous_id`, `user_id`, `event` or `name`,
//! `timestamp`, `id`, `context_*` columns,
//! <https://segment.com/docs/connections/storage/warehouses/schema/>) and Segment's JSON messages
//! (`anonymousId`, `userId`, `event`, `timestamp` as ISO-8601 text, `messageId`, `properties`,
//! `context`, <https://segment.com/docs/connections/spec/common/>).
//!
//! `user_id` is the user id and `device_id` the anonymous id; the actor is the user id, else the
//! anonymous id (the events before a visitor identifies; `--stitch device_id=user_id` attributes
//! them to the user later seen with that anonymous id). Segment has no session id.

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const SEGMENT: Source = Source {
    name: "segment",
    title: "a Segment export",
    documented_at: "https://segment.com/docs/connections/spec/common/",
    signature: &[
        // Server-side calls may carry only a user id.
        &["anonymous_id", "anonymousId", "user_id", "userId"],
        &["timestamp"],
        &["event", "name", "type"],
    ],
    session_key: None,
    default_actors: &["user_id", "device_id"],
    sdk_actors: &[],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    Mapping {
        user_id: raw.coalesce_text(&["user_id", "userId"]),
        device_id: Some(raw.coalesce_text(&["anonymous_id", "anonymousId"])),
        event_time: raw.time(
            &raw.first(&["timestamp"]).unwrap_or_default(),
            EpochUnit::Auto,
            "timestamp",
        ),
        event_type: raw.coalesce_text(&["event", "name", "type"]),
        session_id: None,
        insert_id: Some(raw.coalesce_text(&["message_id", "messageId", "id"])),
        event_properties: raw.properties(&["properties"]).map(|p| p.json()),
        platform: None,
    }
}
