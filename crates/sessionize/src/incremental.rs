//! Sessions tables kept up to date incrementally: `sessionize sessions NEW_INPUT... --into
//! delta:TABLE` adds a delivery of events to a Delta sessions table, and the table is then equal to
//! a full rebuild over every event delivered so far.
//!
//! # What is kept between runs
//! - `TABLE` is the sessions table, exactly as `sessions --output delta:TABLE` writes it.
//! - `TABLE/_sessionize_events` is a Delta table of every applied event, with only the columns the
//!   sessions table is computed from (actor, time, event type and whatever the mode reads: session
//!   id, event id, upload time, platform), plus `_sessionize_file`, the stamp of the file the event
//!   came from (`PATH|SIZE|MODIFIED`). Delta's `VACUUM` leaves folders starting with `_` alone.
//!
//! # A run
//! 1. The input files whose stamps the events table already holds are skipped: running the same
//!    delivery twice changes nothing the second time. (A file changed in place gets a new stamp
//!    and is read again, as a new delivery.)
//! 2. The new files' events with an actor and a time are appended to the events table in one
//!    commit; with a late limit, events older than the newest applied event minus the limit are
//!    left out and counted.
//! 3. Every session of the actors with new events is computed again from all their events, by the
//!    same SQL as a full rebuild ([`crate::sessions::sessions_sql`]), and one Delta commit replaces
//!    those actors' rows of the sessions table (`replaceWhere user_id IN (...)`). Other actors'
//!    rows are not touched. That commit records the events table's version it reflects.
//!
//! Equality with a full rebuild follows from sessions being per actor: an actor's sessions depend
//! on that actor's events only (dedup in `--compat dbt` is by event id within the actor's events),
//! and each touched actor's are computed from all of its events by the full rebuild's SQL.
//!
//! # Failures
//! The two commits are not one transaction. A run that dies after the first leaves the sessions
//! table at its previous version and the events table one version ahead; the next run sees that
//! the sessions table's recorded version is not the events table's and computes the whole
//! sessions table again from the events table. A sessions commit never retries over a concurrent
//! one (it fails saying the table changed, and the next run repairs it the same way).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::{Column, Result, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{Expr, SessionContext, cast, lit};

use crate::delta::{self, Commit};
use crate::job::SessionsJob;
use crate::sessions::{ident, sessions_sql};
use crate::tables::{self, LoadOptions};

