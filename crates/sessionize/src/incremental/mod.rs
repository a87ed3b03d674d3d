//! Sessions tables kept up to date incrementally: `sessionize sessions NEW_INPUT... --into
//! delta:TABLE` adds a delivery of events to a Delta sessions table, and the table is then equal to
//! a full rebuild over every event delivered so far.
//!
//! # What is kept between runs
//! - `TABLE` is the sessions table, exactly as `sessions --output delta:TABLE` writes it.
//! - `TABLE/_sessionize_events` is a Delta table of every applied event, with only the columns the
//!   sessions table is computed from (actor, time, event type and whatever the mode reads: session
//!   id, event id, upload time, platform), plus `_sessionize_file`, the stamp of the file the event
//!   came from (`PATH|SIZE|MODIFIED`), and a row per applied file, nulls but its stamp, in the
//!   null-day partition (see `FILE_ROWS`). Delta's `VACUUM` leaves folders starting with `_`
//!   alone.
//! - `TABLE/_sessionize_tails/v{VERSION}.parquet`: each actor's last session at the sessions
//!   table's version `VERSION` ([`tails`]), so that a run finds where each actor's sessions
//!   continue without reading the whole sessions table.
//!
//! # A run
//! 1. The input files whose stamps the events table already holds are skipped: running the same
//!    delivery twice changes nothing the second time. (A file changed in place gets a new stamp
//!    and is read again, as a new delivery.)
//! 2. The new files' events are appended to the events table (partitioned by UTC day) in one
//!    commit; with a late limit, events older than the newest applied event minus the limit are
//!    left out and counted.
//! 3. The sessions of the actors with new events are computed again by the full rebuild's SQL
//!    ([`crate::sessions::sessions_sql`]): derived sessions with one timeout from each actor's
//!    last session that starts at or before its earliest new event ([`continuation`]: the
//!    actor's tail where that starts at or before it, else a look-up in the sessions table for
//!    that actor), other modes from all of the actor's events. The events are the new ones (in
//!    memory) and the held ones from each cut on (the events table before this run's append);
//!    a fresh actor (see `Cuts::fresh`: most of a daily delivery) has no held event there. In
//!    derived sessions with one timeout and no deduplication, the delivery's sessions are
//!    computed first, continuing from each actor's tail, beside the append ([`fresh`]): they
//!    are final for the fresh actors, and tell the others, which alone are cut and computed
//!    again from their held events.
//! 4. The recomputed sessions are compared with those the table holds for the same actors and
//!    times, and one Delta commit deletes and inserts only the rows that differ (`replaceWhere` on
//!    `unique_session_id`, with their days for pruning); a fresh actor's sessions are all new,
//!    and are added without a comparison. That commit records the events table's
//!    version it reflects and the options. In derived sessions with one timeout, the new tails
//!    are written while that commit is made, and named after its version once it is.
//!
//! Equality with a full rebuild follows from sessions being per actor: an actor's sessions depend
//! on that actor's events only, and each touched actor's are computed by the full rebuild's SQL
//! from every event that can change them. (An insert or event id repeated under two users is the
//! exception, in the README's limits.)
//!
//! # Failures
//! The two commits are not one transaction. A run that dies after the first leaves the sessions
//! table at its previous version and the events table one version ahead; the next run sees that
//! the sessions table's recorded version is not the events table's and computes the whole
//! sessions table again from the events table; so does a run whose append was not the next version
//! (another run appended at the same time). A sessions commit never retries over a concurrent one:
//! it fails saying the table changed, and the next run repairs it the same way. A run that dies
//! after its sessions commit but before naming its tails leaves no tails file of the table's
//! version: the next run computes them from the sessions table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::{cast as cast_array, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::{Column, Result, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{Expr, SessionContext, cast, lit};

mod annotate;
mod continued;
mod fresh;
mod tails;
mod touched;
pub use annotate::annotate_into;
pub use tails::TAILS_FOLDER;

use crate::delta::{self, Commit};
use crate::job::SessionsJob;
use crate::sessions::{ident, sessions_sql};
use crate::tables::{self, LoadOptions};
use touched::{Keys, Touched};

/// The events table's folder inside the sessions table's.
pub const EVENTS_FOLDER: &str = "_sessionize_events";
/// The events table's column holding each event's file stamp.
pub const FILE_COLUMN: &str = "_sessionize_file";
/// The events table's partition column: each event's UTC day.
pub const DAY_COLUMN: &str = "_sessionize_day";
/// The `commitInfo` field of a sessions commit: the events table's version it reflects.
const EVENTS_VERSION: &str = "sessionizeEventsVersion";
/// The `commitInfo` field of an events commit: the column that holds the actor.
const ACTOR: &str = "sessionizeActor";
/// The `commitInfo` field of a sessions commit: the options the sessions were computed with.
const OPTIONS: &str = "sessionizeOptions";
/// The `commitInfo` field of an events commit: every applied file has a row of its own (nulls but
/// its stamp, in the null-day partition), so the stamps are read from that partition alone rather
/// than from every event. Tables built before it get their rows at their next run.
const FILE_ROWS: &str = "sessionizeFileRows";
/// The `commitInfo` field of a sessions commit: the last day of `--compat dbt`'s date window its
/// sessions reflect (`YYYY-MM-DD`).
const DATE_TO: &str = "sessionizeDateTo";

/// The sessions table, registered at its latest version.
const SESSIONS: &str = "__sessionize_sessions";
/// The tails of the sessions table (see `tails`).
const TAILS: &str = "__sessionize_tails";
/// The recomputed sessions of a run.
const COMPUTED: &str = "__sessionize_computed";
/// The in-memory table of each actor's earliest new event (`user_id`, `t_min` in microseconds;
/// the events without an actor as one row of a null `user_id`). Where the delivery is sessionized
/// first ([`fresh`]), only the actors it reopens, each with its earliest new event that takes
/// part in sessions.
const FIRST_EVENTS: &str = "__sessionize_first_events";
/// The function that gives the touched actors' continuations ([`continuation`]).
const CONTINUATION: &str = "__sessionize_continuation";

/// The options that decide the sessions, as text (`--flag: value` pairs separated by `; `): a
/// table built with some must not be continued with others (its rows would follow two rules).
fn options_fingerprint(job: &SessionsJob) -> Result<String> {
    let o = job.options()?;
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "default".to_string());
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    };
    let pairs: Vec<(&str, String)> = vec![
        ("--source", text(&job.source)),
        ("--actor", text(&job.actor)),
        ("--stitch", text(&job.stitch)),
        ("--time", o.time.clone()),
        ("--time-unit", job.time_unit.as_str().to_string()),
        ("--event", o.event.clone()),
        (
            "--session-source",
            match o.source {
                crate::sessions::SessionSource::Derived => "derived",
                crate::sessions::SessionSource::Sdk => "sdk",
                crate::sessions::SessionSource::DbtCompat => "dbt (--compat dbt)",
            }
            .to_string(),
        ),
        ("--session-id-col", o.session_id_col.clone()),
        ("--insert-id-col", text(&o.insert_id_col)),
        ("--event-id-col", text(&o.event_id_col)),
        (
            "--timeout",
            humantime::format_duration(o.timeout).to_string(),
        ),
        (
            "--max-length",
            o.max_length.map_or("none".to_string(), |d| {
                humantime::format_duration(d).to_string()
            }),
        ),
        ("--restart-event", list(&o.restart_events)),
        ("--exclude-event", list(&o.exclude_events)),
        (
            "--timeout-by",
            match &o.timeout_by {
                None => "none".to_string(),
                Some((column, platforms)) => format!(
                    "{column} {}",
                    platforms
                        .iter()
                        .map(|(p, d)| format!("{p}={}", humantime::format_duration(*d)))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            },
        ),
        (
            "--dedup",
            if o.dedup_insert_id {
                "insert_id"
            } else {
                "none"
            }
            .to_string(),
        ),
        ("--time-zone", o.time_zone.clone()),
        ("--source-relation", o.source_relation.clone()),
        ("--date-from", text(&o.date_from)),
    ];
    Ok(pairs
        .into_iter()
        .map(|(flag, value)| format!("{flag}: {value}"))
        .collect::<Vec<_>>()
        .join("; "))
}

