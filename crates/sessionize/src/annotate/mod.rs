//! Every event with its session (`sessionize annotate`, CleverTap's session id, dbt's sessionized
//! page views), in two passes and without a sort of the events.
//!
//! Sessions depend only on an actor's times and restart flags, never on the other columns, so the
//! wide rows of an export need not be sorted or held:
//!
//! 1. **The sessions.** `session_list` grouped by actor (the aggregate behind the sessions table, so
//!    the one rule of [`crate::rules`]) reads the actor, time and event columns and gives every
//!    actor's sessions in time order. They are kept in an index: per actor, the sessions'
//!    start times, ids and numbers. Its memory grows with the number of sessions, not of events.
//! 2. **The events.** The input is read again, every column, and each batch goes out as soon as it is
//!    read, in the input's order: an event's session is the last of its actor's sessions that starts
//!    at or before it (a hash look-up of the actor, then a binary search of the starts).
//!
//! [`crate::sessions::annotate_sql`] gives the same rows as plain SQL with the window functions; it is
//! what `--print-sql` shows, what the tests compare this with, and what runs where the two-pass form
//! does not apply (`--dedup`, whose "first event of an insert id" needs a window over all events).
//!
//! **Row order**: the events come out in the order they are read, file by file and, within a file,
//! row by row (the scan's partitions are read in parallel but put back in order); with `--concluded`
//! the `Session Concluded` events follow all the others.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, Int64Builder, LargeStringArray,
    RecordBatch, StringArray, StringViewArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use std::hash::BuildHasher as _;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ExecutionPlan, SendableRecordBatchStream, execute_stream_partitioned,
};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt};

mod parquet;
pub use parquet::write_parquet;

use crate::args;
use crate::rules::{to_epoch_millis, units_per_second};
use crate::sessions::{
    SESSION_CONCLUDED, SessionSource, SessionsOptions, activity_condition, ident, interval,
    platform_timeouts, require_column, restart_condition, time_unit,
};

/// The output names of the input columns: `session_id`, `session_number` and `session_length` are
/// kept as `<name>_input` (or `<name>_input_input`, ... where the input has that name too), since
/// the annotation adds columns of those names.
pub fn output_names(schema: &Schema) -> Vec<String> {
    let taken = |name: &str, chosen: &[String]| {
        schema.field_with_name(name).is_ok() || chosen.iter().any(|c| c == name)
    };
    let mut names: Vec<String> = vec![];
    for field in schema.fields() {
        let name = field.name();
        let mut out = name.to_string();
        if matches!(
            name.as_str(),
            "session_id" | "session_number" | "session_length"
        ) {
            out = format!("{name}_input");
            while taken(&out, &names) {
                out.push_str("_input");
            }
        }
        names.push(out);
    }
    names
}

/// Every event of `table` with its `session_id` and `session_number` (Int64; null for events left
/// out of sessions: no actor or time, an excluded event type, an SDK session id of -1 or null), as a
/// stream in the input's order. With `concluded`, one `Session Concluded` event per session follows,
/// at the session's last event time, with `session_length` (Float64 seconds, first to last event).
///
/// Errors: a missing actor, time, event or session id column, a time column that is not a
/// timestamp, `--compat dbt` (annotate takes derived or SDK sessions), and the errors of reading the
/// input.
pub async fn annotate(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
    concluded: bool,
) -> Result<SendableRecordBatchStream> {
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    if options.dedup_insert_id {
        // Which of several events with one insert id is kept is decided by a window over all
        // events; the SQL form does that (see the module documentation).
        let sql = crate::sessions::annotate_sql(table, &schema, options, concluded)?;
        return ctx.sql(&sql).await?.execute_stream().await;
    }
    let plan = Plan::new(table, &schema, options)?;
    let (sessions, index) = sessions_index(ctx, &plan, options).await?;
    let (events, partitions) = events_in_parts(ctx, &plan.events_sql).await?;
    let concurrency = ctx.state().config().target_partitions().max(1);
    let width = schema.fields().len();
    // The events query's own types: several inputs combined may differ from the table's
    // declared schema in details such as a time zone.
    let output = Arc::new(Schema::new(
        events.fields()[..width]
            .iter()
            .map(|f| {
                let field = f.as_ref().clone();
                // The concluded events have nulls in every column but a few.
                if concluded {
                    field.with_nullable(true)
                } else {
                    field
                }
            })
            .chain([
                Field::new("session_id", DataType::Int64, true),
                Field::new("session_number", DataType::Int64, true),
            ])
            .chain(concluded.then(|| Field::new("session_length", DataType::Float64, true)))
            .collect::<Vec<_>>(),
    ));
    let annotated = {
        let output = Arc::clone(&output);
        in_order(partitions, concurrency, move |batch| {
            index.annotate(&batch, width, &output, concluded)
        })
    };
    if !concluded {
        return Ok(Box::pin(RecordBatchStreamAdapter::new(output, annotated)));
    }
    let columns = Columns {
        actor: options.actor.clone(),
        platform: options.timeout_by.as_ref().map(|(c, _)| c.clone()),
        time: options.time.clone(),
        event: options.event.clone(),
    };
    let tail_schema = Arc::clone(&output);
    let tail = futures::stream::iter(sessions)
        .map(move |batch| concluded_events(&batch, &schema, &tail_schema, &columns, plan.unit));
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        output,
        annotated.chain(tail),
    )))
}