/// The events table's folder inside the sessions table's.
pub const EVENTS_FOLDER: &str = "_sessionize_events";
/// The events table's column holding each event's file stamp.
pub const FILE_COLUMN: &str = "_sessionize_file";
/// The `commitInfo` field of a sessions commit: the events table's version it reflects.
const EVENTS_VERSION: &str = "sessionizeEventsVersion";
/// The `commitInfo` field of an events commit: the column that holds the actor.
const ACTOR: &str = "sessionizeActor";

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
    /// Actors whose sessions were computed again.
    pub actors: u64,
    /// The whole sessions table was computed again (the first run, or a repair after a run that
    /// died between its two commits).
    pub rebuilt: bool,
    /// The sessions table's new version (none when nothing was new).
    pub version: Option<i64>,
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
        if self.late > 0 {
            notes.push(format!(
                "left out {} event(s) older than --late-limit allows; a full rebuild includes them",
                self.late
            ));
        }
        match self.version {
            None => notes.push("nothing new: the table is unchanged".to_string()),
            Some(version) => notes.push(format!(
                "applied {} file(s), {} event(s); {} of {} actor(s), version {version}",
                self.files_applied,
                self.events,
                if self.rebuilt {
                    "computed the sessions"
                } else {
                    "computed again the sessions"
                },
                self.actors,
            )),
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
    let mut seen = HashSet::new();
    let mut rebuild = true;
    if has_events {
        delta::register(ctx, "__sessionize_applied", &events_location).await?;
        let batches = ctx
            .sql(&format!(
                "SELECT DISTINCT {} FROM __sessionize_applied",
                ident(FILE_COLUMN)
            ))
            .await?
            .collect()
            .await?;
        for batch in &batches {
            let column = cast_array(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )?;
            let stamps = column.as_string::<i32>();
            seen.extend(
                (0..stamps.len())
                    .filter(|&i| stamps.is_valid(i))
                    .map(|i| stamps.value(i).to_string()),
            );
        }
        let recorded = if delta::exists(location).await? {
            delta::last_commit_info(location)
                .await?
                .get(EVENTS_VERSION)
                .and_then(|v| v.as_i64())
        } else {
            None
        };
        rebuild = recorded != Some(delta::version(&events_location).await?);
    }
    let files = tables::input_files(ctx, inputs).await?;
    let (old, new): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| seen.contains(&f.stamp));
    report.files_skipped = old.len();
    report.files_applied = new.len();
    if new.is_empty() && !rebuild {
        return Ok(report);
    }

    let mut options = job.options()?;
    let mut events_version = None;
    // The actors with new events (`None`: the events without an actor, which `--compat dbt`
    // keeps as one actor, as the dbt model does).
    let mut new_actors: Vec<Option<String>> = vec![];
    if !new.is_empty() {
        // The new files, each with its stamp, prepared as `sessions` prepares its input (source
        // mapping, actor).
        let mut frames = vec![];
        for file in &new {
            let frame = match tables::read_inputs(ctx, std::slice::from_ref(&file.path), load).await
            {
                Ok(frame) => frame,
                // A delivery without events (an hour with none) is recorded below, nothing else.
                Err(e) if crate::error::is_no_events(&e) => continue,
                Err(e) => return Err(e),
            };
            let mut columns: Vec<datafusion::prelude::Expr> = frame
                .schema()
                .fields()
                .iter()
                .map(|f| datafusion::prelude::col(ident(f.name())))
                .collect();
            // One dictionary value per file, not a copy of the stamp per event.
            columns.push(
                cast(
                    lit(file.stamp.clone()),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                )
                .alias(FILE_COLUMN),
            );
            frames.push(frame.select(columns)?);
        }
        let mut frames = frames.into_iter();
        let Some(mut combined) = frames.next() else {
            if has_events {
                // Only files without events: recorded, so that the next run skips them too.
                let empty: Vec<&str> = new.iter().map(|f| f.stamp.as_str()).collect();
                let version = record_files(ctx, &events_location, &empty).await?;
                if !rebuild {
                    mark_up_to_date(ctx, location, version).await?;
                }
            }
            return Ok(report);
        };
        for frame in frames {
            combined = combined.union_by_name(frame)?;
        }
        ctx.register_table("__sessionize_new_raw", combined.into_view())?;
        job.prepare(ctx, "__sessionize_new_raw", &mut options)
            .await?;
        let schema = ctx
            .table("__sessionize_new_raw")
            .await?
            .schema()
            .as_arrow()
            .clone();
        // The columns the sessions table is computed from: those its SQL names.
        let sql = sessions_sql("__sessionize_new_raw", &schema, &options)?;
        let mut kept: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| sql.contains(&ident(name)))
            .map(|name| ident(&name))
            .collect();
        kept.push(ident(FILE_COLUMN));
        let (actor, time) = (ident(&options.actor), ident(&options.time));
        // Every event is kept, as the full rebuild reads every event (each mode leaves out what
        // it leaves out: events without a time, or without an actor outside `--compat dbt`).
        let mut filter = "true".to_string();
        if let (Some(limit), true) = (late_limit, has_events) {
            let newest =
                format!("(SELECT max(CAST({time} AS TIMESTAMP)) FROM __sessionize_applied)");
            let bound = format!("{newest} - INTERVAL '{} milliseconds'", limit.as_millis());
            let late = ctx
                .sql(&format!(
                    "SELECT count(*) FROM __sessionize_new_raw WHERE {filter} AND CAST({time} AS TIMESTAMP) < {bound}"
                ))
                .await?
                .collect()
                .await?;
            report.late = count(&late);
            filter = format!("{time} IS NULL OR CAST({time} AS TIMESTAMP) >= {bound}");
        }
        // The new events, narrow, in memory: they are read three times below.
        // Times as microseconds in UTC, whatever each delivery's unit: one type for the table.
        let kept: Vec<String> = kept
            .into_iter()
            .map(|c| {
                if c == time {
                    format!("arrow_cast({time}, 'Timestamp(Microsecond, Some(\"UTC\"))') AS {time}")
                } else {
                    c
                }
            })
            .collect();
        let new_events = ctx
            .sql(&format!(
                "SELECT {} FROM __sessionize_new_raw WHERE {filter}",
                kept.join(", ")
            ))
            .await?;
        // Every column nullable, for the rows that only record a file (below).
        let schema = Arc::new(Schema::new(
            new_events
                .schema()
                .as_arrow()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let mut batches = vec![];
        for batch in new_events.collect().await? {
            batches.push(RecordBatch::try_new(
                Arc::clone(&schema),
                batch.columns().to_vec(),
            )?);
        }
        report.events = batches.iter().map(|b| b.num_rows() as u64).sum();
        // A file none of whose events is kept (all late, or without an actor, or no events at
        // all) gets one row of nulls with its stamp, so that the next run skips it too.
        let mut kept_files = HashSet::new();
        for batch in &batches {
            if let Some(column) = batch.column_by_name(FILE_COLUMN) {
                let column = cast_array(column, &DataType::Utf8)?;
                let stamps = column.as_string::<i32>();
                kept_files.extend((0..stamps.len()).map(|i| stamps.value(i).to_string()));
            }
        }
        let unkept: Vec<&str> = new
            .iter()
            .map(|f| f.stamp.as_str())
            .filter(|s| !kept_files.contains(*s))
            .collect();
        if !unkept.is_empty() {
            batches.push(file_rows(&schema, &unkept)?);
        }
        let any = !batches.is_empty();
        ctx.register_table(
            "__sessionize_new",
            Arc::new(MemTable::try_new(Arc::clone(&schema), vec![batches])?),
        )?;
        let actors = ctx
            .sql(&format!(
                "SELECT DISTINCT CAST({actor} AS VARCHAR) FROM __sessionize_new WHERE {time} IS NOT NULL"
            ))
            .await?
            .collect()
            .await?;
        for batch in &actors {
            let column = cast_array(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )?;
            let values = column.as_string::<i32>();
            new_actors.extend(
                (0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i).to_string())),
            );
        }
        if any {
            let append = Commit {
                append: true,
                retry: true,
                metadata: vec![(ACTOR.to_string(), serde_json::json!(options.actor))],
                ..Commit::default()
            };
            let df = ctx.table("__sessionize_new").await?;
            events_version = Some(delta::commit(ctx, df, &events_location, &append).await?);
        }
    }
    let events_version = match events_version {
        Some(version) => version,
        None => delta::version(&events_location).await?,
    };
    if new.is_empty() {
        // A repair without new files: the actor column the events table was written with.
        if let Some(actor) = delta::last_commit_info(&events_location)
            .await?
            .get(ACTOR)
            .and_then(|v| v.as_str())
        {
            options.actor = actor.to_string();
        }
    }
    if !rebuild && new_actors.is_empty() {
        // Files whose events were all late or without a time: no session changes.
        mark_up_to_date(ctx, location, events_version).await?;
        return Ok(report);
    }

    // The sessions of the touched actors, from all their events, by the full rebuild's SQL.
    delta::register(ctx, "__sessionize_events", &events_location).await?;
    let actor = ident(&options.actor);
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    // The touched actors as a function holding their set, not as `IN (...)`: delta-rs turns an
    // `IN` list into a chain of `OR`s as deep as the list, which overflowed the stack at 48,000
    // actors (its pruning then leaves the function out; the rows are still checked exactly).
    let named: HashSet<String> = new_actors.iter().flatten().cloned().collect();
    let unnamed = new_actors.iter().any(Option::is_none);
    let named = ScalarUDF::new_from_impl(Touched {
        actors: Arc::new(named),
        signature: Signature::any(1, Volatility::Immutable),
    });
    let which = |actor: Expr| -> Option<Expr> {
        let is_named = named.call(vec![actor.clone()]);
        Some(if unnamed {
            is_named.or(actor.is_null())
        } else {
            is_named
        })
    };
    // The touched actors' events (rows that only record a file have no time).
    let mut filter = column(&options.time).is_not_null();
    if !rebuild && let Some(which) = which(column(&options.actor)) {
        filter = filter.and(which);
    }
    let touched = ctx.table("__sessionize_events").await?.filter(filter)?;
    ctx.register_table("__sessionize_touched", touched.into_view())?;
    let touched = "__sessionize_touched";
    let schema = ctx.table(touched).await?.schema().as_arrow().clone();
    let df = ctx.sql(&sessions_sql(touched, &schema, &options)?).await?;
    let metadata = vec![(
        EVENTS_VERSION.to_string(),
        serde_json::json!(events_version),
    )];
    let how = if rebuild || !delta::exists(location).await? {
        report.rebuilt = true;
        let all = ctx
            .sql(&format!(
                "SELECT count(DISTINCT CAST({actor} AS VARCHAR)) FROM {touched}"
            ))
            .await?
            .collect()
            .await?;
        report.actors = count(&all);
        Commit {
            partition_by,
            metadata,
            ..Commit::default()
        }
    } else {
        report.actors = new_actors.len() as u64;
        Commit {
            replace_where: which(column("user_id")),
            partition_by,
            metadata,
            ..Commit::default()
        }
    };
    report.version = Some(delta::commit(ctx, df, location, &how).await?);
    Ok(report)
}