/// The refusal of a run whose options (`now`) differ from those the table at `location` was built
/// with (`built`), naming each option that differs.
fn other_options(location: &str, built: &str, now: &str) -> datafusion::error::DataFusionError {
    let pairs = |text: &str| -> HashMap<String, String> {
        text.split("; ")
            .filter_map(|pair| pair.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (was, is) = (pairs(built), pairs(now));
    let mut differing: Vec<String> = is
        .iter()
        .filter(|(k, v)| was.get(*k) != Some(*v))
        .map(|(k, v)| {
            let before = was.get(k).map_or("(not recorded)", String::as_str);
            format!("{k} {before} there, {v} here")
        })
        .collect();
    differing.sort();
    if differing.is_empty() {
        differing.push(format!("the table's were '{built}'"));
    }
    datafusion::error::DataFusionError::Plan(format!(
        "the table '{location}' was built with other options ({}): run with the table's options, \
         or build a new table",
        differing.join(", ")
    ))
}

/// Refuses to start an incremental table where something else is: a Delta table that `--into`
/// did not build (it would be replaced), or a folder holding other files.
async fn refuse_foreign(location: &str) -> Result<()> {
    if delta::exists(location).await? {
        if delta::last_commit_info(location)
            .await?
            .get(OPTIONS)
            .and_then(|v| v.as_str())
            .is_some_and(|o| o.starts_with(annotate::FINGERPRINT_PREFIX))
        {
            return plan_err!(
                "'{location}' is a table of annotated events (annotate --into): sessions --into \
                 keeps a sessions table; give another folder"
            );
        }
        return plan_err!(
            "'{location}' is a Delta table that --into did not build (it has no {EVENTS_FOLDER}): \
             --into would replace its rows; build the table with --into from all its inputs, in a \
             new folder"
        );
    }
    if !location.contains("://")
        && let Ok(mut entries) = std::fs::read_dir(location)
        && entries.next().is_some()
    {
        return plan_err!(
            "'{location}' holds files but is not a Delta table: --into builds a new table in an \
             empty or new folder"
        );
    }
    Ok(())
}

/// What an incremental run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntoReport {
    /// Input files read (their stamps were new).
    pub files_applied: usize,
    /// Input files skipped: the table already holds them.
    pub files_skipped: usize,
    /// Events appended to the events table.
    pub events: u64,
    /// Events left out as older than the late limit allows.
    pub late: u64,
    /// The notes on this run's events that the sessions leave out, as a full rebuild's say it
    /// (derived sessions: a null actor or time; `--compat dbt`: a null time, or a day outside its
    /// date window).
    pub left_out: Vec<String>,
    /// Actors whose sessions were computed again.
    pub actors: u64,
    /// Of those, the actors some of whose held rows changed (`annotate --into`, which rewrites
    /// only theirs).
    pub changed: Option<u64>,
    /// The whole sessions table was computed again (the first run, or a repair after a run that
    /// died between its two commits).
    pub rebuilt: bool,
    /// The sessions table's new version (none when nothing was new).
    pub version: Option<i64>,
    /// The version only records the run's files (no events, or only events the sessions leave
    /// out): no session was computed again.
    pub recorded_only: bool,
    /// Whether the cuts came from the tails file of the table's version (rather than from tails
    /// computed from the table: the first run after a table was built without them, or after
    /// they were lost).
    pub tails_read: bool,
    /// Why the tails of that version could not be kept (the table is right; the next run
    /// computes them from it).
    pub tails_lost: Option<String>,
    /// `--compat dbt`'s date window end, as the table reflected it and as this run's: the run
    /// applied the move.
    pub window_moved: Option<(String, String)>,
}

impl IntoReport {
    /// The report as lines for the user.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![];
        if self.files_skipped > 0 {
            notes.push(format!(
                "skipped {} input file(s) the table already holds",
                self.files_skipped
            ));
        }
        notes.extend(self.left_out.iter().cloned());
        if self.late > 0 {
            notes.push(format!(
                "left out {} event(s) older than --late-limit allows; a full rebuild includes them",
                self.late
            ));
        }
        match self.version {
            None if self.files_applied > 0 && self.events == 0 && self.late == 0 => notes.push(
                "the new file(s) hold no events: nothing to apply (a table is created by the \
                 first delivery with events)"
                    .to_string(),
            ),
            None => notes.push("nothing new: the table is unchanged".to_string()),
            // The files were recorded (so that the next run skips them), no session changed.
            Some(version) if self.recorded_only => notes.push(format!(
                "applied {} file(s), {} event(s); no session changed; version {version} records \
                 the file(s), so that later runs skip them",
                self.files_applied, self.events
            )),
            Some(version) => notes.push(format!(
                "applied {} file(s), {} event(s); {} of {} actor(s){}, version {version}",
                self.files_applied,
                self.events,
                if self.rebuilt {
                    "computed the sessions"
                } else {
                    "computed again the sessions"
                },
                self.actors,
                self.changed
                    .map(|n| format!(" ({n} with an earlier event's session changed)"))
                    .unwrap_or_default(),
            )),
        }
        if let (Some((was, now)), Some(_)) = (&self.window_moved, self.version) {
            notes.push(format!(
                "--compat dbt's date window now ends on {now} (the table's ended on {was}): the \
                 actors with events dated between the two were computed again"
            ));
        }
        if let Some(why) = &self.tails_lost {
            notes.push(format!(
                "the table is up to date, but each actor's last session could not be kept \
                 beside it ({why}): the next run computes them from the table"
            ));
        }
        notes
    }
}