/// [`annotate`]'s events as a DataFrame that can be read once, for writers that take a plan (a
/// Delta commit): every event with its session without the SQL form's sort of every column
/// (10M wide events: about 2 s where the SQL form takes 10 s). Reading it a second time is an
/// error. Every column is nullable (a Delta table made from it then takes later deliveries
/// that lack a column, as nulls; a Parquet input's required columns would refuse them).
///
/// Errors: as [`annotate`].
pub async fn annotate_frame(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
    concluded: bool,
) -> Result<datafusion::dataframe::DataFrame> {
    let stream = annotate(ctx, table, options, concluded).await?;
    let schema = crate::delta::nullable(&stream.schema());
    let stream: SendableRecordBatchStream = {
        let nullable = Arc::clone(&schema);
        let batches = stream.map(move |batch| {
            Ok(RecordBatch::try_new(
                Arc::clone(&nullable),
                batch?.columns().to_vec(),
            )?)
        });
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), batches))
    };
    let once = Arc::new(ReadOnce {
        schema: Arc::clone(&schema),
        stream: std::sync::Mutex::new(Some(stream)),
    });
    let table = datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![once])?;
    ctx.read_table(Arc::new(table))
}

/// A stream that a plan can execute once ([`annotate_frame`]).
struct ReadOnce {
    schema: SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for ReadOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadOnce")
    }
}

impl datafusion::physical_plan::streaming::PartitionStream for ReadOnce {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(stream) => stream,
            None => Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::once(async {
                    exec_err!("annotate's events were already read: they can be read once")
                }),
            )),
        }
    }
}

/// Pass 1: the sessions query's batches and their index.
async fn sessions_index(
    ctx: &SessionContext,
    plan: &Plan,
    options: &SessionsOptions,
) -> Result<(Vec<RecordBatch>, Arc<SessionIndex>)> {
    let sessions = ctx.sql(&plan.sessions_sql).await?.collect().await?;
    let id_from_start = (options.source == SessionSource::Derived).then_some(plan.unit);
    let index = Arc::new(SessionIndex::new(&sessions, plan.keys, id_from_start)?);
    Ok((sessions, index))
}

/// The two queries of [`annotate`] and what they share.
struct Plan {
    /// One row per session: the key columns `__sessionize_k0`.., then `number`, `id`, `started`, `ended`.
    sessions_sql: String,
    /// Every input column (renamed by [`output_name`]), then the key columns, the time and whether
    /// the event takes part in sessions.
    events_sql: String,
    /// The events query without the input columns: what [`SessionIndex::annotate`] reads.
    keys_sql: String,
    /// How many key columns: the actor, plus the platform (`--timeout-by`) or the SDK's session id.
    keys: usize,
    unit: TimeUnit,
}

