//! A sessions job as users state it: the options of `sessions` and `annotate` (the command line's
//! flags, the Python package's keyword arguments) checked and turned into [`SessionsOptions`], and
//! the loaded events prepared (export source mapped, identities applied).
//!
//! The command line and the Python package are thin shells over this module, so both check the
//! same things and say the same sentences. The sentences name the command line's flags
//! (`--timeout`); the Python package takes the same names in snake case (`timeout=`).

use std::time::Duration;

use datafusion::common::{Result, plan_err};
use datafusion::prelude::SessionContext;

use crate::scalar::EpochUnit;
use crate::sessions::{
    DBT_DATE_RANGE_START, SessionSource, SessionsOptions, check_day, exclude_preset, ident,
    parse_duration, require_column,
};
use crate::sources::Source;

/// The inactivity timeout when none is given (Amplitude's and GA4's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The options of a `sessions` or `annotate` run, as given (before checks and defaults).
#[derive(Debug, Clone)]
pub struct SessionsJob {
    /// The export's shape (`--source`): a name of [`crate::sources`], or recognised when `None`.
    pub source: Option<String>,
    /// Sessions from the SDK's session id (`--session-source sdk`) rather than derived.
    pub sdk_sessions: bool,
    /// Reproduce Fivetran's dbt model `amplitude__sessions` (`--compat dbt`).
    pub compat_dbt: bool,
    /// Inactivity timeout (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Maximum session length.
    pub max_length: Option<Duration>,
    /// Event types that always start a new session.
    pub restart_events: Vec<String>,
    /// Event types that are not activity.
    pub exclude_events: Vec<String>,
    /// Named lists of excluded event types (`clevertap`).
    pub exclude_presets: Vec<String>,
    /// Per-platform timeouts: the platform column and `PLATFORM=DURATION,...`.
    pub timeout_by: Option<(String, String)>,
    /// The actor column, or several separated by commas (the first non-null of them).
    pub actor: Option<String>,
    /// `ANONYMOUS=USER`: stitch identities.
    pub stitch: Option<String>,
    /// The event time column.
    pub time: String,
    /// The unit of epoch-number times.
    pub time_unit: EpochUnit,
    /// The event type column.
    pub event: String,
    /// The SDK's session id column.
    pub session_id_col: String,
    /// The insert id column (default: `insert_id`, `_insert_id` or `$insert_id`).
    pub insert_id_col: Option<String>,
    /// The event id column of dbt's de-duplication (default: `event_id` or `id`).
    pub event_id_col: Option<String>,
    /// Drop repeated events with the same insert id.
    pub dedup_insert_id: bool,
    /// IANA time zone of the `*_day` columns.
    pub time_zone: String,
    /// The `source_relation` column's value (dbt).
    pub source_relation: String,
    /// First and last event day (`YYYY-MM-DD`, with `compat_dbt`).
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

impl Default for SessionsJob {
    fn default() -> Self {
        Self {
            source: None,
            sdk_sessions: false,
            compat_dbt: false,
            timeout: None,
            max_length: None,
            restart_events: vec![],
            exclude_events: vec![],
            exclude_presets: vec![],
            timeout_by: None,
            actor: None,
            stitch: None,
            time: "event_time".into(),
            time_unit: EpochUnit::default(),
            event: "event_type".into(),
            session_id_col: "session_id".into(),
            insert_id_col: None,
            event_id_col: None,
            dedup_insert_id: false,
            time_zone: "UTC".into(),
            source_relation: String::new(),
            date_from: None,
            date_to: None,
        }
    }
}

/// "1 event", "2 events".
pub fn events(n: i64) -> String {
    if n == 1 {
        "1 event".to_string()
    } else {
        format!("{n} events")
    }
}

impl SessionsJob {
    /// The columns `actor` lists (default `user_id`).
    pub fn actors(&self) -> Vec<String> {
        crate::identity::parse_actors(self.actor.as_deref().unwrap_or("user_id"))
    }