/// Adds the events of `inputs` (files, folders, globs or URLs) that the Delta sessions table at
/// `location` does not hold yet, and brings the table up to date with one commit (see the module
/// documentation). The table and its events table are created by the first run. `late_limit`:
/// events older than the newest applied event minus this are left out and counted.
///
/// Errors: as `sessions` for the inputs and options; `--stitch` (an identity that a later
/// delivery can change for earlier events); a table that changed under the run.
pub async fn sessions_into(
    ctx: &SessionContext,
    job: &SessionsJob,
    inputs: &[String],
    load: &LoadOptions,
    location: &str,
    late_limit: Option<Duration>,
    partition_by: Option<&str>,
) -> Result<IntoReport> {
    if job.stitch.is_some() {
        return plan_err!(
            "--into cannot keep --stitch sessions up to date: a later delivery can give earlier \
             events another user id; build the table in full with --output instead"
        );
    }
    let events_location = format!("{}/{EVENTS_FOLDER}", location.trim_end_matches('/'));
    let mut report = IntoReport::default();

    // What the table holds: the stamps of the applied files, and whether the sessions table
    // reflects the events table's latest version.
    let has_events = delta::exists(&events_location).await?;
    if !has_events {
        refuse_foreign(location).await?;
    }
    let fingerprint = options_fingerprint(job)?;
    let mut seen = HashSet::new();
    let mut rebuild = true;
    let mut recorded = None;
    // The end of `--compat dbt`'s date window the sessions table reflects.
    let mut recorded_to: Option<String> = None;
    // Whether the applied files lack rows of their own (a table built before them), so that
    // their stamps come from every event, and this run adds the rows.
    let mut unrecorded = false;
    if has_events {
        delta::register(ctx, "__sessionize_applied", &events_location).await?;
        unrecorded = delta::last_commit_info(&events_location)
            .await?
            .get(FILE_ROWS)
            .and_then(|v| v.as_bool())
            != Some(true);
        let only_file_rows = if unrecorded {
            String::new()
        } else {
            format!(" WHERE {} IS NULL", ident(DAY_COLUMN))
        };
        let stamps = texts(
            ctx,
            &format!(
                "SELECT DISTINCT {} FROM __sessionize_applied{only_file_rows}",
                ident(FILE_COLUMN)
            ),
        )
        .await?;
        seen.extend(stamps.into_iter().flatten());
        if delta::exists(location).await? {
            let info = delta::last_commit_info(location).await?;
            recorded = info.get(EVENTS_VERSION).and_then(|v| v.as_i64());
            recorded_to = info
                .get(DATE_TO)
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if let Some(built) = info.get(OPTIONS).and_then(|v| v.as_str())
                && built != fingerprint
            {
                return Err(other_options(location, built, &fingerprint));
            }
        }
        rebuild = recorded != Some(delta::version(&events_location).await?);
    }
    let mut files = tables::input_files(ctx, inputs).await?;
    // A file named twice (or inside a folder also named) is one file, as in a full rebuild.
    let mut named = HashSet::new();
    files.retain(|f| named.insert(f.stamp.clone()));
    let (old, new): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| seen.contains(&f.stamp));
    report.files_skipped = old.len();
    report.files_applied = new.len();
    let mut options = job.options()?;
    // `--compat dbt`'s date window ends today unless `--date-to` says otherwise: a run on a later
    // day (or with another `--date-to`) moves it, with or without new events (see below).
    let window_moved = !rebuild
        && matches!((&recorded_to, &options.date_to), (Some(was), Some(now)) if was != now);
    if new.is_empty() && !rebuild && !window_moved {
        return Ok(report);
    }
    let mut events_version = None;
    // Whether the run has new events (registered as `__sessionize_new`).
    let mut any_new = false;
    // The cuts, when found during the append (see there).
    let mut early_cuts = None;
    // The delivery's sessions of its fresh actors, when computed during the append, and the set
    // of those actors, being built (see there).
    let mut delivered = None;
    // The actors with new events, and whether events without an actor are among them (which
    // `--compat dbt` keeps as one actor, as the dbt model does).
    let mut new_actors = Keys::default();
    let mut unnamed_new = false;
    // The insert id whose copies are ranked across actors, in the modes that rank them.
    let mut insert_id: Option<String> = None;
    if !new.is_empty() {
        // The new files, each with its stamp, prepared as `sessions` prepares its input (source
        // mapping, actor).
        let combined = read_new(ctx, &new, load).await?;
        if combined.is_none() {
            if has_events {
                // Only files without events: recorded, so that the next run skips them too.
                let mut empty: Vec<&str> = new.iter().map(|f| f.stamp.as_str()).collect();
                if unrecorded {
                    empty.extend(seen.iter().map(String::as_str));
                }
                let version = record_files(ctx, &events_location, &empty).await?;
                if window_moved && recorded.map(|r| r + 1) == Some(version) {
                    // The window's move is applied below, as with new events.
                    events_version = Some(version);
                } else if !rebuild {
                    report.version = Some(
                        mark_up_to_date(
                            ctx,
                            location,
                            version,
                            &fingerprint,
                            None,
                            recorded_to.as_deref(),
                        )
                        .await?,
                    );
                    report.recorded_only = true;
                }
            }
            if events_version.is_none() {
                return Ok(report);
            }
        }
        if let Some(combined) = combined {
            ctx.register_table("__sessionize_new_raw", combined.into_view())?;
            job.prepare(ctx, "__sessionize_new_raw", &mut options)
                .await?;
            let schema = ctx
                .table("__sessionize_new_raw")
                .await?
                .schema()
                .as_arrow()
                .clone();
            // The columns the sessions table is computed from: those its SQL names. Times become
            // microseconds in UTC, whatever each delivery's unit: one type for the table.
            let sql = sessions_sql("__sessionize_new_raw", &input_schema(&schema), &options)?;
            insert_id = crate::sessions::ranked_insert_id(&schema, &options)?;
            let (actor, time) = (ident(&options.actor), ident(&options.time));
            let utc = delta::micros_sql(&schema, &options.time);
            // Each column in the type the events table holds it in (see `stored_column`).
            let held_types: HashMap<String, DataType> = if has_events {
                ctx.table("__sessionize_applied")
                    .await?
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect()
            } else {
                HashMap::new()
            };
            let as_text = crate::sessions::text_columns(&schema, &options);
            let mut kept: Vec<String> = schema
                .fields()
                .iter()
                .filter(|f| sql.contains(&ident(f.name())))
                .map(|f| {
                    let stored = Stored {
                        held: held_types.get(f.name()),
                        text: !has_events && as_text.contains(f.name()),
                        number: f.name() == &options.session_id_col,
                    };
                    stored_column(f, &time, &utc, stored)
                        .map_err(|e| cannot_apply(&new, location, &e))
                })
                .collect::<Result<_>>()?;
            kept.push(ident(FILE_COLUMN));
            // Partitioned by day, so that a run reads only the days it recomputes.
            kept.push(format!("utc_day({utc}) AS {}", ident(DAY_COLUMN)));
            // Every event is kept, as the full rebuild reads every event (each mode leaves out what
            // it leaves out: events without a time, or without an actor outside `--compat dbt`).
            let held = has_events.then_some(("__sessionize_applied", time.as_str()));
            let (filter, late) =
                late_filter(ctx, late_limit, held, "__sessionize_new_raw", &time, &utc).await?;
            report.late = late;
            // The new events, narrow.
            let new_events = ctx
                .sql(&format!(
                    "SELECT {} FROM __sessionize_new_raw WHERE {filter}",
                    kept.join(", ")
                ))
                .await?;
            // Every column nullable, for the rows that only record a file (below).
            let schema = delta::nullable(new_events.schema().as_arrow());
            // Every new file (and, for a table built before such rows, every applied one) gets a
            // row of nulls with its stamp, so that the next run finds it in the null-day partition,
            // whether or not any of its events is kept (all late, without an actor, or none).
            let mut recorded_files: Vec<&str> = new.iter().map(|f| f.stamp.as_str()).collect();
            if unrecorded {
                recorded_files.extend(seen.iter().map(String::as_str));
            }
            let files = file_rows(&schema, &recorded_files)?;
            if has_events {
                // A delivery: held in memory, as it is read three times below.
                let mut batches = vec![];
                for batch in new_events.collect().await? {
                    batches.push(RecordBatch::try_new(
                        Arc::clone(&schema),
                        batch.columns().to_vec(),
                    )?);
                }
                report.events = batches.iter().map(|b| b.num_rows() as u64).sum();
                let held = MemTable::try_new(Arc::clone(&schema), vec![batches.clone()])?;
                report.left_out = left_out(ctx, Arc::new(held), &options).await?;
                batches.push(files);
                ctx.register_table(
                    "__sessionize_new",
                    Arc::new(MemTable::try_new(Arc::clone(&schema), vec![batches])?),
                )?;
            } else {
                // The first run: the whole history (4 GB in memory at 100M events), so it is
                // streamed to the append and counted from the events table it makes (below),
                // not read again.
                let with_files = new_events.union(ctx.read_batch(files)?)?;
                ctx.register_table("__sessionize_new", with_files.into_view())?;
            }
            any_new = true;
            // Each actor's earliest new event (the events without an actor as one group): the
            // touched actors, and where the cuts start. Found while the append is made.
            let first_events = async {
                collect_table(
                ctx,
                FIRST_EVENTS,
                &format!(
                    "SELECT CAST({actor} AS VARCHAR) AS user_id, \
                     arrow_cast(arrow_cast(min({time}), 'Timestamp(Microsecond, Some(\"UTC\"))'), 'Int64') AS t_min \
                     FROM __sessionize_new WHERE {time} IS NOT NULL GROUP BY CAST({actor} AS VARCHAR)"
                ),
            )
            .await?;
                if let (true, Some(id)) = (has_events, &insert_id) {
                    // An insert id of a new event that held events have too: the copies are ranked
                    // across actors (the first is kept), so every actor holding one is touched, from
                    // its copy on at the latest, and the ranking sees every copy, as a full
                    // rebuild's does. (It reads the insert ids of every held event.)
                    let id = ident(id);
                    collect_table(
                    ctx,
                    FIRST_EVENTS,
                    &format!(
                        "SELECT user_id, min(t_min) AS t_min FROM ( \
                           SELECT user_id, t_min FROM {FIRST_EVENTS} \
                           UNION ALL \
                           SELECT CAST({actor} AS VARCHAR) AS user_id, \
                             arrow_cast(arrow_cast(min({time}), 'Timestamp(Microsecond, Some(\"UTC\"))'), 'Int64') AS t_min \
                           FROM __sessionize_applied \
                           WHERE {time} IS NOT NULL AND CAST({id} AS VARCHAR) IN ( \
                             SELECT CAST({id} AS VARCHAR) FROM __sessionize_new \
                             WHERE {id} IS NOT NULL AND {time} IS NOT NULL) \
                           GROUP BY CAST({actor} AS VARCHAR)) \
                         GROUP BY user_id"
                    ),
                )
                .await?;
                }
                first_actors(ctx).await
            };
            let append = Commit {
                append: true,
                retry: true,
                partition_by: Some(DAY_COLUMN),
                metadata: vec![
                    (ACTOR.to_string(), serde_json::json!(options.actor)),
                    (FILE_ROWS.to_string(), serde_json::json!(true)),
                ],
                ..Commit::default()
            };
            let df = ctx.table("__sessionize_new").await?;
            let append = delta::commit(ctx, df, &events_location, &append);
            // The cuts need the sessions table and the new events, not the append: they are
            // found while it is made (its Parquet encoding keeps one core busy). A run that turns
            // out to be a rebuild drops them.
            let version = if has_events
                && !rebuild
                && continues(&options)
                && delta::exists(location).await?
            {
                let cuts = async {
                    register_latest(ctx, SESSIONS, location).await?;
                    let read = tails::register_latest(
                        ctx,
                        TAILS,
                        location,
                        tails::Source::Sessions(SESSIONS),
                    )
                    .await?;
                    if insert_id.is_some() {
                        // Copies of insert ids ranked across actors: an actor's sessions can
                        // change without new events of its own (see `first_events`), and
                        // its new events can lose to held copies, so that the delivery alone
                        // says nothing final; each touched actor is cut as below.
                        let actors = first_events.await?;
                        return continuation(ctx, TAILS, options.timeout)
                            .await
                            .map(|cuts| (actors, read, cuts, None));
                    }
                    // The delivery's sessions, final for its fresh actors; the others' cuts
                    // from their earliest new events, as the delivery's first sessions give
                    // them (see `fresh`). (`__sessionize_new`'s columns are already in the
                    // events table's types, as `stored_column` makes them.)
                    let found = fresh::delivered(ctx, "__sessionize_new", &options, TAILS).await?;
                    // The set of fresh actors (the commit's predicate) is built on a thread of
                    // its own while the others are computed again.
                    let (rows, newest, others) = (
                        found.rows.clone(),
                        found.newest_start,
                        found.reopened_actors.clone(),
                    );
                    let fresh = tokio::task::spawn_blocking(move || {
                        fresh::fresh_actors(&rows, newest, &others)
                    });
                    ctx.deregister_table(FIRST_EVENTS)?;
                    ctx.register_batch(FIRST_EVENTS, found.reopened.clone())?;
                    let cuts = continuation(ctx, TAILS, options.timeout).await?;
                    if !cuts.fresh.is_empty() {
                        // (Each of these has a tail ending within the timeout of its earliest
                        // new event, or starting after it: never fresh.)
                        return datafusion::common::internal_err!(
                            "an actor the delivery's sessions reopen was found fresh"
                        );
                    }
                    Ok(((Keys::default(), false), read, cuts, Some((found, fresh))))
                };
                let (version, cuts) = futures::future::join(append, cuts).await;
                let (actors, read, cuts, found) = cuts?;
                (new_actors, unnamed_new) = actors;
                report.tails_read = read;
                early_cuts = Some(cuts);
                delivered = found;
                version?
            } else if rebuild {
                // Every session is computed (a first run, or a repair): the touched actors are
                // not needed, so the new events are not grouped by actor.
                append.await?
            } else {
                let (version, actors) = futures::future::join(append, first_events).await;
                (new_actors, unnamed_new) = actors?;
                version?
            };
            if !has_events {
                // A first run's counts, from the events it appended (narrow Parquet) rather
                // than from the input again.
                let (events, left) = first_counts(
                    ctx,
                    &events_location,
                    version,
                    &options,
                    recorded_files.len(),
                )
                .await?;
                report.events = events;
                report.left_out = left;
            }
            // Another run appended since the sessions table was last brought up to date (or
            // one died): its events are not among this run's, so every session is computed again.
            if has_events && recorded.map(|r| r + 1) != Some(version) {
                rebuild = true;
            }
            events_version = Some(version);
        }
    }
    // Whether this run made a version of the events table (its new events, or only the rows that
    // record its files).
    let appended = events_version.is_some();
    let events_version = match events_version {
        Some(version) => version,
        None => delta::version(&events_location).await?,
    };
    if !any_new {
        // A repair, or a moved date window, without new events: the actor column the events
        // table was written with, and the insert id its events hold.
        if let Some(actor) = delta::last_commit_info(&events_location)
            .await?
            .get(ACTOR)
            .and_then(|v| v.as_str())
        {
            options.actor = actor.to_string();
        }
        if has_events {
            let applied = ctx.table("__sessionize_applied").await?;
            insert_id = crate::sessions::ranked_insert_id(applied.schema().as_arrow(), &options)?;
        }
    }
    // `--compat dbt`'s date window ends today unless `--date-to` says otherwise, so a run's window
    // can end after (or, given an earlier `--date-to`, before) the one the table reflects: the
    // actors with held events dated between the two ends enter (or leave) the window, and their
    // sessions are computed again too, as a full rebuild over the new window would give them;
    // also in a run without new events (files all applied before, or without events).
    let date_to = options.date_to.clone();
    if let (true, Some(was), Some(now)) = (window_moved, &recorded_to, &date_to) {
        report.window_moved = Some((was.clone(), now.clone()));
        let (low, high) = if was < now { (was, now) } else { (now, was) };
        let day = ident(DAY_COLUMN);
        let between = format!(
            "{day} > DATE {} AND {day} <= DATE {}",
            crate::sessions::literal(low),
            crate::sessions::literal(high)
        );
        let actor = ident(&options.actor);
        // With insert ids ranked across actors, also every actor holding a copy of an insert id
        // of those events: a copy entering (or leaving) the window can rank first (or stop).
        let sql = match &insert_id {
            Some(id) => {
                let id = ident(id);
                format!(
                    "SELECT DISTINCT CAST({actor} AS VARCHAR) FROM __sessionize_applied \
                     WHERE {between} OR CAST({id} AS VARCHAR) IN (SELECT CAST({id} AS VARCHAR) \
                       FROM __sessionize_applied WHERE {between} AND {id} IS NOT NULL)"
                )
            }
            None => format!(
                "SELECT DISTINCT CAST({actor} AS VARCHAR) FROM __sessionize_applied WHERE {between}"
            ),
        };
        let moved = texts(ctx, &sql).await?;
        for actor in moved {
            match actor {
                Some(actor) => new_actors.insert(&actor, None),
                None => unnamed_new = true,
            }
        }
    }
    if !rebuild && delivered.is_none() && new_actors.is_empty() && !unnamed_new {
        // Files whose events were all late or without a time: no session changes.
        report.version = Some(
            mark_up_to_date(
                ctx,
                location,
                events_version,
                &fingerprint,
                None,
                date_to.as_deref(),
            )
            .await?,
        );
        report.recorded_only = true;
        return Ok(report);
    }

    // The sessions of the touched actors by the full rebuild's SQL: in derived sessions with one
    // timeout, from the session before each actor's earliest new event on (see `continuation`);
    // otherwise from all of the actor's events.
    delta::register(ctx, "__sessionize_events", &events_location).await?;
    let actor = ident(&options.actor);
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    // The token of the tails this run writes (derived sessions with one timeout), recorded by
    // its sessions commit.
    let token = tails::token();
    let continued = continues(&options);
    let metadata = sessions_metadata(
        events_version,
        &fingerprint,
        continued.then_some(token.as_str()),
        date_to.as_deref(),
    );
    // Derived sessions with one timeout continue each actor's sessions from a cut, found with the
    // tails (see `tails`); other modes compute every session of a touched actor.
    if rebuild || !delta::exists(location).await? {
        let events = ctx
            .table("__sessionize_events")
            .await?
            .filter(column(&options.time).is_not_null())?;
        let schema = register_view(ctx, "__sessionize_touched", events)?;
        let df = ctx
            .sql(&sessions_sql("__sessionize_touched", &schema, &options)?)
            .await?;
        report.rebuilt = true;
        report.actors = count(
            ctx,
            &format!("SELECT count(DISTINCT CAST({actor} AS VARCHAR)) FROM __sessionize_touched"),
        )
        .await?;
        let how = Commit {
            partition_by,
            metadata,
            parquet: Some(crate::sessions::delta_table_properties()),
            ..Commit::default()
        };
        let version = delta::commit(ctx, df, location, &how)
            .await
            .map_err(|e| recorded_events(location, e))?;
        if continued {
            let sessions = tails::Source::Sessions(SESSIONS);
            report.tails_lost = tails::write_all(ctx, location, version, sessions, &token).await;
        }
        report.version = Some(version);
        return Ok(report);
    }
    // Named actors, as a rebuild counts them (`count(DISTINCT actor)`): not the events without an
    // actor (left out of derived sessions; one group in `--compat dbt`). Where the delivery is
    // sessionized first, the actors with a session in it (not those whose new events the mode
    // all excludes: their sessions cannot change, and are not computed again).
    report.actors = delivered
        .as_ref()
        .map_or(new_actors.len() as u64, |(found, _)| found.actors);
    let mut cuts = if let (true, Some(cuts)) = (continued, early_cuts) {
        cuts
    } else if continued {
        register_latest(ctx, SESSIONS, location).await?;
        report.tails_read =
            tails::register_latest(ctx, TAILS, location, tails::Source::Sessions(SESSIONS)).await?;
        continuation(ctx, TAILS, options.timeout).await?
    } else {
        Cuts::default()
    };
    // Per touched actor whose held events can matter (not fresh), the start of its first
    // recomputed session (`None`: all of them).
    // (In derived sessions with one timeout every touched actor has a cut; in other modes none.)
    let from: Keys = if continued {
        std::mem::take(&mut cuts.reopened)
    } else {
        std::mem::take(&mut new_actors)
    };
    let fresh_actors = std::mem::take(&mut cuts.fresh);
    // Events without an actor: derived sessions leave them out; `--compat dbt` keeps them as one
    // actor, whose sessions are all recomputed.
    let unnamed = !continued && unnamed_new;
    let reopened = unnamed || !from.is_empty();
    // The touched actors as a function holding them, not as `IN (...)`: delta-rs turns an `IN`
    // list into a chain of `OR`s as deep as the list, which overflowed the stack at 48,000
    // actors (its pruning then leaves the function out; the rows are still checked exactly).
    // With insert ids ranked across actors, the actors computed again from a held session (to
    // check below that each still has one).
    let reopened_actors: Vec<String> = if continued && insert_id.is_some() {
        from.texts().map(str::to_string).collect()
    } else {
        vec![]
    };
    let touched_set = Touched::new(from);
    let touched = ScalarUDF::new_from_impl(touched_set.clone());
    let which = |actor: Expr, start: Expr| -> Expr {
        let named = touched.call(vec![actor.clone(), start]);
        if unnamed {
            named.or(actor.is_null())
        } else {
            named
        }
    };
    // What is sessionized again: every new event (each is at or after its actor's cut), and the
    // held events of the other touched actors from their cuts on, read from the events table as
    // it was before this run's append (the run's append was the version after the one the
    // sessions table reflects, or the run would be a rebuild).
    let stored: Vec<_> = ctx
        .table("__sessionize_events")
        .await?
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != FILE_COLUMN && f.name() != DAY_COLUMN)
        .cloned()
        .collect();
    // (Without new events: none, in the events table's columns.)
    let new_table = if any_new {
        "__sessionize_new"
    } else {
        "__sessionize_events"
    };
    let new_columns: HashSet<String> = ctx
        .table(new_table)
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut events = ctx
        .table(new_table)
        .await?
        .filter(column(&options.time).is_not_null().and(lit(any_new)))?;
    if delivered.is_some() {
        // The fresh actors' sessions are computed: only the others' new events.
        events = events.filter(which(column(&options.actor), column(&options.time)))?;
    }
    let mut events = events.select(
        stored
            .iter()
            .map(|f| {
                let value = if new_columns.contains(f.name()) {
                    column(f.name())
                } else {
                    lit(datafusion::common::ScalarValue::Null)
                };
                cast(value, f.data_type().clone()).alias(f.name())
            })
            .collect::<Vec<_>>(),
    )?;
    if reopened || insert_id.is_some() {
        delta::register_version(
            ctx,
            "__sessionize_held_events",
            &events_location,
            if appended {
                events_version - 1
            } else {
                events_version
            },
        )
        .await?;
    }
    if reopened {
        let mut held = ctx
            .table("__sessionize_held_events")
            .await?
            .filter(which(column(&options.actor), column(&options.time)))?;
        if let Some((_, utc_day)) = &cuts.first_day {
            // Only the days from the earliest cut on are read.
            held = held.filter(column(DAY_COLUMN).gt_eq(lit_date(*utc_day)))?;
        }
        let held = held.select(stored.iter().map(|f| column(f.name())).collect::<Vec<_>>())?;
        events = held.union(events)?;
    }
    if let Some(id) = &insert_id {
        // The held copies of the insert ids recomputed, outside the events recomputed (an
        // actor's before its cut, an untouched actor's): ranked with them, as in a full
        // rebuild, and left out of the sessions (`sessions::RANKED_ONLY`). Without them, a
        // recomputed copy would be kept where an earlier one is held out of sight.
        let with_ranked_only = |df: datafusion::dataframe::DataFrame, value: bool| {
            df.select(
                stored
                    .iter()
                    .map(|f| column(f.name()))
                    .chain([lit(value).alias(crate::sessions::RANKED_ONLY)])
                    .collect::<Vec<_>>(),
            )
        };
        let key = "__sessionize_insert_id";
        let ids = events
            .clone()
            .filter(column(id).is_not_null())?
            .select(vec![cast(column(id), DataType::Utf8).alias(key)])?
            .distinct()?;
        let outside = ctx
            .table("__sessionize_held_events")
            .await?
            .filter(
                column(&options.time)
                    .is_not_null()
                    .and(Expr::Not(Box::new(which(
                        column(&options.actor),
                        column(&options.time),
                    )))),
            )?
            .join_on(
                ids,
                datafusion::common::JoinType::LeftSemi,
                vec![cast(column(id), DataType::Utf8).eq(column(key))],
            )?;
        events = with_ranked_only(events, false)?.union(with_ranked_only(outside, true)?)?;
    }
    let schema = register_view(ctx, "__sessionize_touched", events)?;
    let sql = if continued {
        crate::sessions::sessions_sql_continued(
            "__sessionize_touched",
            &schema,
            &options,
            CONTINUATION,
            None,
        )?
    } else {
        sessions_sql("__sessionize_touched", &schema, &options)?
    };
    // The recomputed sessions, against those the table holds for the same actors and times: only
    // rows that differ are deleted and inserted, so that a file is rewritten only where a session
    // changed (most recomputed sessions come out as they were).
    let computed = ctx.sql(&sql).await?;
    let planned = Arc::new(computed.schema().as_arrow().clone());
    let batches = computed.collect().await?;
    // A reopened actor always keeps a session from its cut on (the held session there), unless
    // every event from there became a duplicate of a copy that now ranks first: its tail is then
    // a session before the cut, which the run does not read. The tails are left to the next run
    // to compute from the table (as after a run whose tails were lost).
    let tails_known = reopened_actors.is_empty() || {
        let mut users = HashSet::new();
        for batch in &batches {
            if let Some(user) = batch.column_by_name("user_id") {
                let user = cast_array(user, &DataType::Utf8)?;
                let user = user.as_string::<i32>();
                users.extend(user.iter().flatten().map(str::to_string));
            }
        }
        reopened_actors.iter().all(|a| users.contains(a))
    };
    // The types of the rows as computed (a column of nulls can be planned as `Null`): the
    // delivery's sessions' where there are (most rows; the recomputed ones are cast to them).
    // Whether the delivery's sessions have fresh actors' (not every row is one: see below).
    let delivered_fresh = delivered
        .as_ref()
        .map(|(found, _)| found.actors > found.reopened.num_rows() as u64);
    let (delivered_rows, fresh_found, fresh_only) = match delivered {
        Some((found, fresh)) => (
            Some(fresh::without_mark(found.rows)?),
            Some((fresh, found.newest_start)),
            // The delivery's rows are read without the reopened actors' (see `fresh`).
            Some(Expr::Not(Box::new(
                ScalarUDF::new_from_impl(found.reopened_actors).call(vec![column("user_id")]),
            ))),
        ),
        None => (None, None, None),
    };
    let schema = delivered_rows
        .iter()
        .flatten()
        .chain(&batches)
        .find(|b| b.num_rows() > 0)
        .map_or(planned, |b| b.schema());
    let batches = conform(batches, &schema)?;
    let delivered_rows = delivered_rows
        .map(|found| conform(found, &schema))
        .transpose()?;
    let from_delivery = delivered_rows.is_some();
    let fields = schema.fields().clone();
    let rows = |batches: Vec<RecordBatch>| -> Result<datafusion::dataframe::DataFrame> {
        ctx.read_table(Arc::new(MemTable::try_new(
            Arc::clone(&schema),
            vec![batches],
        )?))
    };
    // The fresh actors' sessions of the delivery's.
    let fresh_of = |found: Vec<RecordBatch>| match &fresh_only {
        Some(fresh) => rows(found)?.filter(fresh.clone()),
        None => rows(found),
    };
    // Every recomputed session (the fresh actors' from the delivery too): the new tails' rows.
    let computed = match &delivered_rows {
        Some(found) => rows(batches.clone())?.union(fresh_of(found.clone())?)?,
        None => rows(batches.clone())?,
    };
    // The fresh actors' sessions are new (see `Cuts::fresh`): added without a comparison, and
    // kept out of the deleted keys. The predicate matches them by actor and start (or, where the
    // delivery is sessionized first, by start alone after the table's newest start).
    let any_fresh = !fresh_actors.is_empty();
    let (fresh_rows, compared) = if let Some(found) = delivered_rows {
        // (Found before the cuts: the recomputed sessions are the other actors'.)
        (found, rows(batches)?)
    } else if !any_fresh {
        (vec![], computed.clone())
    } else {
        // One look-up per session, each batch split by it: in the few reopened actors rather
        // than in the many fresh ones (each recomputed actor is one or the other).
        let (mut fresh_rows, mut others) = (vec![], vec![]);
        for batch in &batches {
            let Some(user) = batch.column_by_name("user_id") else {
                return plan_err!("the recomputed sessions have no user_id");
            };
            let reopened = touched_set.keys(user, None)?;
            fresh_rows.push(filter_record_batch(batch, &not(&reopened)?)?);
            others.push(filter_record_batch(batch, &reopened)?);
        }
        (fresh_rows, rows(others)?)
    };
    // Whether any fresh actor's session is written.
    let fresh_added =
        delivered_fresh.unwrap_or_else(|| fresh_rows.iter().any(|b| b.num_rows() > 0));
    if !continued {
        // (The cuts registered it in derived sessions with one timeout.)
        register_latest(ctx, SESSIONS, location).await?;
    }
    let mut held = ctx
        .table(SESSIONS)
        .await?
        .filter(which(column("user_id"), column("session_started_at")))?;
    if !reopened {
        // Only fresh actors: none of their held sessions is recomputed.
        held = held.filter(lit(false))?;
    }
    if let Some((day, _)) = &cuts.first_day {
        held = held.filter(column("session_started_at_day").gt_eq(lit_date(*day)))?;
    }
    // The table's columns in the computed order and types, read once (both comparisons use it).
    let held = held.select(
        fields
            .iter()
            .map(|f| cast(column(f.name()), f.data_type().clone()).alias(f.name()))
            .collect::<Vec<_>>(),
    )?;
    let held = rows(held.collect().await?)?;
    let mut added = compared.clone().except(held.clone())?.collect().await?;
    let removed = held.clone().except(compared.clone())?.collect().await?;
    let mut keys = HashSet::new();
    let mut days = std::collections::BTreeSet::new();
    // (Where the delivery is sessionized first, its rows of the reopened actors too, whose
    // sessions are computed again over the same events: their days come in below anyway.)
    for batch in &fresh_rows {
        if let Some(day) = batch.column_by_name("session_started_at_day") {
            let day = cast_array(day, &DataType::Int32)?;
            let day = day.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            days.extend(day.iter().flatten());
        }
    }
    for batch in added.iter().chain(&removed) {
        let (Some(key), Some(day)) = (
            batch.column_by_name("unique_session_id"),
            batch.column_by_name("session_started_at_day"),
        ) else {
            return plan_err!(
                "the sessions table has no unique_session_id or session_started_at_day"
            );
        };
        let key = cast_array(key, &DataType::Utf8)?;
        let key = key.as_string::<i32>();
        let day = cast_array(day, &DataType::Int32)?;
        let day = day.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        for i in 0..batch.num_rows() {
            keys.insert(key.is_valid(i).then(|| key.value(i).to_string()));
            if day.is_valid(i) {
                days.insert(day.value(i));
            }
        }
    }
    if keys.contains(&None) {
        // Sessions without a key (SDK sessions without a user) cannot be told apart: every one
        // of them is replaced.
        let key = column("unique_session_id");
        added = compared
            .clone()
            .except(held)?
            .filter(key.clone().is_not_null())?
            .union(compared.clone().filter(key.is_null())?)?
            .collect()
            .await?;
        // Their days too: every written row must fall in the predicate's days (an unchanged
        // session without a key, on a day no changed session has, once failed delta-rs's check).
        for batch in &added {
            if let Some(day) = batch.column_by_name("session_started_at_day") {
                let day = cast_array(day, &DataType::Int32)?;
                let day = day.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
                days.extend(day.iter().flatten());
            }
        }
    }
    if continued {
        ctx.deregister_table(COMPUTED)?;
        ctx.register_table(COMPUTED, computed.clone().into_view())?;
    }
    if keys.is_empty() && !fresh_added {
        // Every recomputed session is as the table has it.
        let version = mark_up_to_date(
            ctx,
            location,
            events_version,
            &fingerprint,
            continued.then_some(token.as_str()),
            date_to.as_deref(),
        )
        .await?;
        if continued && tails_known {
            let kept = match tails::stage_updated(
                ctx,
                location,
                TAILS,
                tails::Source::Sessions(COMPUTED),
                &token,
            )
            .await
            {
                Ok(staged) => staged.publish(ctx, location, version).await,
                Err(e) => Err(e),
            };
            report.tails_lost = kept.err().map(|e| e.to_string());
        }
        report.version = Some(version);
        // (No actor has a session among the new events: they were all left out.)
        report.recorded_only = report.actors == 0;
        return Ok(report);
    }
    let without_key = keys.remove(&None);
    let changed = Touched::udf(keys.into_iter().flatten().map(|k| (k, None)).collect());
    let key = column("unique_session_id");
    let mut replace = changed.call(vec![key.clone()]);
    if without_key {
        replace = replace.or(key.is_null());
    }
    // The rows written: the changed sessions, and the fresh actors' (below).
    let mut written = None;
    if fresh_added {
        let (fresh_actors, newest_start) = match fresh_found {
            Some((found, newest)) => (
                found
                    .await
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??,
                newest,
            ),
            None => (fresh_actors, None),
        };
        if let Some(newest) = newest_start {
            // No held session starts after the newest one: a written session that does is
            // matched by its start, without a look-up. First, so that DataFusion looks up
            // only the rest of each batch (most of a daily delivery starts after it).
            let after = column("session_started_at").gt(lit(
                datafusion::common::ScalarValue::TimestampMicrosecond(
                    Some(newest),
                    Some("UTC".into()),
                ),
            ));
            replace = after.or(replace);
        }
        let fresh = Touched::udf(fresh_actors);
        replace = replace.or(fresh.call(vec![column("user_id"), column("session_started_at")]));
        if from_delivery {
            written = Some(rows(std::mem::take(&mut added))?.union(fresh_of(fresh_rows)?)?);
        } else {
            added.extend(fresh_rows);
        }
    }
    // A term delta-rs can prune partitions (or files) by: only the days of changed sessions.
    if !days.is_empty() && days.len() <= 64 {
        replace = column("session_started_at_day")
            .in_list(days.iter().map(|d| lit_date(*d)).collect(), false)
            .and(replace);
    }
    let how = Commit {
        replace_where: Some(replace),
        partition_by,
        metadata,
        parquet: Some(crate::sessions::delta_table_properties()),
        ..Commit::default()
    };
    let written = match written {
        Some(written) => written,
        None => rows(added)?,
    };
    let commit = delta::commit(ctx, written, location, &how);
    let version = if continued && tails_known {
        // The new tails are written while the commit is made (its Parquet encoding keeps one
        // core busy), and named after its version once it is made.
        let staged = tails::stage_updated(
            ctx,
            location,
            TAILS,
            tails::Source::Sessions(COMPUTED),
            &token,
        );
        let (version, lost) = tails::beside_commit(ctx, location, commit, staged)
            .await
            .map_err(|e| recorded_events(location, e))?;
        report.tails_lost = lost;
        version
    } else {
        commit.await.map_err(|e| recorded_events(location, e))?
    };
    report.version = Some(version);
    Ok(report)
}

