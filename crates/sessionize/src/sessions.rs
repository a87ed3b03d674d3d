//! The sessions table: one row per session, with the columns of Fivetran's dbt model
//! `amplitude__sessions`, and events annotated with their session.
//!
//! Both are built as SQL over a registered events table, with the project's aggregate functions
//! (`session_list`) doing the sessionization, so they follow the one rule of [`crate::rules`]. The SQL
//! is returned by [`sessions_sql`] / [`annotate_sql`] so users can read and run it.

use std::fmt::Write as _;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::{Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

/// CleverTap's system events that never count as activity (`--exclude-preset clevertap`).
pub const CLEVERTAP_EXCLUDED: [&str; 9] = [
    "App Installed",
    "App Uninstalled",
    "Notification Sent",
    "Notification Clicked",
    "Notification Viewed",
    "UTM Visited",
    "Identity Set",
    "Identity Reset",
    "Identity Error",
];

/// The events of a named exclusion preset.
pub fn exclude_preset(name: &str) -> Result<&'static [&'static str]> {
    match name.to_ascii_lowercase().as_str() {
        "clevertap" => Ok(&CLEVERTAP_EXCLUDED),
        other => plan_err!("unknown exclusion preset '{other}': the known preset is clevertap"),
    }
}

/// The dbt_utils token for nulls in `generate_surrogate_key`.
pub const DBT_NULL_TOKEN: &str = "_dbt_utils_surrogate_key_null_";

/// Where sessions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionSource {
    /// Derived from event times by the project's rule (timeout, restarts, excluded events).
    #[default]
    Derived,
    /// As recorded by the SDK in a session id column; -1 and null are out of session.
    Sdk,
    /// Exactly as the dbt model `amplitude__sessions` computes them (see [`SessionsOptions`]).
    DbtCompat,
}

/// How to build the sessions table.
#[derive(Debug, Clone)]
pub struct SessionsOptions {
    pub source: SessionSource,
    /// The actor column (default `user_id`).
    pub actor: String,
    /// The event time column (default `event_time`).
    pub time: String,
    /// The event type column (default `event_type`).
    pub event: String,
    /// The SDK's session id column (default `session_id`).
    pub session_id_col: String,
    /// The insert id column for de-duplication (default: `insert_id`, `_insert_id` or `$insert_id`,
    /// whichever exists).
    pub insert_id_col: Option<String>,
    /// The event id column of dbt's de-duplication (default: `event_id`, as Amplitude exports it,
    /// or `id`, as Fivetran's `event` table has it, whichever exists).
    pub event_id_col: Option<String>,
    /// Inactivity timeout (derived sessions).
    pub timeout: Duration,
    /// Optional maximum session length (derived sessions).
    pub max_length: Option<Duration>,
    /// Event types that always start a new session (derived sessions).
    pub restart_events: Vec<String>,
    /// Event types that are not activity: left out of sessions, never extending one.
    pub exclude_events: Vec<String>,
    /// Per-platform timeouts: the platform column and (platform, timeout) pairs. Sessions are formed
    /// per actor and platform; platforms not listed use `timeout`.
    pub timeout_by: Option<(String, Vec<(String, Duration)>)>,
    /// Drop repeated events with the same insert id (derived and SDK sessions).
    pub dedup_insert_id: bool,
    /// IANA time zone of the `*_day` columns (default UTC).
    pub time_zone: String,
    /// The `source_relation` column's value (default empty, as in the dbt package).
    pub source_relation: String,
    /// Inclusive range of event days (dbt compat), `YYYY-MM-DD`; the CLI gives dbt_amplitude's
    /// defaults ([`DBT_DATE_RANGE_START`] to the current UTC date).
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

impl Default for SessionsOptions {
    fn default() -> Self {
        Self {
            source: SessionSource::Derived,
            actor: "user_id".into(),
            time: "event_time".into(),
            event: "event_type".into(),
            session_id_col: "session_id".into(),
            insert_id_col: None,
            event_id_col: None,
            timeout: Duration::from_secs(30 * 60),
            max_length: None,
            restart_events: vec![],
            exclude_events: vec![],
            timeout_by: None,
            dedup_insert_id: false,
            time_zone: "UTC".into(),
            source_relation: String::new(),
            date_from: None,
            date_to: None,
        }
    }
}

/// The names of the sessions table's columns, in order.
pub const SESSION_COLUMNS: [&str; 16] = [
    "source_relation",
    "unique_session_id",
    "user_id",
    "events_per_session",
    "session_started_at",
    "session_ended_at",
    "session_length_in_minutes",
    "session_started_at_day",
    "session_ended_at_day",
    "user_session_number",
    "last_session_ended_at",
    "last_session_ended_at_day",
    "is_first_user_session",
    "minutes_in_between_sessions",
    "session_id",
    "session_length_seconds",
];

/// Parquet writer properties for the sessions table.
///
/// Columns whose values are (nearly) all distinct skip dictionary encoding, which would be tried
/// and abandoned in every row group. `unique_session_id` (distinct values in no order) and
/// `source_relation` (one value) have no statistics, since min/max can prune nothing there, and
/// profiling showed the string comparisons behind them among the costliest parts of writing the
/// table. The days, user ids, numbers and flags keep dictionaries and statistics, so readers can
/// still prune by day or user.
pub fn parquet_properties() -> datafusion::parquet::file::properties::WriterProperties {
    use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
    use datafusion::parquet::schema::types::ColumnPath;
    let mut builder = WriterProperties::builder();
    for column in [
        "unique_session_id",
        "session_id",
        "session_started_at",
        "session_ended_at",
        "last_session_ended_at",
        "session_length_in_minutes",
        "minutes_in_between_sessions",
        "session_length_seconds",
    ] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    // Row groups of 256Ki rows: the writer holds a row group's encoded pages until it is complete,
    // so smaller groups keep memory down (DuckDB writes groups of about 120K rows).
    builder = builder.set_max_row_group_row_count(Some(256 * 1024));
    for column in ["unique_session_id", "source_relation"] {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    builder.build()
}

/// Parquet writer properties for the data files of a Delta sessions table: those of
/// [`parquet_properties`], Snappy-compressed as delta-rs writes, except where Snappy saves little.
///
/// The three timestamps and `session_id` (milliseconds) are `DELTA_BINARY_PACKED` (each value
/// stored as its difference from the previous row's, bit-packed): consecutive sessions are an
/// actor's, then the next actor's, so in a day partition the differences fit in about 37 bits
/// instead of 64, where Snappy saved only 9–13% on them plain. They, and the numbers, days and
/// flags (dictionary-encoded, where Snappy saved 0–1%), are left uncompressed;
/// `unique_session_id`, `user_id`, and the lengths and gaps in minutes or seconds (mostly zeros)
/// stay Snappy-compressed (it halves them or better). Measured on the 782,670 sessions of a 1%
/// delivery's day at 100M events (2026-12-01): 41.8 MB → 34.9 MB; the whole 100M table 1.03 GB →
/// 0.88 GB. The rebuild and the delivery's `--into` run each took about 7% less time (the writer
/// spent a third of its time in Snappy), within this VM's noise. Every reader of Delta tables
/// reads both encodings (Spark, delta-rs, DuckDB, Polars, pyarrow).
pub fn delta_table_properties() -> datafusion::parquet::file::properties::WriterProperties {
    use datafusion::parquet::basic::{Compression, Encoding};
    use datafusion::parquet::schema::types::ColumnPath;
    let mut builder = parquet_properties()
        .into_builder()
        .set_compression(Compression::SNAPPY);
    for column in [
        "session_started_at",
        "session_ended_at",
        "last_session_ended_at",
        "session_id",
    ] {
        builder = builder
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED)
            .set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    for column in [
        "source_relation",
        "events_per_session",
        "session_ended_at_day",
        "user_session_number",
        "last_session_ended_at_day",
        "is_first_user_session",
    ] {
        builder =
            builder.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    builder.build()
}

/// A SQL identifier, quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL interval literal of exactly `d`.
pub fn interval(d: Duration) -> String {
    format!(
        "INTERVAL '{} seconds {} nanoseconds'",
        d.as_secs(),
        d.subsec_nanos()
    )
}

pub(crate) fn string_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| literal(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest timeout or session length accepted: past it a timeout is no longer a gap between
/// two events of one visit, and times in nanoseconds would overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A human duration (`30m`, `1h30m`, `90s`; humantime's syntax), named `what` in errors: positive,
/// at most 366 days, and in units of fixed length (humantime reads months and years as 30.44 and
/// 365.25 days, which no calendar month or year is).
pub fn parse_duration(what: &str, text: &str) -> std::result::Result<Duration, String> {
    let units = text
        .split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
        .filter(|u| !u.is_empty());
    for unit in units {
        if matches!(unit, "M" | "month" | "months" | "y" | "year" | "years") {
            return Err(format!(
                "{what} '{text}' counts in {unit}, which have no fixed length: give days or \
                 weeks, such as 30d"
            ));
        }
    }
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{what} '{text}' is not a duration ({e}); use for example 20m, 1h30m or 90s")
    })?;
    if duration.is_zero() {
        return Err(format!("{what} '{text}' must be positive"));
    }
    if duration > MAX_DURATION {
        return Err(format!(
            "{what} '{text}' is longer than the longest accepted, 366 days"
        ));
    }
    Ok(duration)
}

/// Checks that `column` exists in `schema`; the message names the column, lists the columns found
/// and names the flag that maps it.
pub fn require_column<'a>(schema: &'a Schema, column: &str, flag: &str) -> Result<&'a DataType> {
    require_mapped_column(schema, column, &format!("{flag} COLUMN"))
}

