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
//!
//! Each user's share of the requested events fits in the days covered: the gaps between a user's
//! sessions shrink when the user has many events, so the export holds the number of events asked
//! for (give or take the random budgets and repeats), not fewer. Large exports are made in blocks of
//! users of about [`BLOCK_EVENTS`] events each, shuffled within the block and written as they are
//! made, so memory stays bounded whatever the size.

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
    /// Whether the rows are sorted by user and time (otherwise shuffled within each block).
    pub sorted: bool,
    /// About how many events a block of users holds (default [`BLOCK_EVENTS`]).
    pub block_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            users: 300,
            events: 6_000,
            days: 14,
            seed: 42,
            sorted: false,
            block_events: BLOCK_EVENTS,
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

/// Events per block of users (see the module documentation).
pub const BLOCK_EVENTS: usize = 10_000_000;

/// One event, kept small (the JSON properties are written out only when a batch is made).
#[derive(Debug, Clone)]
struct Row {
    user: Option<u32>,
    device: u32,
    event_type: &'static str,
    time: i64,
    session_id: i64,
    /// Index into [`PAGES`], or `u8::MAX` for the notification's properties.
    page: u8,
    /// Price in cents of a cart or purchase event, 0 for none.
    price_cents: u32,
    insert: u64,
}

impl Row {
    fn event_properties(&self) -> String {
        if self.page == u8::MAX {
            return r#"{"campaign":"weekly"}"#.to_string();
        }
        let page = PAGES[usize::from(self.page)];
        if self.price_cents == 0 {
            format!(r#"{{"page":"{page}"}}"#)
        } else {
            format!(
                r#"{{"page":"{page}","price":{}.{:02}}}"#,
                self.price_cents / 100,
                self.price_cents % 100
            )
        }
    }
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
    let end = START_MICROS + span;
    let anonymous = rng.random_bool(0.03);
    let user = user as u32;
    let who = if anonymous { None } else { Some(user) };
    let mut time = START_MICROS + rng.random_range(0..span / 2);
    // The longest gap between sessions, in hours: 72 when the user's budget fits in the days left
    // easily, shorter for busy users so that their budget fits (a session holds about 6.6 events).
    let sessions_needed = (budget as f64 / 6.6).max(1.0);
    let hours_left = (end - time) as f64 / (60 * MINUTE) as f64;
    let max_hours = ((hours_left / sessions_needed - 1.0) * 1.4).clamp(2.0, 72.0) as i64;
    let mut made = 0;
    while made < budget && time < end {
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
            let page = rng.random_range(0..PAGES.len()) as u8;
            let price_cents = match event_type {
                "add_to_cart" | "purchase" => {
                    rng.random_range(1..200u32) * 100 + rng.random_range(0..100u32)
                }
                _ => 0,
            };
            rows.push(Row {
                user: who,
                device: user,
                event_type,
                time,
                session_id,
                page,
                price_cents,
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
                page: u8::MAX,
                price_cents: 0,
                insert: rng.random(),
            });
            made += 1;
        }
        // The gap to the next session: just over the timeout now and then, else hours to days.
        time += match rng.random_range(0..10) {
            0 => 30 * MINUTE + SECOND,
            _ => rng.random_range(1..max_hours) * 60 * MINUTE + rng.random_range(0..60) * MINUTE,
        };
    }
}

/// Generates the export as record batches of at most `batch_rows` rows.
pub fn generate(config: &Config, batch_rows: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut batches = vec![];
    generate_with(config, batch_rows, |batch| {
        batches.push(batch);
        Ok(())
    })?;
    Ok(batches)
}