/// `batches` in the types of `schema` (see [`tables::cast_to_schema`]).
fn conform(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| tables::cast_to_schema(batch, schema))
        .collect()
}

/// The input's columns of `schema` (a table [`read_new`] made): without the stamp it adds to each
/// event, so that an error about a missing column lists the columns of the user's files only.
fn input_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != FILE_COLUMN)
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// The events of the files `new`, each with its stamp as [`FILE_COLUMN`] (a dictionary: one value
/// per file, not a copy per event), combined by column name; `None` when no file holds an event
/// (a delivery of an hour without events).
async fn read_new(
    ctx: &SessionContext,
    new: &[tables::InputFile],
    load: &LoadOptions,
) -> Result<Option<datafusion::dataframe::DataFrame>> {
    let mut combined: Option<datafusion::dataframe::DataFrame> = None;
    let several = new.len() > 1;
    for file in new {
        let frame = match tables::read_inputs(ctx, std::slice::from_ref(&file.path), load).await {
            Ok(frame) => frame,
            Err(e) if crate::error::is_no_events(&e) => continue,
            Err(e) => return Err(e),
        };
        // The tables' own columns (an events table's, an annotated events table's), named as
        // Delta compares names: without regard to case.
        let all: Vec<&str> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let own: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| n.eq_ignore_ascii_case(FILE_COLUMN) || n.eq_ignore_ascii_case(DAY_COLUMN))
            .collect();
        if !own.is_empty() {
            let (those, stamp) = if own.len() == 1 {
                ("that name", "an event's file stamp or UTC day")
            } else {
                ("those names", "each event's file stamp and UTC day")
            };
            return Err(tables::clashing_columns(
                &file.path,
                &own,
                &all,
                &format!(
                    "but --into keeps its own column by {those} ({stamp}; Delta Lake compares \
                     names without regard to case)"
                ),
            ));
        }
        // Text as one type where several files combine, so that files read as `Utf8View`
        // (Parquet) and as `Utf8` (CSV) can (columns the run does not read are not cast).
        let mut columns: Vec<Expr> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let column = datafusion::prelude::col(ident(f.name()));
                match f.data_type() {
                    DataType::Utf8View | DataType::LargeUtf8 if several => {
                        cast(column, DataType::Utf8).alias(f.name())
                    }
                    _ => column,
                }
            })
            .collect();
        columns.push(
            cast(
                lit(file.stamp.clone()),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            )
            .alias(FILE_COLUMN),
        );
        let frame = frame.select(columns)?;
        combined = Some(match combined {
            None => frame,
            Some(all) => all.union_by_name(frame)?,
        });
    }
    Ok(combined)
}

