//! Snowplow: atomic events (`domain_userid`, `user_id`, `network_userid`, `derived_tstamp` /
//! `collector_tstamp`, `event_name`, `domain_sessionid`, `domain_sessionidx`, `page_url`;
//! <https://docs.snowplow.io/docs/fundamentals/canonical-event/>).
//!
//! `user_id` is the user id and `device_id` the `domain_userid` (the first-party cookie); the
//! actor is the user id, else the `domain_userid`; the time is
//! `derived_tstamp` (Snowplow's clock-corrected time), else `collector_tstamp`; the SDK's session
//! key is `domain_sessionid` (a UUID, turned into an Int64 by `session_key_id`).

use super::{Mapping, Raw, Source};
use crate::scalar::EpochUnit;

pub const SNOWPLOW: Source = Source {
    name: "snowplow",
    title: "a Snowplow export",
    documented_at: "https://docs.snowplow.io/docs/fundamentals/canonical-event/",
    signature: &[
        &["domain_userid", "user_id", "network_userid"],
        &["derived_tstamp", "collector_tstamp"],
        &["event_name", "event"],
    ],
    session_key: Some("domain_sessionid"),
    default_actors: &["user_id", "device_id"],
    sdk_actors: &["device_id"],
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let times: Vec<String> = ["derived_tstamp", "collector_tstamp"]
        .iter()
        .filter(|c| raw.has(c))
        .map(|c| raw.time(&format!("\"{c}\""), EpochUnit::Auto, c))
        .collect();
    Mapping {
        user_id: raw.coalesce_text(&["user_id"]),
        device_id: Some(raw.coalesce_text(&["domain_userid"])),
        event_time: if times.len() == 1 {
            times[0].clone()
        } else {
            format!("COALESCE({})", times.join(", "))
        },
        event_type: raw.coalesce_text(&["event_name", "event"]),
        session_id: raw
            .first(&["domain_sessionid"])
            .map(|s| format!("session_key_id({s})")),
        insert_id: raw
            .first(&["event_id"])
            .map(|e| format!("CAST({e} AS VARCHAR)")),
        event_properties: None,
        platform: raw
            .first(&["platform"])
            .map(|p| format!("CAST({p} AS VARCHAR)")),
    }
}
