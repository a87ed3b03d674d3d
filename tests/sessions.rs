//! Golden tests of `sessionize sessions` and `sessionize annotate` on a small hand-written export
//! (`tests/golden/events.csv`, the same events as Amplitude-style JSON in `events.json`).
//!
//! The expected tables in `tests/golden/*.csv` were worked out by hand from the events (the dbt
//! mode's md5 keys with Python's hashlib); see the comments in `tests/golden/README.md`.

mod common;

use std::io::Write;
use std::process::Command;

use common::{fails, golden, normalized, ok, root, sessionize};

const CSV: &str = "tests/golden/events.csv";
const JSON: &str = "tests/golden/events.json";

const MODES: [(&str, &[&str]); 4] = [
    ("derived.csv", &[]),
    (
        "derived_flags.csv",
        &[
            "--restart-event",
            "app_open",
            "--exclude-preset",
            "clevertap",
            "--dedup",
            "insert_id",
            "--timeout-by",
            "platform",
            "ios=5m",
        ],
    ),
    ("sdk.csv", &["--session-source", "sdk"]),
    ("dbt.csv", &["--compat", "dbt"]),
];

/// The same export in every input format this tool reads, in a temporary folder.
struct Inputs {
    _dir: tempfile::TempDir,
    formats: Vec<(&'static str, String)>,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    // Parquet, with the times as timestamps in UTC.
    let parquet = path("events.parquet");
    ok(&[
        "query",
        CSV,
        "SELECT * REPLACE (arrow_cast(event_time, 'Timestamp(µs, \"UTC\")') AS event_time) FROM events",
        "--output",
        &parquet,
    ]);
    // Amplitude's Export API: gzip'd NDJSON files inside a zip.
    let json = std::fs::read(root().join(JSON)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let gz = gz.finish().unwrap();
    let json_gz = path("events.json.gz");
    std::fs::write(&json_gz, &gz).unwrap();
    let zip_path = path("export.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    zip.start_file(
        "123456/123456_2026-01-05_9#0.json.gz",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(&gz).unwrap();
    zip.finish().unwrap();
    Inputs {
        formats: vec![
            ("csv", CSV.to_string()),
            ("json", JSON.to_string()),
            ("json.gz", json_gz),
            ("zip", zip_path),
            ("parquet", parquet),
        ],
        _dir: dir,
    }
}

#[test]
fn every_mode_in_every_input_format_matches_its_golden_table() {
    let inputs = inputs();
    for (golden_name, flags) in MODES {
        for (format, input) in &inputs.formats {
            let mut args = vec!["sessions", input.as_str()];
            args.extend_from_slice(flags);
            let got = normalized(&ok(&args));
            assert_eq!(got, golden(golden_name), "{golden_name} from {format}");
        }
    }
}

#[test]
fn several_inputs_with_different_columns_combine_by_name() {
    // The CSV half lacks user_properties, the JSON half has it: the table is the same.
    let dir = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(root().join(CSV)).unwrap();
    let first: Vec<&str> = csv.lines().take(8).collect();
    let first_path = dir.path().join("u1.csv");
    std::fs::write(&first_path, first.join("\n") + "\n").unwrap();
    let json = std::fs::read_to_string(root().join(JSON)).unwrap();
    let rest: Vec<&str> = json.lines().skip(7).collect();
    let rest_path = dir.path().join("rest.json");
    std::fs::write(&rest_path, rest.join("\n") + "\n").unwrap();
    let got = normalized(&ok(&[
        "sessions",
        first_path.to_str().unwrap(),
        rest_path.to_str().unwrap(),
    ]));
    assert_eq!(got, golden("derived.csv"));
}

/// What `sessionize sessions INPUT` says on stderr; it must succeed.
fn sessions_stderr(input: &str) -> String {
    let out = sessionize(&["sessions", input]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{input}: {err}");
    err
}

#[test]
fn left_out_events_are_counted_on_stderr() {
    let err = sessions_stderr(CSV);
    assert!(
        err.contains("left out 2 events whose user_id or event_time is null"),
        "{err}"
    );
}

/// SDK sessions leave out the events without a time or a session id, and those whose session id
/// is -1 (Amplitude's "no session"), and say how many, as the other modes do (a newcomer audit
/// found them silent); a first `--into` run says the same.
#[test]
fn left_out_events_of_sdk_sessions_are_counted_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sdk.csv");
    std::fs::write(
        &csv,
        "user_id,event_time,event_type,session_id\n\
         u1,2026-01-01T00:00:00Z,view,5\n\
         u1,,view,5\n\
         u2,2026-01-01T00:00:00Z,view,-1\n\
         u3,2026-01-01T00:00:00Z,view,\n\
         u4,2026-01-01T00:01:00Z,view,7\n",
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    let note = "left out 3 events whose event_time or session_id is null (or session_id is -1";
    let table = format!("delta:{}", dir.path().join("table").to_str().unwrap());
    for args in [
        vec!["sessions", csv, "--session-source", "sdk"],
        vec!["sessions", csv, "--session-source", "sdk", "--into", &table],
    ] {
        let out = sessionize(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && err.contains(note),
            "{args:?}: {err}"
        );
    }
    // Two sessions: u1's (session 5) and u4's.
    assert_eq!(
        ok(&["sessions", csv, "--session-source", "sdk"])
            .lines()
            .count(),
        3
    );
}

#[test]
fn left_out_events_with_nulls_in_both_columns_are_counted_once() {
    // One row with a null user, one with a null time, one with both: 3 left out, not 4 (the sum of
    // the columns' null counts) nor 2 (the larger), in Parquet (counts from the footer) and CSV.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("nulls.csv");
    std::fs::write(
        &csv,
        "user_id,event_time,event_type\n\
         u1,2026-01-05 10:00:00,a\n\
         ,2026-01-05 10:01:00,a\n\
         u1,,a\n\
         ,,a\n\
         u2,2026-01-05 10:02:00,a\n",
    )
    .unwrap();
    let parquet = dir.path().join("nulls.parquet");
    let parquet = parquet.to_str().unwrap();
    let csv = csv.to_str().unwrap();
    ok(&["query", csv, "SELECT * FROM events", "--output", parquet]);
    for input in [csv, parquet] {
        let err = sessions_stderr(input);
        assert!(
            err.contains("left out 3 events whose user_id or event_time is null"),
            "{input}: {err}"
        );
    }
}

#[test]
fn left_out_events_of_the_sample_match_a_count_of_null_users() {
    // The sample has anonymous events (no user id) and no null times: the count comes from the
    // Parquet statistics, and must equal the one a scan finds.
    let sample = root().join("data/events.parquet");
    let sample = sample.to_str().unwrap();
    let scanned = ok(&[
        "query",
        sample,
        "SELECT count(*) AS n FROM events WHERE user_id IS NULL OR event_time IS NULL",
        "--format",
        "csv",
    ]);
    let scanned: u64 = scanned.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(scanned > 0, "the sample should have anonymous events");
    let err = sessions_stderr(sample);
    assert!(
        err.contains(&format!("left out {scanned} events whose user_id")),
        "{err}"
    );
}

#[test]
fn the_sql_model_gives_the_rows_of_the_sessions_command() {
    let from_sql = ok(&[
        "query",
        "data/events.parquet",
        "-f",
        "sql/amplitude__sessions.sql",
        "--format",
        "csv",
    ]);
    let from_command = ok(&["sessions", "data/events.parquet", "--format", "csv"]);
    assert!(from_command.lines().count() > 100);
    assert_eq!(normalized(&from_sql), normalized(&from_command));
}

#[test]
fn output_files_partitions_and_time_zones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.parquet");
    ok(&["sessions", CSV, "--output", file.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let back = ok(&[
        "query",
        "--table",
        &format!("s={}", file.display()),
        "SELECT * FROM s",
        "--format",
        "csv",
    ]);
    assert_eq!(normalized(&back), golden("derived.csv"));

    let ndjson = dir.path().join("sessions.ndjson");
    ok(&[
        "sessions",
        CSV,
        "--output",
        ndjson.to_str().unwrap(),
        "--format",
        "ndjson",
    ]);
    assert_eq!(std::fs::read_to_string(&ndjson).unwrap().lines().count(), 3);

    let folder = dir.path().join("by_day");
    ok(&[
        "sessions",
        JSON,
        "--output",
        folder.to_str().unwrap(),
        "--partition-by-day",
    ]);
    let day = folder.join("session_started_at_day=2026-01-05");
    assert!(day.is_dir(), "Hive-style folder by day");
    let rows = ok(&[
        "query",
        "--table",
        &format!("s={}", day.display()),
        "SELECT count(*) FROM s",
        "--format",
        "csv",
    ]);
    assert_eq!(rows.lines().nth(1), Some("3"));

    // 23:30 UTC on 2026-01-05 is 2026-01-06 in Tokyo.
    let late = dir.path().join("late.csv");
    std::fs::write(
        &late,
        "user_id,event_type,event_time\nu9,view,2026-01-05 23:30:00\n",
    )
    .unwrap();
    let utc = ok(&["sessions", late.to_str().unwrap()]);
    assert!(
        utc.lines()
            .nth(1)
            .unwrap()
            .contains(",2026-01-05,2026-01-05,"),
        "{utc}"
    );
    let tokyo = ok(&[
        "sessions",
        late.to_str().unwrap(),
        "--time-zone",
        "Asia/Tokyo",
    ]);
    assert!(
        tokyo
            .lines()
            .nth(1)
            .unwrap()
            .contains(",2026-01-06,2026-01-06,"),
        "{tokyo}"
    );
}

#[test]
fn dbt_date_range_filters_event_days() {
    let all = ok(&[
        "sessions",
        CSV,
        "--compat",
        "dbt",
        "--date-from",
        "2026-01-05",
        "--date-to",
        "2026-01-05",
    ]);
    assert_eq!(normalized(&all), golden("dbt.csv"));
    let none = ok(&[
        "sessions",
        CSV,
        "--compat",
        "dbt",
        "--date-from",
        "2026-01-06",
    ]);
    assert_eq!(none.lines().count(), 1, "header only: {none}");
    let relation = ok(&[
        "sessions",
        CSV,
        "--compat",
        "dbt",
        "--source-relation",
        "amplitude.event",
    ]);
    assert!(
        relation
            .lines()
            .skip(1)
            .all(|l| l.starts_with("amplitude.event,"))
    );
}

/// Column `name` of a CSV line split naively (the tests' fields hold no commas but JSON ones, which
/// come last).
fn field<'a>(header: &str, line: &'a str, name: &str) -> &'a str {
    let index = header.split(',').position(|h| h == name).unwrap();
    line.split(',').nth(index).unwrap()
}

#[test]
fn annotate_gives_every_event_its_session_and_concludes_sessions() {
    let out = ok(&[
        "annotate",
        CSV,
        "--concluded",
        "--exclude-preset",
        "clevertap",
        "--format",
        "csv",
    ]);
    let mut lines = out.lines();
    let header = lines.next().unwrap().to_string();
    let rows: Vec<&str> = lines.collect();
    // u1: events 1-4 in session 1; 5 and 7 in session 2 (gap over 30 minutes); 6 excluded.
    let expected = [
        ("1", "1"),
        ("2", "1"),
        ("3", "1"),
        ("4", "1"),
        ("5", "2"),
        ("6", ""),
        ("7", "2"),
        ("14", ""),
        ("15", ""),
    ];
    for (event_id, number) in expected {
        let row = rows
            .iter()
            .find(|r| field(&header, r, "event_id") == event_id)
            .unwrap();
        assert_eq!(
            field(&header, row, "session_number"),
            number,
            "event {event_id}"
        );
    }
    let concluded: Vec<&&str> = rows
        .iter()
        .filter(|r| field(&header, r, "event_type") == "Session Concluded")
        .collect();
    assert_eq!(concluded.len(), 3);
    let mut lengths: Vec<&str> = concluded
        .iter()
        .map(|r| field(&header, r, "session_length"))
        .collect();
    lengths.sort();
    // u1: 10:00-10:40 and 11:10:01-11:20; u2: 09:00-09:30.
    assert_eq!(lengths, vec!["1800.0", "2400.0", "599.0"]);
    assert_eq!(rows.len(), 15 + 3);
    // The input's own session_id is kept under another name.
    assert!(header.contains("session_id_input"), "{header}");
}

#[test]
fn bad_input_gives_one_clear_sentence_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.parquet");
    let out = target.to_str().unwrap();
    fails(
        &["sessions", CSV, "--actor", "person", "--output", out],
        "the events have no column 'person' (columns found: user_id, device_id, event_id",
    );
    fails(
        &["sessions", CSV, "--actor", "person"],
        "map it with --actor COLUMN",
    );
    let bad_time = dir.path().join("bad.csv");
    std::fs::write(
        &bad_time,
        "user_id,event_type,event_time\nu1,view,2026-01-05 10:00:00\nu1,view,yesterday\n",
    )
    .unwrap();
    fails(
        &["sessions", bad_time.to_str().unwrap(), "--output", out],
        "line 3: cannot parse the time 'yesterday' in column 'event_time'",
    );
    fails(
        &["sessions", CSV, "--exclude-preset", "mixpanel"],
        "unknown exclusion preset 'mixpanel'",
    );
    fails(
        &["sessions", CSV, "--timeout", "30x"],
        "'30x' is not a duration",
    );
    fails(&["sessions", CSV, "--timeout", "0s"], "must be positive");
    fails(
        &["sessions", CSV, "--time-zone", "Mars/Olympus"],
        "unknown time zone 'Mars/Olympus'",
    );
    fails(
        &[
            "sessions",
            CSV,
            "--compat",
            "dbt",
            "--date-from",
            "2026-02-01",
            "--date-to",
            "2026-01-01",
        ],
        "is empty",
    );
    fails(
        &["sessions", "tests/golden/missing.csv"],
        "cannot read 'tests/golden/missing.csv'",
    );
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    fails(
        &["sessions", empty.to_str().unwrap(), "--output", out],
        "the input holds no events: ",
    );
    let blank = dir.path().join("blank.json");
    std::fs::write(&blank, "\n\n").unwrap();
    fails(&["sessions", blank.to_str().unwrap()], "holds no events");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"user_id\": 1}\nnot json\n").unwrap();
    fails(
        &["sessions", garbage.to_str().unwrap()],
        "line 2: not a JSON object",
    );
    assert!(!target.exists(), "no partial output");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "only the inputs this test wrote"
    );
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.parquet");
    let command = format!(
        "{} sessions {} --output {}",
        env!("CARGO_BIN_EXE_sessionize"),
        root().join("data/events.parquet").display(),
        out.display()
    );
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let tty = Command::new("script")
        .args(["-q", "-c", &command, "/dev/null"])
        .output()
        .expect("script from util-linux");
    assert!(tty.status.success());
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(
        shown.contains("reading events and writing sessions"),
        "{shown}"
    );