impl Plan {
    fn new(table: &str, schema: &Schema, options: &SessionsOptions) -> Result<Self> {
        let (unit, _) = time_unit(schema, options)?;
        require_column(schema, &options.event, "--event")?;
        let table = ident(table);
        let (actor, time, event) = (
            ident(&options.actor),
            ident(&options.time),
            ident(&options.event),
        );
        let mut included = vec![
            format!("{actor} IS NOT NULL"),
            format!("{time} IS NOT NULL"),
        ];
        included.extend(activity_condition(&event, options));
        // Grouping puts 0.0 and -0.0 together while their bytes differ: a float actor is looked
        // up by the value the grouping keeps.
        let actor_key =
            match crate::sessions::require_actor(schema, &options.actor, "--actor COLUMN")? {
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    format!("({actor} + 0.0)")
                }
                _ => actor.clone(),
            };
        let mut keys = vec![actor_key];
        let sessions_sql = match options.source {
            SessionSource::DbtCompat => {
                return plan_err!(
                    "annotate takes --session-source derived or sdk, not --compat dbt"
                );
            }
            SessionSource::Derived => {
                if options.timeout.is_zero() {
                    return plan_err!("the timeout must be positive");
                }
                let restart = restart_condition(&event, options);
                let max_length = options
                    .max_length
                    .map(|m| format!(", {}", interval(m)))
                    .unwrap_or_default();
                let included = included.join(" AND ");
                let sessions = |key_exprs: &[String], condition: &str, timeout| {
                    let keys: Vec<String> = key_exprs
                        .iter()
                        .enumerate()
                        .map(|(k, e)| format!("{e} AS __sessionize_k{k}"))
                        .collect();
                    format!(
                        "SELECT {}, unnest(session_list({time}, {}, {restart}{max_length})) AS s \
                         FROM {table} WHERE {included}{condition} GROUP BY {}",
                        keys.join(", "),
                        interval(timeout),
                        key_exprs.join(", ")
                    )
                };
                let lists = match &options.timeout_by {
                    None => sessions(&keys, "", options.timeout),
                    Some((column, platforms)) => {
                        require_column(schema, column, "--timeout-by")?;
                        let platform = ident(column);
                        keys.push(platform.clone());
                        let text = format!("CAST({platform} AS VARCHAR)");
                        platform_timeouts(&text, platforms, options.timeout)?
                            .into_iter()
                            .map(|(condition, timeout)| {
                                sessions(&keys, &format!(" AND {condition}"), timeout)
                            })
                            .collect::<Vec<_>>()
                            .join(" UNION ALL ")
                    }
                };
                let key_columns: String = (0..keys.len())
                    .map(|k| format!("__sessionize_k{k}, "))
                    .collect();
                format!(
                    "SELECT {key_columns}s['session_number'] AS number, s['session_id'] AS id, \
                     s['started_at'] AS started, s['ended_at'] AS ended FROM ({lists})"
                )
            }
            SessionSource::Sdk => {
                crate::sessions::require_session_id(
                    schema,
                    &options.session_id_col,
                    "--session-id-col COLUMN",
                )?;
                let sid = ident(&options.session_id_col);
                included.push(format!("{sid} IS NOT NULL AND {sid} <> -1"));
                keys.push(format!("CAST({sid} AS BIGINT)"));
                // Sessions are numbered per actor by their first event, then by id (as the SQL
                // form's dense_rank); each (actor, session id) is one session.
                format!(
                    "SELECT __sessionize_k0, __sessionize_k1, CAST(row_number() OVER (PARTITION BY __sessionize_k0 ORDER BY started, __sessionize_k1) AS BIGINT) AS number, \
                     __sessionize_k1 AS id, started, ended FROM \
                     (SELECT {} AS __sessionize_k0, {} AS __sessionize_k1, min({time}) AS started, max({time}) AS ended \
                      FROM {table} WHERE {} GROUP BY {}, {})",
                    keys[0],
                    keys[1],
                    included.join(" AND "),
                    keys[0],
                    keys[1],
                )
            }
        };
        let mut keys_sql = String::new();
        for (k, key) in keys.iter().enumerate() {
            write!(keys_sql, "{key} AS __sessionize_k{k}, ").ok();
        }
        write!(
            keys_sql,
            "{time} AS __sessionize_time, {} AS __sessionize_included FROM {table}",
            included.join(" AND ")
        )
        .ok();
        let mut events_sql = String::from("SELECT ");
        for (field, out) in schema.fields().iter().zip(output_names(schema)) {
            write!(events_sql, "{} AS {}, ", ident(field.name()), ident(&out)).ok();
        }
        events_sql.push_str(&keys_sql);
        Ok(Self {
            sessions_sql,
            events_sql,
            keys_sql: format!("SELECT {keys_sql}"),
            keys: keys.len(),
            unit,
        })
    }
}

/// Every actor's sessions, for looking events up: the key (actor, and platform or SDK session id)
/// to its [`Group`] of sessions, whose starts (in the time column's unit) lie in one flat vector in
/// time order.
///
/// Looking up is the cost of annotating: on unsorted input each event's actor is elsewhere in
/// memory, so every vector read is a cache miss. The keys are kept compact (their bytes in one
/// arena, a hash table of (hash, key number)), and a session's number and id are computed from its
/// position and start rather than read from vectors of their own.
struct SessionIndex {
    /// How many key columns.
    width: usize,
    /// Each key's sessions.
    keys: KeyTable<Group>,
    starts: Vec<i64>,
    /// Derived sessions: the id is the epoch milliseconds of the start in this unit. SDK sessions:
    /// `None`, each group's id is its own.
    id_from_start: Option<TimeUnit>,
}

/// One key's sessions: `starts[from..to]`, numbered from `first_number`; SDK sessions (one per
/// key) carry their id.
#[derive(Debug, Clone, Copy)]
struct Group {
    from: u32,
    to: u32,
    first_number: i64,
    id: i64,
}

