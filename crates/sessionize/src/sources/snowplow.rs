//! Snowplow: atomic events (`domain_userid`, `user_id`, `network_userid`, `derived_tstamp` /
//! `collector_tstamp`, `event_name`, `domain_sessionid`, `domain_sessionidx`, `page_url`;
//! <https://docs.snowplow.io/docs/fundamentals/canonical-event/>).
//!
//! The actor is the user id, else `domain_userid` (the first-party cookie); the time is
//! `derived_tstamp` (Snowplow's clock-corrected time), else `collector_tstamp`; the SDK's session
//! key is `domain_sessionid` (a UUID, turned into an Int64 by `session_key_id`).

use super::{Mapping, Raw, Source};

pub const SNOWPLOW: Source = Source {
    name: "snowplow",
    title: "a Snowplow export",
    documented_at: "https://docs.snowplow.io/docs/fundamentals/canonical-event/",
    signature: &[
        &["domain_userid"],
        &["derived_tstamp", "collector_tstamp"],
        &["event_name", "event"],
    ],
    session_key: Some("domain_sessionid"),
    mapping: Some(mapping),
};

fn mapping(raw: &Raw) -> Mapping {
    let times: Vec<String> = ["derived_tstamp", "collector_tstamp"]
        .iter()
        .filter(|c| raw.has(c))
        .map(|c| format!("event_time(\"{c}\")"))
        .collect();
    Mapping {
        user_id: raw.coalesce_text(&["user_id", "domain_userid"]),
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