/// `sessionize_touched(actor)`: whether the actor, as text, is one of a run's touched actors
/// (false for null).
#[derive(Debug)]
struct Touched {
    actors: Arc<HashSet<String>>,
    signature: Signature,
}

impl PartialEq for Touched {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.actors, &other.actors)
    }
}

impl Eq for Touched {}

impl std::hash::Hash for Touched {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.actors).hash(state);
    }
}

impl ScalarUDFImpl for Touched {
    fn name(&self) -> &str {
        "sessionize_touched"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [actor] = args.args.as_slice() else {
            return plan_err!("sessionize_touched takes one argument");
        };
        let text = cast_array(&actor.to_array(args.number_rows)?, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let touched: BooleanArray = (0..text.len())
            .map(|i| Some(text.is_valid(i) && self.actors.contains(text.value(i))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(touched)))
    }
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
async fn mark_up_to_date(ctx: &SessionContext, location: &str, events_version: i64) -> Result<()> {
    delta::register(ctx, "__sessionize_sessions", location).await?;
    let df = ctx
        .sql("SELECT * FROM __sessionize_sessions LIMIT 0")
        .await?;
    let how = Commit {
        append: true,
        metadata: vec![(
            EVENTS_VERSION.to_string(),
            serde_json::json!(events_version),
        )],
        ..Commit::default()
    };
    delta::commit(ctx, df, location, &how).await?;
    Ok(())
}

/// Appends rows that only record the files `stamps` to the events table at `location`; returns
/// the version committed.
async fn record_files(ctx: &SessionContext, location: &str, stamps: &[&str]) -> Result<i64> {
    let table = ctx.table("__sessionize_applied").await?;
    let schema = Arc::new(Schema::new(
        table
            .schema()
            .as_arrow()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let batch = file_rows(&schema, stamps)?;
    let df = ctx.read_batch(batch)?;
    let append = Commit {
        append: true,
        retry: true,
        ..Commit::default()
    };
    delta::commit(ctx, df, location, &append).await
}

/// The single count a `SELECT count(...)` returned.
fn count(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> u64 {
    batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                .map(|c| c.value(0))
        })
        .map_or(0, |c| c.max(0) as u64)
}