impl SessionIndex {
    /// The index of the sessions query's batches (see [`Plan::sessions_sql`]), whose first `keys`
    /// columns are the key.
    fn new(batches: &[RecordBatch], keys: usize, id_from_start: Option<TimeUnit>) -> Result<Self> {
        let types: Vec<DataType> = batches
            .first()
            .map(|b| {
                b.columns()[..keys]
                    .iter()
                    .map(|c| c.data_type().clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut index = Self {
            width: keys,
            keys: KeyTable::new(types)?,
            starts: vec![],
            id_from_start,
        };
        // (key, number, start, id) of every session. The query's rows of one key need not be
        // consecutive (its partitions' batches interleave), so they are sorted by key and number.
        let mut sessions: Vec<(u32, i64, i64, i64)> = vec![];
        for batch in batches {
            let key = index.keys.encode(&batch.columns()[..keys])?;
            let number = int64(batch.column(keys), "number")?;
            let id = int64(batch.column(keys + 1), "id")?;
            let (started, _) = args::timestamp_slice("annotate", batch.column(keys + 2))?;
            for (row, &start) in started.iter().enumerate().take(batch.num_rows()) {
                let k = index.keys.intern(key.bytes(row))?;
                sessions.push((k, number.value(row), start, id.value(row)));
            }
        }
        sessions.sort_unstable();
        let mut groups: Vec<Group> = Vec::with_capacity(index.keys.ends.len());
        index.starts.reserve(sessions.len());
        for (k, number, start, id) in sessions {
            let at = u32::try_from(index.starts.len()).map_err(|_| {
                DataFusionError::Execution("annotate: more than 4 billion sessions".into())
            })?;
            let continues = groups.len() == k as usize + 1;
            match groups.last_mut() {
                Some(group) if continues => {
                    if number != group.first_number + i64::from(at - group.from) {
                        return exec_err!(
                            "annotate: an actor's sessions are not numbered 1, 2, ..."
                        );
                    }
                    group.to = at + 1;
                }
                _ => groups.push(Group {
                    from: at,
                    to: at + 1,
                    first_number: number,
                    id,
                }),
            }
            index.starts.push(start);
        }
        index.keys.finish(groups);
        Ok(index)
    }

    /// Appends `session_id` and `session_number` (and a null `session_length` when `concluded`) to
    /// the first `width` columns of an events batch (see [`Plan::events_sql`]).
    fn annotate(
        &self,
        batch: &RecordBatch,
        width: usize,
        output: &SchemaRef,
        concluded: bool,
    ) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let columns = batch.columns();
        let keys = self.width;
        let (times, time_nulls) = args::timestamp_slice("annotate", &columns[width + keys])?;
        let included = columns[width + keys + 1].as_boolean();
        let mut ids = Int64Builder::with_capacity(n);
        let mut numbers = Int64Builder::with_capacity(n);
        let take = |i: usize| {
            included.is_valid(i)
                && included.value(i)
                && !time_nulls.is_some_and(|nulls| nulls.is_null(i))
        };
        // Two loops of independent steps, so that the processor overlaps the cache misses of
        // several events (one loop doing both waits for each event's misses in turn): first every
        // event's group, then its session among the group's.
        let mut groups: Vec<Option<Group>> = Vec::with_capacity(n);
        if included.true_count() > 0 {
            let key = self.keys.encode(&columns[width..width + keys])?;
            // Every event's hash first, so that the slot of the event [`AHEAD_OF_USE`] rows on
            // can be fetched while this one is looked up.
            let hashes: Vec<u64> = (0..n).map(|i| self.keys.hash(key.bytes(i))).collect();
            // Consecutive events of one actor (sorted exports) share the look-up.
            let mut last: Option<(usize, Group)> = None;
            for i in 0..n {
                if let Some(&ahead) = hashes.get(i + AHEAD_OF_USE) {
                    self.keys.prefetch(ahead);
                }
                if !take(i) {
                    groups.push(None);
                    continue;
                }
                let group = match last {
                    Some((j, group)) if key.bytes(j) == key.bytes(i) => group,
                    _ => match self.keys.find_hashed(hashes[i], key.bytes(i)) {
                        Some(group) => group,
                        None => {
                            return exec_err!(
                                "an event's actor has no sessions: the input changed while it was read"
                            );
                        }
                    },
                };
                last = Some((i, group));
                groups.push(Some(group));
            }
        } else {
            groups.resize(n, None);
        }
        for (i, (&t, group)) in times.iter().zip(&groups).enumerate() {
            // Reading the starts of the event [`AHEAD_OF_USE`] rows on brings them into the cache
            // while this one is worked out: 10M events 2.3 s -> 2.1 s, 100M 30 s -> 25 s.
            if let Some(Some(ahead)) = groups.get(i + AHEAD_OF_USE)
                && let Some(start) = self.starts.get(ahead.from as usize)
            {
                prefetch(start);
            }
            let Some(g) = group else {
                ids.append_null();
                numbers.append_null();
                continue;
            };
            let (from, to) = (g.from as usize, g.to as usize);
            // The last session that starts at or before the event: the number of sessions that do.
            let starts = &self.starts[from..to];
            let k = if starts.len() <= LINEAR_SEARCH {
                // Independent loads of neighbouring values: their cache misses overlap, where a
                // binary search waits for one after another.
                starts.iter().map(|&s| usize::from(s <= t)).sum()
            } else {
                starts.partition_point(|&s| s <= t)
            };
            if k == 0 {
                return exec_err!(
                    "an event is earlier than its actor's first session: the input changed while it was read"
                );
            }
            let k = k - 1;
            numbers.append_value(g.first_number + k as i64);
            ids.append_value(match self.id_from_start {
                Some(unit) => to_epoch_millis(self.starts[from + k], unit),
                None => g.id,
            });
        }
        let mut out: Vec<ArrayRef> = columns[..width].to_vec();
        out.push(Arc::new(ids.finish()));
        out.push(Arc::new(numbers.finish()));
        if concluded {
            out.push(new_null_array(&DataType::Float64, n));
        }
        Ok(RecordBatch::try_new(Arc::clone(output), out)?)
    }
}

/// How many events ahead the starts are read (see [`SessionIndex::annotate`]).
const AHEAD_OF_USE: usize = 16;

/// Asks the processor to bring the cache line of `value` in, without waiting for it: a hint that
/// lets the look-ups of several events wait for memory at once. (A plain read of the value, as
/// before, made the processor wait for each miss in turn: 30% of `annotate`'s samples at 100M
/// events sat on it.) Elsewhere than x86_64 it does nothing.
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads and writes nothing the program sees and never faults, and
    // `value` is a live reference; SSE, which it needs, is part of every x86_64 processor.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Groups of up to this many sessions are searched linearly.
const LINEAR_SEARCH: usize = 64;

/// A map of keys to values `V`: the keys' bytes in one arena, and a hash table of [`Entry`]s
/// (hash, key number, the key's first bytes, value), so that a look-up reads one entry, and the
/// arena only for keys longer than [`INLINE`] bytes. A single text key is
/// hashed as its UTF-8 bytes; other keys (several columns, numbers) in Arrow's row format.
struct KeyTable<V> {
    /// `None` for a single text key.
    converter: Option<RowConverter>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The look-up table: open addressing with linear probing, at most half full, so that a
    /// look-up usually reads one slot, whose address is known from the hash alone (see
    /// [`KeyTable::prefetch`]).
    slots: Vec<Option<Entry<V>>>,
    /// While keys are added: (hash, key number).
    numbers: hashbrown::HashTable<(u64, u32)>,
    arena: Vec<u8>,
    /// Where key `k` ends in the arena (it starts where key `k - 1` ends).
    ends: Vec<usize>,
}

impl<V: Copy> KeyTable<V> {
    fn new(types: Vec<DataType>) -> Result<Self> {
        let text = matches!(
            types.as_slice(),
            [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View]
        );
        let converter = if text {
            None
        } else {
            Some(RowConverter::new(
                types.iter().map(|t| SortField::new(t.clone())).collect(),
            )?)
        };
        Ok(Self {
            converter,
            hasher: Default::default(),
            slots: vec![],
            numbers: hashbrown::HashTable::new(),
            arena: vec![],
            ends: vec![],
        })
    }

    /// The keys of a batch's key columns.
    fn encode<'a>(&self, columns: &'a [ArrayRef]) -> Result<EncodedKeys<'a>> {
        Ok(match &self.converter {
            Some(converter) => EncodedKeys::Rows(converter.convert_columns(columns)?),
            None => {
                let column = &columns[0];
                match column.data_type() {
                    DataType::Utf8View => EncodedKeys::View(column.as_string_view()),
                    DataType::Utf8 => EncodedKeys::Utf8(column.as_string::<i32>()),
                    DataType::LargeUtf8 => EncodedKeys::Large(column.as_string::<i64>()),
                    other => {
                        return exec_err!("annotate: the actor's type changed to {other}");
                    }
                }
            }
        })
    }

