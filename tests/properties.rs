//! Property tests: every session function agrees with a naive reference sessionizer on random
//! inputs rich in ties, exact-timeout gaps, nulls and restarts, in random row order, split into
//! random partitions and batches, in every timestamp unit.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionConfig;
use proptest::prelude::*;

/// One input event: actor, time in seconds, restart flag.
#[derive(Debug, Clone)]
struct Event {
    actor: Option<&'static str>,
    secs: Option<i64>,
    restart: Option<bool>,
}

/// A session as the reference sees it: (number, id in epoch ms, start, end, event count); start and
/// end in the unit of the test.
type RefSession = (i64, i64, i64, i64, i64);

/// The reference's answer for one actor: the session of each distinct timestamp, and the sessions.
type RefActor = (BTreeMap<i64, RefSession>, Vec<RefSession>);

const TIMEOUT_SECS: i64 = 1800;
const MAX_LENGTH_SECS: i64 = 3600;

/// The naive reference, written for clarity only: sort one actor's timestamps, then walk the distinct
/// ones and start a session at the first, after a gap strictly greater than the timeout, at a
/// timestamp where any event restarts, or more than the maximum length after the session's start.
/// Returns, for every distinct timestamp, its session; and the list of sessions.
fn reference(
    events: &[(i64, bool)],
    timeout: i64,
    max_length: Option<i64>,
    units_per_ms: Option<i64>,
    ms_per_unit: i64,
) -> RefActor {
    let mut times: Vec<i64> = events.iter().map(|e| e.0).collect();
    times.sort();
    times.dedup();
    let mut sessions: Vec<RefSession> = vec![];
    let mut session_of = BTreeMap::new();
    for (k, &t) in times.iter().enumerate() {
        let restart = events.iter().any(|&(et, r)| et == t && r);
        let count = events.iter().filter(|e| e.0 == t).count() as i64;
        let new_session = match sessions.last() {
            None => true,
            Some(&(_, _, start, _, _)) => {
                let gap = t - times[k - 1];
                restart || gap > timeout || max_length.is_some_and(|m| t - start > m)
            }
        };
        if new_session {
            let id = match units_per_ms {
                Some(per_ms) => t.div_euclid(per_ms),
                None => t * ms_per_unit,
            };
            sessions.push((sessions.len() as i64 + 1, id, t, t, count));
        } else if let Some(last) = sessions.last_mut() {
            last.3 = t;
            last.4 += count;
        }
        session_of.insert(t, *sessions.last().expect("a session"));
    }
    (session_of, sessions)
}

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        prop_oneof![
            8 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Some),
            1 => Just(None)
        ],
        // A grid of 15-minute steps plus 0 or 1 second: ties, gaps of exactly 30 minutes and gaps of
        // 30 minutes and one second are all common.
        prop_oneof![
            12 => (0i64..16, 0i64..2).prop_map(|(k, j)| Some(k * 900 + j)),
            1 => Just(None)
        ],
        prop_oneof![6 => Just(Some(false)), 2 => Just(Some(true)), 1 => Just(None)],
    )
        .prop_map(|(actor, secs, restart)| Event {
            actor,
            secs,
            restart,
        })
}

#[derive(Debug, Clone)]
struct Case {
    events: Vec<Event>,
    unit: TimeUnit,
    with_restart: bool,
    with_max_length: bool,
    partitions: usize,
    batch_size: usize,
    target_partitions: usize,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(event_strategy(), 0..60),
        prop::sample::select(vec![
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ]),
        any::<bool>(),
        any::<bool>(),
        1usize..4,
        1usize..6,
        1usize..=4,
    )
        .prop_map(
            |(events, unit, with_restart, with_max_length, partitions, batch_size, target)| Case {
                events,
                unit,
                with_restart,
                with_max_length,
                partitions,
                batch_size,
                target_partitions: target,
            },
        )
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn timestamps(values: Vec<Option<i64>>, unit: TimeUnit) -> ArrayRef {
    match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(values)),
        TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values)),
        TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values)),
        TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values)),
    }
}

fn timestamp_value(array: &ArrayRef, i: usize) -> Option<i64> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().value(i)
        }
        other => panic!("not a timestamp: {other}"),
    })
}