/// Generates the export block by block, handing each record batch (at most `batch_rows` rows) to
/// `sink` as soon as it is made.
pub fn generate_with<F>(config: &Config, batch_rows: usize, mut sink: F) -> Result<(), ArrowError>
where
    F: FnMut(RecordBatch) -> Result<(), ArrowError>,
{
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let users = config.users.clamp(1, u32::MAX as usize);
    let per_user = (config.events / users).max(1);
    let user_properties: Vec<String> = (0..users)
        .map(|_| {
            format!(
                r#"{{"plan":"{}","country":"{}"}}"#,
                PLANS[rng.random_range(0..PLANS.len())],
                COUNTRIES[rng.random_range(0..COUNTRIES.len())]
            )
        })
        .collect();
    // Each user's position in the text order of user ids ("user_100000" sorts before "user_20000").
    let mut rank = vec![0u32; if config.sorted { users } else { 0 }];
    if config.sorted {
        let mut order: Vec<u32> = (0..users as u32).collect();
        order.sort_by_cached_key(|&u| format!("user_{u:05}"));
        for (position, &user) in order.iter().enumerate() {
            rank[user as usize] = position as u32;
        }
    }
    let blocks = config
        .events
        .div_ceil(config.block_events.max(1))
        .clamp(1, users);
    let users_per_block = users.div_ceil(blocks);
    for block in 0..blocks {
        let first = block * users_per_block;
        let last = ((block + 1) * users_per_block).min(users);
        let expected = (last - first) * per_user;
        let mut rows = Vec::with_capacity(expected + expected / 10);
        for user in first..last {
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
        if config.sorted {
            // By user id in its text order with anonymous events (no user id) last, then time: what
            // `sessionize --sorted-by user_id,event_time` declares. Blocks hold users
            // in number order, so the order holds across blocks while user numbers have the same
            // number of digits (below 100,000 users).
            rows.sort_by_key(|r| {
                (
                    r.user.is_none(),
                    r.user.map(|u| rank[u as usize]),
                    r.time,
                    r.device,
                )
            });
        } else {
            rows.shuffle(&mut rng);
        }
        for chunk in rows.chunks(batch_rows.max(1)) {
            sink(to_batch(chunk, &user_properties)?)?;
        }
    }
    Ok(())
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
            rows.iter().map(Row::event_properties),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|r| user_properties[r.device as usize].as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| hex_id(r.insert)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|r| PLATFORMS[r.device as usize % PLATFORMS.len()]),
        )),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Generates the export and writes it as one Parquet file (zstd) at `path`; returns the events
/// written.
pub fn write_parquet(config: &Config, path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    write_parquet_files(config, &[path])
}

/// Generates the export and writes it as Parquet files (zstd) at `paths`, batches of 64Ki rows
/// taking turns; returns the events written.
pub fn write_parquet_files(
    config: &Config,
    paths: &[&Path],
) -> Result<usize, Box<dyn std::error::Error>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writers = paths
        .iter()
        .map(|path| -> Result<_, Box<dyn std::error::Error>> {
            Ok(ArrowWriter::try_new(
                File::create(path)?,
                schema(),
                Some(props.clone()),
            )?)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if writers.is_empty() {
        return Err("no output file".into());
    }
    let mut rows = 0;
    let mut turn = 0;
    generate_with(config, 64 * 1024, |batch| {
        rows += batch.num_rows();
        let n = writers.len();
        turn += 1;
        writers[turn % n]
            .write(&batch)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
    })?;
    for writer in writers {
        writer.close()?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

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

    fn rows(config: &Config) -> usize {
        generate(config, 1 << 16)
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    #[test]
    fn busy_users_get_their_events() {
        // 400 events a user on average over 30 days: before the gaps between sessions shrank with
        // the budget, users ran out of days and the export held about half the events asked for.
        let config = Config {
            users: 100,
            events: 40_000,
            days: 30,
            ..Config::default()
        };
        let made = rows(&config);
        assert!(
            (38_000..=43_000).contains(&made),
            "asked for 40,000 events, made {made}"
        );
    }

    #[test]
    fn blocks_cover_every_user() {
        // Four blocks of users (0-2, 3-5, 6-8, 9): every user has events and the unsorted export
        // is shuffled only within each block.
        let config = Config {
            users: 10,
            events: 2_000,
            days: 3,
            block_events: 500,
            sorted: true,
            ..Config::default()
        };
        // One block: sorted by user id, anonymous users' events last.
        let one_block = Config {
            block_events: BLOCK_EVENTS,
            users: 200,
            ..config.clone()
        };
        let batches = generate(&one_block, 100).unwrap();
        let all = datafusion::arrow::compute::concat_batches(&schema(), &batches).unwrap();
        let user_ids = all
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let named: Vec<&str> = user_ids.iter().flatten().collect();
        assert!(named.is_sorted(), "sorted by user id");
        let nulls = user_ids.null_count();
        assert!(nulls > 0, "some anonymous users");
        assert!(
            (all.num_rows() - nulls..all.num_rows()).all(|i| user_ids.is_null(i)),
            "anonymous events last"
        );
        let devices = |config: &Config| -> Vec<i64> {
            let batches = generate(config, 100).unwrap();
            let all = datafusion::arrow::compute::concat_batches(&schema(), &batches).unwrap();
            let column = all.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            column.values().iter().map(|d| d - 100_000_000).collect()
        };
        let sorted = devices(&config);
        let mut users = sorted.clone();
        users.sort();
        users.dedup();
        assert_eq!(users, (0..10).collect::<Vec<i64>>());
        let shuffled = devices(&Config {
            sorted: false,
            ..config
        });
        assert!(!shuffled.is_sorted());
        let first_block = sorted.iter().filter(|d| **d < 3).count();
        assert!(shuffled[..first_block].iter().all(|d| *d < 3));
        assert!(shuffled[first_block..].iter().all(|d| *d >= 3));
    }
}