    /// `stitch`'s (anonymous id, user id) columns.
    ///
    /// Errors: text that is not `ANONYMOUS=USER`.
    pub fn stitch_columns(&self) -> Result<Option<(String, String)>> {
        self.stitch
            .as_deref()
            .map(crate::identity::parse_stitch)
            .transpose()
    }

    /// The column that holds the actor once identities are applied: the first of `actor`, or
    /// `stitch`'s user id.
    fn actor_column(&self) -> Result<String> {
        if let Some((_, user)) = self.stitch_columns()? {
            return Ok(user);
        }
        match self.actors().into_iter().next() {
            Some(actor) => Ok(actor),
            None => plan_err!("--actor names no column"),
        }
    }

    /// The options checked and completed with their defaults (dbt's date window ends today, UTC).
    ///
    /// Errors: options that contradict each other (derived-session options with `compat_dbt`, a
    /// date window without it, an empty window), a malformed day, duration or preset.
    pub fn options(&self) -> Result<SessionsOptions> {
        let source = match (self.compat_dbt, self.sdk_sessions) {
            (true, _) => SessionSource::DbtCompat,
            (false, true) => SessionSource::Sdk,
            (false, false) => SessionSource::Derived,
        };
        let mut exclude_events = self.exclude_events.clone();
        for preset in &self.exclude_presets {
            exclude_events.extend(exclude_preset(preset)?.iter().map(|e| e.to_string()));
        }
        let timeout_by = match &self.timeout_by {
            None => None,
            Some((column, spec)) => {
                let mut pairs = vec![];
                for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
                    let Some((platform, duration)) = pair.split_once('=') else {
                        return plan_err!(
                            "--timeout-by expects PLATFORM=DURATION pairs, but got '{pair}'"
                        );
                    };
                    let duration = parse_duration("the duration", duration)
                        .map_err(|e| plan_error(format!("--timeout-by {platform}: {e}")))?;
                    pairs.push((platform.trim().to_string(), duration));
                }
                Some((column.clone(), pairs))
            }
        };
        for (flag, day) in [
            ("--date-from", &self.date_from),
            ("--date-to", &self.date_to),
        ] {
            if let Some(day) = day {
                check_day(flag, day)?;
            }
        }
        if source == SessionSource::DbtCompat {
            let derived_only = [
                ("--timeout", self.timeout.is_some()),
                ("--max-length", self.max_length.is_some()),
                ("--restart-event", !self.restart_events.is_empty()),
            ];
            if let Some((flag, _)) = derived_only.iter().find(|(_, given)| *given) {
                return plan_err!(
                    "{flag} shapes derived sessions, but --compat dbt takes the SDK's session ids \
                     as the dbt package does: drop {flag}, or drop --compat dbt"
                );
            }
        }
        if source != SessionSource::DbtCompat
            && (self.date_from.is_some() || self.date_to.is_some())
        {
            return plan_err!(
                "--date-from and --date-to set the date window of --compat dbt; without it every \
                 event is read (filter days in SQL with sessionize query, or chart with --from / --to)"
            );
        }
        // dbt_amplitude's default date window: from its amplitude__date_range_start to the
        // current UTC date, both inclusive.
        let (date_from, date_to) = if source == SessionSource::DbtCompat {
            let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            (
                Some(
                    self.date_from
                        .clone()
                        .unwrap_or_else(|| DBT_DATE_RANGE_START.to_string()),
                ),
                Some(
                    self.date_to
                        .clone()
                        .unwrap_or_else(|| today[..10].to_string()),
                ),
            )
        } else {
            (self.date_from.clone(), self.date_to.clone())
        };
        if let (Some(from), Some(to)) = (&date_from, &date_to)
            && from > to
        {
            return plan_err!("the date range {from} to {to} is empty");
        }
        Ok(SessionsOptions {
            source,
            actor: self.actor_column()?,
            time: self.time.clone(),
            event: self.event.clone(),
            session_id_col: self.session_id_col.clone(),
            insert_id_col: self.insert_id_col.clone(),
            event_id_col: self.event_id_col.clone(),
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            max_length: self.max_length,
            restart_events: self.restart_events.clone(),
            exclude_events,
            timeout_by,
            dedup_insert_id: self.dedup_insert_id,
            time_zone: self.time_zone.clone(),
            source_relation: self.source_relation.clone(),
            date_from,
            date_to,
        })
    }