    fn key(&self, k: u32) -> &[u8] {
        key_of(&self.arena, &self.ends, k)
    }

    /// The number of a key, added if new (keys are numbered from 0 in the order they are added).
    fn intern(&mut self, bytes: &[u8]) -> Result<u32> {
        let hash = self.hasher.hash_one(bytes);
        let (arena, ends) = (&self.arena, &self.ends);
        let key = |k: u32| key_of(arena, ends, k);
        if let Some(&(_, k)) = self
            .numbers
            .find(hash, |&(h, k)| h == hash && key(k) == bytes)
        {
            return Ok(k);
        }
        let k = u32::try_from(self.ends.len()).map_err(|_| {
            DataFusionError::Execution("annotate: more than 4 billion actors".into())
        })?;
        self.arena.extend_from_slice(bytes);
        self.ends.push(self.arena.len());
        self.numbers.insert_unique(hash, (hash, k), |&(h, _)| h);
        Ok(k)
    }

    /// Builds the look-up table: `values[k]` is key `k`'s value.
    fn finish(&mut self, values: Vec<V>) {
        self.numbers = hashbrown::HashTable::new();
        self.slots = vec![None; (values.len() * 2).next_power_of_two().max(2)];
        let mask = self.slots.len() - 1;
        for (k, value) in values.into_iter().enumerate() {
            let bytes = key_of(&self.arena, &self.ends, k as u32);
            let hash = self.hasher.hash_one(bytes);
            let mut at = hash as usize & mask;
            while self.slots[at].is_some() {
                at = (at + 1) & mask;
            }
            self.slots[at] = Some(Entry {
                hash,
                key: k as u32,
                inline: Inline::of(bytes),
                value,
            });
        }
    }

