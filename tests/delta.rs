//! Delta Lake tables: `sessions` and `annotate` write `delta:FOLDER` in one commit (a new version per
//! run), `query --table NAME=delta:FOLDER` reads them back, and a failed run leaves the table at its
//! previous version. (The Python tests read the same tables with the `deltalake` package and
//! Polars.)

mod common;

use common::{fails, ok, root};

/// The number in the one-row, one-column CSV `sessionize query` prints.
fn count(query_output: &str) -> u64 {
    query_output
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("a count in {query_output}"))
}

/// The versions committed in the table's log.
fn versions(table: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .expect("a _delta_log folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[test]
fn sessions_and_annotate_write_delta_tables_read_back_by_query() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    let csv = ok(&["sessions", "data/events.parquet"]);
    let expected = csv.lines().count() as u64 - 1;
    ok(&["sessions", "data/events.parquet", "--output", &target]);
    assert_eq!(versions(&table), ["00000000000000000000.json"]);
    let read = format!("s={target}");
    let counted = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM s",
    ]);
    assert_eq!(count(&counted), expected);
    // The same rows as the Parquet output, row for row.
    let parquet = dir.path().join("sessions.parquet");
    ok(&[
        "sessions",
        "data/events.parquet",
        "--output",
        parquet.to_str().unwrap(),
    ]);
    let both = format!("p={}", parquet.display());
    let differ = ok(&[
        "query",
        "--table",
        &read,
        "--table",
        &both,
        "--format",
        "csv",
        "SELECT count(*) FROM ((SELECT * FROM s EXCEPT ALL SELECT * FROM p) \
         UNION ALL (SELECT * FROM p EXCEPT ALL SELECT * FROM s))",
    ]);
    assert_eq!(count(&differ), 0);
    // A second run is a new version with the new contents (here the same).
    ok(&[
        "sessions",
        "data/events.parquet",
        "--timeout",
        "10m",
        "--output",
        &target,
    ]);
    assert_eq!(versions(&table).len(), 2);
    let ten_minutes = ok(&["sessions", "data/events.parquet", "--timeout", "10m"]);
    let counted = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM s",
    ]);
    assert_eq!(count(&counted), ten_minutes.lines().count() as u64 - 1);

    let events = dir.path().join("events");
    let target = format!("delta:{}", events.display());
    ok(&["annotate", "data/events.parquet", "--output", &target]);
    let read = format!("e={target}");
    let counted = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM e WHERE session_number IS NOT NULL OR user_id IS NULL",
    ]);
    assert_eq!(count(&counted), 6412);
}

#[test]
fn partitioned_by_day() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    ok(&[
        "sessions",
        "data/events.parquet",
        "--partition-by-day",
        "--output",
        &target,
    ]);
    let days = std::fs::read_dir(&table)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("session_started_at_day=")
        })
        .count();
    assert!(days >= 14, "{days} day folders");
    let read = format!("s={target}");
    let counted = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(DISTINCT session_started_at_day) FROM s",
    ]);
    assert_eq!(count(&counted), days as u64);
}

/// A run that fails leaves the table at its previous version, with its
/// previous rows.
#[test]
fn a_failed_run_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    ok(&["sessions", "data/events.parquet", "--output", &target]);
    let read = format!("s={target}");
    let before = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM s",
    ]);
    // Good rows, then a time no reader can parse: the failure comes while the data is read.
    let bad = dir.path().join("bad.csv");
    let mut text = String::from("user_id,event_time,event_type\n");
    for i in 0..5000 {
        text.push_str(&format!(
            "u{},2026-01-01 00:{:02}:00,view\n",
            i % 50,
            i % 60
        ));
    }
    text.push_str("u1,not a time,view\n");
    std::fs::write(&bad, text).unwrap();
    fails(
        &["sessions", bad.to_str().unwrap(), "--output", &target],
        "'not a time'",
    );
    assert_eq!(versions(&table), ["00000000000000000000.json"]);
    let after = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM s",
    ]);
    assert_eq!(before, after);
    let _ = root();
}

#[test]
fn reading_a_folder_without_a_delta_log_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let read = format!("s=delta:{}", dir.path().display());
    fails(
        &["query", "--table", &read, "SELECT 1"],
        "is not a Delta table (it has no _delta_log folder)",
    );
}

/// Two runs at once on one table: each either commits a version or fails with one sentence saying
/// the table changed under it; every commit is a whole version.
#[test]
fn concurrent_runs_commit_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    ok(&["sessions", "data/events.parquet", "--output", &target]);
    let mut committed = 0;
    for _ in 0..3 {
        let runs: Vec<_> = ["10m", "20m"]
            .iter()
            .map(|timeout| {
                std::process::Command::new(env!("CARGO_BIN_EXE_sessionize"))
                    .args(["sessions", "data/events.parquet", "--timeout", timeout])
                    .args(["--output", &target])
                    .current_dir(root())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                committed += 1;
            } else {
                assert!(stderr.contains("changed under this run"), "{stderr}");
                assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
            }
        }
    }
    assert!(committed >= 3, "at least one run of each pair commits");
    assert_eq!(versions(&table).len(), 1 + committed);
    let read = format!("s={target}");
    let counted = ok(&[
        "query",
        "--table",
        &read,
        "--format",
        "csv",
        "SELECT count(*) FROM s",
    ]);
    let ten = ok(&["sessions", "data/events.parquet", "--timeout", "10m"])
        .lines()
        .count() as u64
        - 1;
    let twenty = ok(&["sessions", "data/events.parquet", "--timeout", "20m"])
        .lines()
        .count() as u64
        - 1;
    assert!([ten, twenty].contains(&count(&counted)));
}

/// A run killed (SIGKILL) at points from its start to its end leaves a table that reads as its
/// previous version or as the new one, never in between.
#[test]
fn a_killed_run_leaves_a_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    ok(&["sessions", "data/events.parquet", "--output", &target]);
    let whole = |timeout: &str| {
        ok(&["sessions", "data/events.parquet", "--timeout", timeout])
            .lines()
            .count() as u64
            - 1
    };
    let (before, after) = (whole("30m"), whole("10m"));
    assert_ne!(before, after);
    let read = format!("s={target}");
    for step in 0..10u64 {
        let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_sessionize"))
            .args(["sessions", "data/events.parquet", "--timeout", "10m"])
            .args(["--output", &target])
            .current_dir(root())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(step * 40));
        let _ = run.kill();
        let _ = run.wait();
        let counted = ok(&[
            "query",
            "--table",
            &read,
            "--format",
            "csv",
            "SELECT count(*) FROM s",
        ]);
        let rows = count(&counted);
        assert!(
            rows == before || rows == after,
            "killed after {} ms: {rows} rows, neither {before} nor {after}",
            step * 40
        );
    }
}