    let piped = sessionize(&[
        "sessions",
        "data/events.parquet",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(piped.status.success());
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("reading events"), "{err}");
}

/// `annotate` (two passes over the input, no sort) gives exactly the rows of its plain-SQL form
/// (`--print-sql`, window functions over a sort of all events) in every mode, on the golden export
/// and on the sample, and keeps the input's order.
#[test]
fn annotate_equals_its_sql_form_and_keeps_the_input_order() {
    let modes: [&[&str]; 6] = [
        &[],
        &[
            "--restart-event",
            "app_open",
            "--exclude-preset",
            "clevertap",
            "--max-length",
            "20m",
        ],
        &["--timeout-by", "platform", "ios=5m", "--concluded"],
        &["--session-source", "sdk", "--concluded"],
        &["--dedup", "insert_id"],
        &["--actor", "device_id", "--timeout", "10m"],
    ];
    for input in [CSV, "data/events.parquet"] {
        for flags in modes {
            let mut args = vec!["annotate", input, "--format", "csv"];
            args.extend_from_slice(flags);
            let fast = ok(&args);
            args.push("--print-sql");
            let sql = ok(&args);
            let plain = ok(&["query", input, &sql, "--format", "csv"]);
            assert_eq!(
                normalized(&fast),
                normalized(&plain),
                "annotate {input} {flags:?}"
            );
            if !flags.contains(&"--dedup") {
                // The events in the order of the input, then the concluded ones.
                let input_rows = ok(&["query", input, "SELECT * FROM events", "--format", "csv"]);
                let annotated: Vec<&str> = fast.lines().skip(1).collect();
                for (k, line) in input_rows.lines().skip(1).enumerate() {
                    let prefix = line.to_string() + ",";
                    assert!(
                        annotated[k].starts_with(&prefix),
                        "row {k} of {input} {flags:?}: {} is not {line}",
                        annotated[k]
                    );
                }
            }
        }
    }
}

/// Input columns named as the SQL form's own helper columns (`__time`, `__included`, ...) are
/// input columns like any other: `annotate` to CSV (its SQL form) keeps them, in every mode.
#[test]
fn annotate_keeps_input_columns_named_as_its_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("helpers.parquet");
    let input = input.to_str().unwrap();
    ok(&[
        "query",
        "data/events.parquet",
        "SELECT *, 1 AS __time, 2 AS __included, 3 AS __actor, 4 AS __restart, 5 AS __sid, \
         6 AS __start, 7 AS __started, 8 AS __ended, 9 AS __k0, 10 AS __k1 FROM events",
        "--output",
        input,
    ]);
    let modes: [&[&str]; 3] = [
        &["--restart-event", "app_open", "--concluded"],
        &["--session-source", "sdk", "--concluded"],
        &["--timeout-by", "platform", "ios=5m"],
    ];
    for flags in modes {
        let mut args = vec!["annotate", input, "--format", "csv"];
        args.extend_from_slice(flags);
        let fast = ok(&args);
        assert!(
            fast.lines()
                .next()
                .is_some_and(|h| h.contains(",__time,__included,__actor,")),
            "{flags:?}: {}",
            fast.lines().next().unwrap_or_default()
        );
        args.push("--print-sql");
        let sql = ok(&args);
        let plain = ok(&["query", input, &sql, "--format", "csv"]);
        assert_eq!(normalized(&fast), normalized(&plain), "annotate {flags:?}");
    }
}