    /// The hash a look-up of `bytes` takes.
    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// Asks the processor to bring the slot of `hash` into the cache, so that its look-up a few
    /// events later does not wait for memory: with 500,000 actors the table outgrows the caches,
    /// and one look-up per event would otherwise wait for a miss each.
    #[inline]
    fn prefetch(&self, hash: u64) {
        if let Some(slot) = self
            .slots
            .get(hash as usize & self.slots.len().wrapping_sub(1))
        {
            prefetch(slot);
        }
    }

    #[cfg(test)]
    fn find(&self, bytes: &[u8]) -> Option<V> {
        self.find_hashed(self.hash(bytes), bytes)
    }

    /// The value of `bytes`, whose hash is `hash`.
    fn find_hashed(&self, hash: u64, bytes: &[u8]) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let inline = Inline::of(bytes);
        let mut at = hash as usize & mask;
        // The table is at most half full: a probe always meets an empty slot.
        while let Some(e) = &self.slots[at] {
            if e.hash == hash
                && e.inline == inline
                && (bytes.len() <= INLINE || self.key(e.key) == bytes)
            {
                return Some(e.value);
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// A key table's entry: a key, its hash, the key's first bytes (so that most keys are compared
/// without reading the arena) and its value.
#[derive(Debug, Clone, Copy)]
struct Entry<V> {
    hash: u64,
    key: u32,
    inline: Inline,
    value: V,
}

/// Bytes of a key kept in its entry.
const INLINE: usize = 16;

/// A key's length and first [`INLINE`] bytes (zero-padded): equal for equal keys, and for keys of
/// at most [`INLINE`] bytes equal only for equal keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inline {
    len: usize,
    head: [u8; INLINE],
}

impl Inline {
    fn of(bytes: &[u8]) -> Self {
        let mut head = [0; INLINE];
        let n = bytes.len().min(INLINE);
        head[..n].copy_from_slice(&bytes[..n]);
        Self {
            len: bytes.len(),
            head,
        }
    }
}

/// Key `k`'s bytes in an arena where key `k` ends at `ends[k]` and starts where `k - 1` ends.
fn key_of<'a>(arena: &'a [u8], ends: &[usize], k: u32) -> &'a [u8] {
    let k = k as usize;
    let start = if k == 0 { 0 } else { ends[k - 1] };
    &arena[start..ends[k]]
}

/// The keys of one batch, as bytes per row.
enum EncodedKeys<'a> {
    View(&'a StringViewArray),
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    Rows(Rows),
}

impl EncodedKeys<'_> {
    /// The key of row `i` (a null text key is the empty key: null actors take no part).
    fn bytes(&self, i: usize) -> &[u8] {
        match self {
            Self::View(a) => a.value(i).as_bytes(),
            Self::Utf8(a) => a.value(i).as_bytes(),
            Self::Large(a) => a.value(i).as_bytes(),
            Self::Rows(rows) => rows.row(i).data(),
        }
    }
}

fn int64<'a>(array: &'a ArrayRef, what: &str) -> Result<&'a Int64Array> {
    array
        .as_primitive_opt()
        .ok_or_else(|| DataFusionError::Internal(format!("annotate: {what} is not Int64")))
}

