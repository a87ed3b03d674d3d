//! Reproducible Amplitude-style event exports.
//!
//! The same [`Config`] (seed included) always gives the same events, so the sample in `data/`, the
//! tests and the benchmarks can be regenerated exactly. The export has the columns of Amplitude's
//! export: `user_id` (a few nulls), `device_id`, `amplitude_id`, `event_type`, `event_time` (UTC,
//! microseconds), `session_id` (epoch milliseconds of the SDK session's start, -1 for out-of-session
//! events such as notifications), `event_properties` and `user_properties` (JSON text) and
//! `insert_id` (a few repeated, as Amplitude's export repeats events).
//!
//! It deliberately holds the cases sessionization gets wrong: events with equal timestamps, gaps of
//! exactly 30 minutes (which stay in the session) and of 30 minutes and one second (which split),
//! and out-of-session events.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of users.
    pub users: usize,
    /// Approximate number of events in all.
    pub events: usize,
    /// Days covered, starting at 2026-01-05 00:00 UTC.
    pub days: u32,
    /// Seed of the random generator.
    pub seed: u64,
    /// Whether the rows are sorted by user and time (otherwise shuffled).
    pub sorted: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            users: 300,
            events: 6_000,
            days: 14,
            seed: 42,
            sorted: false,
        }
    }
}

/// 2026-01-05 00:00:00 UTC in microseconds.
const START_MICROS: i64 = 1_767_571_200_000_000;
const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;

const PAGES: [&str; 6] = [
    "/home",
    "/search",
    "/product",
    "/cart",
    "/checkout",
    "/account",
];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const COUNTRIES: [&str; 6] = ["US", "DE", "FR", "IN", "BR", "JP"];
const PLATFORMS: [&str; 3] = ["web", "ios", "android"];

/// The schema of the export.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("amplitude_id", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("session_id", DataType::Int64, false),
        Field::new("event_properties", DataType::Utf8, false),
        Field::new("user_properties", DataType::Utf8, false),
        Field::new("insert_id", DataType::Utf8, false),
        Field::new("platform", DataType::Utf8, false),
    ]))
}

#[derive(Debug, Clone)]
struct Row {
    user: Option<usize>,
    device: usize,
    event_type: &'static str,
    time: i64,
    session_id: i64,
    event_properties: String,
    insert: u64,
}

fn hex_id(rng_value: u64) -> String {
    format!("{:016x}", rng_value)
}

/// One user's events.
fn user_events(
    user: usize,
    budget: usize,
    config: &Config,
    rng: &mut ChaCha8Rng,
    rows: &mut Vec<Row>,
) {
    let span = i64::from(config.days) * 24 * 60 * MINUTE;
    let anonymous = rng.random_bool(0.03);
    let who = if anonymous { None } else { Some(user) };
    let mut time = START_MICROS + rng.random_range(0..span / 2);
    let mut made = 0;
    while made < budget && time < START_MICROS + span {
        let session_start = time;
        let session_id = session_start / 1_000;
        let length = rng.random_range(1..=12).min(budget - made);
        for k in 0..length {
            let event_type = if k == 0 {
                "app_open"
            } else {
                [
                    "page_view",
                    "page_view",
                    "page_view",
                    "button_click",
                    "search",
                    "add_to_cart",
                    "purchase",
                ][rng.random_range(0..7)]
            };
            let page = PAGES[rng.random_range(0..PAGES.len())];
            let event_properties = match event_type {
                "add_to_cart" | "purchase" => format!(
                    r#"{{"page":"{page}","price":{}.{:02}}}"#,
                    rng.random_range(1..200),
                    rng.random_range(0..100)
                ),
                _ => format!(r#"{{"page":"{page}"}}"#),
            };
            rows.push(Row {
                user: who,
                device: user,
                event_type,
                time,
                session_id,
                event_properties,
                insert: rng.random(),
            });
            made += 1;
            // The gap to the next event: usually seconds to minutes, sometimes a tie, sometimes
            // exactly the 30-minute timeout.
            time += match rng.random_range(0..100) {
                0..=7 => 0,
                8..=10 => 30 * MINUTE,
                _ => rng.random_range(1..=300) * SECOND + rng.random_range(0..SECOND),
            };
        }
        // Out-of-session events between sessions, as Amplitude records push notifications.
        if rng.random_bool(0.15) {
            rows.push(Row {
                user: who,
                device: user,
                event_type: "notification_received",
                time: time + rng.random_range(1..120) * MINUTE,
                session_id: -1,
                event_properties: r#"{"campaign":"weekly"}"#.to_string(),
                insert: rng.random(),
            });
            made += 1;
        }
        // The gap to the next session: just over the timeout now and then, else hours to days.
        time += match rng.random_range(0..10) {
            0 => 30 * MINUTE + SECOND,
            _ => rng.random_range(1..72) * 60 * MINUTE + rng.random_range(0..60) * MINUTE,
        };
    }
}

/// Generates the export as record batches of at most `batch_rows` rows.
pub fn generate(config: &Config, batch_rows: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let users = config.users.max(1);
    let per_user = (config.events / users).max(1);
    let mut rows = Vec::with_capacity(config.events + config.events / 10);
    for user in 0..users {
        let budget = rng.random_range(1..=per_user * 2);
        user_events(user, budget, config, &mut rng, &mut rows);
    }
    // Amplitude's export can repeat an event: a few rows come twice with the same insert_id.
    let repeats: Vec<Row> = rows
        .iter()
        .filter(|_| rng.random_bool(0.005))
        .cloned()
        .collect();
    rows.extend(repeats);
    let user_properties: Vec<String> = (0..users)
        .map(|_| {
            format!(
                r#"{{"plan":"{}","country":"{}"}}"#,
                PLANS[rng.random_range(0..PLANS.len())],
                COUNTRIES[rng.random_range(0..COUNTRIES.len())]
            )
        })
        .collect();
    if config.sorted {
        rows.sort_by_key(|r| (r.device, r.time));
    } else {
        rows.shuffle(&mut rng);
    }
    rows.chunks(batch_rows.max(1))
        .map(|chunk| to_batch(chunk, &user_properties))
        .collect()
}

fn to_batch(rows: &[Row], user_properties: &[String]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.user.map(|u| format!("user_{u:05}"))),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
            hex_id((r.device as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        }))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| 100_000_000 + r.device as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.event_type),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.time))
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.session_id),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.event_properties.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| user_properties[r.device].as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| hex_id(r.insert)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| PLATFORMS[r.device % PLATFORMS.len()]),
        )),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Generates the export and writes it as one Parquet file (zstd) at `path`.
pub fn write_parquet(config: &Config, path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let batches = generate(config, 64 * 1024)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, schema(), Some(props))?;
    let mut rows = 0;
    for batch in &batches {
        rows += batch.num_rows();
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let config = Config {
            users: 20,
            events: 300,
            ..Config::default()
        };
        let a = generate(&config, 1000).unwrap();
        let b = generate(&config, 1000).unwrap();
        assert_eq!(a, b);
        let other = generate(&Config { seed: 7, ..config }, 1000).unwrap();
        assert_ne!(a, other);
    }
}