    /// Prepares the events registered as `table` in `ctx`: maps the export source (named, or
    /// recognised), applies the identities (`actor`, `stitch`) and sets `options.actor` to the
    /// column that holds the actor. Returns the notes to show the user (a recognised source).
    ///
    /// Errors: an unknown source or one whose columns are missing; missing actor columns; SDK
    /// sessions from a source without session ids.
    pub async fn prepare(
        &self,
        ctx: &SessionContext,
        table: &str,
        options: &mut SessionsOptions,
    ) -> Result<Vec<String>> {
        let mut notes = vec![];
        let source = map_source(
            ctx,
            table,
            self.source.as_deref(),
            self.time_unit,
            &mut notes,
        )
        .await?;
        let stitch = self.stitch_columns()?;
        let actors = crate::identity::actors_of(
            self.actor.as_deref(),
            stitch.is_some(),
            source,
            options.source == SessionSource::Sdk,
        );
        options.actor = crate::identity::apply(
            ctx,
            table,
            &actors,
            stitch.as_ref().map(|(a, u)| (a.as_str(), u.as_str())),
            &options.time,
        )
        .await?;
        // A source without a session key of its own, unless a column of the export is named as
        // the session id (`--session-id-col`).
        if options.source == SessionSource::Sdk
            && let Some(source) = source
            && source.session_key.is_none()
            && !has_column(ctx, table, &options.session_id_col).await?
        {
            return plan_err!(
                "{} carries no session id, so --session-source sdk has nothing to read: use \
                 derived sessions (the default), or name a column of the export that holds one \
                 with --session-id-col",
                source.title
            );
        }
        Ok(notes)
    }
}

/// Prepares the events registered as `table` for a chart: maps the export source (named, or
/// recognised) and applies the identities of the spec's session: its `actor` (one column, or
/// several whose first non-null is the actor) and `stitch` (`ANONYMOUS=USER`), or, where the spec
/// does not name the actor (`names_actor` false), the source's own actor (the user id, else the
/// device or anonymous id). Sets the spec's actor to the column that holds it. Returns the notes
/// to show the user.
///
/// Errors: an unknown source or one whose columns are missing; missing actor columns; SDK
/// sessions from a source without session ids.
pub async fn prepare_chart(
    ctx: &SessionContext,
    table: &str,
    spec: &mut crate::chart::ChartSpec,
    source: Option<&str>,
    unit: EpochUnit,
    names_actor: bool,
) -> Result<Vec<String>> {
    let mut notes = vec![];
    let source = map_source(ctx, table, source, unit, &mut notes).await?;
    let sdk = spec.session.source == "sdk";
    if sdk
        && let Some(source) = source
        && source.session_key.is_none()
        && !has_column(ctx, table, &spec.session.session_id_col).await?
    {
        return plan_err!(
            "{} carries no session id, so --session-source sdk has nothing to read: use derived \
             sessions (the default), or name a column of the export that holds one with \
             --session-id-col",
            source.title
        );
    }
    let stitch = spec
        .session
        .stitch
        .as_deref()
        .map(crate::identity::parse_stitch)
        .transpose()?;
    let named = names_actor.then_some(spec.session.actor.as_str());
    let actors = crate::identity::actors_of(named, stitch.is_some(), source, sdk);
    spec.session.actor = crate::identity::apply(
        ctx,
        table,
        &actors,
        stitch.as_ref().map(|(a, u)| (a.as_str(), u.as_str())),
        &spec.session.time,
    )
    .await?;
    Ok(notes)
}

