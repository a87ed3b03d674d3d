//! Annotated events tables kept up to date incrementally: `sessionize annotate NEW_INPUT... --into
//! delta:TABLE` adds a delivery of events, each with its session, to a Delta table, and the table is
//! then equal to `annotate` over every event delivered so far (row for row, in no order).
//!
//! # What is kept between runs
//! The table itself: every event, every column, with `session_id` and `session_number` as
//! `annotate` gives them, plus two columns of its own: `_sessionize_file`, the stamp of the file
//! the event came from (`PATH|SIZE|MODIFIED`), and `_sessionize_day`, the event's UTC day, by which
//! the table is partitioned. Event times are stored as microseconds in UTC, whatever each
//! delivery's unit, so that every delivery has one type: Delta Lake's timestamps are microseconds,
//! so finer times are cut to the microsecond before sessions are formed (events less than 1 µs
//! apart then tie). In derived sessions with one timeout, beside it, each actor's last session
//! (its start, end and number: [`tails`], as for the sessions table).
//!
//! # A run, in one Delta commit
//! 1. The input files whose stamps the table holds are skipped.
//! 2. For each actor with new events, the cut, from its earliest new event `t` and its tail `T`
//!    (its last session), in derived sessions with one timeout: none where the actor has no `T`,
//!    or `t` is more than the timeout after `T`'s end (the actor is fresh: `t` starts a session,
//!    no held event's session changes, and the new events' sessions are theirs alone, numbered
//!    after `T`); `T`'s start where `t` is at or after it; otherwise the start of the actor's last
//!    session that starts at or before `t`, found in the table (sessions before it cannot
//!    change, as for the sessions table: [`super::continuation`]), or all of its events where
//!    none does. In other modes, all of the actor's events.
//! 3. The actors' held events from their cuts on (read from the earliest cut's day on) and the
//!    new events are annotated again by `annotate`'s SQL ([`crate::sessions::annotate_sql`]),
//!    numbered after the cut's session.
//! 4. One commit replaces the touched actors' events from the first whose session changed on, and
//!    adds the new events (`replaceWhere`, with the days of those rows for pruning); the new
//!    tails are written beside it and named after its version.
//!
//! A run that fails or is killed leaves the table at its previous version; a run that finds the
//! table changed under it fails, saying so, and the next run applies its files.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, Schema};
use datafusion::common::{Column, Result, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{Expr, SessionContext};

use super::{
    DAY_COLUMN, FILE_COLUMN, IntoReport, OPTIONS, Touched, count, epoch_micros, lit_date,
    options_fingerprint, other_options, read_new, refuse_foreign, register_latest, tails, texts,
};
use crate::annotate::output_names;
use crate::delta::{self, Commit};
use crate::job::SessionsJob;
use crate::sessions::{SessionSource, annotate_sql, ident};
use crate::tables::{self, LoadOptions};

/// The table as it was before the run.
const HELD: &str = "__sessionize_annotated";
/// The new files' events, prepared.
const RAW: &str = "__sessionize_new_raw";
/// The new events, with times in UTC microseconds (a view: the files are read again where needed,
/// rather than every column of every new event held in memory).
const NEW: &str = "__sessionize_new";
/// What is annotated again: the touched actors' held events from their cuts on, and the new ones.
const AGAIN: &str = "__sessionize_again";
/// Per actor with a cut: the number of sessions before it.
const OFFSETS: &str = "__sessionize_offsets";
/// The recomputed events' columns of what the table held for them (absent for new events).
const OLD_ID: &str = "__sessionize_old_session_id";
const OLD_NUMBER: &str = "__sessionize_old_session_number";
const HELD_ROW: &str = "__sessionize_held";
/// The touched actors' events annotated again.
const ANNOTATED_AGAIN: &str = "__sessionize_annotated_again";
/// Each actor's last session in the table ([`tails`]).
const TAILS: &str = "__sessionize_annotated_tails";
/// How the options an annotated events table records begin (a sessions table's do not).
pub(super) const FINGERPRINT_PREFIX: &str = "annotate: ";

/// Adds the events of `inputs` (files, folders, globs or URLs) that the annotated events table at
/// `location` does not hold yet, each with its session, and gives the touched actors' later events
/// their sessions again, in one commit (see the module documentation). The table is created by
/// the first run. `late_limit`: events older than the table's newest event minus this are left out
/// and counted (a file all of whose events were left out is read again by the next run, and left
/// out again).
///
/// Errors: as `annotate` for the inputs and options; `--stitch` (a later delivery can give earlier
/// events another user id) and `--dedup insert_id` (a later delivery can bring an earlier copy of
/// an event the table numbered); a table that `annotate --into` did not build or built with other
/// options; deliveries whose columns differ from the table's; a table that changed under the run.
pub async fn annotate_into(
    ctx: &SessionContext,
    job: &SessionsJob,
    inputs: &[String],
    load: &LoadOptions,
    location: &str,
    late_limit: Option<Duration>,
) -> Result<IntoReport> {
    if job.stitch.is_some() {
        return plan_err!(
            "--into cannot keep --stitch events up to date: a later delivery can give earlier \
             events another user id; annotate in full with --output instead"
        );
    }
    if job.dedup_insert_id {
        return plan_err!(
            "--into cannot keep --dedup insert_id events up to date: a later delivery can bring an \
             earlier copy of an event the table numbered; annotate in full with --output instead"
        );
    }
    let options_now = options_fingerprint(job)?;
    let fingerprint = format!("{FINGERPRINT_PREFIX}{options_now}");
    let exists = delta::exists(location).await?;
    let mut seen = HashSet::new();
    let mut report = IntoReport::default();
    if exists {
        match delta::last_commit_info(location)
            .await?
            .get(OPTIONS)
            .and_then(|v| v.as_str())
        {
            Some(built) if built == fingerprint => {}
            Some(built) => match built.strip_prefix(FINGERPRINT_PREFIX) {
                Some(built) => return Err(other_options(location, built, &options_now)),
                None => {
                    return plan_err!(
                        "'{location}' is a sessions table (sessions --into): annotate --into keeps \
                         a table of annotated events; give another folder"
                    );
                }
            },
            None => {
                return plan_err!(
                    "'{location}' is a Delta table that annotate --into did not build: --into \
                     would replace its rows; build the table with --into from all its inputs, in \
                     a new folder"
                );
            }
        }
        register_latest(ctx, HELD, location).await?;
        let sql = format!("SELECT DISTINCT {} FROM {HELD}", ident(FILE_COLUMN));
        seen.extend(texts(ctx, &sql).await?.into_iter().flatten());
    } else {
        refuse_foreign(location).await?;
    }
    let mut files = tables::input_files(ctx, inputs).await?;
    let mut named = HashSet::new();
    files.retain(|f| named.insert(f.stamp.clone()));
    let (old, new): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| seen.contains(&f.stamp));
    report.files_skipped = old.len();
    report.files_applied = new.len();
    let Some(combined) = read_new(ctx, &new, load).await? else {
        return Ok(report);
    };
    ctx.deregister_table(RAW)?;
    ctx.register_table(RAW, combined.into_view())?;
    let mut options = job.options()?;
    job.prepare(ctx, RAW, &mut options).await?;
    let raw_schema = ctx.table(RAW).await?.schema().as_arrow().clone();
    let (actor, time) = (ident(&options.actor), ident(&options.time));
    // The delivery alone is checked as `annotate` checks its input (a newcomer audit found a
    // delivery without the actor column failing on the table's query, naming internal names).
    let input = super::input_schema(&raw_schema);
    crate::sessions::require_actor(&input, &options.actor, "--actor COLUMN")?;
    crate::sessions::require_column(&input, &options.time, "--time")?;

    // The new events: times in UTC microseconds, the stamp as text; late ones left out.
    let utc = delta::micros_sql(&raw_schema, &options.time);
    let names = output_names(&raw_schema);
    // The table's type of each column, which a delivery's text cannot go into.
    let held_schema = match exists {
        true => Some(ctx.table(HELD).await?.schema().as_arrow().clone()),
        false => None,
    };
    let columns: Vec<String> = raw_schema
        .fields()
        .iter()
        .zip(&names)
        .map(|(f, name)| {
            if f.name() == FILE_COLUMN {
                // The stamp as text: the table's column, beside the held events' stamps.
                Ok(format!("CAST({0} AS VARCHAR) AS {0}", ident(FILE_COLUMN)))
            } else {
                // The annotated events keep each column's type (the table is the output).
                let held = held_schema
                    .as_ref()
                    .and_then(|s| s.field_with_name(name).ok())
                    .map(|f| f.data_type());
                let stored = super::Stored {
                    held,
                    text: false,
                    number: f.name() == &options.session_id_col,
                };
                super::stored_column(f, &time, &utc, stored)
                    .map_err(|e| super::cannot_apply(&new, location, &e))
            }
        })
        .collect::<Result<_>>()?;
    let out = |name: &str| -> String {
        raw_schema
            .index_of(name)
            .map(|i| names[i].clone())
            .unwrap_or_else(|_| name.to_string())
    };
    let (held_actor, held_time) = (out(&options.actor), out(&options.time));
    let held_time_sql = ident(&held_time);
    let held = exists.then_some((HELD, held_time_sql.as_str()));
    let (filter, late) = super::late_filter(ctx, late_limit, held, RAW, &time, &utc).await?;
    report.late = late;
    let new_events = ctx
        .sql(&format!(
            "SELECT {} FROM {RAW} WHERE {filter}",
            columns.join(", ")
        ))
        .await?;
    ctx.deregister_table(NEW)?;
    ctx.register_table(NEW, new_events.into_view())?;
    report.events = count(ctx, &format!("SELECT count(*) FROM {NEW}")).await?;
    if report.events == 0 {
        // Every event late: nothing to apply (the file is read again next time, and left out).
        return Ok(report);
    }
    let applied: Vec<String> = texts(
        ctx,
        &format!("SELECT DISTINCT {} FROM {NEW}", ident(FILE_COLUMN)),
    )
    .await?
    .into_iter()
    .flatten()
    .collect();
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    // Derived sessions with one timeout continue each actor's sessions from a cut, found with the
    // tails beside the table ([`super::tails`]); other modes annotate every event of a touched
    // actor again.
    let continued = options.source == SessionSource::Derived && options.timeout_by.is_none();
    // The token of the tails this run writes, recorded by its commit.
    let token = tails::token();
    let mut metadata = vec![(OPTIONS.to_string(), serde_json::json!(fingerprint))];
    if continued {
        metadata.push((tails::COMMIT_TOKEN.to_string(), serde_json::json!(token)));
    }
    let held_actor_sql = ident(&held_actor);
    let events_of = |relation| tails::Source::Events {
        relation,
        actor: &held_actor_sql,
        time: &held_time_sql,
    };

    if !exists {
        // The first run: `annotate`'s two passes (no sort of every column), with each event's day.
        let df = crate::annotate::annotate_frame(ctx, NEW, &options, false).await?;
        let mut columns: Vec<Expr> = df
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name()))
            .collect();
        columns.push(
            ctx.udf("utc_day")?
                .call(vec![column(&held_time)])
                .alias(DAY_COLUMN),
        );
        let df = df.select(columns)?;
        report.rebuilt = true;
        report.actors = count(
            ctx,
            &format!(
                "SELECT count(DISTINCT CAST({actor} AS VARCHAR)) FROM {NEW} \
                 WHERE {actor} IS NOT NULL AND {time} IS NOT NULL"
            ),
        )
        .await?;
        let how = Commit {
            partition_by: Some(DAY_COLUMN),
            metadata,
            parquet: Some(row_groups()),
            ..Commit::default()
        };
        let version = delta::commit(ctx, df, location, &how).await?;
        if continued {
            report.tails_lost =
                tails::write_all(ctx, location, version, events_of(HELD), &token).await;
        }
        report.version = Some(version);
        return Ok(report);
    }

    // Each touched actor's earliest new event, and (in the sessions that continue) its tail.
    let earliest = format!(
        "SELECT CAST({actor} AS VARCHAR) AS a, min({time}) AS t FROM {NEW} \
         WHERE {actor} IS NOT NULL AND {time} IS NOT NULL GROUP BY 1"
    );
    let sql = if continued {
        report.tails_read = tails::register_latest(ctx, TAILS, location, events_of(HELD)).await?;
        format!(
            "WITH m AS ({earliest}) SELECT m.a, {}, {}, {}, l.user_session_number \
             FROM m LEFT JOIN {TAILS} l ON m.a = l.user_id",
            epoch_micros("m.t"),
            epoch_micros("l.session_started_at"),
            epoch_micros("l.session_ended_at"),
        )
    } else {
        format!(
            "WITH m AS ({earliest}) SELECT m.a, {}, CAST(NULL AS BIGINT) AS s, \
             CAST(NULL AS BIGINT) AS e, CAST(NULL AS BIGINT) AS n FROM m",
            epoch_micros("m.t")
        )
    };
    // Per touched actor whose held events are read again, the cut: its events from that time on
    // (`None`: all of them); per actor numbered after earlier sessions, how many there are.
    let mut from: HashMap<String, Option<i64>> = HashMap::new();
    let mut offsets: Vec<(String, i64)> = vec![];
    // The actors with a new event before their tail's start (with that event's time): their
    // cuts are in the table.
    let mut late: Vec<(String, i64)> = vec![];
    let timeout = i64::try_from(options.timeout.as_micros()).unwrap_or(i64::MAX);
    for batch in ctx.sql(&sql).await?.collect().await? {
        let a = cast_array(batch.column(0), &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        let [t, start, end, number] = [1, 2, 3, 4].map(|i| batch.column(i));
        let [t, start, end, number] =
            [t, start, end, number].map(|c| c.as_primitive::<Int64Type>());
        for i in 0..batch.num_rows() {
            report.actors += 1;
            let actor = a.value(i).to_string();
            let tail = (start.is_valid(i) && end.is_valid(i) && number.is_valid(i))
                .then(|| (start.value(i), end.value(i), number.value(i)));
            match tail {
                // Not in the sessions that continue: every event of the actor again.
                _ if !continued => {
                    from.insert(actor, None);
                }
                // No session in the table: the new events' sessions are the actor's first ones,
                // and no held event's session changes (fresh, as for the sessions table:
                // `super::fresh`).
                None => {}
                // The earliest new event more than the timeout after the tail's end starts a
                // session: the held events keep theirs, the new ones are numbered after the tail.
                Some((_, end, number)) if t.value(i).saturating_sub(end) > timeout => {
                    offsets.push((actor, number));
                }
                // At or after the tail's start: the cut is the tail.
                Some((start, _, number)) if t.value(i) >= start => {
                    from.insert(actor.clone(), Some(start));
                    offsets.push((actor, number - 1));
                }
                // Before it: the cut is an earlier session, found in the table below.
                Some(_) => {
                    from.insert(actor.clone(), None);
                    late.push((actor, t.value(i)));
                }
            }
        }
    }
    if continued && !late.is_empty() {
        // First from the days from two before the earliest late event on; then, for the actors
        // these do not answer, from every day.
        let window = late.iter().map(|(_, t)| t.div_euclid(DAY_MICROS)).min();
        let window = window.and_then(|day| i32::try_from(day - 2).ok());
        let names: Vec<String> = late.into_iter().map(|(a, _)| a).collect();
        let late = LateActors {
            actor: &held_actor,
            actor_sql: &held_actor_sql,
            time_sql: &held_time_sql,
            earliest: &earliest,
            timeout,
        };
        let mut cuts = match window {
            Some(day) => late.cuts(ctx, names.clone(), Some(day)).await?,
            None => HashMap::new(),
        };
        let rest: Vec<String> = names
            .into_iter()
            .filter(|a| !cuts.contains_key(a))
            .collect();
        if !rest.is_empty() {
            cuts.extend(late.cuts(ctx, rest, None).await?);
        }
        for (a, (start, number)) in cuts {
            from.insert(a.clone(), Some(start));
            offsets.push((a, number - 1));
        }
    }
    // The days the held events from the cuts on can lie in: from the earliest cut's day (a
    // partition filter, by which delta-rs reads only those days' files).
    let first_day = from
        .values()
        .map(|cut| cut.map(|c| c.div_euclid(DAY_MICROS)))
        .try_fold(i64::MAX, |first, day| day.map(|d| first.min(d)))
        .and_then(|day| i32::try_from(day).ok());
    let nothing_held = from.is_empty();
    let touched = Touched::udf(from.into_iter().collect());
    let which = |actor: Expr, time: Expr| touched.call(vec![actor, time]);

    // The touched actors' held events from their cuts on, under their input names: every column
    // of the table but its own three (a delivery may lack some, or bring others).
    let held_table = ctx.table(HELD).await?;
    let mut back: Vec<Expr> = held_table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|name| !matches!(name.as_str(), "session_id" | "session_number" | DAY_COLUMN))
        .map(|name| column(name).alias(input_name(name)))
        .collect();
    // What each held event had, to keep the events whose session comes out the same.
    back.push(column("session_id").alias(OLD_ID));
    back.push(column("session_number").alias(OLD_NUMBER));
    back.push(datafusion::prelude::lit(true).alias(HELD_ROW));
    let mut read_again = which(column(&held_actor), column(&held_time));
    if nothing_held {
        // Every touched actor fresh: no held event is read (a filter DataFusion removes, with
        // the scan under it).
        read_again = datafusion::prelude::lit(false);
    } else if let Some(day) = first_day {
        read_again = column(DAY_COLUMN).gt_eq(lit_date(day)).and(read_again);
    }
    let held = held_table.filter(read_again)?.select(back)?;
    let again = held.union_by_name(ctx.table(NEW).await?)?;
    let again_schema = again.schema().as_arrow().clone();
    ctx.deregister_table(AGAIN)?;
    ctx.register_table(AGAIN, again.into_view())?;
    let offsets_batch = RecordBatch::try_from_iter([
        (
            "a",
            Arc::new(datafusion::arrow::array::StringArray::from_iter_values(
                offsets.iter().map(|(a, _)| a.as_str()),
            )) as datafusion::arrow::array::ArrayRef,
        ),
        (
            "number_offset",
            Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                offsets.iter().map(|(_, n)| *n),
            )),
        ),
    ])?;
    ctx.deregister_table(OFFSETS)?;
    ctx.register_batch(OFFSETS, offsets_batch)?;
    let df = annotated(ctx, AGAIN, &again_schema, &options, &held_time).await?;
    let output: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| ![OLD_ID, OLD_NUMBER, HELD_ROW].contains(&n.as_str()))
        .collect();
    ctx.deregister_table(ANNOTATED_AGAIN)?;
    ctx.register_table(ANNOTATED_AGAIN, df.into_view())?;
    // Per touched actor, the first held event whose session changed: it and the actor's later
    // events are replaced; the earlier ones stay as the table has them (most actors' new events
    // only extend their last session or start new ones, and none of their held events change).
    let sql = format!(
        "SELECT CAST({a} AS VARCHAR), {} \
         FROM {ANNOTATED_AGAIN} WHERE {HELD_ROW} AND (({OLD_ID} IS DISTINCT FROM session_id) \
         OR ({OLD_NUMBER} IS DISTINCT FROM session_number)) GROUP BY 1",
        epoch_micros(&format!("min({})", ident(&held_time))),
        a = ident(&held_actor),
    );
    let mut changed: HashMap<String, Option<i64>> = HashMap::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let a = cast_array(batch.column(0), &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        let t = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            changed.insert(a.value(i).to_string(), Some(t.value(i)));
        }
    }
    report.changed = Some(changed.len() as u64);
    let changed = Touched::udf(changed.into_iter().collect());
    let replaced = |actor: &str, time: &str| changed.call(vec![column(actor), column(time)]);
    // The rows written: the new events, and the held events from each changed actor's first
    // change on.
    let written = ctx
        .table(ANNOTATED_AGAIN)
        .await?
        .filter(
            column(HELD_ROW)
                .is_null()
                .or(replaced(&held_actor, &held_time)),
        )?
        .select(output.iter().map(|n| column(n)).collect::<Vec<_>>())?;
    // Their days, so that delta-rs reads and rewrites only those.
    let utc_day = ctx.udf("utc_day")?;
    let day_of =
        datafusion::prelude::cast(utc_day.call(vec![column(&options.time)]), DataType::Int32)
            .alias("day");
    let days_of = ctx
        .table(AGAIN)
        .await?
        .filter(
            column(&options.time).is_not_null().and(
                column(HELD_ROW)
                    .is_null()
                    .or(replaced(&options.actor, &options.time)),
            ),
        )?
        .select(vec![day_of])?
        .distinct()?;
    let mut days = BTreeSet::new();
    for batch in days_of.collect().await? {
        let day = batch.column(0).as_primitive::<Int32Type>();
        days.extend(day.iter().flatten());
    }
    let stamps = Touched::udf(applied.into_iter().map(|s| (s, None)).collect());
    let mut replace = replaced(&held_actor, &held_time).or(stamps.call(vec![column(FILE_COLUMN)]));
    if !days.is_empty() && days.len() <= 64 {
        let day = column(DAY_COLUMN);
        replace = day
            .clone()
            .in_list(days.iter().map(|d| lit_date(*d)).collect(), false)
            .or(day.is_null())
            .and(replace);
    }
    let how = Commit {
        replace_where: Some(replace),
        metadata,
        merge_schema: true,
        parquet: Some(row_groups()),
        ..Commit::default()
    };
    let commit = delta::commit(ctx, written, location, &how);
    if !continued {
        report.version = Some(commit.await?);
        return Ok(report);
    }
    // The new tails are written while the commit is made, and named after its version once it
    // is (as for the sessions table).
    let staged = tails::stage_updated(ctx, location, TAILS, events_of(ANNOTATED_AGAIN), &token);
    let (version, lost) = tails::beside_commit(ctx, location, commit, staged).await?;
    report.tails_lost = lost;
    report.version = Some(version);
    Ok(report)
}

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Finds the cuts of late actors (with a new event before their tail's start) in the table's
/// events ([`HELD`]).
struct LateActors<'a> {
    /// The table's actor column (its name), and it and the time column as SQL.
    actor: &'a str,
    actor_sql: &'a str,
    time_sql: &'a str,
    /// SQL of each touched actor's earliest new event (`a`, `t`).
    earliest: &'a str,
    /// The timeout, in microseconds.
    timeout: i64,
}