/// Registers the case's events as table `ev` split into partitions and batches.
fn context(case: &Case) -> datafusion::prelude::SessionContext {
    let ts_type = DataType::Timestamp(case.unit, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("actor", DataType::Utf8, true),
        Field::new("ts", ts_type, true),
        Field::new("restart", DataType::Boolean, true),
        Field::new("event", DataType::Utf8, true),
    ]));
    let scale = per_second(case.unit);
    let rows: Vec<(usize, &Event)> = case.events.iter().enumerate().collect();
    let per_partition = rows.len().div_ceil(case.partitions).max(1);
    let mut partitions: Vec<Vec<RecordBatch>> = rows
        .chunks(per_partition)
        .map(|part| {
            part.chunks(case.batch_size)
                .map(|chunk| {
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(Int64Array::from_iter_values(
                            chunk.iter().map(|(i, _)| *i as i64),
                        )),
                        Arc::new(StringArray::from_iter(chunk.iter().map(|(_, e)| e.actor))),
                        timestamps(
                            chunk
                                .iter()
                                .map(|(_, e)| e.secs.map(|s| s * scale))
                                .collect(),
                            case.unit,
                        ),
                        Arc::new(BooleanArray::from_iter(
                            chunk.iter().map(|(_, e)| e.restart),
                        )),
                        // The event type `annotate` restarts at: "open" where `restart` is true.
                        Arc::new(StringArray::from_iter(chunk.iter().map(|(_, e)| {
                            e.restart.map(|r| if r { "open" } else { "view" })
                        }))),
                    ];
                    RecordBatch::try_new(schema.clone(), columns).expect("batch")
                })
                .collect()
        })
        .collect();
    if partitions.is_empty() {
        partitions.push(vec![]);
    }
    let config = SessionConfig::new()
        .with_target_partitions(case.target_partitions)
        .with_batch_size(case.batch_size);
    let ctx = sessionize::context_with_config(config).expect("context");
    let table = MemTable::try_new(schema, partitions).expect("table");
    ctx.register_table("ev", Arc::new(table)).expect("register");
    ctx
}

fn args(case: &Case) -> String {
    let mut args = "ts, INTERVAL '30 minutes'".to_string();
    if case.with_restart || case.with_max_length {
        args.push_str(if case.with_restart {
            ", restart"
        } else {
            ", false"
        });
    }
    if case.with_max_length {
        args.push_str(", INTERVAL '1 hour'");
    }
    args
}

/// The reference's answer for every actor (null actor included) present in the case.
fn expected(case: &Case) -> BTreeMap<Option<&'static str>, RefActor> {
    let scale = per_second(case.unit);
    let (units_per_ms, ms_per_unit) = match case.unit {
        TimeUnit::Second => (None, 1000),
        TimeUnit::Millisecond => (Some(1), 1),
        TimeUnit::Microsecond => (Some(1_000), 1),
        TimeUnit::Nanosecond => (Some(1_000_000), 1),
    };
    let mut by_actor: BTreeMap<Option<&'static str>, Vec<(i64, bool)>> = BTreeMap::new();
    for e in &case.events {
        let list = by_actor.entry(e.actor).or_default();
        if let Some(s) = e.secs {
            list.push((s * scale, case.with_restart && e.restart == Some(true)));
        }
    }
    by_actor
        .into_iter()
        .map(|(actor, events)| {
            let max = case.with_max_length.then_some(MAX_LENGTH_SECS * scale);
            (
                actor,
                reference(
                    &events,
                    TIMEOUT_SECS * scale,
                    max,
                    units_per_ms,
                    ms_per_unit,
                ),
            )
        })
        .collect()
}

/// Runs `sql`; any error fails the test.
async fn collect(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run")
}