/// Input columns named with the prefix of sessionize's own helper columns (`__sessionize_`) are
/// refused by every command that computes sessions, in one sentence naming the file and every
/// such column (they failed as "ambiguous" before), with a `sessionize query` command that
/// renames them and runs as printed, whatever the names hold (case, spaces, quotes: a newcomer
/// audit found the first version's unquoted names broke it); `query` reads them, so that it
/// can. `--into` also refuses the columns its tables keep (`_sessionize_file`,
/// `_sessionize_day`, in any case, as Delta compares names), which the other commands read.
#[test]
fn input_columns_named_as_sessionizes_own_are_refused_naming_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // The clashing columns, and other columns of the file (a renamed column must not take the
    // name of one: the second audit found the printed command then failed).
    let columns = [
        (&["__sessionize_time"][..], &["sessionize_time"][..]),
        (&["__sessionize_first"], &[]),
        (&["_sessionize_file"], &["Sessionize_File"]),
        (&["_Sessionize_Day"], &[]),
        (
            &["__sessionize_X", "__sessionize_a b", "__sessionize_q\"x'y"],
            &["sessionize_x", "sessionize_X_2"],
        ),
    ];
    for (k, (names, others)) in columns.into_iter().enumerate() {
        let input = at(&format!("input {k}.parquet"));
        let extra: Vec<String> = names
            .iter()
            .chain(others)
            .map(|n| format!(", v AS \"{}\"", n.replace('"', "\"\"")))
            .collect();
        ok(&[
            "query",
            &format!(
                "SELECT 'u1' AS user_id, to_timestamp_seconds(1767225600 + v * 600) AS event_time, \
                 'view' AS event_type{} FROM generate_series(1, 2) AS t(v)",
                extra.concat()
            ),
            "--output",
            &input,
        ]);
        let reserved = names[0].starts_with("__");
        let into = format!("delta:{}", at(&format!("into {k}")));
        let commands: [(Vec<&str>, bool); 5] = [
            (vec!["sessions", &input, "--format", "csv"], reserved),
            (vec!["annotate", &input, "--format", "csv"], reserved),
            (
                vec![
                    "sessions",
                    &input,
                    "--dedup",
                    "insert_id",
                    "--insert-id-col",
                    "event_type",
                    "--format",
                    "csv",
                ],
                reserved,
            ),
            (vec!["sessions", &input, "--into", &into], true),
            (vec!["annotate", &input, "--into", &into], true),
        ];
        let listed: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        let mut suggested = String::new();
        for (args, refused) in commands {
            let out = common::sessionize(&args);
            let said = String::from_utf8_lossy(&out.stderr).to_string();
            if refused {
                assert!(!out.status.success(), "{args:?}: {said}");
                assert!(
                    said.contains(&format!("'{input}' has ")) && said.contains(&listed.join(", ")),
                    "{args:?}: {said}"
                );
                let (_, command) = said
                    .trim_end()
                    .split_once("for example with sessionize ")
                    .unwrap_or_else(|| panic!("{args:?}: {said}"));
                suggested = command.to_string();
            } else {
                assert!(out.status.success(), "{args:?}: {said}");
            }
        }
        // The suggested command runs as printed (in a POSIX shell), and every command reads the
        // file it writes.
        let renamed = at(&format!("renamed {k}.parquet"));
        let command = suggested.replace("--output renamed.parquet", "--output \"$RENAMED\"");
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("\"$SESSIONIZE\" {command}"))
            .env("SESSIONIZE", env!("CARGO_BIN_EXE_sessionize"))
            .env("RENAMED", &renamed)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let sessions = ok(&["sessions", &renamed, "--format", "csv"]);
        assert_eq!(sessions.lines().count(), 2, "{sessions}");
        ok(&[
            "annotate",
            &renamed,
            "--into",
            &format!("delta:{}", at(&format!("again {k}"))),
        ]);
    }
}