/// What the sessions leave out of `delivered` (a delivery's kept events, or a first run's), in
/// the words [`crate::job::left_out_notes`] uses for a full run over the same events: derived
/// sessions the events whose actor or time is null; `--compat dbt` those whose time is null and
/// those outside its date window (held in the events table all the same: a later window can take
/// them in); SDK sessions those whose time or session id is null, or whose session id is -1.
async fn left_out(
    ctx: &SessionContext,
    delivered: Arc<dyn datafusion::catalog::TableProvider>,
    options: &crate::sessions::SessionsOptions,
) -> Result<Vec<String>> {
    const DELIVERED: &str = "__sessionize_delivered";
    ctx.register_table(DELIVERED, delivered)?;
    let notes = crate::job::left_out_notes(ctx, DELIVERED, options).await;
    ctx.deregister_table(DELIVERED)?;
    notes
}

/// A first run's event count and left-out notes (see [`left_out`]), from version `version` of
/// the events table it made: every row there but the `file_rows` rows that record its files
/// (nulls but their stamp). Where another run made the table at the same time (`version` is not
/// its first), from the input again, as those rows hold that run's events too.
async fn first_counts(
    ctx: &SessionContext,
    events_location: &str,
    version: i64,
    options: &crate::sessions::SessionsOptions,
    file_rows: usize,
) -> Result<(u64, Vec<String>)> {
    const APPENDED: &str = "__sessionize_appended";
    // (`__sessionize_new` is the input's events and the same rows recording its files.)
    let table = if version == 0 {
        delta::register_version(ctx, APPENDED, events_location, version).await?;
        APPENDED
    } else {
        "__sessionize_new"
    };
    let file_rows = file_rows as u64;
    let events = count(ctx, &format!("SELECT count(*) FROM {table}"))
        .await?
        .saturating_sub(file_rows);
    let notes = crate::job::left_out_notes_besides(ctx, table, options, file_rows).await?;
    if table == APPENDED {
        ctx.deregister_table(APPENDED)?;
    }
    Ok((events, notes))
}