async fn check_window(case: &Case) -> Result<(), TestCaseError> {
    let ctx = context(case);
    let sql = format!(
        "SELECT row_id, ts, session_number({a}) OVER (PARTITION BY actor ORDER BY ts) AS n, \
                session_id({a}) OVER (PARTITION BY actor ORDER BY ts) AS id FROM ev",
        a = args(case)
    );
    let batches = collect(&ctx, &sql).await;
    let expected = expected(case);
    let mut seen = 0;
    for batch in batches {
        let row_ids = batch.column(0).as_primitive::<Int64Type>();
        let numbers = batch.column(2).as_primitive::<Int64Type>();
        let ids = batch.column(3).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            seen += 1;
            let event = &case.events[row_ids.value(i) as usize];
            match timestamp_value(batch.column(1), i) {
                None => {
                    prop_assert!(
                        numbers.is_null(i) && ids.is_null(i),
                        "null ts must give null"
                    );
                }
                Some(t) => {
                    let (number, id, ..) = expected[&event.actor].0[&t];
                    prop_assert_eq!(numbers.value(i), number, "session_number of {:?}", event);
                    prop_assert_eq!(ids.value(i), id, "session_id of {:?}", event);
                }
            }
        }
    }
    prop_assert_eq!(seen, case.events.len());
    Ok(())
}

async fn check_aggregates(case: &Case) -> Result<(), TestCaseError> {
    let ctx = context(case);
    let sql = format!(
        "SELECT actor, session_count({a}), session_seconds({a}), session_list({a}) FROM ev GROUP BY actor",
        a = args(case)
    );
    let batches = collect(&ctx, &sql).await;
    let expected = expected(case);
    let scale = per_second(case.unit) as f64;
    let mut seen = 0;
    for batch in batches {
        let actors = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        let seconds = batch.column(2).as_primitive::<Float64Type>();
        let lists = batch.column(3).as_list::<i32>();
        for i in 0..batch.num_rows() {
            seen += 1;
            let actor = (!actors.is_null(i)).then(|| actors.value(i));
            let key = expected.keys().find(|k| **k == actor).copied();
            let sessions = &expected[&key.expect("an actor of the input")].1;
            prop_assert_eq!(
                counts.value(i),
                sessions.len() as i64,
                "session_count of {:?}",
                actor
            );
            let total: i64 = sessions.iter().map(|s| s.3 - s.2).sum();
            prop_assert!((seconds.value(i) - total as f64 / scale).abs() < 1e-9);
            let list = lists.value(i);
            let fields = list.as_struct();
            let got: Vec<RefSession> = (0..list.len())
                .map(|k| {
                    (
                        fields.column(0).as_primitive::<Int64Type>().value(k),
                        fields.column(1).as_primitive::<Int64Type>().value(k),
                        timestamp_value(fields.column(2), k).expect("start"),
                        timestamp_value(fields.column(3), k).expect("end"),
                        fields.column(4).as_primitive::<Int64Type>().value(k),
                    )
                })
                .collect();
            prop_assert_eq!(&got, sessions, "session_list of {:?}", actor);
        }
    }
    prop_assert_eq!(seen, expected.len());
    Ok(())
}