/// Whether the table `table` of `ctx` has a column `column`.
async fn has_column(ctx: &SessionContext, table: &str, column: &str) -> Result<bool> {
    Ok(ctx
        .table(table)
        .await?
        .schema()
        .as_arrow()
        .field_with_name(column)
        .is_ok())
}

fn plan_error(message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Plan(message)
}

/// Maps `table` by the export source `source` names, or by the one it is recognised as; a
/// recognised source other than Amplitude's own shapes adds a note naming it.
pub async fn map_source(
    ctx: &SessionContext,
    table: &str,
    source: Option<&str>,
    unit: EpochUnit,
    notes: &mut Vec<String>,
) -> Result<Option<&'static Source>> {
    // A named source that another one's columns fit better (Mixpanel's `event` and `properties`
    // are also in Segment's messages) is read as named, with a note: its mapping may find none
    // of its fields.
    let looks_like = match source {
        Some(_) => {
            let schema = ctx.table(table).await?.schema().as_arrow().clone();
            crate::sources::recognise(&schema)
        }
        None => None,
    };
    let mapped = crate::sources::apply(ctx, table, source, unit).await?;
    if let (Some((named, false)), Some(recognised)) = (mapped, looks_like)
        && recognised.name != named.name
        && !(named.name.starts_with("amplitude") && recognised.name.starts_with("amplitude"))
    {
        notes.push(format!(
            "the input looks like {} (--source {}), but is read as --source {} as asked",
            recognised.title, recognised.name, named.name
        ));
    }
    if let Some((source, true)) = mapped
        && crate::sources::worth_naming(source)
    {
        notes.push(format!(
            "reading {} (--source {}; columns as documented at {})",
            source.title, source.name, source.documented_at
        ));
    }
    Ok(mapped.map(|(s, _)| s))
}

/// The notes on events the sessions table leaves out: those whose actor or time is null (derived
/// sessions), those whose time or session id is null or whose session id is -1 (SDK sessions), or,
/// with `--compat dbt`, those outside the date window.
///
/// The null counts of each column come from the Parquet footers' statistics where they are exact
/// (DataFusion answers `count(column)` from them without reading the data). Only when both columns
/// hold nulls does it take a scan, for the rows where either is null.
pub async fn left_out_notes(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
) -> Result<Vec<String>> {
    left_out_notes_besides(ctx, table, options, 0).await
}

