//! A delivery's sessions computed before its cuts are known: each actor's new events sessionized
//! alone, continuing from its tail, which is the actor's final result where the actor is fresh.
//!
//! # Why this is right for fresh actors
//! Let `t` be an actor's earliest new event that takes part in sessions and `T` its tail (its last
//! session in the table). Where `T` ends more than the timeout before `t`, or there is no `T`, the
//! actor is fresh ([`super::Cuts`]): `t` starts a session whatever else happens, no held event
//! lies at or after `t`, and its sessions from `t` on are those of its new events alone,
//! numbered after `T` with `T`'s end as the first one's previous end. That is exactly what the
//! continued sessions SQL gives over the new events with `T` as continuation
//! ([`crate::sessions::sessions_sql_continued`]), so for fresh actors these rows are final.
//! For the other actors (an event within the timeout of `T`'s end, or before it) the rows are
//! dropped and the actors are computed again from their cuts ([`super::continuation`]).
//!
//! # Why first
//! The cuts of a daily delivery are almost all fresh, and finding them took a pass of its own
//! over the delivery (each actor's earliest new event, grouped by actor) and a join with the
//! tails, before the same events were sessionized. Here the sessionizing pass finds them: the
//! first session of each actor in the delivery starts at `t` and carries `T`'s end as its
//! previous end, and this runs beside the events append, as the cuts did.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Result, plan_err};
use datafusion::prelude::SessionContext;

use super::touched::{self, Keys, Touched};
use crate::sessions::SessionsOptions;

/// The column that marks each actor's first session in the delivery (dropped from the rows).
const FIRST: &str = "__sessionize_first_delivered";
/// Each actor's tail as a continuation (see [`super::continued`]).
const TAIL_CONTINUATION: &str = "__sessionize_tail";

/// What [`delivered`] found.
pub(super) struct Delivered {
    /// The delivery's sessions, in the sessions table's columns and a last one that marks each
    /// actor's first session (see [`fresh_actors`], [`without_mark`]): final for the fresh
    /// actors, and to be left out for the others (`reopened_actors`). (Not filtered here: a copy
    /// of every row, 0.1 to 0.4 s on one core at 100M events, mostly page faults, for the rows
    /// of about a hundred actors; they are left out where the rows are read.)
    pub rows: Vec<RecordBatch>,
    /// The actors that are not fresh, as a set.
    pub reopened_actors: Touched,
    /// How many actors have sessions in the delivery, fresh or not (the fresh ones: this less
    /// `reopened`'s rows).
    pub actors: u64,
    /// The latest start of any session the table holds (microseconds since the epoch; `None`
    /// for a table without sessions): no held session starts after it, so a replace predicate
    /// needs no look-up for a row that does (see [`fresh_actors`]).
    pub newest_start: Option<i64>,
    /// The other actors, each with its earliest new event that takes part in sessions
    /// (`user_id`, `t_min` in microseconds since the epoch), as [`super::continuation`] reads
    /// them.
    pub reopened: RecordBatch,
}

/// The sessions of the events of `table` (a delivery) per actor, continuing from the actor's tail
/// in `tails` (see [`super::tails`]), split into the fresh actors' (final) and the others'
/// (see the module's documentation). `options` must be derived sessions with one timeout.
pub(super) async fn delivered(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
    tails: &str,
) -> Result<Delivered> {
    // (The continuation's columns, then each tail's start: every actor's last session is among
    // the tails, so the latest start the table holds is theirs.)
    let continuation = ctx
        .sql(&format!(
            "SELECT user_id, user_session_number AS number_offset, \
             session_ended_at AS previous_ended_at, session_started_at FROM {tails}"
        ))
        .await?
        .collect()
        .await?;
    super::continued::register(ctx, TAIL_CONTINUATION, &continuation)?;
    let mut newest_start = None;
    for batch in &continuation {
        let starts = touched::micros(batch.column(3))?;
        newest_start = newest_start.max(datafusion::arrow::compute::max(&starts));
    }
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    let sql = crate::sessions::sessions_sql_continued(
        table,
        &schema,
        options,
        TAIL_CONTINUATION,
        Some(FIRST),
    )?;
    let batches = ctx.sql(&sql).await?.collect().await?;
    let timeout = i64::try_from(options.timeout.as_micros()).unwrap_or(i64::MAX);
    split(batches, timeout, newest_start)
}