impl LateActors<'_> {
    /// The cut of each of `actors`: the start (microseconds) and number of its last session that
    /// starts at or before its earliest new event (actors without one are left out). With
    /// `from_day` (a UTC day, in days since the epoch), only the events of that day on are read,
    /// and an actor is answered only where they make the answer certain; the others are left out.
    ///
    /// Why a window can answer: in the sessions that continue, consecutive events of one session
    /// are at most the timeout apart, and each session follows the one before. Of an actor's
    /// sessions seen in the window, each after the first (the lowest number) starts inside it;
    /// the first does too where its earliest event there is more than the timeout after the
    /// window's start (an earlier event of the same session would lie inside it). Among these
    /// sessions whose start is certain, the last that starts at or before the earliest new
    /// event is the cut: any later session that does is among them.
    async fn cuts(
        &self,
        ctx: &SessionContext,
        actors: Vec<String>,
        from_day: Option<i32>,
    ) -> Result<HashMap<String, (i64, i64)>> {
        const LATE_HELD: &str = "__sessionize_held_late";
        let column = |name: &str| Expr::Column(Column::new_unqualified(name));
        let touched = Touched::udf(actors.into_iter().map(|a| (a, None)).collect());
        let mut held = ctx
            .table(HELD)
            .await?
            .filter(touched.call(vec![column(self.actor)]))?;
        // The sessions whose start is certain, and start at or before the earliest new event.
        let mut qualify = "JOIN m ON s.a = m.a WHERE s.start <= m.t".to_string();
        if let Some(day) = from_day {
            held = held.filter(column(DAY_COLUMN).gt_eq(lit_date(day)))?;
            let after = (i64::from(day) * DAY_MICROS).saturating_add(self.timeout);
            qualify = format!(
                "JOIN m ON s.a = m.a JOIN f ON s.a = f.a WHERE s.start <= m.t \
                 AND (s.n > f.n0 OR {} > {after})",
                epoch_micros("s.start")
            );
        }
        ctx.deregister_table(LATE_HELD)?;
        ctx.register_table(LATE_HELD, held.into_view())?;
        let sql = format!(
            "WITH s AS (SELECT CAST({a} AS VARCHAR) AS a, session_number AS n, min({t}) AS start \
             FROM {LATE_HELD} WHERE session_number IS NOT NULL GROUP BY 1, 2), \
             f AS (SELECT a, min(n) AS n0 FROM s GROUP BY a), m AS ({earliest}) \
             SELECT s.a, s.n, {start} FROM s {qualify}",
            a = self.actor_sql,
            t = self.time_sql,
            earliest = self.earliest,
            start = epoch_micros("s.start"),
        );
        let mut cuts: HashMap<String, (i64, i64)> = HashMap::new();
        for batch in ctx.sql(&sql).await?.collect().await? {
            let a = cast_array(batch.column(0), &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            let n = cast_array(batch.column(1), &DataType::Int64)?;
            let n = n.as_primitive::<Int64Type>();
            let start = batch.column(2).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let entry = cuts.entry(a.value(i).to_string()).or_insert((i64::MIN, 0));
                if start.value(i) > entry.0 {
                    *entry = (start.value(i), n.value(i));
                }
            }
        }
        Ok(cuts)
    }
}

