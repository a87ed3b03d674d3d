//! Micro-benchmarks of the session functions (`cargo bench -p sessionize`), never run by
//! `cargo test`.
//!
//! - `rule`: the rule itself over one actor's sorted timestamps;
//! - `aggregate`: `session_count` and `session_list` with GROUP BY over an in-memory table;
//! - `window`: `session_number()` against the `lag` + running `sum` SQL a DataFusion user would
//!   write for the same numbers;
//! - `columns`: `session_key`, `utc_day` and `epoch_seconds` against the SQL they replace in the
//!   sessions table (`||` with a cast, floor divisions written as SQL arithmetic).
//!
//! The input is the generator's export (shuffled, 50 events per user) held in memory, so Parquet
//! decoding is not measured here; the side-by-side benchmark (`bench/run.sh`) measures whole runs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use sessionize::rules::{SessionRule, for_each_session};
use sessionize_datagen::Config;

const EVENTS: usize = 1_000_000;

fn context(events: usize, partitions: usize) -> SessionContext {
    let config = Config {
        users: events / 50,
        events,
        days: 30,
        ..Config::default()
    };
    let batches = sessionize_datagen::generate(&config, 8192).expect("generated events");
    let per_partition = batches.len().div_ceil(partitions);
    let partitions: Vec<_> = batches
        .chunks(per_partition.max(1))
        .map(<[_]>::to_vec)
        .collect();
    let table = MemTable::try_new(sessionize_datagen::schema(), partitions).expect("memtable");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ctx = sessionize::context_with_config(SessionConfig::new().with_target_partitions(threads))
        .expect("functions");
    ctx.register_table("events", Arc::new(table))
        .expect("table");
    ctx
}

fn run(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> usize {
    rt.block_on(async {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

fn rule(c: &mut Criterion) {
    let rule = SessionRule::new(
        30 * 60 * 1_000_000_000,
        None,
        datafusion::arrow::datatypes::TimeUnit::Microsecond,
    );
    // One actor's day: events 1 to 300 seconds apart, a long gap every 40 events.
    let mut ts = Vec::with_capacity(100_000);
    let mut t = 0i64;
    for i in 0..100_000i64 {
        t += if i % 40 == 0 {
            3_600_000_000
        } else {
            (i % 300 + 1) * 1_000_000
        };
        ts.push(t);
    }
    let mut group = c.benchmark_group("rule");
    group.throughput(Throughput::Elements(ts.len() as u64));
    group.bench_function("for_each_session", |b| {
        b.iter(|| {
            let mut sessions = 0;
            for_each_session(&rule, black_box(&ts), &[], |_| sessions += 1);
            sessions
        })
    });
    group.finish();
}

/// One benchmark group of SQL queries over the same in-memory events.
fn sql_group(c: &mut Criterion, group_name: &str, queries: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ctx = context(EVENTS, 2);
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, sql) in queries {
        group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| run(&rt, &ctx, sql))
        });
    }
    group.finish();
}

fn aggregate(c: &mut Criterion) {
    sql_group(
        c,
        "aggregate",
        &[
            (
                "session_count",
                "SELECT user_id, session_count(event_time, INTERVAL '30 minutes') FROM events GROUP BY user_id",
            ),
            (
                "session_list",
                "SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) FROM events GROUP BY user_id",
            ),
            (
                "array_agg (DataFusion, for scale)",
                "SELECT user_id, array_agg(event_time) FROM events GROUP BY user_id",
            ),
        ],
    );
}

fn window(c: &mut Criterion) {
    let ours = "SELECT max(n) FROM (SELECT session_number(event_time, INTERVAL '30 minutes') \
                OVER (PARTITION BY user_id ORDER BY event_time) AS n FROM events)";
    let lag_sum = "SELECT max(n) FROM (SELECT sum(CASE WHEN prev IS NULL OR event_time - prev > INTERVAL '30 minutes' \
                   THEN 1 ELSE 0 END) OVER (PARTITION BY user_id ORDER BY event_time) AS n FROM \
                   (SELECT user_id, event_time, lag(event_time) OVER (PARTITION BY user_id ORDER BY event_time) AS prev \
                    FROM events))";
    sql_group(
        c,
        "window",
        &[
            ("session_number", ours),
            ("lag + running sum (DataFusion SQL)", lag_sum),
        ],
    );
}

fn columns(c: &mut Criterion) {
    // One row per event, so each expression runs over 1M values (the sessions table has one per
    // session). The SQL forms are those the sessions table used before the functions.
    let floor = |ts: &str, units: i64| {
        format!(
            "(arrow_cast({ts}, 'Int64') / {units} - CASE WHEN arrow_cast({ts}, 'Int64') % {units} < 0 THEN 1 ELSE 0 END)"
        )
    };
    let key_sql =
        "SELECT user_id || '-' || CAST(arrow_cast(event_time, 'Int64') AS VARCHAR) FROM events";
    let key_fn = "SELECT session_key(user_id, arrow_cast(event_time, 'Int64')) FROM events";
    let day_sql = format!(
        "SELECT arrow_cast(arrow_cast({}, 'Int32'), 'Date32'), {} FROM events",
        floor("event_time", 86_400_000_000),
        floor("event_time", 1_000_000)
    );
    let day_fn = "SELECT utc_day(event_time), epoch_seconds(event_time) FROM events";
    sql_group(
        c,
        "columns",
        &[
            ("session_key", key_fn),
            ("|| with a cast (SQL)", key_sql),
            ("utc_day + epoch_seconds", day_fn),
            ("floor divisions (SQL)", &day_sql),
        ],
    );
}

criterion_group!(benches, rule, aggregate, window, columns);
criterion_main!(benches);