/// Checks that the actor column `column` exists (`how` maps it) and holds values an actor can
/// be (text, numbers, ...: not lists or structs); returns its type.
pub(crate) fn require_actor<'a>(
    schema: &'a Schema,
    column: &str,
    how: &str,
) -> Result<&'a DataType> {
    let found = require_mapped_column(schema, column, how)?;
    if found.is_nested() {
        return plan_err!(
            "the actor column '{column}' holds {found}, which cannot identify an actor: use a text \
             or integer column (--actor), or take a field out of it in SQL"
        );
    }
    Ok(found)
}

/// Checks that the SDK's session id column `column` exists (`how` maps it) and holds integers.
pub(crate) fn require_session_id(schema: &Schema, column: &str, how: &str) -> Result<()> {
    let found = require_mapped_column(schema, column, how)?;
    if found.is_integer() || *found == DataType::Null {
        return Ok(());
    }
    plan_err!(
        "the session id column '{column}' holds {found}, not integers: SDK sessions are keyed by \
         an integer id (text keys such as UUIDs become integers with session_key_id({column}), \
         which --source posthog and --source snowplow apply)"
    )
}

/// [`require_column`] where `how` says how the column is mapped (a flag, or a key of a spec).
pub(crate) fn require_mapped_column<'a>(
    schema: &'a Schema,
    column: &str,
    how: &str,
) -> Result<&'a DataType> {
    match schema.field_with_name(column) {
        Ok(field) => Ok(field.data_type()),
        Err(_) => {
            let found: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let looks_like = crate::sources::resembles(schema)
                .map(|s| {
                    format!(
                        " (the input looks like {}: try --source {})",
                        s.title, s.name
                    )
                })
                .unwrap_or_default();
            plan_err!(
                "the events have no column '{column}' (columns found: {}); map it with {how}{looks_like}",
                found.join(", ")
            )
        }
    }
}

/// The timestamp unit of the time column; anything else is an error naming the column and type.
pub(crate) fn time_unit(schema: &Schema, options: &SessionsOptions) -> Result<(TimeUnit, bool)> {
    match require_column(schema, &options.time, "--time")? {
        DataType::Timestamp(unit, tz) => Ok((*unit, tz.is_some())),
        other => plan_err!(
            "the time column '{}' must be a timestamp, but it is {other}; convert it in SQL with \
             to_timestamp(...) and pass the result, or map another column with --time",
            options.time
        ),
    }
}

