//! End-to-end tests of the `sessionize` binary on the shipped sample (`data/events.parquet`) and on
//! bad input: exit codes, messages, output formats and atomic output files.

mod common;

use common::{fails, ok, root};

/// The single value of a one-row, one-column CSV result.
fn scalar(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--format", "csv"]);
    let out = ok(&all);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    lines[1].to_string()
}

const SAMPLE: &str = "data/events.parquet";

#[test]
fn sample_events_load_with_amplitude_columns() {
    let out = ok(&[
        "query",
        SAMPLE,
        "SELECT count(*) AS n, count(user_id) AS with_user, sum(CASE WHEN session_id = -1 THEN 1 ELSE 0 END) AS out_of_session FROM events",
        "--format",
        "csv",
    ]);
    let row: Vec<i64> = out
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(row[0] > 1000, "a few thousand events: {out}");
    assert!(row[1] < row[0], "some events have no user: {out}");
    assert!(row[2] > 0, "some events are out of session: {out}");
}

#[test]
fn every_example_query_runs_on_the_sample() {
    let mut found = 0;
    for entry in std::fs::read_dir(root().join("sql")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            found += 1;
            let file = path.to_string_lossy().into_owned();
            let out = ok(&["query", SAMPLE, "-f", &file, "--format", "csv"]);
            assert!(out.lines().count() >= 2, "{file} gave no rows: {out}");
        }
    }
    assert!(found >= 4, "the sql/ examples are missing");
}

#[test]
fn sessions_per_day_agrees_with_the_window_functions() {
    // The main job (aggregate + unnest) against a count of distinct (user, session_number).
    let out = ok(&[
        "query",
        SAMPLE,
        "-f",
        "sql/sessions_per_day.sql",
        "--format",
        "csv",
    ]);
    let per_day: i64 = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    let by_window = scalar(&[
        "query",
        SAMPLE,
        "SELECT count(*) FROM (SELECT DISTINCT user_id, session_number(event_time, INTERVAL '30 minutes') \
         OVER (PARTITION BY user_id ORDER BY event_time) FROM events WHERE user_id IS NOT NULL AND session_id <> -1)",
    ]);
    assert_eq!(per_day.to_string(), by_window);
}

#[test]
fn snowflake_sql_agrees_with_session_number() {
    let out = ok(&[
        "query",
        SAMPLE,
        "-f",
        "sql/snowflake_sessions.sql",
        "--format",
        "csv",
    ]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        row[0], row[2],
        "every event in the same session both ways: {out}"
    );
}

#[test]
fn several_statements_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.sql");
    std::fs::write(
        &file,
        "CREATE VIEW s AS SELECT user_id, session_count(event_time, INTERVAL '30 minutes') AS n FROM events GROUP BY user_id;\n\
         SELECT sum(n) = (SELECT count(*) FROM (SELECT DISTINCT user_id, session_number(event_time, INTERVAL '30 minutes') \
         OVER (PARTITION BY user_id ORDER BY event_time) FROM events)) AS same FROM s;",
    )
    .unwrap();
    assert_eq!(
        scalar(&["query", SAMPLE, "-f", file.to_str().unwrap()]),
        "true"
    );
}

#[test]
fn output_formats() {
    let sql = "SELECT user_id, session_count(event_time, INTERVAL '30 minutes') AS sessions FROM events \
               WHERE user_id IN ('user_00001', 'user_00002') GROUP BY user_id ORDER BY user_id";
    let csv = ok(&["query", SAMPLE, sql, "--format", "csv"]);
    assert_eq!(csv.lines().next(), Some("user_id,sessions"));
    assert_eq!(csv.lines().count(), 3);
    let json = ok(&["query", SAMPLE, sql, "--format", "json"]);
    assert!(
        json.trim_start()
            .starts_with("[{\"user_id\":\"user_00001\",\"sessions\":"),
        "{json}"
    );
    let ndjson = ok(&["query", SAMPLE, sql, "--format", "ndjson"]);
    assert_eq!(ndjson.lines().count(), 2);
    assert!(ndjson.lines().all(|l| l.starts_with("{\"user_id\":")));
    let table = ok(&["query", SAMPLE, sql]);
    assert!(table.contains("| user_id    | sessions |"), "{table}");
}