/// `annotate` over a Parquet file whose times have no time zone together with the CSV export
/// (loaded as UTC), and with a float actor holding both 0.0 and -0.0 (grouping keeps one of them).
#[test]
fn annotate_mixed_time_zones_and_float_actors() {
    let dir = tempfile::tempdir().unwrap();
    let naive = dir.path().join("naive.parquet");
    ok(&[
        "query",
        CSV,
        "SELECT * REPLACE (arrow_cast(event_time, 'Timestamp(µs)') AS event_time) FROM events",
        "--output",
        naive.to_str().unwrap(),
    ]);
    let both = [naive.to_str().unwrap(), CSV];
    let mut args = vec!["annotate"];
    args.extend_from_slice(&both);
    args.extend_from_slice(&["--format", "csv", "--concluded"]);
    let fast = ok(&args);
    args.push("--print-sql");
    let sql = ok(&args);
    let folder = dir.path().join("both");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&naive, folder.join("a.parquet")).unwrap();
    std::fs::copy(root().join(CSV), folder.join("b.csv")).unwrap();
    let plain = ok(&["query", folder.to_str().unwrap(), &sql, "--format", "csv"]);
    assert_eq!(normalized(&fast), normalized(&plain));
    let events = fast
        .lines()
        .filter(|l| !l.contains("Session Concluded"))
        .count();
    let input_rows = ok(&["query", CSV, "SELECT * FROM events", "--format", "csv"])
        .lines()
        .count();
    assert_eq!(
        events - 1,
        2 * (input_rows - 1),
        "every event of both inputs"
    );

    let floats = dir.path().join("floats.parquet");
    ok(&[
        "query",
        CSV,
        "SELECT *, CASE WHEN CAST(event_id AS BIGINT) % 2 = 0 THEN CAST('-0.0' AS DOUBLE) ELSE 0.0 END AS f FROM events",
        "--output",
        floats.to_str().unwrap(),
    ]);
    let out = ok(&[
        "annotate",
        floats.to_str().unwrap(),
        "--actor",
        "f",
        "--format",
        "csv",
    ]);
    let header = out.lines().next().unwrap().to_string();
    assert!(
        out.lines()
            .skip(1)
            .all(|l| !field(&header, l, "session_number").is_empty()),
        "every event of the float actor has a session: {out}"
    );
}