fn units_per_second(unit: TimeUnit) -> i64 {
    crate::rules::units_per_second(unit)
}

/// The SQL of the `*_day` column for timestamp expression `ts`.
fn day(ts: &str, tz_aware: bool, time_zone: &str) -> String {
    if time_zone.eq_ignore_ascii_case("UTC") {
        format!("CAST({ts} AS DATE)")
    } else {
        let aware = if tz_aware {
            ts.to_string()
        } else {
            format!("({ts} AT TIME ZONE 'UTC')")
        };
        format!(
            "CAST(to_local_time({aware} AT TIME ZONE {}) AS DATE)",
            literal(time_zone)
        )
    }
}

/// The UTC day of `ts` as a DATE, by integer arithmetic (see [`crate::scalar`]).
fn utc_day(ts: &str) -> String {
    format!("utc_day({ts})")
}

/// Whether a timestamp type's zone is UTC or absent, so that its raw values are UTC instants and
/// [`utc_day`] gives the same day as a cast.
pub(crate) fn is_utc_or_naive(data_type: &DataType) -> bool {
    match data_type {
        DataType::Timestamp(_, None) => true,
        DataType::Timestamp(_, Some(tz)) => {
            matches!(tz.as_ref(), "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
        }
        _ => false,
    }
}

/// The events of `table`, every column, with `__sessionize_first`: whether the event is the first
/// of its insert id (`insert_id`, an expression over `table`; events without one are all first)
/// in the order `order` (an `ORDER BY` list). `--dedup insert_id` orders copies by time, then
/// actor, then event type, then by [`dedup_ties`], so that which copy is kept never depends on the
/// order of the rows (an insert id seen under two actors at one time is kept under the first
/// actor, in every run); `annotate` and `sessions` keep the same copy.
///
/// Only the copies of ids seen more than once are ranked, by a window over them alone: ranked
/// over every event, one partition per insert id, the 10M benchmark export took 46 s in
/// `sessions` (2.6 s without `--dedup`) and 77 s and 6.9 GB in `annotate` (4 s without). The
/// repeated ids are found by a 63-bit hash of the id (`session_key_id`), not the text: grouping
/// 10M distinct ids by an integer takes 1.2 s, by the text 3-5 s and 5 GB. Ids that share a hash
/// without being equal are only ranked needlessly: the ranking is by the id itself, so each is
/// still first among its own copies. (`session_key_id` of an empty id is null: such ids get 0.)
/// The joins have the repeated ids on the left, which a hash join builds its table from: as `NOT
/// EXISTS` / `EXISTS` they built it from every event (3.9 GB, where this takes 1.2).
fn with_first_copies(table: &str, insert_id: &str, order: &str) -> String {
    format!(
        "(SELECT * EXCLUDE (__sessionize_key) FROM ( \
           WITH keyed AS (SELECT *, coalesce(session_key_id(CAST({insert_id} AS VARCHAR)), \
             CASE WHEN {insert_id} IS NOT NULL THEN 0 END) AS __sessionize_key FROM {table}), \
           repeated AS (SELECT __sessionize_key FROM keyed WHERE __sessionize_key IS NOT NULL \
             GROUP BY __sessionize_key HAVING count(*) > 1) \
           SELECT k.*, true AS __sessionize_first FROM repeated r RIGHT ANTI JOIN keyed k \
             ON r.__sessionize_key = k.__sessionize_key \
           UNION ALL \
           SELECT * EXCLUDE (__sessionize_rank), __sessionize_rank = 1 AS __sessionize_first \
           FROM (SELECT *, row_number() OVER (PARTITION BY {insert_id} ORDER BY {order}) \
             AS __sessionize_rank FROM (SELECT k.* FROM repeated r RIGHT SEMI JOIN keyed k \
             ON r.__sessionize_key = k.__sessionize_key))))"
    )
}

/// What `--dedup insert_id` ranks copies equal in time, actor and event type by: the other
/// columns the sessions read (the SDK session id, `--timeout-by`'s platform), as (the name the
/// sessions SQL gives it, its value over the input).
fn dedup_ties(schema: &Schema, options: &SessionsOptions) -> Vec<(&'static str, String)> {
    let mut ties = vec![];
    if options.source != SessionSource::Derived
        && schema.field_with_name(&options.session_id_col).is_ok()
    {
        ties.push((
            "session_id",
            format!("CAST({} AS BIGINT)", ident(&options.session_id_col)),
        ));
    }
    if let Some((platform, _)) = &options.timeout_by
        && schema.field_with_name(platform).is_ok()
    {
        ties.push(("platform", format!("CAST({} AS VARCHAR)", ident(platform))));
    }
    ties
}

/// Whether an event (of event type expression `event`) restarts a session.
pub(crate) fn restart_condition(event: &str, options: &SessionsOptions) -> String {
    if options.restart_events.is_empty() {
        "false".to_string()
    } else {
        format!(
            "COALESCE(CAST({event} AS VARCHAR) IN ({}), false)",
            string_list(&options.restart_events)
        )
    }
}

/// The condition that an event is activity, not one of the excluded (inactive) event types.
pub(crate) fn activity_condition(event: &str, options: &SessionsOptions) -> Option<String> {
    (!options.exclude_events.is_empty()).then(|| {
        format!(
            "({event} IS NULL OR CAST({event} AS VARCHAR) NOT IN ({}))",
            string_list(&options.exclude_events)
        )
    })
}

/// Checks that `day` is a day written `YYYY-MM-DD`; `what` names the option in the message.
pub fn check_day(what: &str, day: &str) -> Result<()> {
    let parts: Vec<&str> = day.split('-').collect();
    let number = |i: usize| {
        parts
            .get(i)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (year, month, day_of_month) = (number(0), number(1), number(2));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    let ok = parts.len() == 3
        && parts[0].len() == 4
        && parts.iter().all(|p| p.parse::<u32>().is_ok())
        && (1..=days).contains(&day_of_month);
    let shaped = parts.len() == 3
        && parts[0].len() == 4
        && parts.iter().all(|p| p.parse::<u32>().is_ok())
        && days > 0;
    if ok {
        Ok(())
    } else if shaped {
        plan_err!(
            "{what} got '{day}', which is not a day of the calendar: that month has {days} days"
        )
    } else {
        plan_err!("{what} expects a day as YYYY-MM-DD, but got '{day}'")
    }
}

/// Checks the time zone name.
pub fn check_time_zone(time_zone: &str) -> Result<()> {
    use datafusion::arrow::array::timezone::Tz;
    match time_zone.parse::<Tz>() {
        Ok(_) => Ok(()),
        Err(_) => plan_err!(
            "unknown time zone '{time_zone}': use an IANA name such as UTC, Europe/Berlin or America/New_York"
        ),
    }
}

/// A Boolean column of events that take part only in the ranking of an insert id's copies
/// (`--dedup insert_id`, `--compat dbt`), not in sessions: an event where it is true can make a
/// later copy a duplicate, and is then left out. (An incremental run's held copies of the insert
/// ids it recomputes, outside the events it recomputes: see `crate::incremental`.)
pub const RANKED_ONLY: &str = "__sessionize_ranked_only";

/// The columns the sessions SQL of `options` reads only as text (`CAST(... AS VARCHAR)`), among
/// those `schema` has: the actor, the event type, the insert id, the event id and `device_id`
/// and `amplitude_id` of `--compat dbt`, the platform of `--timeout-by`.
pub(crate) fn text_columns(schema: &Schema, options: &SessionsOptions) -> Vec<String> {
    let mut columns = vec![options.actor.clone(), options.event.clone()];
    if let Ok(Some(insert_id)) = ranked_insert_id(schema, options) {
        columns.push(insert_id);
    }
    if options.source == SessionSource::DbtCompat {
        columns.extend(event_id_column(schema, options).ok());
        columns.extend(["device_id".to_string(), "amplitude_id".to_string()]);
    }
    if let Some((platform, _)) = &options.timeout_by {
        columns.push(platform.clone());
    }
    columns
}

/// The insert id column whose copies the sessions of `options` rank across actors (the first
/// copy is kept, whichever actor it is under): `--dedup insert_id`'s and `--compat dbt`'s; `None`
/// in the other modes. Errors: as [`sessions_sql`], a missing insert id column.
pub(crate) fn ranked_insert_id(
    schema: &Schema,
    options: &SessionsOptions,
) -> Result<Option<String>> {
    if options.source == SessionSource::DbtCompat || options.dedup_insert_id {
        insert_id_column(schema, options).map(Some)
    } else {
        Ok(None)
    }
}

fn insert_id_column(schema: &Schema, options: &SessionsOptions) -> Result<String> {
    if let Some(col) = &options.insert_id_col {
        require_column(schema, col, "--insert-id-col")?;
        return Ok(col.clone());
    }
    for candidate in ["insert_id", "_insert_id", "$insert_id"] {
        if schema.field_with_name(candidate).is_ok() {
            return Ok(candidate.to_string());
        }
    }
    require_column(schema, "insert_id", "--insert-id-col").map(|_| "insert_id".to_string())
}

/// The SQL of the events that take part in sessions, as a CTE body selecting `user_id`,
/// `event_time`, `event_type`, `restart` and, when needed, `session_id` and `platform`.
fn events_cte(table: &str, schema: &Schema, options: &SessionsOptions) -> Result<String> {
    let actor = ident(&options.actor);
    let time = ident(&options.time);
    require_actor(schema, &options.actor, "--actor COLUMN")?;
    require_column(schema, &options.event, "--event")?;
    let event = ident(&options.event);
    let mut select = format!(
        "SELECT CAST({actor} AS VARCHAR) AS user_id, {time} AS event_time, \
         CAST({event} AS VARCHAR) AS event_type"
    );
    let restart = restart_condition(&event, options);
    write!(select, ", {restart} AS restart").ok();
    if options.source != SessionSource::Derived {
        require_session_id(schema, &options.session_id_col, "--session-id-col COLUMN")?;
        write!(
            select,
            ", CAST({} AS BIGINT) AS session_id",
            ident(&options.session_id_col)
        )
        .ok();
    }
    if let Some((platform, _)) = &options.timeout_by {
        require_column(schema, platform, "--timeout-by")?;
        write!(select, ", CAST({} AS VARCHAR) AS platform", ident(platform)).ok();
    }
    let mut conditions: Vec<String> = vec![];
    match options.source {
        SessionSource::Derived => {
            conditions.push(format!("{actor} IS NOT NULL"));
            conditions.push(format!("{time} IS NOT NULL"));
        }
        SessionSource::Sdk => {
            let sid = ident(&options.session_id_col);
            conditions.push(format!("{time} IS NOT NULL"));
            conditions.push(format!("{sid} IS NOT NULL AND {sid} <> -1"));
        }
        SessionSource::DbtCompat => {
            let event_day = day(&time, false, "UTC");
            if let Some(from) = &options.date_from {
                conditions.push(format!("{event_day} >= DATE {}", literal(from)));
            }
            if let Some(to) = &options.date_to {
                conditions.push(format!("{event_day} <= DATE {}", literal(to)));
            }
        }
    }
    if options.source != SessionSource::DbtCompat {
        conditions.extend(activity_condition(&event, options));
    }
    // Events only ranked (see [`RANKED_ONLY`]): among the copies of their insert ids, then left
    // out.
    let ranked_only = schema
        .field_with_name(RANKED_ONLY)
        .is_ok_and(|f| f.data_type() == &DataType::Boolean);
    let dedup = match options.source {
        SessionSource::DbtCompat => Some(dbt_dedup(schema, options)?),
        _ if options.dedup_insert_id => {
            let insert_id = ident(&insert_id_column(schema, options)?);
            // Copies equal in time, actor and event type are ranked by the other columns the
            // sessions read, so that which is kept never depends on the rows' order.
            let ties: Vec<&str> = dedup_ties(schema, options)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            return Ok(first_copies(
                &select,
                &insert_id,
                table,
                &conditions,
                &ties,
                ranked_only,
            ));
        }
        _ => None,
    };
    if ranked_only && dedup.is_none() {
        conditions.push(format!("NOT {}", ident(RANKED_ONLY)));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Ok(match dedup {
        None => format!("{select} FROM {table}{filter}"),
        Some(keep) if ranked_only => format!(
            "SELECT * EXCLUDE (keep, ranked_only) FROM ({select}, {keep} AS keep, {} AS ranked_only \
             FROM {table}{filter}) WHERE keep AND NOT ranked_only",
            ident(RANKED_ONLY)
        ),
        Some(keep) => format!(
            "SELECT * EXCLUDE (keep) FROM ({select}, {keep} AS keep FROM {table}{filter}) WHERE keep"
        ),
    })
}

/// `--dedup insert_id`'s events: of the events `{select} FROM {table} WHERE {conditions}`, those
/// without an insert id, and of each insert id's copies the first by time, then actor and event
/// type, by [`with_first_copies`]. With `ranked_only` (see [`RANKED_ONLY`]), those events are
/// ranked and then left out.
fn first_copies(
    select: &str,
    insert_id: &str,
    table: &str,
    conditions: &[String],
    ties: &[&str],
    ranked_only: bool,
) -> String {
    let ties: String = ties
        .iter()
        .map(|c| format!(", {c} ASC NULLS LAST"))
        .collect();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let (flag, excluded, kept) = if ranked_only {
        (
            format!(", {} AS __sessionize_ranked_only", ident(RANKED_ONLY)),
            ", __sessionize_ranked_only",
            " AND NOT __sessionize_ranked_only",
        )
    } else {
        (String::new(), "", "")
    };
    let copies = format!(
        "({select}, CAST({insert_id} AS VARCHAR) AS __sessionize_id{flag} FROM {table}{filter})"
    );
    let order = format!("event_time, user_id ASC NULLS LAST, event_type ASC NULLS LAST{ties}");
    format!(
        "SELECT * EXCLUDE (__sessionize_id, __sessionize_first{excluded}) FROM {} \
         WHERE __sessionize_first{kept}",
        with_first_copies(&copies, "__sessionize_id", &order)
    )
}

/// The first day of dbt_amplitude's default date window (its `amplitude__date_range_start`).
pub const DBT_DATE_RANGE_START: &str = "2020-01-01";

/// The event id column of dbt's de-duplication (see [`SessionsOptions::event_id_col`]).
fn event_id_column(schema: &Schema, options: &SessionsOptions) -> Result<String> {
    if let Some(col) = &options.event_id_col {
        require_column(schema, col, "--event-id-col")?;
        return Ok(col.clone());
    }
    for candidate in ["event_id", "id"] {
        if schema.field_with_name(candidate).is_ok() {
            return Ok(candidate.to_string());
        }
    }
    require_column(schema, "event_id", "--event-id-col").map(|_| "event_id".to_string())
}

/// dbt's de-duplication, as dbt_amplitude's `event_data` CTE: an event with an insert id
/// (`_insert_id`, `$insert_id` or `insert_id`) is ranked among the events with that insert id;
/// one without, among every event (with or without an insert id) of the same event id, device id,
/// client event time and `amplitude_user_id` (the user id, else `amplitude_id`; those of these
/// columns the export has); the first by latest `client_upload_time` is kept. Ties, and exports
/// without `client_upload_time`, keep the earliest event time, then the first actor, event type
/// and SDK session id, so the sessions never depend on the order of the rows. (dbt orders by
/// `client_upload_time desc`, whose nulls come last on BigQuery and Databricks, first on
/// Snowflake, Redshift and Postgres: here they come last.)
fn dbt_dedup(schema: &Schema, options: &SessionsOptions) -> Result<String> {
    let insert_id = ident(&insert_id_column(schema, options)?);
    let mut key = vec![format!(
        "CAST({} AS VARCHAR)",
        ident(&event_id_column(schema, options)?)
    )];
    for column in ["device_id", "client_event_time"] {
        if schema.field_with_name(column).is_ok() {
            key.push(format!("CAST({} AS VARCHAR)", ident(column)));
        }
    }
    let user = format!("CAST({} AS VARCHAR)", ident(&options.actor));
    key.push(if schema.field_with_name("amplitude_id").is_ok() {
        format!("COALESCE({user}, CAST(\"amplitude_id\" AS VARCHAR))")
    } else {
        user
    });
    let mut order = vec![];
    if schema.field_with_name("client_upload_time").is_ok() {
        order.push("\"client_upload_time\" DESC NULLS LAST".to_string());
    }
    order.push(format!("{} ASC NULLS LAST", ident(&options.time)));
    // An insert id under two actors at one time (a device reset, a replayed upload): the first
    // actor's copy, in every run.
    order.push(format!(
        "CAST({} AS VARCHAR) ASC NULLS LAST",
        ident(&options.actor)
    ));
    order.push(format!("{} ASC NULLS LAST", ident(&options.event)));
    if schema.field_with_name(&options.session_id_col).is_ok() {
        order.push(format!("{} ASC NULLS LAST", ident(&options.session_id_col)));
    }
    // Then a copy with an insert id before one without: an event without one is ranked among
    // the copies of its event id, device, time and user, with or without an insert id, while one
    // with an insert id is ranked among that id's copies only; so that the two agree whatever
    // the rows' order, the one with the id ranks first.
    order.push(format!("CAST({insert_id} AS VARCHAR) ASC NULLS LAST"));
    let order = order.join(", ");
    Ok(format!(
        "CASE WHEN {insert_id} IS NOT NULL \
         THEN row_number() OVER (PARTITION BY CAST({insert_id} AS VARCHAR) ORDER BY {order}) \
         ELSE row_number() OVER (PARTITION BY {} ORDER BY {order}) END = 1",
        key.join(", "),
    ))
}

/// The parts of `--timeout-by`: for each listed platform the condition on `platform` (text SQL)
/// that selects it and its timeout, then every other platform (null included) with `default`.
/// A zero timeout is an error naming the platform.
pub(crate) fn platform_timeouts(
    platform: &str,
    platforms: &[(String, Duration)],
    default: Duration,
) -> Result<Vec<(String, Duration)>> {
    let mut parts = vec![];
    for (name, timeout) in platforms {
        if timeout.is_zero() {
            return plan_err!("the timeout for platform '{name}' must be positive");
        }
        parts.push((format!("{platform} = {}", literal(name)), *timeout));
    }
    let listed: Vec<String> = platforms.iter().map(|(p, _)| p.clone()).collect();
    parts.push((
        format!(
            "({platform} IS NULL OR {platform} NOT IN ({}))",
            string_list(&listed)
        ),
        default,
    ));
    Ok(parts)
}

/// The SQL that builds the sessions table from `table`, whose schema is `schema`.
pub fn sessions_sql(table: &str, schema: &Schema, options: &SessionsOptions) -> Result<String> {
    sessions_sql_with(table, schema, options, None)
}

/// [`sessions_sql`] for events that continue sessions already numbered: the events of `table`
/// start, for each actor, at the start of a session already in a sessions table, and the scalar
/// function `continuation(user_id)`, a struct of `number_offset` (BIGINT) and
/// `previous_ended_at` (a timestamp), gives per actor how many sessions came before that one and
/// when the last of them ended (0 and null for an actor without sessions before).
/// `continuation` is a plain lower-case SQL name. Where each actor's events of `table` begin at a
/// session the full table has, right after the continuation's, the rows are those the full table
/// has for these sessions (otherwise they are the sessions of these events alone, numbered after
/// the continuation). (The incremental runs of [`crate::incremental`], which register the
/// function.)
///
/// Errors: as [`sessions_sql`]; modes other than derived sessions with one timeout, whose session
/// numbers are not formed in time order per actor; a `continuation` that is not a plain name.
///
/// With `first_column`, the rows have one more column of that name: whether the row is the first
/// session of its actor in `table` (the one the continuation's previous end precedes).
pub fn sessions_sql_continued(
    table: &str,
    schema: &Schema,
    options: &SessionsOptions,
    continuation: &str,
    first_column: Option<&str>,
) -> Result<String> {
    if options.source != SessionSource::Derived || options.timeout_by.is_some() {
        return plan_err!("only derived sessions with one timeout continue numbered sessions");
    }
    let plain = continuation.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && continuation
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return plan_err!("a continuation's function is named by a plain lower-case SQL name");
    }
    sessions_sql_with(table, schema, options, Some((continuation, first_column)))
}

fn sessions_sql_with(
    table: &str,
    schema: &Schema,
    options: &SessionsOptions,
    continuation: Option<(&str, Option<&str>)>,
) -> Result<String> {
    check_time_zone(&options.time_zone)?;
    let (unit, tz_aware) = time_unit(schema, options)?;
    let table = ident(table);
    let events = events_cte(&table, schema, options)?;
    let timeout = interval(options.timeout);
    let max_length = options
        .max_length
        .map(|m| format!(", {}", interval(m)))
        .unwrap_or_default();
    if options.timeout.is_zero() {
        return plan_err!("the timeout must be positive");
    }
    let list = |timeout: &str| format!("session_list(event_time, {timeout}, restart{max_length})");

    let sessions = match options.source {
        SessionSource::Derived => match &options.timeout_by {
            None => format!(
                "SELECT user_id, CAST(NULL AS VARCHAR) AS platform, unnest({}) AS s FROM ev GROUP BY user_id",
                list(&timeout)
            ),
            Some((_, platforms)) => platform_timeouts("platform", platforms, options.timeout)?
                .into_iter()
                .map(|(condition, timeout)| {
                    format!(
                        "SELECT user_id, platform, unnest({}) AS s FROM ev WHERE {condition} GROUP BY user_id, platform",
                        list(&interval(timeout))
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
        },
        SessionSource::Sdk | SessionSource::DbtCompat => String::new(),
    };

    let per_second = units_per_second(unit);
    // Derived sessions of one timeout never overlap, so each actor's session number and previous
    // session end come straight from `session_table` (no window, no sort of the sessions). The SDK,
    // dbt and per-platform modes rank sessions that may interleave, with window functions.
    let single_timeout = options.source == SessionSource::Derived && options.timeout_by.is_none();
    let ranked = if single_timeout {
        let table = format!("session_table(event_time, {timeout}, restart{max_length})");
        // Each session as a row, and its number and previous end; continued, numbered after the
        // sessions that came before, the first one's previous end being the last of those (both
        // looked up once per actor, before its list of sessions is unnested).
        let (sessions, number, previous, first) = match continuation.map(|(c, _)| c) {
            None => (
                format!("SELECT user_id, unnest({table}) AS s FROM ev GROUP BY user_id"),
                "s['session_number']",
                "s['previous_ended_at']",
                "",
            ),
            Some(c) => (
                format!(
                    "SELECT user_id, unnest(sessions) AS s, c['number_offset'] AS number_offset, \
                     c['previous_ended_at'] AS previous_ended_at \
                     FROM (SELECT user_id, sessions, {c}(user_id) AS c \
                           FROM (SELECT user_id, {table} AS sessions FROM ev GROUP BY user_id))"
                ),
                "s['session_number'] + COALESCE(number_offset, 0)",
                "COALESCE(s['previous_ended_at'], previous_ended_at)",
                ", s['session_number'] = 1 AS first_recomputed",
            ),
        };
        format!(
            "ranked AS (SELECT user_id, CAST(NULL AS VARCHAR) AS platform, s['session_id'] AS session_id, \
             s['event_count'] AS events_per_session, s['started_at'] AS session_started_at, \
             s['ended_at'] AS session_ended_at, {number} AS user_session_number, \
             {previous} AS last_session_ended_at{first} FROM ({sessions}))"
        )
    } else {
        let base = match options.source {
            SessionSource::Derived => format!(
                "sessions AS ({sessions}), \
                 base AS (SELECT user_id, platform, s['session_id'] AS session_id, s['event_count'] AS events_per_session, \
                         s['started_at'] AS session_started_at, s['ended_at'] AS session_ended_at FROM sessions)"
            ),
            SessionSource::Sdk | SessionSource::DbtCompat => {
                "base AS (SELECT user_id, CAST(NULL AS VARCHAR) AS platform, session_id, \
                 count(*) AS events_per_session, min(event_time) AS session_started_at, \
                 max(event_time) AS session_ended_at FROM ev GROUP BY user_id, session_id)"
                    .to_string()
            }
        };
        format!(
            "{base}, \
             ranked AS (SELECT *, \
                CASE WHEN user_id IS NULL THEN NULL ELSE row_number() OVER (PARTITION BY user_id \
                     ORDER BY session_started_at, session_ended_at, session_id, platform) END AS user_session_number, \
                CASE WHEN user_id IS NULL THEN NULL ELSE lag(session_ended_at) OVER (PARTITION BY user_id \
                     ORDER BY session_ended_at, session_started_at, session_id, platform) END AS last_session_ended_at \
                FROM base)"
        )
    };
    let source_relation = literal(&options.source_relation);
    let unique_session_id = match (options.source, &options.timeout_by) {
        (SessionSource::DbtCompat, _) => format!(
            "md5(concat_ws('-', COALESCE({source_relation}, '{DBT_NULL_TOKEN}'), \
             COALESCE(user_id, '{DBT_NULL_TOKEN}'), COALESCE(CAST(session_id AS VARCHAR), '{DBT_NULL_TOKEN}')))"
        ),
        (SessionSource::Derived, Some(_)) => {
            "session_key(user_id, platform, session_id)".to_string()
        }
        _ => "session_key(user_id, session_id)".to_string(),
    };
    let tz = &options.time_zone;
    let utc_fast = tz.eq_ignore_ascii_case("UTC")
        && is_utc_or_naive(require_column(schema, &options.time, "--time")?);
    let session_day = |ts: &str| {
        if utc_fast {
            utc_day(ts)
        } else {
            day(ts, tz_aware, tz)
        }
    };
    // The minutes count whole seconds, as dbt's `datediff(..., 'second')` does: `epoch_seconds`
    // cuts each time to the second (see `crate::scalar`).
    Ok(format!(
        "WITH ev AS ({events}), {ranked} \
         SELECT \
            arrow_cast({source_relation}, 'Utf8View') AS source_relation, \
            {unique_session_id} AS unique_session_id, \
            user_id, \
            events_per_session, \
            session_started_at, \
            session_ended_at, \
            CAST(epoch_seconds(session_ended_at) - epoch_seconds(session_started_at) AS DOUBLE) / 60 AS session_length_in_minutes, \
            {start_day} AS session_started_at_day, \
            {end_day} AS session_ended_at_day, \
            user_session_number, \
            last_session_ended_at, \
            {last_day} AS last_session_ended_at_day, \
            CAST(CASE WHEN user_session_number = 1 THEN 1 ELSE 0 END AS INT) AS is_first_user_session, \
            CAST(epoch_seconds(session_started_at) - epoch_seconds(last_session_ended_at) AS DOUBLE) / 60 AS minutes_in_between_sessions, \
            session_id, \
            CAST(arrow_cast(session_ended_at - session_started_at, 'Int64') AS DOUBLE) / {per_second} AS session_length_seconds\
            {first} \
         FROM ranked",
        start_day = session_day("session_started_at"),
        end_day = session_day("session_ended_at"),
        last_day = session_day("last_session_ended_at"),
        // (`first_recomputed` is a column of the continued form's `ranked`.)
        first = match continuation.and_then(|(_, first)| first) {
            Some(name) => format!(", first_recomputed AS {}", ident(name)),
            None => String::new(),
        },
    ))
}

/// The sessions table of `table` as a DataFrame.
pub async fn sessions(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
) -> Result<DataFrame> {
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    ctx.sql(&sessions_sql(table, &schema, options)?).await
}

/// The event type of the synthetic events `annotate --concluded` appends.
pub const SESSION_CONCLUDED: &str = "Session Concluded";

/// The SQL that gives every event of `table` its `session_id` and `session_number` (null for events
/// left out of sessions): the plain-SQL form of [`crate::annotate::annotate`], with the window
/// functions, which gives the same rows (in no particular order) by a sort of all events. Input columns with those names are kept as `<name>_input`. With
/// `concluded`, one `Session Concluded` event per session is appended at the session's last event
/// time, with `session_length` in seconds (CleverTap's rule).
pub fn annotate_sql(
    table: &str,
    schema: &Schema,
    options: &SessionsOptions,
    concluded: bool,
) -> Result<String> {
    let (unit, _) = time_unit(schema, options)?;
    require_actor(schema, &options.actor, "--actor COLUMN")?;
    require_column(schema, &options.event, "--event")?;
    let table = ident(table);
    let actor = ident(&options.actor);
    let time = ident(&options.time);
    let event = ident(&options.event);
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .zip(crate::annotate::output_names(schema))
        .map(|(f, out)| {
            let name = f.name();
            if &out == name {
                ident(name)
            } else {
                format!("{} AS {}", ident(name), ident(&out))
            }
        })
        .collect();
    let restart = restart_condition(&event, options);
    let mut included = vec![
        format!("{actor} IS NOT NULL"),
        format!("{time} IS NOT NULL"),
    ];
    included.extend(activity_condition(&event, options));
    // `--dedup insert_id`, in derived and SDK sessions alike (SDK sessions once kept every copy:
    // a newcomer's audit).
    let table = if options.dedup_insert_id && options.source != SessionSource::DbtCompat {
        let insert_id = ident(&insert_id_column(schema, options)?);
        let ties: String = dedup_ties(schema, options)
            .iter()
            .map(|(_, value)| format!(", {value} ASC NULLS LAST"))
            .collect();
        let order = format!(
            "{time}, CAST({actor} AS VARCHAR) ASC NULLS LAST, CAST({event} AS VARCHAR) ASC NULLS \
             LAST{ties}"
        );
        included.push("__sessionize_first".to_string());
        with_first_copies(&table, &insert_id, &order)
    } else {
        table
    };
    let annotated = match options.source {
        SessionSource::DbtCompat => {
            return plan_err!("annotate takes --session-source derived or sdk, not --compat dbt");
        }
        SessionSource::Derived => {
            let max_length = options
                .max_length
                .map(|m| format!(", {}", interval(m)))
                .unwrap_or_default();
            let platform = options
                .timeout_by
                .as_ref()
                .map(|(col, _)| {
                    require_column(schema, col, "--timeout-by")?;
                    Ok::<_, datafusion::error::DataFusionError>(format!(", {}", ident(col)))
                })
                .transpose()?
                .unwrap_or_default();
            // Without restart events the argument is the literal `false`, not the column: only
            // then do the window functions evaluate row by row without a frame, which keeps a
            // wide `SELECT *` linear (with the column, 10M wide events took 83 s, not 8 s).
            let restart_arg = if restart == "false" {
                "false"
            } else {
                "__sessionize_restart"
            };
            let window = |function: &str, timeout: Duration| {
                format!(
                    "{function}(__sessionize_time, {}, {restart_arg}{max_length}) OVER (PARTITION BY __sessionize_actor, __sessionize_included{platform} ORDER BY __sessionize_time)",
                    interval(timeout)
                )
            };
            let pick = |function: &str| match &options.timeout_by {
                None => window(function, options.timeout),
                Some((col, platforms)) => {
                    let mut case = format!("CASE CAST({} AS VARCHAR)", ident(col));
                    for (name, timeout) in platforms {
                        write!(
                            case,
                            " WHEN {} THEN {}",
                            literal(name),
                            window(function, *timeout)
                        )
                        .ok();
                    }
                    write!(case, " ELSE {} END", window(function, options.timeout)).ok();
                    case
                }
            };
            format!(
                "marked AS (SELECT *, {actor} AS __sessionize_actor, {time} AS __sessionize_time, {restart} AS __sessionize_restart, \
                   {} AS __sessionize_included FROM {table}), \
                 annotated AS (SELECT {}, \
                   CASE WHEN __sessionize_included THEN {} END AS session_id, \
                   CASE WHEN __sessionize_included THEN {} END AS session_number \
                   FROM marked)",
                included.join(" AND "),
                columns.join(", "),
                pick("session_id"),
                pick("session_number"),
            )
        }
        SessionSource::Sdk => {
            let sid = ident(&options.session_id_col);
            require_session_id(schema, &options.session_id_col, "--session-id-col COLUMN")?;
            included.push(format!("{sid} IS NOT NULL AND {sid} <> -1"));
            format!(
                "marked AS (SELECT *, {actor} AS __sessionize_actor, CAST({sid} AS BIGINT) AS __sessionize_sid, \
                   {} AS __sessionize_included FROM {table}), \
                 started AS (SELECT *, min(CASE WHEN __sessionize_included THEN {time} END) \
                   OVER (PARTITION BY __sessionize_actor, __sessionize_sid) AS __sessionize_start FROM marked), \
                 annotated AS (SELECT {}, \
                   CASE WHEN __sessionize_included THEN __sessionize_sid END AS session_id, \
                   CASE WHEN __sessionize_included THEN dense_rank() OVER (PARTITION BY __sessionize_actor, __sessionize_included \
                     ORDER BY __sessionize_start, __sessionize_sid) END AS session_number \
                   FROM started)",
                included.join(" AND "),
                columns.join(", "),
            )
        }
    };
    let names = crate::annotate::output_names(schema);
    let output_columns: Vec<String> = names.iter().map(|n| ident(n)).collect();
    if !concluded {
        return Ok(format!(
            "WITH {annotated} SELECT {}, session_id, session_number FROM annotated",
            output_columns.join(", ")
        ));
    }
    let platform_col = options.timeout_by.as_ref().map(|(col, _)| col.clone());
    let mut group = vec![actor.clone()];
    if let Some(col) = &platform_col {
        group.push(ident(col));
    }
    let synthetic: Vec<String> = schema
        .fields()
        .iter()
        .zip(&names)
        .map(|(f, out)| {
            let name = f.name();
            let out = ident(out);
            if name == &options.actor || Some(name) == platform_col.as_ref() {
                format!("{} AS {out}", ident(name))
            } else if name == &options.time {
                format!("__sessionize_ended AS {out}")
            } else if name == &options.event {
                format!("CAST({} AS VARCHAR) AS {out}", literal(SESSION_CONCLUDED))
            } else {
                format!(
                    "arrow_cast(NULL, {}) AS {out}",
                    literal(&f.data_type().to_string())
                )
            }
        })
        .collect();
    Ok(format!(
        "WITH {annotated}, \
         concluded AS (SELECT {group}, session_id, session_number, min({time}) AS __sessionize_started, \
           max({time}) AS __sessionize_ended FROM annotated WHERE session_id IS NOT NULL \
           GROUP BY {group}, session_id, session_number) \
         SELECT {cols}, session_id, session_number, CAST(NULL AS DOUBLE) AS session_length FROM annotated \
         UNION ALL \
         SELECT {synthetic}, session_id, session_number, \
           CAST(arrow_cast(__sessionize_ended - __sessionize_started, 'Int64') AS DOUBLE) / {per_second} AS session_length \
         FROM concluded",
        group = group.join(", "),
        cols = output_columns.join(", "),
        synthetic = synthetic.join(", "),
        per_second = units_per_second(unit),
    ))
}