/// The input name of a column of the table: `annotate` renamed an input's `session_id`,
/// `session_number` and `session_length` to `<name>_input` ([`output_names`]).
fn input_name(name: &str) -> &str {
    let mut root = name;
    while let Some(shorter) = root.strip_suffix("_input") {
        root = shorter;
    }
    match name.strip_suffix("_input") {
        Some(base) if ["session_id", "session_number", "session_length"].contains(&root) => base,
        _ => name,
    }
}

/// `annotate`'s SQL over `table`, with the UTC day of each event as [`DAY_COLUMN`], and each
/// actor's session numbers following the sessions before its cut ([`OFFSETS`]).
async fn annotated(
    ctx: &SessionContext,
    table: &str,
    schema: &Schema,
    options: &crate::sessions::SessionsOptions,
    held_time: &str,
) -> Result<datafusion::dataframe::DataFrame> {
    let sql = annotate_sql(table, schema, options, false)?;
    let names = output_names(schema);
    let mut columns: Vec<String> = names.iter().map(|n| format!("e.{}", ident(n))).collect();
    columns.push("e.session_id".to_string());
    columns.push("e.session_number + COALESCE(o.number_offset, 0) AS session_number".to_string());
    columns.push(format!(
        "utc_day(e.{}) AS {}",
        ident(held_time),
        ident(DAY_COLUMN)
    ));
    let actor = ident(&names[schema.index_of(&options.actor)?]);
    ctx.sql(&format!(
        "SELECT {} FROM ({sql}) e LEFT JOIN {OFFSETS} o ON CAST(e.{actor} AS VARCHAR) = o.a",
        columns.join(", ")
    ))
    .await
}

/// The annotated events table's data files: row groups of [`ROW_GROUP_ROWS`] rows, Snappy as
/// delta-rs writes them. delta-rs writes each day partition with a writer of its own, and each
/// writer holds its row group's encoded pages until the group is complete: with the parquet
/// crate's default (1Mi rows), a first run over a month of events held nearly all of them,
/// encoded, in memory at once.
fn row_groups() -> datafusion::parquet::file::properties::WriterProperties {
    datafusion::parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// See [`row_groups`].
const ROW_GROUP_ROWS: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    #[test]
    fn input_names_undo_annotates_renaming() {
        assert_eq!(super::input_name("session_id_input"), "session_id");
        assert_eq!(
            super::input_name("session_id_input_input"),
            "session_id_input"
        );
        assert_eq!(super::input_name("country_input"), "country_input");
        assert_eq!(super::input_name("user_id"), "user_id");
    }
}