/// The sentence for a sessions commit that another run beat: this run's events are already in the
/// events table (its first commit), so "nothing was written" would not be true.
fn recorded_events(
    location: &str,
    e: datafusion::error::DataFusionError,
) -> datafusion::error::DataFusionError {
    if delta::is_conflict(&e) {
        datafusion::error::DataFusionError::Plan(format!(
            "the sessions table '{location}' changed under this run (another run committed \
             first): this run's events were recorded in its events table, and the next run \
             brings the sessions table up to date; run again"
        ))
    } else {
        e
    }
}

/// Where each touched actor's sessions are computed again, from the sessions table.
#[derive(Debug, Default)]
struct Cuts {
    /// Per touched actor that is not fresh (below): its cut, in microseconds since the epoch
    /// (always given; the option is the shape [`Touched`] takes).
    reopened: Keys,
    /// The actors whose cut is their earliest new event and who have no session starting at or
    /// after it (a new actor, or one whose last session ended more than the timeout before it),
    /// with that cut. Their recomputed sessions are all new: they are added without comparing
    /// them with the table's, under a predicate of actor and start at or after the cut (right for
    /// any actor, since its sessions from its cut on are all recomputed; for these it deletes
    /// nothing). None of their held events is at or after the cut, so only their new events are
    /// sessionized again. (Where the delivery is sessionized first, [`fresh`] finds the fresh
    /// actors, and the cuts are found for the others only: this is then empty.)
    fresh: Keys,
    /// The earliest cut's day of the actors that are not fresh, in the sessions table's
    /// `session_started_at_day` (a day early where the cut is an event's time, whose day in the
    /// table's time zone may be the UTC day before) and in UTC (days since the epoch); `None`
    /// when every actor is fresh.
    first_day: Option<(i32, i32)>,
}