/// [`left_out_notes`] of a table that also holds `blank` rows that are not events, null in every
/// column the notes count (an events table's rows that record its files): they are not counted.
pub async fn left_out_notes_besides(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
    blank: u64,
) -> Result<Vec<String>> {
    let blank = i64::try_from(blank).unwrap_or(i64::MAX);
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    let table_ident = ident(table);
    if options.source == SessionSource::DbtCompat {
        let (Some(from), Some(to)) = (&options.date_from, &options.date_to) else {
            return Ok(vec![]);
        };
        require_column(&schema, &options.time, "--time")?;
        let time = ident(&options.time);
        let day = format!("utc_day({time})");
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {day} < DATE '{from}'), \
             count(*) FILTER (WHERE {day} > DATE '{to}'), count(*) - count({time}) \
             FROM {table_ident}"
        );
        let mut notes = vec![];
        if let [before, after, untimed] = counts(ctx, &sql).await?[..] {
            let untimed = untimed - blank;
            if before + after > 0 {
                notes.push(format!(
                    "--compat dbt left out {} dated before {from} and {after} dated after {to}, \
                     as dbt_amplitude's date window does (change it with --date-from / --date-to)",
                    events(before)
                ));
            }
            if untimed > 0 {
                notes.push(format!(
                    "--compat dbt left out {} whose {} is null, as dbt_amplitude's date window \
                     does",
                    events(untimed),
                    options.time
                ));
            }
        }
        return Ok(notes);
    }
    if options.source == SessionSource::Sdk {
        // SDK sessions leave out the events without a time or a session id (Amplitude's -1
        // included: "no session"). A missing session id column is the sessions query's error.
        let Ok(sid) = schema.field_with_name(&options.session_id_col) else {
            return Ok(vec![]);
        };
        require_column(&schema, &options.time, "--time")?;
        let (time, sid_name) = (ident(&options.time), ident(&options.session_id_col));
        let minus_one = if sid.data_type().is_integer() {
            format!(" OR {sid_name} = -1")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT count(*) FROM {table_ident} WHERE {time} IS NULL OR {sid_name} IS NULL{minus_one}"
        );
        let left_out = counts(ctx, &sql).await?.first().copied().unwrap_or(0) - blank;
        if left_out > 0 {
            return Ok(vec![format!(
                "left out {} whose {} or {} is null (or {} is -1, no session), as SDK sessions do",
                events(left_out),
                options.time,
                options.session_id_col,
                options.session_id_col
            )]);
        }
        return Ok(vec![]);
    }
    if options.source != SessionSource::Derived {
        return Ok(vec![]);
    }
    require_column(&schema, &options.actor, "--actor")?;
    require_column(&schema, &options.time, "--time")?;
    let actor = ident(&options.actor);
    let time = ident(&options.time);
    let nulls = counts(
        ctx,
        &format!("SELECT count(*) - count({actor}), count(*) - count({time}) FROM {table_ident}"),
    )
    .await?;
    let left_out = match nulls[..] {
        [null_actor, null_time] if null_actor == blank || null_time == blank => {
            null_actor.max(null_time) - blank
        }
        _ => {
            let sql = format!(
                "SELECT count(*) FROM {table_ident} WHERE {actor} IS NULL OR {time} IS NULL"
            );
            counts(ctx, &sql).await?.first().copied().unwrap_or(0) - blank
        }
    };
    if left_out > 0 {
        return Ok(vec![format!(
            "left out {} whose {} or {} is null",
            events(left_out),
            options.actor,
            options.time
        )]);
    }
    Ok(vec![])
}

/// The first row of a query whose columns are all `BIGINT`.
async fn counts(ctx: &SessionContext, sql: &str) -> Result<Vec<i64>> {
    use datafusion::arrow::array::{Array, Int64Array};
    let batches = ctx.sql(sql).await?.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(vec![]);
    };
    Ok(batch
        .columns()
        .iter()
        .filter_map(|c| c.as_any().downcast_ref::<Int64Array>())
        .map(|a| if a.is_null(0) { 0 } else { a.value(0) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbt_compat_refuses_derived_options_and_fills_the_date_window() {
        let job = SessionsJob {
            compat_dbt: true,
            timeout: Some(Duration::from_secs(60)),
            ..SessionsJob::default()
        };
        let error = job.options().unwrap_err().to_string();
        assert!(
            error.contains("--timeout shapes derived sessions"),
            "{error}"
        );
        let job = SessionsJob {
            compat_dbt: true,
            ..SessionsJob::default()
        };
        let options = job.options().unwrap();
        assert_eq!(options.date_from.as_deref(), Some(DBT_DATE_RANGE_START));
        assert_eq!(options.date_to.as_ref().map(|d| d.len()), Some(10));
    }

    #[test]
    fn actors_stitch_and_timeouts_by_platform() {
        let job = SessionsJob {
            actor: Some("user_id, device_id".into()),
            timeout_by: Some(("platform".into(), "web=30m,ios=5m".into())),
            ..SessionsJob::default()
        };
        assert_eq!(job.actors(), ["user_id", "device_id"]);
        let options = job.options().unwrap();
        assert_eq!(options.actor, "user_id");
        let (column, pairs) = options.timeout_by.unwrap();
        assert_eq!(column, "platform");
        assert_eq!(pairs[1], ("ios".to_string(), Duration::from_secs(300)));
        let job = SessionsJob {
            stitch: Some("anonymous_id".into()),
            ..SessionsJob::default()
        };
        assert!(job.options().is_err());
    }
}