/// A folder of several Parquet files comes out file by file in path order, every time: DataFusion
/// would otherwise let an idle partition read a sibling's file (work stealing), out of order.
#[test]
fn annotate_keeps_the_order_of_a_folder_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    std::fs::create_dir(&folder).unwrap();
    let parts = [
        ("a.parquet", "user_id < 'user_00030'"),
        (
            "b.parquet",
            "user_id >= 'user_00030' AND user_id < 'user_00200'",
        ),
        (
            "c.parquet",
            "user_id >= 'user_00200' AND user_id < 'user_00210'",
        ),
        ("d.parquet", "user_id >= 'user_00210' OR user_id IS NULL"),
    ];
    let mut expected = vec![];
    for (name, condition) in parts {
        let path = folder.join(name);
        let sql = format!("SELECT * FROM events WHERE {condition}");
        ok(&[
            "query",
            "data/events.parquet",
            &sql,
            "--output",
            path.to_str().unwrap(),
        ]);
        let rows = ok(&[
            "query",
            path.to_str().unwrap(),
            "SELECT * FROM events",
            "--format",
            "csv",
        ]);
        expected.extend(rows.lines().skip(1).map(str::to_string));
    }
    for run in 0..6 {
        let out = ok(&["annotate", folder.to_str().unwrap(), "--format", "csv"]);
        let got: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(got.len(), expected.len());
        for (k, (line, input)) in got.iter().zip(&expected).enumerate() {
            assert!(
                line.starts_with(&format!("{input},")),
                "run {run}, row {k}: {line} is not {input}"
            );
        }
    }
}

