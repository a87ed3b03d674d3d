//! Delta Lake tables: `sessions` and `annotate` write `delta:FOLDER` in one commit (a new version per
//! run), `query --table NAME=delta:FOLDER` reads them back, and a failed, killed or concurrent run
//! leaves a whole version. (The Python tests read the same tables with the `deltalake` package and
//! Polars.)

mod common;

use common::{fails, ok, root, sessionize};

/// The count `sessionize query --table TABLE... SQL` prints (a one-row, one-column result).
fn query_count(tables: &[&str], sql: &str) -> u64 {
    let mut args = vec!["query"];
    for table in tables {
        args.extend(["--table", table]);
    }
    args.extend(["--format", "csv", sql]);
    let out = ok(&args);
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("a count in {out}"))
}

/// The number of rows of the sample's sessions table with `flags`.
fn sessions_count(flags: &[&str]) -> u64 {
    let mut args = vec!["sessions", "data/events.parquet"];
    args.extend(flags);
    ok(&args).lines().count() as u64 - 1
}

/// Runs `sessions` on the sample with `flags`, writing `target`.
fn write_sessions(target: &str, flags: &[&str]) {
    let mut args = vec!["sessions", "data/events.parquet"];
    args.extend(flags);
    args.extend(["--output", target]);
    ok(&args);
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

/// A process writing the sample's sessions with `--timeout timeout` into `target`.
fn spawn_sessions(timeout: &str, target: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessionize"))
        .args(["sessions", "data/events.parquet", "--timeout", timeout])
        .args(["--output", target])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sessionize starts")
}

#[test]
fn sessions_and_annotate_write_delta_tables_read_back_by_query() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &[]);
    assert_eq!(versions(&table), ["00000000000000000000.json"]);
    let read = format!("s={target}");
    assert_eq!(
        query_count(&[&read], "SELECT count(*) FROM s"),
        sessions_count(&[])
    );
    // The same rows as the Parquet output, row for row.
    let parquet = dir.path().join("sessions.parquet");
    write_sessions(parquet.to_str().unwrap(), &[]);
    let both = format!("p={}", parquet.display());
    let differ = query_count(
        &[&read, &both],
        "SELECT count(*) FROM ((SELECT * FROM s EXCEPT ALL SELECT * FROM p) \
         UNION ALL (SELECT * FROM p EXCEPT ALL SELECT * FROM s))",
    );
    assert_eq!(differ, 0);
    // A second run is a new version with the new contents.
    write_sessions(&target, &["--timeout", "10m"]);
    assert_eq!(versions(&table).len(), 2);
    assert_eq!(
        query_count(&[&read], "SELECT count(*) FROM s"),
        sessions_count(&["--timeout", "10m"])
    );

    let events = dir.path().join("events");
    let target = format!("delta:{}", events.display());
    ok(&["annotate", "data/events.parquet", "--output", &target]);
    let read = format!("e={target}");
    let annotated = query_count(
        &[&read],
        "SELECT count(*) FROM e WHERE session_number IS NOT NULL OR user_id IS NULL",
    );
    assert_eq!(annotated, 6412);
    // The Delta table (the two passes, read once by the writer) holds the rows of the Parquet
    // output, with and without the concluded events.
    for flags in [&[][..], &["--concluded"][..]] {
        let delta = dir.path().join(format!("events{}", flags.len()));
        let delta_target = format!("delta:{}", delta.display());
        let parquet = dir.path().join(format!("events{}.parquet", flags.len()));
        let mut args = vec!["annotate", "data/events.parquet", "--output", &delta_target];
        args.extend_from_slice(flags);
        ok(&args);
        let parquet_path = parquet.to_str().unwrap().to_string();
        let mut args = vec!["annotate", "data/events.parquet", "--output", &parquet_path];
        args.extend_from_slice(flags);
        ok(&args);
        let tables = [format!("d={delta_target}"), format!("p={parquet_path}")];
        let differing = query_count(
            &[&tables[0], &tables[1]],
            "SELECT (SELECT count(*) FROM (SELECT * FROM d EXCEPT ALL SELECT * FROM p)) + \
             (SELECT count(*) FROM (SELECT * FROM p EXCEPT ALL SELECT * FROM d))",
        );
        assert_eq!(differing, 0, "{flags:?}");
    }
}