/// Registers the function of each touched actor's continuation ([`CONTINUATION`]: its
/// `number_offset` and `previous_ended_at`, see [`continued`]) and
/// returns the cuts: for each actor with new events, where its sessions are computed again. Let
/// `S` be the last session of the sessions table (registered as `SESSIONS`) that starts at or before the
/// actor's earliest new event `t`. Sessions before `S` cannot change: a session starts at an
/// actor's first event, after a gap over the timeout, at a restart or at a maximum length reached
/// from the previous start, and none of these depends on later events. So the cut is:
/// - `S`'s start, numbered after the sessions before it and with its previous end, where `t` is at
///   most the timeout after `S`'s end (the new event may join or split `S`);
/// - `t` itself, numbered after `S` and with `S`'s end as previous end, where `t` is more than the
///   timeout after `S`'s end: `t` starts a session whatever else happens, and no event lies between
///   `S`'s end and `t` (it would be in a later session starting at or before `t`);
/// - `t`, numbered from 1, for an actor without such `S` (a new actor, or an event before all of
///   an actor's sessions): `t` is then the actor's first event.
///
/// The last two cases read no event before `t`, so a delivery of events after each actor's last
/// session (most of a daily delivery) reads only recent days of the events and sessions tables.
/// From the cut on, the sessions are computed again (`sessions_sql_continued`).
///
/// The sessions table is registered as `SESSIONS` by the caller. `S` comes from `tails` (each
/// actor's last session, registered) where that starts at or before
/// `t`; only the actors with an event before their last session's start are looked up in the
/// sessions table: first in the days from two before the earliest such event on, then, for those
/// without a session there, in every day.
async fn continuation(ctx: &SessionContext, tails: &str, timeout: Duration) -> Result<Cuts> {
    let timeout = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    // The continuation of an actor `t` (`user_id`, `t_min`) from `S` (`s`, null where the actor
    // has none), as the columns registered (see above), with whether the actor is fresh (never,
    // unless it `may_be_fresh`). `jump`: the earliest new event is more than the timeout after
    // S's end.
    let continued = |may_be_fresh: bool| {
        let jump = format!(
            "(t.t_min - {} > {timeout})",
            epoch_micros("s.session_ended_at")
        );
        let fresh = if may_be_fresh {
            format!("(s.user_id IS NULL OR {jump})")
        } else {
            "false".to_string()
        };
        let utc_day =
            "arrow_cast(utc_day(arrow_cast(t.t_min, 'Timestamp(Microsecond, None)')), 'Int32')";
        format!(
            "t.user_id, \
             CASE WHEN s.user_id IS NULL THEN 0 WHEN {jump} THEN s.user_session_number \
               ELSE s.user_session_number - 1 END AS number_offset, \
             CASE WHEN s.user_id IS NULL THEN NULL WHEN {jump} THEN s.session_ended_at \
               ELSE s.last_session_ended_at END AS previous_ended_at, \
             CASE WHEN s.user_id IS NULL OR {jump} THEN t.t_min ELSE {start} END AS cut, \
             CASE WHEN s.user_id IS NULL OR {jump} THEN {utc_day} - 1 \
               ELSE arrow_cast(s.session_started_at_day, 'Int32') END AS cut_day, \
             CASE WHEN s.user_id IS NULL OR {jump} THEN {utc_day} \
               ELSE arrow_cast(utc_day(s.session_started_at), 'Int32') END AS cut_utc_day, \
             {fresh} AS fresh",
            start = epoch_micros("s.session_started_at"),
        )
    };
    // One join of each touched actor with its tail. Where the tail starts at or before `t`, or
    // there is none, `S` is the tail (or none) and the actor's continuation follows at once:
    // most of a daily delivery. Otherwise (`late`: an event before the actor's last session)
    // `S` is looked up in the sessions table below; such an actor is never fresh, as `S`'s
    // successor starts after `t` and is computed again.
    let late = format!(
        "coalesce(s.user_id IS NOT NULL AND {} > t.t_min, false)",
        epoch_micros("s.session_started_at")
    );
    let joined = ctx
        .sql(&format!(
            "SELECT {}, t.t_min AS t_min, {late} AS late FROM {FIRST_EVENTS} t \
             LEFT JOIN (SELECT {} FROM {tails} l) s ON s.user_id = t.user_id \
             WHERE t.user_id IS NOT NULL",
            continued(true),
            tails::columns("l")
        ))
        .await?;
    let joined_schema = joined.schema().as_arrow().clone();
    let columns = joined_schema.fields().len();
    // The continuation's columns, without `t_min` and `late` (nullable: the late actors' rows
    // come from another query).
    let schema = delta::nullable(&joined_schema.project(&(0..columns - 2).collect::<Vec<_>>())?);
    let late_schema = Arc::new(joined_schema.project(&[0, columns - 2])?);
    let (mut continuations, mut late) = (vec![], vec![]);
    for batch in joined.collect().await? {
        let is_late = batch.column(columns - 1).as_boolean();
        let rows = batch.project(&(0..columns - 2).collect::<Vec<_>>())?;
        continuations.push(RecordBatch::try_new(
            Arc::clone(&schema),
            filter_record_batch(&rows, &not(is_late)?)?
                .columns()
                .to_vec(),
        )?);
        let late_rows = filter_record_batch(&batch.project(&[0, columns - 2])?, is_late)?;
        late.push(RecordBatch::try_new(
            Arc::clone(&late_schema),
            late_rows.columns().to_vec(),
        )?);
    }
    ctx.deregister_table("__sessionize_late")?;
    ctx.register_table(
        "__sessionize_late",
        Arc::new(MemTable::try_new(late_schema, vec![late])?),
    )?;
    // First the days from two before the earliest late event's on: the last session starting
    // in them at or before `t` is `S` (sessions of earlier days start earlier). The actors with
    // none there are looked up in every day.
    let earliest = ctx
        .sql(
            "SELECT arrow_cast(utc_day(arrow_cast(min(t_min), 'Timestamp(Microsecond, None)')), 'Int32') - 2 \
             FROM __sessionize_late",
        )
        .await?
        .collect()
        .await?;
    let earliest = earliest
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| cast_array(b.column(0), &DataType::Int32))
        .transpose()?
        .and_then(|day| {
            let day = day.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            day.is_valid(0).then(|| day.value(0))
        });
    if let Some(day) = earliest {
        let mut found = earlier_sessions(ctx, "__sessionize_late", Some(day)).await?;
        let mut resolved = Keys::default();
        for batch in &found {
            touched::each_text(batch.column(0), |_, user| {
                if let Some(user) = user {
                    resolved.insert(user, None);
                }
            })?;
        }
        let unresolved =
            count(ctx, "SELECT count(*) FROM __sessionize_late").await? > resolved.len() as u64;
        if unresolved {
            let rest = Touched::udf(resolved);
            let late = ctx
                .table("__sessionize_late")
                .await?
                .filter(!rest.call(vec![Expr::Column(Column::new_unqualified("user_id"))]))?;
            ctx.deregister_table("__sessionize_unresolved")?;
            let schema = Arc::new(late.schema().as_arrow().clone());
            let batches = late.collect().await?;
            ctx.register_table(
                "__sessionize_unresolved",
                Arc::new(MemTable::try_new(schema, vec![batches])?),
            )?;
            found.extend(earlier_sessions(ctx, "__sessionize_unresolved", None).await?);
        }
        // One schema for the rows of both look-ups (they differ only in what is nullable).
        ctx.deregister_table("__sessionize_s")?;
        let found_schema = match found.first() {
            Some(batch) => delta::nullable(&batch.schema()),
            None => delta::nullable(ctx.table(tails).await?.schema().as_arrow()),
        };
        let found = found
            .into_iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&found_schema), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        ctx.register_table(
            "__sessionize_s",
            Arc::new(MemTable::try_new(found_schema, vec![found])?),
        )?;
        // The late actors' continuations (`S` found, or none: every session starts after `t`).
        let late = ctx
            .sql(&format!(
                "SELECT {} FROM __sessionize_late t LEFT JOIN __sessionize_s s ON s.user_id = t.user_id",
                continued(false)
            ))
            .await?;
        for batch in late.collect().await? {
            continuations.push(RecordBatch::try_new(
                Arc::clone(&schema),
                batch.columns().to_vec(),
            )?);
        }
    }
    let actors = continuations.iter().map(RecordBatch::num_rows).sum();
    let mut cuts = Cuts {
        fresh: Keys::with_capacity(actors),
        ..Cuts::default()
    };
    let (mut day, mut utc_day) = (i32::MAX, i32::MAX);
    for batch in &continuations {
        let starts = cast_array(batch.column(3), &DataType::Int64)?;
        let starts = starts.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let days = cast_array(batch.column(4), &DataType::Int32)?;
        let days = days.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let utc_days = cast_array(batch.column(5), &DataType::Int32)?;
        let utc_days = utc_days.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let fresh = batch.column(6).as_boolean();
        touched::each_text(batch.column(0), |i, user| {
            // (The touched actors are named: `t.user_id IS NOT NULL` above.)
            let Some(user) = user else { return };
            if fresh.value(i) {
                cuts.fresh.insert(user, Some(starts.value(i)));
            } else {
                cuts.reopened.insert(user, Some(starts.value(i)));
                day = day.min(days.value(i));
                utc_day = utc_day.min(utc_days.value(i));
            }
        })?;
    }
    if !cuts.reopened.is_empty() {
        cuts.first_day = Some((day, utc_day));
    }
    continued::register(ctx, CONTINUATION, &continuations)?;
    Ok(cuts)
}

/// For each actor of `late` (`user_id`, `t_min`), its last session in the sessions table that
/// starts at or before `t_min`, as the tails' columns (actors without one have no row); only
/// sessions of the days from `from_day` (days since the epoch) on, given one.
async fn earlier_sessions(
    ctx: &SessionContext,
    late: &str,
    from_day: Option<i32>,
) -> Result<Vec<RecordBatch>> {
    let days = from_day
        .map(|d| format!(" AND arrow_cast(s.session_started_at_day, 'Int32') >= {d}"))
        .unwrap_or_default();
    let start = epoch_micros("s.session_started_at");
    let sessions =
        format!("(SELECT s.* FROM __sessionize_sessions s WHERE s.user_id IS NOT NULL{days})");
    ctx.sql(&format!(
        "SELECT {} FROM (SELECT t.user_id, max(s.session_started_at) AS cut \
           FROM {late} t JOIN {sessions} s ON s.user_id = t.user_id AND {start} <= t.t_min \
           GROUP BY t.user_id) m \
         JOIN {sessions} s ON s.user_id = m.user_id AND s.session_started_at = m.cut",
        tails::columns("s")
    ))
    .await?
    .collect()
    .await
}

/// The actors of [`FIRST_EVENTS`], and whether it has the events without an actor (a null
/// `user_id`).
async fn first_actors(ctx: &SessionContext) -> Result<(Keys, bool)> {
    let batches = ctx
        .sql(&format!("SELECT user_id FROM {FIRST_EVENTS}"))
        .await?
        .collect()
        .await?;
    let mut actors = Keys::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    let mut unnamed = false;
    for batch in &batches {
        touched::each_text(batch.column(0), |_, actor| match actor {
            Some(actor) => actors.insert(actor, None),
            None => unnamed = true,
        })?;
    }
    Ok((actors, unnamed))
}