/// `session_first_value` / `session_last_value`: the reference's sessions, each with the value of
/// its first (last) event, ties at that time ordered by event type then value, nulls last (the
/// reference: every event at the session's start or end time, sorted that way).
async fn check_values(case: &Case) -> Result<(), TestCaseError> {
    let ctx = context(case);
    // A value with ties and nulls: the row number mod 3, null for every fourth row.
    let value = "CASE WHEN row_id % 4 = 0 THEN NULL ELSE CAST(row_id % 3 AS VARCHAR) END";
    let restart = if case.with_restart {
        "restart"
    } else {
        "false"
    };
    let sql = format!(
        "SELECT actor, session_first_value(ts, INTERVAL '30 minutes', {restart}, event, {value}), \
                session_last_value(ts, INTERVAL '30 minutes', {restart}, event, {value}) \
         FROM ev GROUP BY actor"
    );
    let batches = collect(&ctx, &sql).await;
    let mut plain = case.clone();
    plain.with_max_length = false;
    let expected = expected(&plain);
    let scale = per_second(case.unit);
    let value_of = |row: usize| (!row.is_multiple_of(4)).then(|| (row % 3).to_string());
    let event_of = |e: &Event| {
        e.restart
            .map(|r| if r { "open" } else { "view" }.to_string())
    };
    // Text order with nulls last.
    let key = |e: &Option<String>| (e.is_none(), e.clone());
    let mut seen = 0;
    for batch in batches {
        let actors = batch.column(0).as_string::<i32>();
        for i in 0..batch.num_rows() {
            seen += 1;
            let actor = (!actors.is_null(i)).then(|| actors.value(i));
            let sessions = &expected[&actor].1;
            for (column, last) in [(1, false), (2, true)] {
                let list = batch.column(column).as_list::<i32>().value(i);
                let fields = list.as_struct();
                prop_assert_eq!(list.len(), sessions.len());
                for (k, session) in sessions.iter().enumerate() {
                    let got = (
                        fields.column(0).as_primitive::<Int64Type>().value(k),
                        fields.column(1).as_primitive::<Int64Type>().value(k),
                        timestamp_value(fields.column(2), k).expect("start"),
                        timestamp_value(fields.column(3), k).expect("end"),
                        fields.column(4).as_primitive::<Int64Type>().value(k),
                    );
                    prop_assert_eq!(&got, session);
                    let at = if last { session.3 } else { session.2 };
                    let mut tied: Vec<(Option<String>, Option<String>)> = case
                        .events
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.actor == actor && e.secs.map(|s| s * scale) == Some(at))
                        .map(|(row, e)| (event_of(e), value_of(row)))
                        .collect();
                    tied.sort_by_key(|(t, v)| (key(t), key(v)));
                    let want = if last { tied.last() } else { tied.first() };
                    let values = fields.column(5).as_string_view();
                    let got = (!values.is_null(k)).then(|| values.value(k).to_string());
                    prop_assert_eq!(
                        got,
                        want.and_then(|w| w.1.clone()),
                        "{} of {:?}",
                        column,
                        actor
                    );
                }
            }
        }
    }
    prop_assert_eq!(seen, expected.len());
    Ok(())
}

/// `annotate` (two passes, no sort) gives every event the reference's session, in the input's
/// order, however the input is split into partitions and batches.
async fn check_annotate(case: &Case) -> Result<(), TestCaseError> {
    use futures::TryStreamExt;
    let ctx = context(case);
    let options = sessionize::sessions::SessionsOptions {
        actor: "actor".into(),
        time: "ts".into(),
        event: "event".into(),
        restart_events: if case.with_restart {
            vec!["open".into()]
        } else {
            vec![]
        },
        max_length: case
            .with_max_length
            .then(|| std::time::Duration::from_secs(MAX_LENGTH_SECS as u64)),
        ..Default::default()
    };
    let stream = sessionize::annotate::annotate(&ctx, "ev", &options, false)
        .await
        .expect("plan");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("run");
    check_annotated(case, &batches)?;

    // The same events as Parquet files (one per partition, row groups of 1.5 batches, empty
    // files included) annotated to a Parquet file by copying their column chunks.
    let dir = tempfile::tempdir().expect("temporary folder");
    let folder = dir.path().join("events");
    std::fs::create_dir(&folder).expect("folder");
    let ordered = ctx
        .sql("SELECT * FROM ev ORDER BY row_id")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let table = ctx.table("ev").await.expect("table");
    let schema = Arc::new(table.schema().as_arrow().clone());
    let all = datafusion::arrow::compute::concat_batches(&schema, &ordered).expect("concat");
    // Files with a page index, and (odd batch sizes) without one, as DuckDB writes them.
    let mut properties = datafusion::parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(case.batch_size * 3 / 2 + 1))
        .set_compression(datafusion::parquet::basic::Compression::SNAPPY);
    if case.batch_size % 2 == 1 {
        properties = properties
            .set_statistics_enabled(datafusion::parquet::file::properties::EnabledStatistics::Chunk)
            .set_offset_index_disabled(true);
    }
    let properties = properties.build();
    let per_file = case.events.len().div_ceil(case.partitions);
    for p in 0..case.partitions {
        let from = (p * per_file).min(all.num_rows());
        let to = ((p + 1) * per_file).min(all.num_rows());
        let file =
            std::fs::File::create(folder.join(format!("part-{p:03}.parquet"))).expect("file");
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
            file,
            Arc::clone(&schema),
            Some(properties.clone()),
        )
        .expect("writer");
        writer.write(&all.slice(from, to - from)).expect("write");
        writer.close().expect("close");
    }
    let config = SessionConfig::new()
        .with_target_partitions(case.target_partitions)
        .with_batch_size(case.batch_size);
    let files = sessionize::context_with_config(config).expect("context");
    sessionize::tables::register_inputs(
        &files,
        "ev",
        &[folder.display().to_string()],
        &Default::default(),
    )
    .await
    .expect("register");
    let target = dir.path().join("annotated.parquet");
    let written = sessionize::annotate::write_parquet(
        &files,
        "ev",
        &options,
        false,
        target.to_str().expect("path"),
        None,
    )
    .await
    .expect("write");
    prop_assert_eq!(written, Some(case.events.len()), "Parquet files are copied");
    let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        std::fs::File::open(&target).expect("output"),
        1024,
    )
    .expect("reader");
    let copied: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read");
    check_annotated(case, &copied)
}