#[test]
fn partitioned_by_day() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &["--partition-by-day"]);
    let days = std::fs::read_dir(&table)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("session_started_at_day=")
        })
        .count() as u64;
    assert!(days >= 14, "{days} day folders");
    assert!(common::check_sessions_data_files(&table) >= days as usize);
    let read = format!("s={target}");
    let counted = query_count(
        &[&read],
        "SELECT count(DISTINCT session_started_at_day) FROM s",
    );
    assert_eq!(counted, days);
}

/// A run that fails leaves the table at its previous version, with its previous rows.
#[test]
fn a_failed_run_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &[]);
    let read = format!("s={target}");
    let before = query_count(&[&read], "SELECT count(*) FROM s");
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
    assert_eq!(query_count(&[&read], "SELECT count(*) FROM s"), before);
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

/// `--output delta:` rewrites a table only as what it is (as Spark's overwrite without
/// `overwriteSchema`): other columns, a timestamp with a zone where it has none, or another
/// partitioning is one sentence naming the difference, and nothing is committed.
#[test]
fn rewriting_a_table_of_another_layout_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &[]);
    // The same output again: a new version.
    write_sessions(&target, &[]);
    refused(
        &["annotate", "data/events.parquet", "--output", &target],
        "cannot rewrite the Delta table",
    );
    refused(
        &[
            "sessions",
            "data/events.parquet",
            "--partition-by-day",
            "--output",
            &target,
        ],
        "it is partitioned by nothing, this output by session_started_at_day",
    );
    // Annotated events of the sample with a second time column, then of the same columns with
    // that column's times without a zone: refused. (The events' own time column is kept in UTC
    // for a Delta table whatever its zone, as `--into` keeps it: a rewrite whose event times have
    // no zone is taken.)
    let events = dir.path().join("e");
    let events_target = format!("delta:{}", events.display());
    let with_received_at = |name: &str, zone: &str, time_zone: &str| {
        let path = dir.path().join(name);
        ok(&[
            "query",
            "data/events.parquet",
            &format!(
                "SELECT user_id, device_id, amplitude_id, event_type, \
                 arrow_cast(event_time, 'Timestamp(Microsecond, {time_zone})') AS event_time, \
                 arrow_cast(event_time, 'Timestamp(Microsecond, {zone})') AS received_at, \
                 session_id, event_properties, user_properties, insert_id, platform FROM events"
            ),
            "--output",
            path.to_str().unwrap(),
        ]);
        path.to_str().unwrap().to_string()
    };
    let utc = "Some(\"UTC\")";
    let zoned = with_received_at("zoned.parquet", utc, utc);
    ok(&["annotate", &zoned, "--output", &events_target]);
    let naive_times = with_received_at("naive_times.parquet", utc, "None");
    ok(&["annotate", &naive_times, "--output", &events_target]);
    let naive = with_received_at("naive.parquet", "None", utc);
    refused(
        &["annotate", &naive, "--output", &events_target],
        "its column 'received_at' is a timestamp with a time zone, this output's without a time zone",
    );
    // A column of the same name holding another kind of value: not cast (`true` would be 1).
    let csv = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("user_id,event_time,event_type,v\nu1,2026-01-05 10:00:00,a,{value}\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let (flags, numbers) = (csv("flags.csv", "true"), csv("numbers.csv", "7"));
    let kinds = dir.path().join("k");
    let kinds_target = format!("delta:{}", kinds.display());
    ok(&["annotate", &numbers, "--output", &kinds_target]);
    refused(
        &["annotate", &flags, "--output", &kinds_target],
        "its column 'v' holds an integer (Int64), this output's a boolean (Boolean)",
    );
    assert_eq!(versions(&table).len(), 2);
    assert_eq!(versions(&events).len(), 2);
    assert_eq!(versions(&kinds).len(), 1);
}