/// Parquet in, Parquet out: `annotate` copies the input's column chunks (their codec and row
/// groups stay those of the input; `session_id` is kept as `session_id_input`) and gives the rows
/// the general way gives, in order. Inputs of several schemas, and `--concluded`, take the general
/// way, with the same rows as its CSV output.
#[test]
fn annotate_parquet_copies_the_input_column_chunks() {
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let footer = |path: &std::path::Path| {
        SerializedFileReader::new(std::fs::File::open(path).unwrap())
            .unwrap()
            .metadata()
            .clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    std::fs::create_dir(&folder).unwrap();
    let sample = root().join("data/events.parquet");
    std::fs::copy(&sample, folder.join("a.parquet")).unwrap();
    std::fs::copy(&sample, folder.join("b.parquet")).unwrap();
    let input = footer(&sample);
    let folder = folder.to_str().unwrap();
    let out = dir.path().join("annotated.parquet");
    let out_str = out.to_str().unwrap();
    let as_csv = |path: &str| ok(&["query", path, "SELECT * FROM events", "--format", "csv"]);

    ok(&["annotate", folder, "--output", out_str]);
    let output = footer(&out);
    assert_eq!(output.num_row_groups(), 2 * input.num_row_groups());
    let names: Vec<String> = output
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert!(names.contains(&"session_id_input".to_string()), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["session_id", "session_number"]);
    let copied = &output.row_group(1).columns()[..input.row_group(0).num_columns()];
    for (chunk, source) in copied.iter().zip(input.row_group(0).columns()) {
        assert_eq!(chunk.compression(), source.compression());
        assert_eq!(chunk.compressed_size(), source.compressed_size());
        assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
    }
    let general = ok(&["annotate", folder, "--format", "csv"]);
    assert_eq!(as_csv(out_str), general, "the same rows in the same order");

    // --concluded, and a folder whose files differ in schema: the general way, same rows.
    ok(&["annotate", folder, "--output", out_str, "--concluded"]);
    let concluded = ok(&["annotate", folder, "--format", "csv", "--concluded"]);
    assert_eq!(normalized(&as_csv(out_str)), normalized(&concluded));
    ok(&[
        "query",
        sample.to_str().unwrap(),
        "SELECT *, 1 AS extra FROM events",
        "--output",
        dir.path().join("export/c.parquet").to_str().unwrap(),
    ]);
    ok(&["annotate", folder, "--output", out_str]);
    let general = ok(&["annotate", folder, "--format", "csv"]);
    assert_eq!(as_csv(out_str), general);
    assert_eq!(
        general.lines().count() - 1,
        3 * input.file_metadata().num_rows() as usize
    );
}

/// `--compat dbt` reads Fivetran's `event` table as dbt_amplitude does (`id`, `_insert_id`,
/// `_fivetran_synced`), an export without `client_upload_time` (the duplicate is still dropped,
/// the same one every time), and leaves out events dated after today as the package's default
/// date window does, saying so on stderr.
#[test]
fn dbt_compat_reads_fivetran_and_keeps_the_package_date_window() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| {
        let path = dir.path().join(name);
        ok(&["query", CSV, sql, "--output", path.to_str().unwrap()]);
        path.to_str().unwrap().to_string()
    };
    let dbt = |input: &str, extra: &[&str]| {
        let mut args = vec!["sessions", input, "--compat", "dbt", "--format", "csv"];
        args.extend_from_slice(extra);
        let out = sessionize(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            normalized(&String::from_utf8_lossy(&out.stdout)),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fivetran = write(
        "event.parquet",
        "SELECT * EXCLUDE (event_id, insert_id), event_id AS id, insert_id AS _insert_id, \
         event_time AS _fivetran_synced FROM events",
    );
    assert_eq!(dbt(&fivetran, &[]).0, golden("dbt.csv"), "Fivetran's table");
    let no_upload = write(
        "no_upload.parquet",
        "SELECT * EXCLUDE (client_upload_time) FROM events",
    );
    assert_eq!(
        dbt(&no_upload, &[]).0,
        golden("dbt.csv"),
        "no client_upload_time"
    );
    let future = write(
        "future.parquet",
        "SELECT * FROM events UNION ALL SELECT * REPLACE ('u9' AS user_id, 'i99' AS insert_id, \
         CAST('2099-01-01T00:00:00Z' AS TIMESTAMP) AS event_time) FROM events WHERE insert_id = 'i01'",
    );
    let (table, note) = dbt(&future, &[]);
    assert_eq!(table, golden("dbt.csv"), "the 2099 event is left out");
    assert!(
        note.contains("left out 0 events dated before 2020-01-01 and 1 dated after"),
        "{note}"
    );
    let (table, _) = dbt(&future, &["--date-to", "2100-01-01"]);
    assert!(table.iter().any(|row| row.contains(",u9,")), "{table:?}");
}

/// Sentences for input found by a newcomer run: text SDK session ids, a day that does not exist,
/// a timeout of centuries, `--date-from` without `--compat dbt`; and `--output x.csv` writes CSV.
#[test]
fn newcomer_inputs_get_clear_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let text_ids = dir.path().join("ids.csv");
    std::fs::write(
        &text_ids,
        "user_id,event_time,event_type,session_id\na,2026-01-01 10:00:00,x,s-1\n",
    )
    .unwrap();
    let text_ids = text_ids.to_str().unwrap();
    for command in ["sessions", "annotate", "chart"] {
        fails(
            &[command, text_ids, "--session-source", "sdk"],
            "the session id column 'session_id' holds Utf8, not integers",
        );
    }
    fails(
        &[
            "sessions",
            CSV,
            "--compat",
            "dbt",
            "--date-from",
            "2026-02-30",
        ],
        "--date-from got '2026-02-30', which is not a day of the calendar: that month has 28 days",
    );
    fails(
        &["sessions", CSV, "--timeout", "400d"],
        "is longer than the longest accepted, 366 days",
    );
    fails(
        &["sessions", CSV, "--timeout", "1month"],
        "'1month' counts in month, which have no fixed length: give days or weeks",
    );
    fails(
        &["sessions", CSV, "--date-from", "2026-01-01"],
        "--date-from and --date-to set the date window of --compat dbt",
    );
    fails(
        &["sessions", CSV, "--compat", "dbt", "--timeout", "5m"],
        "--timeout shapes derived sessions, but --compat dbt takes the SDK's session ids",
    );
    let out = dir.path().join("sessions.csv");
    ok(&["sessions", CSV, "--output", out.to_str().unwrap()]);
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.starts_with("source_relation,unique_session_id,"),
        "{written}"
    );
}