/// The input columns a `Session Concluded` event has values in.
struct Columns {
    actor: String,
    platform: Option<String>,
    time: String,
    event: String,
}

/// One `Session Concluded` event per session of a sessions-query batch: the actor (and platform),
/// the session's last event time, the event type, the session's id, number and length; null
/// elsewhere.
fn concluded_events(
    sessions: &RecordBatch,
    input: &Schema,
    output: &SchemaRef,
    columns: &Columns,
    unit: TimeUnit,
) -> Result<RecordBatch> {
    let n = sessions.num_rows();
    let keys = sessions.num_columns() - 4;
    let session = |k: usize| sessions.column(keys + k);
    let (started, _) = args::timestamp_slice("annotate", session(2))?;
    let (ended, _) = args::timestamp_slice("annotate", session(3))?;
    let per_second = units_per_second(unit) as f64;
    let mut out: Vec<ArrayRef> = vec![];
    for (field, out_field) in input.fields().iter().zip(output.fields()) {
        let name = field.name();
        let data_type = out_field.data_type();
        let column = if *name == columns.actor {
            cast(sessions.column(0), data_type)?
        } else if columns.platform.as_ref() == Some(name) {
            cast(sessions.column(1), data_type)?
        } else if *name == columns.time {
            cast(session(3), data_type)?
        } else if *name == columns.event {
            let text: ArrayRef = Arc::new(StringArray::from(vec![SESSION_CONCLUDED; n]));
            cast(&text, data_type).map_err(|_| {
                DataFusionError::Plan(format!(
                    "--concluded writes the event type '{SESSION_CONCLUDED}' into the column '{}', \
                     which is {}, not text",
                    columns.event, data_type
                ))
            })?
        } else {
            new_null_array(data_type, n)
        };
        out.push(column);
    }
    out.push(Arc::clone(session(1)));
    out.push(Arc::clone(session(0)));
    let lengths: Float64Array = started
        .iter()
        .zip(ended)
        .map(|(s, e)| Some((e - s) as f64 / per_second))
        .collect();
    out.push(Arc::new(lengths));
    Ok(RecordBatch::try_new(Arc::clone(output), out)?)
}

/// The events query's partitions, each a consecutive part of the input of about
/// [`PART_BYTES`] (DataFusion splits files by byte ranges at row group boundaries), in the order
/// of the input, each reading only its own part: no round-robin repartition and no work stealing
/// between partitions, which would lose the order.
async fn events_in_parts(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<SendableRecordBatchStream>)> {
    let (task, physical) = events_plan(ctx, sql).await?;
    let schema = physical.schema();
    let partitions = execute_stream_partitioned(physical, task)?;
    Ok((schema, partitions))
}

/// The plan of [`events_in_parts`], and the task context to execute it in.
async fn events_plan(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(Arc<TaskContext>, Arc<dyn ExecutionPlan>)> {
    let mut state = ctx.state();
    let options = state.config_mut().options_mut();
    options.execution.target_partitions = MAX_PARTS;
    options.optimizer.repartition_file_min_size = PART_BYTES;
    options.optimizer.enable_round_robin_repartition = false;
    // An idle partition would otherwise read its siblings' files, out of order.
    options.execution.enable_file_stream_work_stealing = false;
    let logical = state.create_logical_plan(sql).await?;
    let physical = in_path_order(state.create_physical_plan(&logical).await?)?;
    Ok((Arc::new(TaskContext::from(&state)), physical))
}

/// `plan` with every file scan's parts in the order of their paths (and, within a file, of their
/// byte ranges), one part per partition: DataFusion lists a folder's files in no fixed order.
fn in_path_order(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(Transformed::no(node));
        };
        let mut config = config.clone();
        let mut files: Vec<PartitionedFile> = config
            .file_groups
            .iter()
            .flat_map(|group| group.files().iter().cloned())
            .collect();
        files.sort_by_cached_key(|f| {
            (
                f.object_meta.location.to_string(),
                f.range.as_ref().map_or(0, |r| r.start),
            )
        });
        config.file_groups = files.into_iter().map(|f| FileGroup::new(vec![f])).collect();
        let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        Ok(Transformed::yes(exec))
    })
    .map(|t| t.data)
}

/// The size of the input parts read at once (see [`in_order`]): small enough that the parts read
/// ahead hold little, large enough to amortise starting one.
const PART_BYTES: usize = 32 * 1024 * 1024;

/// At most this many parts.
const MAX_PARTS: usize = 4096;