/// Runs and expects exit code 1 with notes, then one `error:` line (the last) containing
/// `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = sessionize(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "sessionize {args:?}: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("note: ")),
        "{err}"
    );
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "expected {needle:?} in: {err}"
    );
}

/// Two runs at once on one table: each either commits a version or fails with one sentence saying
/// the table changed under it; every commit is a whole version.
#[test]
fn concurrent_runs_commit_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &[]);
    let mut committed = 0;
    for _ in 0..3 {
        let runs = [
            spawn_sessions("10m", &target),
            spawn_sessions("20m", &target),
        ];
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
    let rows = query_count(&[&read], "SELECT count(*) FROM s");
    let whole = [
        sessions_count(&["--timeout", "10m"]),
        sessions_count(&["--timeout", "20m"]),
    ];
    assert!(whole.contains(&rows), "{rows} rows, neither of {whole:?}");
}

/// A run killed (SIGKILL) at points from its start to its end leaves a table that reads as its
/// previous version or as the new one, never in between.
#[test]
fn a_killed_run_leaves_a_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sessions");
    let target = format!("delta:{}", table.display());
    write_sessions(&target, &[]);
    let (before, after) = (sessions_count(&[]), sessions_count(&["--timeout", "10m"]));
    assert_ne!(before, after);
    let read = format!("s={target}");
    for step in 0..10u64 {
        let mut run = spawn_sessions("10m", &target);
        std::thread::sleep(std::time::Duration::from_millis(step * 40));
        let _ = run.kill();
        let _ = run.wait();
        let rows = query_count(&[&read], "SELECT count(*) FROM s");
        assert!(
            rows == before || rows == after,
            "killed after {} ms: {rows} rows, neither {before} nor {after}",
            step * 40
        );
    }
}

/// Delta Lake compares column names without regard to case, so events with two columns that
/// differ only in case (`Event_Time` beside `event_time`) cannot be written to a Delta table: the
/// run fails in one sentence naming both columns and the table (it was delta-rs's "Duplicate field
/// name (case-insensitive)", naming neither; newcomer audit, 2026-12-02) and writes nothing. The
/// sessions table, whose columns are its own, is written as before.
#[test]
fn columns_differing_only_in_case_are_refused_for_a_delta_table() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let input = at("case.parquet");
    ok(&[
        "query",
        "SELECT 'u1' AS user_id, to_timestamp_seconds(1767225600 + v * 600) AS event_time, \
         'view' AS event_type, v AS \"Event_Time\" FROM generate_series(1, 2) AS t(v)",
        "--output",
        &input,
    ]);
    // Also beyond ASCII (the second audit found `Événement` beside `événement` let through).
    let accents = at("accents.parquet");
    ok(&[
        "query",
        &input,
        "SELECT user_id, event_time, event_type, 1 AS \"Événement\", 2 AS \"événement\" FROM events",
        "--output",
        &accents,
    ]);
    for (input, a, b) in [
        (&input, "event_time", "Event_Time"),
        (&accents, "Événement", "événement"),
    ] {
        for (flag, name) in [("--output", "annotated"), ("--into", "kept")] {
            let table = at(name);
            let said = fails(
                &["annotate", input, flag, &format!("delta:{table}")],
                &format!(
                    "the events have columns '{a}' and '{b}', which the Delta table '{table}' \
                     cannot hold both of"
                ),
            );
            assert!(said.trim_end().ends_with("EXCLUDE)"), "{said}");
            assert!(
                !std::path::Path::new(&table).join("_delta_log").exists(),
                "{table}"
            );
        }
    }
    ok(&[
        "sessions",
        &input,
        "--output",
        &format!("delta:{}", at("sessions")),
    ]);
}