/// The column `name` of the delivery's sessions.
fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    match batch.column_by_name(name) {
        Some(c) => Ok(Arc::clone(c)),
        None => plan_err!("the delivery's sessions have no {name}"),
    }
}

/// Calls `f` with each actor's first session in `batch` (the delivery's sessions, with the
/// [`FIRST`] column): the actor, the session's start and its previous end (both in microseconds
/// since the epoch; the previous end is the tail's end, `None` for an actor without a tail).
fn each_first(batch: &RecordBatch, mut f: impl FnMut(&str, i64, Option<i64>)) -> Result<()> {
    let first = column(batch, FIRST)?;
    let Some(first) = first.as_boolean_opt() else {
        return plan_err!("the delivery's sessions' {FIRST} is not a boolean");
    };
    let start = touched::micros(&column(batch, "session_started_at")?)?;
    let previous = touched::micros(&column(batch, "last_session_ended_at")?)?;
    touched::each_text(&column(batch, "user_id")?, |i, user| {
        // (Derived sessions have no session without an actor.)
        if let (Some(user), true) = (user, first.is_valid(i) && first.value(i)) {
            f(
                user,
                start.value(i),
                previous.is_valid(i).then(|| previous.value(i)),
            );
        }
    })
}

/// Splits the delivery's sessions (with the [`FIRST`] column) by actor: an actor whose first
/// session starts more than `timeout` (microseconds) after its previous end, or has none, is
/// fresh.
fn split(batches: Vec<RecordBatch>, timeout: i64, newest_start: Option<i64>) -> Result<Delivered> {
    let (mut users, mut starts) = (vec![], vec![]);
    let mut actors = 0;
    for batch in &batches {
        each_first(batch, |user, t, previous| {
            actors += 1;
            if previous.is_some_and(|p| t.saturating_sub(p) <= timeout) {
                users.push(user.to_string());
                starts.push(t);
            }
        })?;
    }
    let reopened = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("t_min", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(users.clone())),
            Arc::new(Int64Array::from(starts)),
        ],
    )?;
    Ok(Delivered {
        rows: batches,
        reopened_actors: Touched::new(users.iter().map(|u| (u.as_str(), None)).collect()),
        actors,
        newest_start,
        reopened,
    })
}

/// The fresh actors of [`Delivered::rows`] whose sessions the replace predicate must match by a
/// look-up, each with the start of its first new session (microseconds since the epoch): its
/// cut. Those whose first new session starts after `newest_start` (see
/// [`Delivered::newest_start`]; most of a daily delivery) are matched by their start alone, and
/// left out. (A set of 370,000 actors took 0.05 s to build and its look-ups 0.07 s in the commit,
/// at 100M events.)
pub(super) fn fresh_actors(
    rows: &[RecordBatch],
    newest_start: Option<i64>,
    reopened_actors: &Touched,
) -> Result<Keys> {
    let mut fresh = Keys::default();
    for batch in rows {
        each_first(batch, |user, t, _| {
            if newest_start.is_none_or(|newest| t <= newest) && !reopened_actors.contains(user) {
                fresh.insert(user, Some(t))
            }
        })?;
    }
    Ok(fresh)
}

/// [`Delivered::rows`] without the column that marks each actor's first session.
pub(super) fn without_mark(rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    rows.into_iter()
        .map(|batch| {
            let kept: Vec<usize> = (0..batch.num_columns())
                .filter(|&i| batch.schema().field(i).name() != FIRST)
                .collect();
            Ok(batch.project(&kept)?)
        })
        .collect()
}