#[test]
fn output_file_is_written_and_read_back_as_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sessions.parquet");
    let target_str = target.to_str().unwrap();
    ok(&[
        "query",
        SAMPLE,
        "SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s FROM events GROUP BY user_id",
        "--output",
        target_str,
    ]);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "only the target, no temporary file");
    let from_file = scalar(&[
        "query",
        "--table",
        &format!("s={target_str}"),
        "SELECT count(*) FROM s",
    ]);
    let direct = scalar(&[
        "query",
        SAMPLE,
        "SELECT sum(n) FROM (SELECT session_count(event_time, INTERVAL '30 minutes') AS n FROM events GROUP BY user_id)",
    ]);
    assert_eq!(from_file, direct);
}

#[test]
fn a_failing_query_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    // Fails while rows are being written: a division by zero in the last batch.
    fails(
        &[
            "query",
            SAMPLE,
            "SELECT amplitude_id / (amplitude_id - 100000299) FROM events",
            "--output",
            target.to_str().unwrap(),
        ],
        "Divide by zero",
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing half written"
    );

    // An existing file is left as it was.
    std::fs::write(&target, "old").unwrap();
    fails(
        &[
            "query",
            SAMPLE,
            "SELECT 1 / 0",
            "--output",
            target.to_str().unwrap(),
        ],
        "Divide by zero",
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn folders_and_globs_register_every_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, condition) in [
        ("a.parquet", "user_id < 'user_00150'"),
        (
            "b.parquet",
            "NOT (user_id < 'user_00150') OR user_id IS NULL",
        ),
    ] {
        let path = dir.path().join(name);
        ok(&[
            "query",
            SAMPLE,
            &format!("SELECT * FROM events WHERE {condition}"),
            "--output",
            path.to_str().unwrap(),
        ]);
    }
    let total = scalar(&["query", SAMPLE, "SELECT count(*) FROM events"]);
    let folder = dir.path().to_str().unwrap().to_string();
    let glob = format!("{folder}/*.parquet");
    assert_eq!(
        scalar(&[
            "query",
            "--table",
            &format!("ev={folder}"),
            "SELECT count(*) FROM ev"
        ]),
        total
    );
    assert_eq!(
        scalar(&[
            "query",
            "--table",
            &format!("ev={glob}"),
            "SELECT count(*) FROM ev"
        ]),
        total
    );
    assert_eq!(
        scalar(&["query", &glob, "SELECT count(*) FROM events"]),
        total
    );
}

#[test]
fn bad_input_gives_one_clear_sentence_and_exit_code_1() {
    fails(
        &["query", "missing.parquet", "SELECT 1"],
        "cannot read 'missing.parquet'",
    );
    let dir = tempfile::tempdir().unwrap();
    let not_parquet = dir.path().join("notes.parquet");
    std::fs::write(&not_parquet, "not parquet at all").unwrap();
    fails(
        &["query", not_parquet.to_str().unwrap(), "SELECT 1"],
        "as Parquet",
    );
    fails(
        &[
            "query",
            &format!("{}/*.parquet", dir.path().join("none").display()),
            "SELECT 1",
        ],
        "no files match",
    );
    let empty = tempfile::tempdir().unwrap();
    fails(
        &["query", empty.path().to_str().unwrap(), "SELECT 1"],
        "holds no .parquet",
    );
    fails(
        &["query", SAMPLE, "SELECT * FROM nope"],
        "table 'datafusion.public.nope' not found",
    );
    fails(
        &["query", SAMPLE, "SELECT nope FROM events"],
        "No field named nope",
    );
    fails(&["query", SAMPLE, "SELEC 1"], "SQL syntax error");
    fails(
        &[
            "query",
            SAMPLE,
            "SELECT session_count(amplitude_id, INTERVAL '30 minutes') FROM events",
        ],
        "session_count: argument 1 (ts) must be a timestamp, but found Int64",
    );
    fails(
        &[
            "query",
            SAMPLE,
            "SELECT session_count(event_time, INTERVAL '1 month') FROM events",
        ],
        "must not use months",
    );
    fails(
        &["query", "--table", "nonsense", "SELECT 1"],
        "--table expects NAME=PATH",
    );
    fails(
        &["query", SAMPLE, "-f", "missing.sql"],
        "cannot read the SQL file 'missing.sql'",
    );
    fails(&["query"], "no SQL given");
}

