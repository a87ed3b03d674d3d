//! Past one machine, on Apache DataFusion Ballista (feature `cluster`):
//!
//! 1. in-process: Ballista's standalone mode builds the sessions table of the sample and of a
//!    multi-file export, equal to local execution (the `.slt` files also run on it, see
//!    `tests/sqllogictest.rs`);
//! 2. real processes: one `sessionize scheduler` and two `sessionize executor`s on 127.0.0.1 (free
//!    ports, their own work folders, stopped at the end even when the test fails) run
//!    `sessionize sessions --cluster` on a multi-file export, row for row equal to local output.
#![cfg(feature = "cluster")]

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, normalized, ok, root, sessionize};

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn spawn(args: &[String]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_sessionize"))
            .args(args)
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sessionize"),
    )
}

/// A scheduler on `port`, once it accepts connections.
fn scheduler(port: u16) -> Process {
    let process = spawn(&["scheduler".into(), "--bind-port".into(), port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the scheduler did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    process
}

/// Waits until the cluster at `url` runs a query, that is until an executor has registered. Each
/// try gives up after 30 s, so executors that stopped fail the test instead of hanging it.
fn wait_for_executors(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = [
        "query",
        "--cluster",
        url,
        "--cluster-timeout",
        "30s",
        "SELECT 1",
    ];
    while !sessionize(&probe).status.success() {
        assert!(Instant::now() < deadline, "the cluster did not come up");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sample split into three Parquet files by user (Amplitude id), in a temporary folder.
fn multi_file_export() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for part in 0..3 {
        let path = dir.path().join(format!("part-{part}.parquet"));
        ok(&[
            "query",
            "data/events.parquet",
            &format!("SELECT * FROM events WHERE amplitude_id % 3 = {part}"),
            "--output",
            path.to_str().unwrap(),
        ]);
    }
    dir
}

#[test]
fn sessions_on_a_scheduler_and_two_executors_equal_local_output() {
    let scheduler_port = free_port();
    let work = tempfile::tempdir().unwrap();
    // The executors start before their scheduler, as they may beside it: they wait for it.
    let mut executors = vec![];
    for k in 0..2 {
        let folder = work.path().join(format!("executor-{k}"));
        std::fs::create_dir_all(&folder).unwrap();
        executors.push(spawn(&[
            "executor".into(),
            "--bind-port".into(),
            free_port().to_string(),
            "--bind-grpc-port".into(),
            free_port().to_string(),
            "--scheduler-host".into(),
            "127.0.0.1".into(),
            "--scheduler-port".into(),
            scheduler_port.to_string(),
            // One slot each: a stage of several tasks needs both executors.
            "--task-slots".into(),
            "1".into(),
            "--work-dir".into(),
            folder.to_string_lossy().into_owned(),
        ]));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _scheduler = scheduler(scheduler_port);
    let url = format!("df://127.0.0.1:{scheduler_port}");
    wait_for_executors(&url);

    let export = multi_file_export();
    let folder = export.path().to_str().unwrap();
    let local = ok(&["sessions", folder, "--format", "csv"]);
    let cluster = ok(&["sessions", folder, "--cluster", &url, "--format", "csv"]);
    assert!(local.lines().count() > 1000);
    assert_eq!(normalized(&cluster), normalized(&local));

    // The window functions too: partitions are shuffled between the executors.
    let sql = "SELECT user_id, event_time, event_type, session_number(event_time, INTERVAL '30 minutes', \
               event_type = 'app_open') OVER (PARTITION BY user_id ORDER BY event_time) AS n FROM events";
    let local = ok(&["query", folder, sql, "--format", "csv"]);
    // Both executors take tasks (each writes shuffle files in its own folder) once both have
    // registered, which the first query does not wait for: run it until they have, at most 20 times.
    let used = |k: usize| {
        std::fs::read_dir(work.path().join(format!("executor-{k}")))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    for _ in 0..20 {
        let cluster = ok(&[
            "query",
            folder,
            sql,
            "--format",
            "csv",
            "--cluster",
            &url,
            "--target-partitions",
            "4",
        ]);
        assert_eq!(normalized(&cluster), normalized(&local));
        if used(0) > 0 && used(1) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        used(0) > 0 && used(1) > 0,
        "a window query never ran on both executors"
    );

    // A local CSV is not for the cluster: one clear sentence.
    let out = sessionize(&["sessions", "tests/golden/events.csv", "--cluster", &url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("with --cluster, inputs must be Parquet"),
        "{err}"
    );
    drop(executors);
}

#[test]
fn an_unreachable_scheduler_is_one_sentence() {
    let url = format!("df://127.0.0.1:{}", free_port());
    let out = sessionize(&["sessions", "data/events.parquet", "--cluster", &url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the Ballista scheduler at {url}"
        )),
        "{err}"
    );
}

#[test]
fn an_executor_without_its_scheduler_stops_with_one_sentence() {
    let port = free_port().to_string();
    let out = sessionize(&[
        "executor",
        "--scheduler-host",
        "127.0.0.1",
        "--scheduler-port",
        &port,
        "--bind-port",
        &free_port().to_string(),
        "--bind-grpc-port",
        &free_port().to_string(),
        "--scheduler-wait-seconds",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: cannot reach the scheduler at 127.0.0.1:{port} after 1 s"
        )),
        "{err}"
    );
}

/// The lines of `batches` as a table, sorted: equal for the same rows in any order.
/// A local context and a standalone Ballista one: the same query must give the same rows.
async fn local_and_standalone() -> [datafusion::prelude::SessionContext; 2] {
    [
        sessionize::context().unwrap(),
        sessionize::cluster::standalone_context(datafusion::prelude::SessionConfig::new())
            .await
            .unwrap(),
    ]
}

fn sorted_lines(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_sessions_table_equals_local() {
    let export = multi_file_export();
    for input in [
        root()
            .join("data/events.parquet")
            .to_string_lossy()
            .into_owned(),
        export.path().to_string_lossy().into_owned(),
    ] {
        let options = sessionize::sessions::SessionsOptions {
            restart_events: vec!["app_open".into()],
            ..Default::default()
        };
        let load = sessionize::tables::LoadOptions {
            time_column: Some("event_time".into()),
            for_cluster: true,
            ..Default::default()
        };
        let mut tables = vec![];
        for ctx in local_and_standalone().await {
            sessionize::tables::register_inputs(
                &ctx,
                "events",
                std::slice::from_ref(&input),
                &load,
            )
            .await
            .unwrap();
            let df = sessionize::sessions::sessions(&ctx, "events", &options)
                .await
                .unwrap();
            tables.push(sorted_lines(&df.collect().await.unwrap()));
        }
        assert!(tables[0].len() > 1000);
        assert_eq!(
            tables[0], tables[1],
            "standalone Ballista differs on {input}"
        );
    }
}

/// `session_first_value` / `session_last_value` (the group-by chart's sessions): their partial
/// states (lists of dictionary-encoded texts) cross a standalone Ballista's stages and give what a
/// local context gives.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_session_values_equal_local() {
    let export = multi_file_export();
    let input = export.path().to_string_lossy().into_owned();
    let load = sessionize::tables::LoadOptions {
        time_column: Some("event_time".into()),
        for_cluster: true,
        ..Default::default()
    };
    let sql = "SELECT user_id, f['session_number'], f['event_count'], f['value'], l['value'] FROM \
               (SELECT user_id, \
                  unnest(session_first_value(event_time, INTERVAL '30 minutes', event_type = 'app_open', event_type, event_type)) AS f, \
                  unnest(session_last_value(event_time, INTERVAL '30 minutes', event_type = 'app_open', event_type, event_type)) AS l \
                FROM events WHERE user_id IS NOT NULL GROUP BY user_id)";
    let mut tables = vec![];
    for ctx in local_and_standalone().await {
        sessionize::tables::register_inputs(&ctx, "events", std::slice::from_ref(&input), &load)
            .await
            .unwrap();
        tables.push(sorted_lines(
            &ctx.sql(sql).await.unwrap().collect().await.unwrap(),
        ));
    }
    assert!(tables[0].len() > 1000);
    assert_eq!(tables[0], tables[1], "standalone Ballista differs");
}

#[test]
fn a_local_path_missing_on_the_executors_is_named() {
    // The executor runs in its own mount namespace, where an empty tmpfs hides the client's folder:
    // the client finds the file, the executor does not.
    let client_only = tempfile::tempdir().unwrap();
    let input = client_only.path().join("events.parquet");
    std::fs::copy(root().join("data/events.parquet"), &input).unwrap();
    let work = tempfile::tempdir().unwrap();
    let scheduler_port = free_port();
    let _scheduler = scheduler(scheduler_port);
    let executor = format!(
        "mount -t tmpfs none {} && exec {} executor --bind-port {} --bind-grpc-port {} \
         --scheduler-host 127.0.0.1 --scheduler-port {scheduler_port} --work-dir {}",
        client_only.path().display(),
        env!("CARGO_BIN_EXE_sessionize"),
        free_port(),
        free_port(),
        work.path().display(),
    );
    let _executor = Process(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &executor])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare from util-linux"),
    );
    let url = format!("df://127.0.0.1:{scheduler_port}");
    wait_for_executors(&url);
    let out = sessionize(&[
        "sessions",
        input.to_str().unwrap(),
        "--cluster",
        &url,
        "--cluster-timeout",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    assert!(
        err.contains("a local path must exist at the same place on every executor"),
        "{err}"
    );
}