/// Annotated events against the reference: every event's session, in the input's order.
fn check_annotated(case: &Case, batches: &[RecordBatch]) -> Result<(), TestCaseError> {
    let expected = expected(case);
    let mut row_ids = vec![];
    for batch in batches {
        let schema = batch.schema();
        let column = |name: &str| batch.column(schema.index_of(name).expect(name));
        let ids = column("session_id").as_primitive::<Int64Type>();
        let numbers = column("session_number").as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let row_id = column("row_id").as_primitive::<Int64Type>().value(i);
            row_ids.push(row_id);
            let event = &case.events[row_id as usize];
            match (event.actor, timestamp_value(column("ts"), i)) {
                (Some(_), Some(t)) => {
                    let (number, id, ..) = expected[&event.actor].0[&t];
                    prop_assert_eq!(numbers.value(i), number, "session_number of {:?}", event);
                    prop_assert_eq!(ids.value(i), id, "session_id of {:?}", event);
                }
                _ => prop_assert!(numbers.is_null(i) && ids.is_null(i), "{:?}", event),
            }
        }
    }
    let in_order: Vec<i64> = (0..case.events.len() as i64).collect();
    prop_assert_eq!(row_ids, in_order, "the input's order");
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn window_functions_match_the_reference(case in case_strategy()) {
        runtime().block_on(check_window(&case))?;
    }

    #[test]
    fn aggregate_functions_match_the_reference(case in case_strategy()) {
        runtime().block_on(check_aggregates(&case))?;
    }

    #[test]
    fn session_values_match_the_reference(case in case_strategy()) {
        runtime().block_on(check_values(&case))?;
    }

    #[test]
    fn annotate_matches_the_reference(case in case_strategy()) {
        runtime().block_on(check_annotate(&case))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The formula parser never panics, on any text or on text made of its own tokens.
    #[test]
    fn formula_parser_never_panics(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec![
                    "SESSIONTOTALS", "UNIQUES", "HIST", "PROPSUM", "EVENTTOTALS", "(", ")", "A", "B2",
                    "0", "1.5", "+", "-", "*", "/", "%:", "$:", ";", " ", ",", ".", "9999999999999999999",
                ]),
                0..40,
            )
            .prop_map(|tokens| tokens.concat()),
        ]
    ) {
        match sessionize::formula::parse_formulas(&text) {
            Ok(formulas) => prop_assert!(formulas.len() <= 10),
            Err(e) => prop_assert!(e.render().ends_with('^')),
        }
    }
}

/// The reference itself, on a case worked out by hand.
#[test]
fn reference_on_a_hand_made_case() {
    // Seconds: 0, 1800 (equal gap, stays), 1800 (tie), 3601 (gap 1801, splits, restart too), 3601.
    let events = [
        (0, false),
        (1800, false),
        (1800, false),
        (3601, true),
        (3601, false),
    ];
    let (_, sessions) = reference(&events, 1800, None, None, 1000);
    assert_eq!(
        sessions,
        vec![(1, 0, 0, 1800, 3), (2, 3_601_000, 3601, 3601, 2)]
    );
}