#[test]
fn the_sample_is_what_the_generator_makes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let from_file = runtime.block_on(async {
        let config = datafusion::prelude::SessionConfig::new()
            .with_target_partitions(1)
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            );
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        let path = root().join(SAMPLE);
        let df = ctx
            .read_parquet(path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        df.collect().await.unwrap()
    });
    let generated =
        sessionize_datagen::generate(&sessionize_datagen::Config::default(), usize::MAX).unwrap();
    let schema = sessionize_datagen::schema();
    let concat = |batches: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::compute::concat_batches(&schema, batches).unwrap()
    };
    assert_eq!(concat(&from_file), concat(&generated));
}

#[test]
fn memory_limit_and_threads_change_nothing_but_resources() {
    let sorted = |args: &[&str]| {
        let mut lines: Vec<String> = ok(args).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let plain = sorted(&["sessions", SAMPLE, "--format", "csv"]);
    assert!(plain.len() > 500, "{} sessions", plain.len());
    // 128 KB is less than the sample's grouping state: the aggregation spills to disk.
    let limit = ["--memory-limit", "128K", "--threads", "1"];
    let mut args = vec!["sessions", SAMPLE, "--format", "csv"];
    args.extend(limit);
    assert_eq!(sorted(&args), plain);
    let sql = ok(&["sessions", SAMPLE, "--print-sql"]);
    let explain = format!("EXPLAIN ANALYZE {sql}");
    let mut args = vec!["query", SAMPLE, explain.as_str(), "--format", "csv"];
    args.extend(limit);
    let plan = ok(&args);
    let spills: usize = plan
        .split("spill_count=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        spills > 0,
        "the aggregation should spill under 128K: {plan}"
    );
    let two = sorted(&[
        "--threads",
        "2",
        "-m",
        "64M",
        "sessions",
        SAMPLE,
        "--format",
        "csv",
    ]);
    assert_eq!(two, plain);
    let message = fails(&["sessions", SAMPLE, "--memory-limit", "4XB"], "not a size");
    assert!(message.contains("'4XB'"), "{message}");
    fails(&["sessions", SAMPLE, "--threads", "0"], "--threads");
}

/// `--sorted-by` on an export sorted by user and time: the window functions do not sort again, the
/// grouping streams, and the results are those without the flag.
#[test]
fn declared_sort_order_skips_the_sort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sorted.parquet");
    let config = sessionize_datagen::Config {
        sorted: true,
        ..sessionize_datagen::Config::default()
    };
    sessionize_datagen::write_parquet(&config, &path).unwrap();
    let file = path.to_str().unwrap();
    let window = "SELECT user_id, event_time, session_number(event_time, INTERVAL '30 minutes') \
                  OVER (PARTITION BY user_id ORDER BY event_time) AS n FROM events";
    let explain = format!("EXPLAIN {window}");
    let declared = ["--sorted-by", "user_id,event_time"];
    let plan = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["query", file, explain.as_str(), "--format", "csv"]);
        ok(&args)
    };
    assert!(plan(&[]).contains("SortExec"), "{}", plan(&[]));
    let sorted_plan = plan(&declared);
    assert!(!sorted_plan.contains("SortExec"), "{sorted_plan}");
    assert!(
        sorted_plan.contains("BoundedWindowAggExec"),
        "{sorted_plan}"
    );
    let rows = |flags: &[&str], args: &[&str]| {
        let mut all = flags.to_vec();
        all.extend(args);
        let mut lines: Vec<String> = ok(&all).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let query = ["query", file, window, "--format", "csv"];
    assert_eq!(rows(&declared, &query), rows(&[], &query));
    let sessions = ["sessions", file, "--format", "csv"];
    assert_eq!(rows(&declared, &sessions), rows(&[], &sessions));
    // The grouping holds only the actors not yet complete: it fits in a memory pool far smaller
    // than the events (an order-preserving repartition over two threads does not).
    let small = [
        "--sorted-by",
        "user_id,event_time",
        "--memory-limit",
        "64KB",
    ];
    assert_eq!(rows(&small, &sessions), rows(&[], &sessions));
    let sql = ok(&["sessions", file, "--print-sql"]);
    let explain_sessions = format!("EXPLAIN {sql}");
    let mut args = declared.to_vec();
    args.extend(["query", file, explain_sessions.as_str(), "--format", "csv"]);
    let plan = ok(&args);
    assert!(
        plan.contains("ordering_mode=Sorted"),
        "the grouping streams: {plan}"
    );
    fails(
        &["--sorted-by", "uid", "sessions", file],
        "--sorted-by names 'uid'",
    );
}