/// Registers what `sql` gives as the in-memory table `name` (replacing one of that name).
async fn collect_table(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    let df = ctx.sql(sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// Whether a mode's sessions continue from each actor's cut ([`continuation`]): derived sessions
/// with one timeout. Other modes compute every session of a touched actor again.
fn continues(options: &crate::sessions::SessionsOptions) -> bool {
    options.source == crate::sessions::SessionSource::Derived && options.timeout_by.is_none()
}

/// A date literal, `days` since the epoch.
fn lit_date(days: i32) -> Expr {
    lit(datafusion::common::ScalarValue::Date32(Some(days)))
}

/// Rows of nulls in `schema` that only record the files `stamps`.
fn file_rows(schema: &SchemaRef, stamps: &[&str]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            if f.name() == FILE_COLUMN {
                Ok(cast_array(
                    &(Arc::new(StringArray::from(stamps.to_vec())) as ArrayRef),
                    f.data_type(),
                )?)
            } else {
                Ok(new_null_array(f.data_type(), stamps.len()))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Records in the sessions table at `location`, by a commit that changes no rows, that it
/// reflects version `events_version` of its events table (which changed without changing any
/// session: rows that only record files).
async fn mark_up_to_date(
    ctx: &SessionContext,
    location: &str,
    events_version: i64,
    fingerprint: &str,
    tails: Option<&str>,
    date_to: Option<&str>,
) -> Result<i64> {
    register_latest(ctx, SESSIONS, location).await?;
    let df = ctx
        .sql("SELECT * FROM __sessionize_sessions LIMIT 0")
        .await?;
    let how = Commit {
        append: true,
        metadata: sessions_metadata(events_version, fingerprint, tails, date_to),
        ..Commit::default()
    };
    delta::commit(ctx, df, location, &how).await
}

/// What every sessions commit records: the events table's version it reflects and the options.
/// With `tails`, the token of the tails written with the commit; with `date_to`, the end of
/// `--compat dbt`'s date window its sessions reflect.
fn sessions_metadata(
    events_version: i64,
    fingerprint: &str,
    tails: Option<&str>,
    date_to: Option<&str>,
) -> Vec<(String, serde_json::Value)> {
    let mut metadata = vec![
        (
            EVENTS_VERSION.to_string(),
            serde_json::json!(events_version),
        ),
        (OPTIONS.to_string(), serde_json::json!(fingerprint)),
    ];
    if let Some(token) = tails {
        metadata.push((tails::COMMIT_TOKEN.to_string(), serde_json::json!(token)));
    }
    if let Some(date_to) = date_to {
        metadata.push((DATE_TO.to_string(), serde_json::json!(date_to)));
    }
    metadata
}

/// Appends rows that only record the files `stamps` to the events table at `location`; returns
/// the version committed.
async fn record_files(ctx: &SessionContext, location: &str, stamps: &[&str]) -> Result<i64> {
    let table = ctx.table("__sessionize_applied").await?;
    let schema = delta::nullable(table.schema().as_arrow());
    let batch = file_rows(&schema, stamps)?;
    let df = ctx.read_batch(batch)?;
    let append = Commit {
        append: true,
        retry: true,
        partition_by: Some(DAY_COLUMN),
        metadata: vec![(FILE_ROWS.to_string(), serde_json::json!(true))],
        ..Commit::default()
    };
    delta::commit(ctx, df, location, &append).await
}

/// The error for a delivery that cannot go into the table at `location`: `why`, after the
/// delivery's first three files.
fn cannot_apply(
    new: &[tables::InputFile],
    location: &str,
    why: &str,
) -> datafusion::error::DataFusionError {
    let files: Vec<&str> = new.iter().take(3).map(|f| f.path.as_str()).collect();
    datafusion::error::DataFusionError::Plan(format!(
        "cannot apply {}{} to '{location}': {why}",
        files.join(", "),
        if new.len() > 3 { ", ..." } else { "" }
    ))
}

/// What the events table says of a delivery's column: the type it holds the column in (`held`,
/// none for a new table or column), whether a new table stores it as text (`text`), and whether
/// a column of nulls of no type is stored as a number (`number`: the SDK session id) rather than
/// as text.
struct Stored<'a> {
    held: Option<&'a DataType>,
    text: bool,
    number: bool,
}

/// How a delivery's column is stored (SQL over the delivery): its time as `utc` (microseconds in
/// UTC, one type whatever each delivery's unit); the columns the sessions SQL reads only as text
/// (`sessions::text_columns`: the actor, the event type, ...) as text from the first delivery on,
/// so that user ids read as numbers from one delivery and as text from a later one are one
/// actor's, as in a full rebuild over both; a column the table holds as text, or as a wider
/// number, cast to it; a column of nulls of no type as text (as integers for the SDK session
/// id); others as they are.
///
/// Errors: text where the table holds another type (a table built before the actor was kept as
/// text, holding numbers, and a delivery of text ids), naming the column and both types.
fn stored_column(
    field: &datafusion::arrow::datatypes::Field,
    time: &str,
    utc: &str,
    stored: Stored<'_>,
) -> std::result::Result<String, String> {
    let name = ident(field.name());
    let found = field.data_type();
    let is_text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    Ok(if name == time {
        format!("{utc} AS {time}")
    } else if let Some(held) = stored
        .held
        .filter(|held| *held != found && *found != DataType::Null)
    {
        let widening = matches!(
            (found, held),
            (
                DataType::Int8 | DataType::Int16 | DataType::Int32,
                DataType::Int64
            ) | (DataType::Float32, DataType::Float64)
        );
        if is_text(held) || widening {
            format!("arrow_cast({name}, '{held}') AS {name}")
        } else if is_text(found) {
            return Err(format!(
                "its column {name} is {found} where the table holds {held} (the type of its \
                 first delivery); rebuild the table with --output, or read the delivery with \
                 that type"
            ));
        } else {
            // Other types (another time unit, say) as delta-rs casts them.
            name
        }
    } else if let (DataType::Null, Some(held)) = (found, stored.held)
        && (is_text(held) || held.is_numeric() || held == &DataType::Boolean)
    {
        // A column without a value in this delivery (a CSV's empty column), in the type the
        // table holds it in.
        format!("arrow_cast({name}, '{held}') AS {name}")
    } else if found == &DataType::Null && stored.number {
        // An SDK session id column without a value in this delivery: the integers it holds in
        // others.
        format!("CAST({name} AS BIGINT) AS {name}")
    } else if found == &DataType::Null || (stored.text && !is_text(found)) {
        // A CSV column without a value in this delivery is read as nulls of no type; beside
        // other deliveries, where it holds text, it is text.
        format!("CAST({name} AS VARCHAR) AS {name}")
    } else {
        name
    })
}

/// The condition that keeps the events of `raw` a late limit allows, and how many it leaves out:
/// with `limit` and a table `held` = (name, time column) of the events already applied, events
/// whose UTC time (`utc`, SQL over `raw`) is older than the held events' newest minus `limit`
/// are left out (events without a time are kept: each mode leaves them out as a rebuild does).
async fn late_filter(
    ctx: &SessionContext,
    limit: Option<Duration>,
    held: Option<(&str, &str)>,
    raw: &str,
    time: &str,
    utc: &str,
) -> Result<(String, u64)> {
    let (Some(limit), Some((table, held_time))) = (limit, held) else {
        return Ok(("true".to_string(), 0));
    };
    let bound = format!(
        "(SELECT max({held_time}) FROM {table}) - INTERVAL '{} milliseconds'",
        limit.as_millis()
    );
    let late = count(
        ctx,
        &format!("SELECT count(*) FROM {raw} WHERE {utc} < {bound}"),
    )
    .await?;
    Ok((format!("{time} IS NULL OR {utc} >= {bound}"), late))
}

/// Registers the Delta table at `location` as `name`, at its latest version (replacing an earlier
/// registration of this run).
async fn register_latest(ctx: &SessionContext, name: &str, location: &str) -> Result<()> {
    ctx.deregister_table(name)?;
    delta::register(ctx, name, location).await
}

/// SQL of a timestamp expression's microseconds since the epoch (an `Int64`).
fn epoch_micros(e: &str) -> String {
    format!("arrow_cast(arrow_cast({e}, 'Timestamp(Microsecond, None)'), 'Int64')")
}

/// The first column of what `sql` returns, as text (`None` for null).
async fn texts(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<String>>> {
    let mut found = vec![];
    for batch in ctx.sql(sql).await?.collect().await? {
        let column = cast_array(batch.column(0), &DataType::Utf8)?;
        let column = column.as_string::<i32>();
        found.extend(
            (0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i).to_string())),
        );
    }
    Ok(found)
}

/// Registers `df` as the view `name`; returns its schema.
fn register_view(
    ctx: &SessionContext,
    name: &str,
    df: datafusion::dataframe::DataFrame,
) -> Result<Schema> {
    let schema = df.schema().as_arrow().clone();
    ctx.register_table(name, df.into_view())?;
    Ok(schema)
}

/// The single count that `sql` (a `SELECT count(...)`) returns.
async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                .map(|c| c.value(0))
        })
        .map_or(0, |c| c.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version that only records files says so; one whose sessions were computed again says
    /// that, even when none of its actors has a name (`--compat dbt`'s group of events without
    /// an actor).
    #[test]
    fn a_version_that_only_records_files_says_so() {
        let report = |recorded_only| IntoReport {
            files_applied: 1,
            events: 2,
            version: Some(3),
            recorded_only,
            ..IntoReport::default()
        };
        let recorded = report(true).notes().join("\n");
        assert!(
            recorded.contains("no session changed; version 3"),
            "{recorded}"
        );
        let computed = report(false).notes().join("\n");
        assert!(
            computed.contains("computed again the sessions of 0 actor(s), version 3")
                && !computed.contains("no session changed"),
            "{computed}"
        );
    }
}