#[test]
fn a_struct_column_is_not_an_actor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("props.parquet");
    ok(&[
        "query",
        "SELECT 'a' AS user_id, named_struct('x', 1) AS props, \
         TIMESTAMP '2026-01-01 10:00:00' AS event_time, 'v' AS event_type",
        "--output",
        path.to_str().unwrap(),
    ]);
    for command in ["sessions", "annotate"] {
        fails(
            &[command, path.to_str().unwrap(), "--actor", "props"],
            "the actor column 'props' holds Struct(\"x\": Int64), which cannot identify an actor",
        );
    }
}

/// An insert id under two actors at one time (a replayed upload, a device reset): the copy kept
/// by `--compat dbt` and by `--dedup insert_id` is the first actor's, whichever row comes first.
/// Before the actor broke the tie, the first row read was kept.
#[test]
fn a_duplicate_under_two_actors_keeps_the_same_copy_in_any_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let header = "user_id,device_id,event_id,event_type,event_time,client_event_time,\
                  client_upload_time,session_id,platform,insert_id,event_properties\n";
    let row = |user: &str| {
        format!(
            "{user},d1,7,page_view,2026-01-05 10:00:00,2026-01-05 10:00:00,\
             2026-01-05 10:00:05,1767607200000,web,i7,\"{{}}\"\n"
        )
    };
    for (name, first, second) in [("u2_first.csv", "u2", "u1"), ("u1_first.csv", "u1", "u2")] {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}{}{}", row(first), row(second))).unwrap();
        let input = path.to_str().unwrap();
        for flags in [&["--compat", "dbt"][..], &["--dedup", "insert_id"][..]] {
            let mut args = vec!["sessions", input, "--format", "csv"];
            args.extend_from_slice(flags);
            let table = ok(&args);
            let users: Vec<&str> = table
                .lines()
                .skip(1)
                .map(|line| field(table.lines().next().unwrap(), line, "user_id"))
                .collect();
            assert_eq!(users, ["u1"], "{name} {flags:?}: {table}");
        }
        let annotated = ok(&["annotate", input, "--dedup", "insert_id", "--format", "csv"]);
        let header = annotated.lines().next().unwrap();
        let numbered: Vec<&str> = annotated
            .lines()
            .skip(1)
            .filter(|line| !field(header, line, "session_number").is_empty())
            .map(|line| field(header, line, "user_id"))
            .collect();
        assert_eq!(numbered, ["u1"], "{name} annotate: {annotated}");
    }
}

/// Copies tied on time, actor and event type (and, in `--compat dbt`, upload time and session
/// id) give the same sessions in either row order: `--dedup insert_id` then ranks by the SDK
/// session id and the platform, and `--compat dbt` puts a copy with an insert id before one
/// without (found by a newcomer's audit: each of these depended on the rows' order); `annotate`
/// ranks the copies as `sessions` does (it ranked SDK copies by time, actor and event only).
#[test]
fn copies_tied_on_every_rank_give_the_same_sessions_in_any_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let header = "user_id,event_time,event_type,session_id,event_id,insert_id,platform,\
                  client_upload_time\n";
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["--compat", "dbt"],
            "u1,2026-11-30 05:35:30,a,1000,8,i1,ios,2026-11-30 06:35:30\n",
            "u1,2026-11-30 05:35:30,a,1000,8,,web,2026-11-30 06:35:30\n",
        ),
        (
            &["--session-source", "sdk", "--dedup", "insert_id"],
            "u1,2026-11-30 02:49:56,a,2000,1,i4,web,\n",
            "u1,2026-11-30 02:49:56,a,3000,2,i4,web,\n",
        ),
        (
            &[
                "--dedup",
                "insert_id",
                "--timeout-by",
                "platform",
                "web=30m,ios=5m",
            ],
            "u1,2026-11-30 10:00:00,a,1,1,i0,web,\nu1,2026-11-30 10:20:00,a,1,2,i1,web,\n",
            "u1,2026-11-30 10:20:00,a,1,3,i1,ios,\n",
        ),
    ];
    for (flags, x, y) in cases {
        // `annotate` keeps the copy `sessions` keeps (it takes no --compat dbt).
        let commands: &[&str] = if flags.contains(&"--compat") {
            &["sessions"]
        } else {
            &["sessions", "annotate"]
        };
        for command in commands {
            let mut tables = vec![];
            for (name, rows) in [("xy.csv", format!("{x}{y}")), ("yx.csv", format!("{y}{x}"))] {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("{header}{rows}")).unwrap();
                let mut args = vec![*command, path.to_str().unwrap(), "--format", "csv"];
                args.extend_from_slice(flags);
                tables.push(normalized(&ok(&args)));
            }
            assert_eq!(tables[0], tables[1], "{command} {flags:?}");
        }
    }
}