/// The time of a test event: seconds after 2026-01-01T00:00:00Z, as `HH:MM:SS` of that day.
fn clock(secs: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A context with the inputs at `path` registered as `name`, loaded as the commands load them.
async fn loaded(path: &std::path::Path, name: &str) -> datafusion::prelude::SessionContext {
    let ctx = sessionize::context().expect("context");
    let load = sessionize::tables::LoadOptions {
        time_column: Some("event_time".into()),
        ..Default::default()
    };
    sessionize::tables::register_inputs(&ctx, name, &[path.display().to_string()], &load)
        .await
        .expect("load");
    ctx
}

/// The sessions (user, start, end, events) of the inputs at `path`, read as the commands read
/// them: loaded, mapped by the source they are recognised as (`expected`), with the source's own
/// actor (the user id, else the device or anonymous id; for Amplitude's shapes, whose default
/// actor is the user id, `--actor user_id,device_id`).
async fn sessions_of(path: &std::path::Path, expected: &str) -> Vec<String> {
    let ctx = loaded(path, "events").await;
    let source = sessionize::sources::apply(&ctx, "events", None, Default::default())
        .await
        .expect("source")
        .map(|(s, _)| s);
    assert_eq!(source.map(|s| s.name), Some(expected), "{}", path.display());
    let schema = ctx
        .table("events")
        .await
        .expect("table")
        .schema()
        .as_arrow()
        .clone();
    let given = (expected.starts_with("amplitude") && schema.field_with_name("device_id").is_ok())
        .then_some("user_id,device_id");
    let actors = sessionize::identity::actors_of(given, false, source, false);
    let options = sessionize::sessions::SessionsOptions {
        actor: sessionize::identity::apply(&ctx, "events", &actors, None, "event_time")
            .await
            .expect("actor"),
        ..Default::default()
    };
    let schema = ctx
        .table("events")
        .await
        .expect("table")
        .schema()
        .as_arrow()
        .clone();
    let sql = sessionize::sessions::sessions_sql("events", &schema, &options).expect("sql");
    let sql = format!(
        "SELECT user_id, session_started_at, session_ended_at, events_per_session FROM ({sql}) ORDER BY 1, 2"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes GA4's BigQuery export as Parquet at `path` from the canonical CSV `user_id` (empty for
/// anonymous events), `device_id`, `event_time`, `event_type`: `event_timestamp` in µs,
/// `event_params` with `page_location`, `user_pseudo_id` the device.
async fn write_ga4(csv: &std::path::Path, path: &std::path::Path) {
    let ctx = loaded(csv, "raw").await;
    let sql = format!(
        "COPY (SELECT CAST(event_time AS BIGINT) AS event_timestamp, event_type AS event_name, \
           make_array(named_struct('key', 'page_location', 'value', named_struct('string_value', \
             'https://example.com/', 'int_value', CAST(NULL AS BIGINT), 'float_value', \
             CAST(NULL AS DOUBLE), 'double_value', CAST(NULL AS DOUBLE)))) AS event_params, \
           user_id, device_id AS user_pseudo_id, 'web' AS platform FROM raw) TO '{}' \
         STORED AS PARQUET",
        path.display()
    );
    ctx.sql(&sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("write");
}

/// Random events written in each source's shape (Amplitude's Export API and Fivetran's event
/// table, Segment's messages, Mixpanel's raw export, PostHog's events with offsets, Snowplow's
/// atomic events as CSV, GA4's BigQuery export as Parquet) give the sessions of the same events
/// in the canonical shape. Events without a user are anonymous events of one of two devices:
/// each shape carries them its own way (a null user id beside the device or anonymous id, or the
/// device id as Mixpanel's and PostHog's `distinct_id`), and the canonical actor is the device.
async fn check_sources(events: &[Event]) -> Result<(), TestCaseError> {
    let events: Vec<(Option<&str>, String, i64, &str)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let kind = if e.restart == Some(true) {
                "open"
            } else {
                "view"
            };
            let device = match e.actor {
                Some(actor) => format!("d-{actor}"),
                None => format!("anon{}", i % 2),
            };
            Some((e.actor, device, e.secs?, kind))
        })
        .collect();
    prop_assume!(!events.is_empty());
    let dir = tempfile::tempdir().expect("temporary folder");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let mut canonical = String::from("user_id,event_time,event_type\n");
    let mut devices = String::from("user_id,device_id,event_time,event_type\n");
    let (mut amplitude, mut segment, mut mixpanel, mut posthog) =
        (String::new(), String::new(), String::new(), String::new());
    let mut fivetran = String::from(
        "id,_insert_id,_fivetran_synced,event_time,event_type,user_id,device_id,session_id\n",
    );
    let mut snowplow = String::from(
        "event_id,derived_tstamp,collector_tstamp,event_name,user_id,domain_userid,domain_sessionid\n",
    );
    let json = |v: Option<&str>| v.map_or("null".to_string(), |v| format!("\"{v}\""));
    for (i, (user, device, secs, kind)) in events.iter().enumerate() {
        let t = clock(*secs);
        let user_text = user.unwrap_or_default();
        let actor = user.unwrap_or(device);
        canonical.push_str(&format!("{actor},2026-01-01 {t},{kind}\n"));
        devices.push_str(&format!("{user_text},{device},2026-01-01 {t},{kind}\n"));
        amplitude.push_str(&format!(
            "{{\"user_id\":{},\"device_id\":\"{device}\",\"event_time\":\"2026-01-01 {t}.000000\",\"event_type\":\"{kind}\",\"session_id\":-1,\"$insert_id\":\"m{i}\",\"event_properties\":{{}}}}\n",
            json(*user)
        ));
        fivetran.push_str(&format!(
            "{i},m{i},2026-01-02 00:00:00,2026-01-01 {t}.000,{kind},{user_text},{device},-1\n"
        ));
        segment.push_str(&format!(
            "{{\"type\":\"track\",\"event\":\"{kind}\",\"userId\":{},\"anonymousId\":\"{device}\",\"timestamp\":\"2026-01-01T{t}.000Z\",\"messageId\":\"m{i}\",\"properties\":{{}}}}\n",
            json(*user)
        ));
        // Mixpanel's distinct_id is the device's until the user is identified.
        mixpanel.push_str(&format!(
            "{{\"event\":\"{kind}\",\"properties\":{{\"time\":{},\"distinct_id\":\"{actor}\",\"$device_id\":\"{device}\",\"$insert_id\":\"m{i}\"}}}}\n",
            1_767_225_600 + secs
        ));
        // Every other event with a +05:30 offset.
        let stamp = if i % 2 == 0 {
            format!("2026-01-01T{}+05:30", clock(secs + 19_800))
        } else {
            format!("2026-01-01T{t}Z")
        };
        posthog.push_str(&format!(
            "{{\"uuid\":\"u{i}\",\"event\":\"{kind}\",\"distinct_id\":\"{actor}\",\"timestamp\":\"{stamp}\",\"properties\":{{\"$device_id\":\"{device}\"}}}}\n"
        ));
        snowplow.push_str(&format!(
            "e{i},2026-01-01 {t},2026-01-01 {t},{kind},{user_text},{device},\n"
        ));
    }
    let expected = sessions_of(&write("canonical.csv", canonical), "amplitude").await;
    let ga4 = dir.path().join("ga4.parquet");
    write_ga4(&write("devices.csv", devices), &ga4).await;
    for (path, source) in [
        (write("amplitude.json", amplitude), "amplitude"),
        (write("fivetran.csv", fivetran), "amplitude-fivetran"),
        (write("segment.ndjson", segment), "segment"),
        (write("mixpanel.ndjson", mixpanel), "mixpanel"),
        (write("posthog.ndjson", posthog), "posthog"),
        (write("snowplow.csv", snowplow), "snowplow"),
        (ga4, "ga4"),
    ] {
        let got = sessions_of(&path, source).await;
        prop_assert_eq!(&got, &expected, "{}", path.display());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_source_shape_gives_the_canonical_sessions(
        events in prop::collection::vec(event_strategy(), 1..30)
    ) {
        runtime().block_on(check_sources(&events))?;
    }
}