/// The batches of every partition, each passed through `map`, partition after partition, with
/// `concurrency` partitions read (and mapped) at once on the runtime's threads: the partitions are
/// consecutive parts of the input, so this gives the input's order while decoding runs on every
/// core. A partition read ahead of the one being emitted keeps at most [`AHEAD`] batches, then
/// waits for its turn, so memory stays bounded.
fn in_order(
    partitions: Vec<SendableRecordBatchStream>,
    concurrency: usize,
    map: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
) -> Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>> {
    let map = Arc::new(map);
    let started = futures::stream::iter(partitions).map(move |mut stream| {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(AHEAD);
        let map = Arc::clone(&map);
        tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = batch.and_then(|b| map(b));
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        futures::future::ready(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    });
    Box::pin(started.buffered(concurrency).flatten())
}

/// Batches a partition may have ready before it waits to be emitted.
const AHEAD: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_longer_than_their_inline_bytes_are_told_apart() {
        let mut table: KeyTable<u32> = KeyTable::new(vec![DataType::Utf8]).unwrap();
        let keys = [
            "a",
            "",
            "0123456789abcdef",
            "0123456789abcdef-long-1",
            "0123456789abcdef-long-2",
            "0123456789abcdef-long-22",
        ];
        for key in keys {
            table.intern(key.as_bytes()).unwrap();
        }
        assert_eq!(
            table.intern(keys[3].as_bytes()).unwrap(),
            3,
            "interned once"
        );
        table.finish((0..keys.len() as u32).map(|k| k * 10).collect());
        for (k, key) in keys.iter().enumerate() {
            assert_eq!(table.find(key.as_bytes()), Some(k as u32 * 10), "{key}");
        }
        for missing in ["b", "0123456789abcdef-long-3", "0123456789abcdef-long-2x"] {
            assert_eq!(table.find(missing.as_bytes()), None, "{missing}");
        }
        // Long keys of one length and head share their inline bytes: only the arena tells them
        // apart when their hashes collide.
        assert_eq!(
            Inline::of(keys[3].as_bytes()),
            Inline::of(keys[4].as_bytes())
        );
        assert_ne!(Inline::of(b"a"), Inline::of(b"a\0"), "lengths differ");
    }

    /// The open-addressed table: every key of many is found (so probes that run past a taken
    /// slot, and past the table's end, find theirs), none of the others is, and an empty table
    /// finds nothing.
    #[test]
    fn every_key_of_many_is_found_and_no_other() {
        let mut empty: KeyTable<u32> = KeyTable::new(vec![DataType::Utf8]).unwrap();
        assert_eq!(empty.find(b"a"), None);
        empty.finish(vec![]);
        assert_eq!(empty.find(b"a"), None);
        empty.prefetch(empty.hash(b"a"));

        let mut table: KeyTable<u32> = KeyTable::new(vec![DataType::Utf8]).unwrap();
        let key = |i: u32| format!("user-{i}-{}", "x".repeat(i as usize % 20));
        let n = 5000;
        for i in 0..n {
            assert_eq!(table.intern(key(i).as_bytes()).unwrap(), i);
        }
        table.finish((0..n).map(|k| k + 1).collect());
        assert_eq!(table.slots.len(), 16384, "at most half full");
        let (displaced, _) = check_table(&table, n, key);
        assert!(displaced > 0, "some keys sit past their first slot");
        // Small tables of 7 keys in 16 slots: in some, a probe runs past the table's end.
        let mut wrapped = 0;
        for round in 0..500 {
            let key = move |i: u32| format!("{round}-{i}");
            let mut table: KeyTable<u32> = KeyTable::new(vec![DataType::Utf8]).unwrap();
            for i in 0..7 {
                table.intern(key(i).as_bytes()).unwrap();
            }
            table.finish((0..7).map(|k| k + 1).collect());
            wrapped += check_table(&table, 7, key).1;
        }
        assert!(wrapped > 0, "no probe ran past the table's end");
    }

    /// Checks that keys `key(0..n)` of `table` are found with values `1..=n` and that `n..2n`
    /// are not; returns how many keys sit past their first slot, and past the table's end.
    fn check_table(table: &KeyTable<u32>, n: u32, key: impl Fn(u32) -> String) -> (usize, usize) {
        let (mut displaced, mut wrapped) = (0, 0);
        for i in 0..n {
            let bytes = key(i);
            let hash = table.hash(bytes.as_bytes());
            table.prefetch(hash);
            assert_eq!(table.find(bytes.as_bytes()), Some(i + 1), "{bytes}");
            let home = hash as usize & (table.slots.len() - 1);
            let at = table
                .slots
                .iter()
                .position(|e| e.is_some_and(|e| e.key == i))
                .unwrap();
            displaced += usize::from(at != home);
            wrapped += usize::from(at < home);
        }
        for i in n..2 * n {
            assert_eq!(table.find(key(i).as_bytes()), None);
        }
        (displaced, wrapped)
    }
}