/// `--dedup insert_id` keeps the first copy of each insert id, empty ids included (one event
/// of two with `""`), and every event without one; ids are found repeated by a hash of the id
/// and ranked by the id itself, so a unique id stays whatever its hash.
#[test]
fn dedup_keeps_one_copy_of_each_insert_id_and_every_event_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copies.json");
    let rows = [
        ("u1", "2026-01-05T10:00:00Z", Some("i1")),
        ("u1", "2026-01-05T10:05:00Z", Some("i1")),
        ("u2", "2026-01-05T11:00:00Z", Some("")),
        ("u2", "2026-01-05T11:01:00Z", Some("")),
        ("u3", "2026-01-05T12:00:00Z", None),
        ("u3", "2026-01-05T12:01:00Z", None),
        ("u4", "2026-01-05T13:00:00Z", Some("i2")),
        // The first copy of `i3` is another actor's: `u5` keeps nothing.
        ("u6", "2026-01-05T13:59:00Z", Some("i3")),
        ("u5", "2026-01-05T14:00:00Z", Some("i3")),
    ];
    let text: String = rows
        .iter()
        .map(|(user, time, id)| {
            let id = id.map_or("null".to_string(), |i| format!("\"{i}\""));
            format!(
                "{{\"user_id\":\"{user}\",\"event_time\":\"{time}\",\"event_type\":\"a\",\"insert_id\":{id}}}\n"
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = ok(&[
        "sessions",
        path.to_str().unwrap(),
        "--dedup",
        "insert_id",
        "--format",
        "csv",
    ]);
    let mut kept: Vec<String> = out
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            format!("{} {}", fields[2], fields[3])
        })
        .collect();
    kept.sort();
    assert_eq!(kept, ["u1 1", "u2 1", "u3 2", "u4 1", "u6 1"], "{out}");
}

/// `annotate --session-source sdk --dedup insert_id` numbers one copy of an insert id, as in
/// derived sessions (it numbered both: a newcomer's audit).
#[test]
fn annotate_sdk_sessions_drop_copies_of_an_insert_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copies.csv");
    std::fs::write(
        &path,
        "user_id,event_time,event_type,session_id,insert_id\n\
         u1,2026-11-30 02:49:56,a,2000,i4\n\
         u1,2026-11-30 03:49:56,a,3000,i4\n",
    )
    .unwrap();
    let annotated = ok(&[
        "annotate",
        path.to_str().unwrap(),
        "--session-source",
        "sdk",
        "--dedup",
        "insert_id",
        "--format",
        "csv",
    ]);
    let header = annotated.lines().next().unwrap();
    // (The rows in the SQL form's order: `--dedup` takes it.)
    let mut numbered: Vec<(&str, &str)> = annotated
        .lines()
        .skip(1)
        .map(|line| {
            (
                field(header, line, "session_id_input"),
                field(header, line, "session_id"),
            )
        })
        .collect();
    numbered.sort();
    assert_eq!(numbered, [("2000", "2000"), ("3000", "")], "{annotated}");
}

/// `--compat dbt` de-duplicates as dbt_amplitude's `event_data` CTE (found by an audit against
/// the package's SQL): an event without an insert id is ranked among every event of its event id,
/// device id, client event time and `amplitude_user_id` (the user id, else `amplitude_id`), those
/// with an insert id included, and two user-less events with different `amplitude_id`s are not
/// duplicates. By hand: u1's copy without an insert id (uploaded 10:00:05) ranks second to the
/// copy with one (10:00:09) and goes: 1 event; the two user-less events of amplitude ids 5002 and
/// 5003 both stay: 2 events.
#[test]
fn dbt_dedup_ranks_as_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::file(
        dir.path(),
        "event.csv",
        "id,_insert_id,_fivetran_synced,amplitude_id,event_time,event_type,user_id,device_id,session_id,client_event_time,client_upload_time\n\
         e1,i1,2026-01-06 00:00:00,5001,2026-01-05 10:00:00,page_view,u1,d1,100,2026-01-05 10:00:00,2026-01-05 10:00:09\n\
         e1,,2026-01-06 00:00:00,5001,2026-01-05 10:00:00,page_view,u1,d1,100,2026-01-05 10:00:00,2026-01-05 10:00:05\n\
         e2,,2026-01-06 00:00:00,5002,2026-01-05 11:00:00,page_view,,d2,200,2026-01-05 11:00:00,2026-01-05 11:00:05\n\
         e2,,2026-01-06 00:00:00,5003,2026-01-05 11:00:00,page_view,,d2,200,2026-01-05 11:00:00,2026-01-05 11:00:06\n",
    );
    let mut counts: Vec<String> = common::csv_table(&ok(&[
        "sessions", &path, "--compat", "dbt", "--format", "csv",
    ]))
    .iter()
    .map(|r| format!("{}:{}", r["user_id"], r["events_per_session"]))
    .collect();
    counts.sort();
    assert_eq!(counts, [":2", "u1:1"]);
}