/// A missing argument is named in the one-line error (clap lists it on the lines under its
/// first).
#[test]
fn a_missing_argument_is_named() {
    fails(
        &["chart"],
        "the following required arguments were not provided: <INPUT>",
    );
}

/// `query` takes several PATHs as one `events` table, as `sessions` does, so the SQL that
/// `sessions --print-sql` prints for several files runs through `query -f` over the same files
/// (a newcomer audit found it could not: `query` took one PATH). SQL left unquoted is refused.
#[test]
fn query_reads_several_paths_as_the_events_table() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (early, late) = (at("early.parquet"), at("late.parquet"));
    for (path, half) in [(&early, "<"), (&late, ">=")] {
        ok(&[
            "query",
            SAMPLE,
            &format!(
                "SELECT * FROM events WHERE event_time {half} TIMESTAMP '2026-01-12T00:00:00Z'"
            ),
            "--output",
            path,
        ]);
    }
    let sorted = |out: String| {
        let mut lines: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
        lines.sort();
        lines
    };
    let both = sorted(ok(&["sessions", &early, &late, "--format", "csv"]));
    let sql_file = at("sessions.sql");
    std::fs::write(&sql_file, ok(&["sessions", &early, &late, "--print-sql"])).unwrap();
    let through_query = sorted(ok(&[
        "query", &early, &late, "-f", &sql_file, "--format", "csv",
    ]));
    assert!(both.len() > 100, "{} sessions", both.len());
    assert_eq!(through_query, both);
    let count = |args: &[&str]| ok(args).lines().nth(1).unwrap_or_default().to_string();
    let all = count(&[
        "query",
        SAMPLE,
        "SELECT count(*) FROM events",
        "--format",
        "csv",
    ]);
    let early_count = count(&[
        "query",
        &early,
        "SELECT count(*) FROM events",
        "--format",
        "csv",
    ]);
    assert!(
        early_count != "0" && early_count != all,
        "{early_count} of {all} events in the first file"
    );
    let split = count(&[
        "query",
        &early,
        &late,
        "SELECT count(*) FROM events",
        "--format",
        "csv",
    ]);
    assert_eq!(split, all);
    fails(
        &["query", &early, "SELECT", "*", "FROM", "events"],
        "the last argument 'events' is not SQL",
    );
    fails(&["query", &early, &late], "the last argument");
}
