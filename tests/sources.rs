//! Exports as they come: time columns in every common encoding (integer epochs of any unit, text
//! with or without an offset, timestamps whose unit or zone differ between the files of one
//! export), and inputs without events. Each case is derived from the shipped sample, so the
//! expected sessions are those of the sample itself.

mod common;

use common::{fails, file, normalized, ok};

const SAMPLE: &str = "data/events.parquet";

/// Writes the sample through `sql` (over `events`) to `path`.
fn derive(sql: &str, path: &std::path::Path) {
    ok(&["query", SAMPLE, sql, "--output", path.to_str().unwrap()]);
}

/// The output of `command` over `input` (CSV), for sessions, annotate and chart, with the
/// chart's fractions rounded to 6 digits (sums of floats differ in their last bits with how
/// the rows are split between partitions).
fn outputs(input: &str, extra: &[&str]) -> Vec<Vec<String>> {
    let mut all = vec![];
    for command in [
        &["sessions", input, "--format", "csv"][..],
        &["annotate", input, "--format", "csv"][..],
        &["chart", input, "--interval", "day", "--format", "csv"][..],
    ] {
        let mut args = command.to_vec();
        args.extend_from_slice(extra);
        let mut out = normalized(&ok(&args));
        if command[0] == "chart" {
            out = out.iter().map(|line| rounded(line)).collect();
        }
        all.push(out);
    }
    all
}

fn rounded(line: &str) -> String {
    line.split(',')
        .map(|field| match field.parse::<f64>() {
            Ok(value) if field.contains('.') => format!("{value:.6}"),
            _ => field.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn integer_epochs_and_text_times_in_parquet_give_the_same_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let expected = outputs(SAMPLE, &[]);
    // GA4's event_timestamp: epoch microseconds; and the same in nanoseconds.
    for (name, sql, unit) in [
        (
            "micros.parquet",
            "SELECT * REPLACE (CAST(event_time AS BIGINT) AS event_time) FROM events",
            "us",
        ),
        (
            "nanos.parquet",
            "SELECT * REPLACE (CAST(event_time AS BIGINT) * 1000 AS event_time) FROM events",
            "ns",
        ),
        // Segment's and PostHog's ISO-8601 text, here with a +02:00 offset.
        (
            "offset.parquet",
            "SELECT * REPLACE (to_char(event_time + INTERVAL '2 hours', '%Y-%m-%dT%H:%M:%S%.6f+02:00') AS event_time) FROM events",
            "auto",
        ),
    ] {
        let path = dir.path().join(name);
        derive(sql, &path);
        let path = path.to_str().unwrap();
        assert_eq!(outputs(path, &[]), expected, "{name}");
        assert_eq!(
            outputs(path, &["--time-unit", unit]),
            expected,
            "{name} --time-unit {unit}"
        );
    }
    // Mixpanel's time: epoch seconds; the same sessions as the sample's times floored to seconds.
    let seconds = dir.path().join("seconds.parquet");
    derive(
        "SELECT * REPLACE (CAST(event_time AS BIGINT) / 1000000 AS event_time) FROM events",
        &seconds,
    );
    let floored = dir.path().join("floored.parquet");
    derive(
        "SELECT * REPLACE (date_trunc('second', event_time) AS event_time) FROM events",
        &floored,
    );
    assert_eq!(
        outputs(seconds.to_str().unwrap(), &[]),
        outputs(floored.to_str().unwrap(), &[])
    );
    // A forced unit is the unit: the seconds read as milliseconds are another (1970) history.
    let as_ms = ok(&[
        "sessions",
        seconds.to_str().unwrap(),
        "--time-unit",
        "ms",
        "--format",
        "csv",
    ]);
    assert!(
        as_ms.contains("1970-01-"),
        "{}",
        &as_ms[..as_ms.len().min(400)]
    );
}

/// A nanosecond timestamp column in a zone other than UTC keeps its nanoseconds (Arrow's zoned
/// timestamps are UTC instants: only the label becomes UTC). User `u`'s second event comes 30
/// minutes and 300 ns after its first: two sessions, as in UTC.
#[test]
fn nanoseconds_in_another_zone_stay_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    for zone in ["America/New_York", "+05:00", "UTC"] {
        let path = dir
            .path()
            .join(format!("{}.parquet", zone.replace(['/', ':', '+'], "_")));
        derive(
            &format!(
                "SELECT 'u' AS user_id, 'view' AS event_type, \
                 arrow_cast(arrow_cast(column1, 'Timestamp(Nanosecond, Some(\"UTC\"))'), \
                 'Timestamp(Nanosecond, Some(\"{zone}\"))') AS event_time \
                 FROM (VALUES (1767600000000000000), (1767601800000000300)) v"
            ),
            &path,
        );
        let input = path.to_str().unwrap();
        let sessions = ok(&["sessions", input, "--format", "csv"]);
        assert_eq!(sessions.lines().count(), 3, "{zone}: {sessions}");
        let annotated = ok(&["annotate", input, "--format", "csv"]);
        assert!(
            annotated.contains(":30:00.000000300"),
            "{zone}: the nanoseconds kept: {annotated}"
        );
        let numbers = ok(&[
            "query",
            input,
            "--format",
            "csv",
            "SELECT max(n) FROM (SELECT session_number(event_time, INTERVAL '30 minutes') \
             OVER (PARTITION BY user_id ORDER BY event_time) AS n FROM events)",
        ]);
        assert_eq!(numbers.lines().nth(1), Some("2"), "{zone}: {numbers}");
    }
}

#[test]
fn files_whose_time_units_and_zones_differ_are_read_together() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    std::fs::create_dir(&folder).unwrap();
    // The sample at millisecond precision is the reference; its users are split over two files,
    // one with zone-less millisecond timestamps, one with UTC microseconds.
    let reference = dir.path().join("reference.parquet");
    derive(
        "SELECT * REPLACE (date_trunc('millisecond', event_time) AS event_time) FROM events",
        &reference,
    );
    derive(
        "SELECT * REPLACE (arrow_cast(date_trunc('millisecond', event_time), 'Timestamp(Millisecond, None)') AS event_time) FROM events WHERE user_id < 'user_00150'",
        &folder.join("a.parquet"),
    );
    derive(
        "SELECT * REPLACE (date_trunc('millisecond', event_time) AS event_time) FROM events WHERE user_id >= 'user_00150' OR user_id IS NULL",
        &folder.join("b.parquet"),
    );
    assert_eq!(
        outputs(folder.to_str().unwrap(), &[]),
        outputs(reference.to_str().unwrap(), &[])
    );
}

#[test]
fn unparsable_text_names_the_file_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    derive(
        "SELECT * REPLACE (CASE WHEN amplitude_id % 100 = 7 THEN 'yesterday' ELSE CAST(event_time AS VARCHAR) END AS event_time) FROM events",
        &path,
    );
    let err = fails(&["sessions", path.to_str().unwrap()], "'yesterday'");
    assert!(err.contains("bad.parquet"), "{err}");
}

#[test]
fn a_csv_with_a_header_and_no_rows_holds_no_events() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "user_id,event_time,event_type\n").unwrap();
    let empty = empty.to_str().unwrap();
    fails(&["sessions", empty], "the input holds no events: '");
    fails(&["sessions", empty], "empty.csv' has a header and no rows");
    // Beside other inputs it adds nothing.
    assert_eq!(
        normalized(&ok(&["sessions", SAMPLE, empty, "--format", "csv"])),
        normalized(&ok(&["sessions", SAMPLE, "--format", "csv"]))
    );
}

/// The golden export with the actor every source's fixture uses: the user id, else the device
/// (anonymous) id.
fn reference(dir: &std::path::Path) -> String {
    let path = dir.join("reference.parquet");
    ok(&[
        "query",
        "tests/golden/events.csv",
        "SELECT * REPLACE (COALESCE(user_id, device_id) AS user_id) FROM events",
        "--output",
        path.to_str().unwrap(),
    ]);
    path.to_str().unwrap().to_string()
}

/// A CSV table's rows without the named columns.
fn without(csv: &str, drop: &[&str]) -> Vec<String> {
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let mut rows: Vec<String> = csv
        .lines()
        .map(|line| {
            line.split(',')
                .zip(&header)
                .filter(|(_, h)| !drop.contains(h))
                .map(|(v, _)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    rows[1..].sort();
    rows
}

/// The last column of a CSV table (annotate's `session_number`), in row order: other columns
/// hold quoted JSON with commas.
fn last_column(csv: &str) -> Vec<String> {
    csv.lines()
        .map(|l| l.rsplit(',').next().unwrap_or_default().to_string())
        .collect()
}

/// The sessions table `args` print (as CSV), sorted: of each session its `user_id` and the next
/// `columns - 1` columns (events, start, end).
fn session_rows(args: &[&str], columns: usize) -> Vec<String> {
    without(&ok(args), &[])
        .iter()
        .skip(1)
        .map(|row| {
            row.split(',')
                .skip(2)
                .take(columns)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Each source's fixture (`tests/fixtures/sources/`, the golden events in the shape the vendor
/// documents: Segment's JSON messages, Mixpanel's raw export, PostHog's events with +02:00
/// offsets, Snowplow's atomic events, GA4's BigQuery export as Parquet with `event_params`) gives
/// the golden sessions in every command, recognised from its columns or named with `--source`;
/// the sources with a session key give the golden SDK sessions, the others say they have none.
#[test]
fn every_source_gives_the_golden_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference(dir.path());
    let sessions = ok(&["sessions", &reference, "--format", "csv"]);
    let sdk = ok(&[
        "sessions",
        &reference,
        "--session-source",
        "sdk",
        "--format",
        "csv",
    ]);
    // GA4's, Snowplow's and PostHog's session keys belong to the device (`user_pseudo_id`,
    // `domain_userid`, `$device_id`): their SDK sessions are the device's, so a login midway
    // splits none.
    let sdk_by_device = ok(&[
        "sessions",
        "tests/golden/events.csv",
        "--session-source",
        "sdk",
        "--actor",
        "device_id",
        "--format",
        "csv",
    ]);
    let annotated = ok(&["annotate", &reference, "--format", "csv"]);
    let chart = outputs(&reference, &[]).pop().unwrap();
    for (file, name, has_key) in [
        ("segment.ndjson", "segment", false),
        ("mixpanel.ndjson", "mixpanel", false),
        ("posthog.ndjson", "posthog", true),
        ("snowplow.csv", "snowplow", true),
        ("ga4.parquet", "ga4", true),
    ] {
        let path = format!("tests/fixtures/sources/{file}");
        let out = common::sessionize(&["sessions", &path, "--format", "csv"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("(--source {name};")),
            "{file} is recognised: {err}"
        );
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(normalized(&got), normalized(&sessions), "{file}");
        // Stitching the device to the user id gives the same sessions: every device that is
        // ever seen with a user id (d1, d2) is always seen with it; d3 never is.
        let stitched = ok(&[
            "sessions",
            &path,
            "--stitch",
            "device_id=user_id",
            "--format",
            "csv",
        ]);
        assert_eq!(
            normalized(&stitched),
            normalized(&sessions),
            "{file} stitched"
        );
        let named = ok(&["sessions", &path, "--source", name, "--format", "csv"]);
        assert_eq!(
            normalized(&named),
            normalized(&sessions),
            "{file} --source {name}"
        );
        let numbers = ok(&["annotate", &path, "--format", "csv"]);
        assert_eq!(
            last_column(&numbers),
            last_column(&annotated),
            "annotate {file}"
        );
        assert_eq!(outputs(&path, &[]).pop().unwrap(), chart, "chart {file}");
        let count = ok(&[
            "query",
            &path,
            "SELECT count(*) AS n, count(DISTINCT COALESCE(user_id, device_id)) AS u FROM events",
            "--format",
            "csv",
        ]);
        assert_eq!(count.lines().nth(1), Some("15,3"), "query {file}");
        if has_key {
            let got = ok(&[
                "sessions",
                &path,
                "--session-source",
                "sdk",
                "--format",
                "csv",
            ]);
            // The session ids are the source's own (hashed text keys, GA4's seconds).
            let ids = ["unique_session_id", "session_id"];
            let expected = if matches!(name, "ga4" | "snowplow" | "posthog") {
                &sdk_by_device
            } else {
                &sdk
            };
            assert_eq!(without(&got, &ids), without(expected, &ids), "sdk {file}");
        } else {
            fails(
                &[
                    "sessions",
                    &path,
                    "--source",
                    name,
                    "--session-source",
                    "sdk",
                ],
                "carries no session id, so --session-source sdk has nothing to read",
            );
        }
    }
    // GA4's parameters are event properties for charts.
    let pages = ok(&[
        "chart",
        "tests/fixtures/sources/ga4.parquet",
        "--group-by",
        "event.page_location",
        "--format",
        "csv",
    ]);
    assert!(pages.contains("https://example.com/cart"), "{pages}");
    // Snowplow keeps an event's fields as columns: event.page_url is the column.
    let pages = ok(&[
        "chart",
        "tests/fixtures/sources/snowplow.csv",
        "--group-by",
        "event.page_url",
        "--interval",
        "total",
        "--format",
        "csv",
    ]);
    assert!(
        pages.contains("https://example.com/home,3,")
            && pages.contains("https://example.com/cart,1,"),
        "u1's first, u2's and d3's sessions start on /home, u1's second on /cart: {pages}"
    );
    // A source named for an export of another shape names what is missing.
    fails(
        &[
            "sessions",
            "tests/fixtures/sources/segment.ndjson",
            "--source",
            "ga4",
        ],
        "--source ga4 reads the columns of a GA4 export",
    );
    fails(
        &["sessions", SAMPLE, "--source", "heap"],
        "unknown source 'heap': expected one of ga4, snowplow",
    );
}

/// Amplitude's own shapes as fixtures: the Export API's zip of gzipped JSON lines
/// (`$insert_id`, text times with microseconds, properties as objects) and Fivetran's `event`
/// table (`id`, `_insert_id`, `_fivetran_synced`) give the golden tables in every mode: derived
/// sessions (with `--actor user_id,device_id`, as the other sources' own actor), SDK sessions,
/// `--compat dbt` (the table dbt_amplitude builds), and the same annotate, chart and query.
#[test]
fn amplitude_fixtures_give_the_golden_tables() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference(dir.path());
    let actor = ["--actor", "user_id,device_id"];
    let with = |command: &str, input: &str, extra: &[&str]| {
        let mut args = vec![command, input, "--format", "csv"];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let sessions = with("sessions", &reference, &[]);
    let annotated = with("annotate", &reference, &[]);
    let chart = outputs(&reference, &[]).pop().unwrap();
    for file in ["amplitude.zip", "amplitude_fivetran.csv"] {
        let path = format!("tests/fixtures/sources/{file}");
        assert_eq!(
            normalized(&with("sessions", &path, &actor)),
            normalized(&sessions),
            "{file}"
        );
        assert_eq!(
            last_column(&with("annotate", &path, &actor)),
            last_column(&annotated),
            "annotate {file}"
        );
        assert_eq!(outputs(&path, &actor).pop().unwrap(), chart, "chart {file}");
        assert_eq!(
            normalized(&with("sessions", &path, &["--session-source", "sdk"])),
            common::golden("sdk.csv"),
            "sdk {file}"
        );
        assert_eq!(
            normalized(&with("sessions", &path, &["--compat", "dbt"])),
            common::golden("dbt.csv"),
            "dbt {file}"
        );
        let count = ok(&[
            "query",
            &path,
            "SELECT count(*) AS n, count(DISTINCT COALESCE(user_id, device_id)) AS u FROM events",
            "--format",
            "csv",
        ]);
        assert_eq!(count.lines().nth(1), Some("15,3"), "query {file}");
    }
}

/// Segment, Mixpanel and PostHog exports written to Parquet with their `properties` as a struct
/// (as Spark, pandas, Polars and PyArrow write JSON objects), rather than JSON text: the same
/// sessions, annotated events, charts (a property read by `event.NAME`), SDK sessions and
/// `event_properties` JSON text as the NDJSON fixtures (found by an audit of the export formats
/// issue: the mappings failed with "json_get_str ... got Struct").
#[test]
fn properties_stored_as_a_struct_read_as_properties_stored_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let get = |key: &str| format!("'{key}', json_get_str(properties, '{key}')");
    for (file, columns, keys) in [
        (
            "segment.ndjson",
            "type, event, \"userId\", \"anonymousId\", timestamp, \"messageId\"",
            vec![get("page")],
        ),
        (
            "mixpanel.ndjson",
            "event",
            vec![
                "'time', json_get_int(properties, 'time')".to_string(),
                get("distinct_id"),
                get("$insert_id"),
                get("$device_id"),
                get("page"),
            ],
        ),
        (
            "posthog.ndjson",
            "uuid, event, distinct_id, timestamp",
            vec![get("$device_id"), get("$current_url"), get("$session_id")],
        ),
    ] {
        let text = format!("tests/fixtures/sources/{file}");
        let structs = dir.path().join(file.replace(".ndjson", ".parquet"));
        let structs_path = structs.to_str().unwrap();
        ok(&[
            "query",
            "--table",
            &format!("raw={text}"),
            &format!(
                "SELECT {columns}, named_struct({}) AS properties FROM raw",
                keys.join(", ")
            ),
            "--output",
            structs_path,
        ]);
        let kind = ok(&[
            "query",
            "--table",
            &format!("t={structs_path}"),
            "SELECT arrow_typeof(properties) AS t FROM t LIMIT 1",
            "--format",
            "csv",
        ]);
        assert!(kind.contains("Struct"), "{file}: {kind}");
        // Sessions, annotate's session numbers (its other columns are the inputs'), the chart.
        let (got, expected) = (outputs(structs_path, &[]), outputs(&text, &[]));
        assert_eq!(got[0], expected[0], "{file} sessions");
        let numbers = |rows: &[String]| rows.iter().map(|r| last_column(r)).collect::<Vec<_>>();
        assert_eq!(numbers(&got[1]), numbers(&expected[1]), "{file} annotate");
        assert_eq!(got[2], expected[2], "{file} chart");
        let group = if file.starts_with("posthog") {
            "event.$current_url"
        } else {
            "event.page"
        };
        let chart = |input: &str| {
            normalized(&ok(&[
                "chart",
                input,
                "--group-by",
                group,
                "--format",
                "csv",
            ]))
        };
        let by_page = chart(&text);
        assert!(by_page.iter().any(|l| l.contains("/home")), "{by_page:?}");
        assert_eq!(chart(structs_path), by_page, "{file} by {group}");
        let props = |input: &str| {
            normalized(&ok(&[
                "query",
                input,
                "SELECT json_get_str(event_properties, 'page') AS p, \
                 json_get_str(event_properties, '$current_url') AS u FROM events",
                "--format",
                "csv",
            ]))
        };
        assert_eq!(props(structs_path), props(&text), "{file} event_properties");
        if file.starts_with("posthog") {
            let sdk = |input: &str| {
                normalized(&ok(&[
                    "sessions",
                    input,
                    "--session-source",
                    "sdk",
                    "--format",
                    "csv",
                ]))
            };
            assert_eq!(sdk(structs_path), sdk(&text), "{file} SDK sessions");
        }
    }
}

/// `--actor user_id,device_id`: anonymous events on two devices that share one SDK session id are
/// two sessions (one per device), not one session of a null user.
#[test]
fn the_first_non_null_of_several_actor_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        dir.path(),
        "devices.csv",
        "user_id,device_id,event_time,event_type,session_id\n\
         ,d1,2026-01-05 10:00:00,page_view,5\n\
         ,d2,2026-01-05 10:01:00,page_view,5\n\
         ,d1,2026-01-05 10:02:00,page_view,5\n\
         u1,d1,2026-01-05 10:03:00,login,5\n",
    );
    let path = path.as_str();
    let sessions = |extra: &[&str]| {
        let mut args = vec![
            "sessions",
            path,
            "--session-source",
            "sdk",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        session_rows(&args, 4)
    };
    assert_eq!(
        sessions(&["--actor", "user_id,device_id"]),
        [
            "d1,2,2026-01-05T10:00:00Z,2026-01-05T10:02:00Z",
            "d2,1,2026-01-05T10:01:00Z,2026-01-05T10:01:00Z",
            "u1,1,2026-01-05T10:03:00Z,2026-01-05T10:03:00Z",
        ]
    );
    // Without the device, the anonymous events are one session of a null user.
    assert_eq!(
        sessions(&[]),
        [
            ",3,2026-01-05T10:00:00Z,2026-01-05T10:02:00Z",
            "u1,1,2026-01-05T10:03:00Z,2026-01-05T10:03:00Z",
        ]
    );
    fails(
        &["sessions", path, "--actor", "user_id,phone"],
        "no column 'phone'",
    );
}

/// `chart` takes the identities and columns `sessions` takes: `--actor` (one column or several),
/// `--stitch`, `--time`, `--event` and `--session-id-col`, as flags or in the spec's `[session]`
/// (found by an audit of the export formats issue: the chart had none of these flags, and its
/// spec's actor was one column). Sessions worked out by hand: with the user id, else the
/// anonymous id, a1's two anonymous events (300 s), alice's two (600 s) and a2's one; stitched,
/// a1's events are alice's: one session of 1,200 s, and a2's.
#[test]
fn chart_identities_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        dir.path(),
        "renamed.csv",
        "anon,who,ts,kind,sid\n\
         a1,,2026-01-05 10:00:00,page_view,1\n\
         a1,,2026-01-05 10:05:00,page_view,1\n\
         a1,alice,2026-01-05 10:10:00,login,1\n\
         a1,alice,2026-01-05 10:20:00,page_view,1\n\
         a2,,2026-01-05 11:00:00,page_view,2\n",
    );
    let path = path.as_str();
    // (sessions, time spent, uniques) of the total.
    let total = |extra: &[&str]| {
        let mut args = vec![
            "chart",
            path,
            "--time",
            "ts",
            "--event",
            "kind",
            "--interval",
            "total",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        let rows = common::csv_table(&ok(&args));
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        format!(
            "{} {} {}",
            r["A_total_sessions"], r["A_time_spent"], r["A_uniques"]
        )
    };
    assert_eq!(total(&["--actor", "who"]), "1 600.0 1");
    assert_eq!(total(&["--actor", "who,anon"]), "3 900.0 3");
    assert_eq!(total(&["--stitch", "anon=who"]), "2 1200.0 2");
    // --event names the column the excluded events are read from: alice keeps her 10:20 event.
    assert_eq!(
        total(&["--actor", "who,anon", "--exclude-event", "login"]),
        "3 300.0 3"
    );
    assert_eq!(
        total(&[
            "--actor",
            "who,anon",
            "--session-source",
            "sdk",
            "--session-id-col",
            "sid"
        ]),
        "3 900.0 3"
    );
    let spec = file(
        dir.path(),
        "spec.toml",
        "[session]\nactor = \"who,anon\"\ntime = \"ts\"\nevent = \"kind\"\n",
    );
    assert_eq!(total(&["--spec", &spec]), "3 900.0 3");
    let spec = file(
        dir.path(),
        "stitch.toml",
        "[session]\nstitch = \"anon=who\"\n",
    );
    assert_eq!(total(&["--spec", &spec]), "2 1200.0 2");
    fails(
        &["chart", path, "--time", "ts", "--actor", "who,phone"],
        "no column 'phone'",
    );
    fails(
        &["chart", path, "--time", "ts", "--stitch", "anon"],
        "--stitch expects ANONYMOUS=USER",
    );
}

/// `--stitch anonymous_id=user_id`: a visit that logs in midway is one session of the user; an
/// anonymous id seen with a user gives that user its later anonymous events too; one never seen
/// with a user stays itself. `annotate` keeps the input's order.
#[test]
fn stitched_identities() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        dir.path(),
        "visits.csv",
        "anonymous_id,user_id,event_time,event_type\n\
         a1,,2026-01-05 10:00:00,page_view\n\
         a1,,2026-01-05 10:05:00,page_view\n\
         a1,alice,2026-01-05 10:10:00,login\n\
         a1,alice,2026-01-05 10:20:00,page_view\n\
         a2,,2026-01-05 11:00:00,page_view\n\
         a3,bob,2026-01-05 09:00:00,login\n\
         a3,,2026-01-05 12:00:00,page_view\n",
    );
    let path = path.as_str();
    let rows = session_rows(
        &[
            "sessions",
            path,
            "--stitch",
            "anonymous_id=user_id",
            "--format",
            "csv",
        ],
        4,
    );
    assert_eq!(
        rows,
        [
            "a2,1,2026-01-05T11:00:00Z,2026-01-05T11:00:00Z",
            "alice,4,2026-01-05T10:00:00Z,2026-01-05T10:20:00Z",
            "bob,1,2026-01-05T09:00:00Z,2026-01-05T09:00:00Z",
            "bob,1,2026-01-05T12:00:00Z,2026-01-05T12:00:00Z",
        ]
    );
    let annotated = ok(&[
        "annotate",
        path,
        "--stitch",
        "anonymous_id=user_id",
        "--format",
        "csv",
    ]);
    // The export's user_id as it was, the identity in `actor` (before the two new columns).
    let users: Vec<(&str, &str)> = annotated
        .lines()
        .skip(1)
        .map(|l| (l.split(',').nth(1).unwrap(), l.rsplit(',').nth(2).unwrap()))
        .collect();
    assert_eq!(
        users,
        [
            ("", "alice"),
            ("", "alice"),
            ("alice", "alice"),
            ("alice", "alice"),
            ("", "a2"),
            ("bob", "bob"),
            ("", "bob")
        ]
    );
    fails(
        &["sessions", path, "--stitch", "anonymous_id"],
        "--stitch expects ANONYMOUS=USER",
    );
    fails(
        &["sessions", path, "--stitch", "anon=user_id"],
        "no column 'anon'",
    );
}

/// An export that lacks part of a source's signature is not mapped, and the missing-column error
/// names the source it looks like.
#[test]
fn a_missing_column_error_suggests_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tracks.csv");
    std::fs::write(
        &path,
        "anonymous_id,user_id,event,sent_at\na1,,page,2026-01-01 00:00:00\n",
    )
    .unwrap();
    fails(
        &["sessions", path.to_str().unwrap()],
        "map it with --time COLUMN (the input looks like a Segment export: try --source segment)",
    );
}

/// On Segment's warehouse `tracks` table the actor is the user id, else the anonymous id, and
/// `--stitch anonymous_id=user_id` (or the mapped `device_id=user_id`) joins a visit that logs in
/// midway; the export's own `user_id` stays as it was. An export that has the commands' own
/// `event_time` and `event_type` is read as it is, and `--time-unit` applies to sources too.
#[test]
fn sources_keep_the_export_columns_and_stitch() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| file(dir.path(), name, text);
    let tracks = write(
        "tracks.csv",
        "id,anonymous_id,user_id,event,timestamp\n\
         t1,a1,,page_viewed,2026-01-01 10:00:00\n\
         t2,a1,u1,signed_in,2026-01-01 10:10:00\n\
         t3,a1,u1,page_viewed,2026-01-01 10:40:00\n\
         t4,a2,,page_viewed,2026-01-01 09:00:00\n\
         t5,a2,u1,clicked,2026-01-01 09:20:00\n",
    );
    let sessions = |extra: &[&str]| {
        let mut args = vec!["sessions", tracks.as_str(), "--format", "csv"];
        args.extend_from_slice(extra);
        session_rows(&args, 2)
    };
    assert_eq!(sessions(&[]), ["a1,1", "a2,1", "u1,1", "u1,2"]);
    for stitch in ["anonymous_id=user_id", "device_id=user_id"] {
        assert_eq!(
            sessions(&["--stitch", stitch]),
            ["u1,2", "u1,3"],
            "{stitch}"
        );
    }
    let annotated = ok(&["annotate", &tracks, "--format", "csv"]);
    let header = annotated.lines().next().unwrap();
    assert!(
        header.starts_with("user_id,device_id,event_time,event_type"),
        "{header}"
    );
    assert!(
        annotated.lines().nth(1).unwrap().starts_with(",a1,"),
        "{annotated}"
    );

    let both = write(
        "both.csv",
        "user_id,event_time,event_type,event,timestamp,anonymous_id\n\
         a,2026-01-01 10:00:00,x,y,2020-01-01 00:00:00,q\n",
    );
    let out = ok(&["sessions", &both, "--format", "csv"]);
    assert!(out.contains("2026-01-01T10:00:00Z"), "{out}");

    let millis = write(
        "mixpanel.ndjson",
        "{\"event\":\"Page\",\"properties\":{\"time\":1000,\"distinct_id\":\"d9\"}}\n\
         {\"event\":\"Page\",\"properties\":{\"time\":1801000,\"distinct_id\":\"d9\"}}\n",
    );
    let out = ok(&["sessions", &millis, "--time-unit", "ms", "--format", "csv"]);
    assert_eq!(out.lines().count(), 2, "one session: {out}");
    assert!(out.contains("1970-01-01T00:00:01Z"), "{out}");
}

/// Empty files (zero bytes, blank lines, an empty `.json.gz`: an hour of an export without
/// events) add nothing beside other inputs; alone, the input holds no events.
#[test]
fn empty_files_beside_others_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.path().join("blank.ndjson");
    std::fs::write(&blank, "\n\n").unwrap();
    let (empty, blank) = (empty.to_str().unwrap(), blank.to_str().unwrap());
    let alone = ok(&["sessions", SAMPLE, "--format", "csv"]);
    let with = ok(&["sessions", SAMPLE, empty, blank, "--format", "csv"]);
    assert_eq!(normalized(&with), normalized(&alone));
    fails(&["sessions", empty], "the input holds no events: '");
    fails(&["sessions", blank], "blank.ndjson' holds no JSON objects");
}

/// A JSON export whose time is a number in some lines and text in others is read (the number as
/// epoch seconds); `board` reads export sources too.
#[test]
fn json_times_of_both_kinds_and_a_board_of_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = file(
        dir.path(),
        "mixed.ndjson",
        "{\"user_id\":\"a\",\"event_time\":1767261600,\"event_type\":\"x\"}\n\
         {\"user_id\":\"a\",\"event_time\":\"2026-01-01 10:10:00\",\"event_type\":\"y\"}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &mixed, "--format", "csv"], 4),
        ["a,2,2026-01-01T10:00:00Z,2026-01-01T10:10:00Z"]
    );
    let page = dir.path().join("board.html");
    ok(&[
        "board",
        "tests/fixtures/sources/ga4.parquet",
        "--output",
        page.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&page).unwrap().contains("<svg"));
}

/// Found by a second newcomer run: an epoch unit that pushes times past the years a timestamp
/// holds is an error, not silently null times; Segment's server-side calls (a user id, no
/// anonymous id) are a Segment export; the chart's timeout has the commands' limit.
#[test]
fn out_of_range_times_server_side_segment_and_chart_limits() {
    let dir = tempfile::tempdir().unwrap();
    let micros = file(
        dir.path(),
        "micros.csv",
        "user_id,event_time,event_type\nu,1767261600000000,a\n",
    );
    fails(
        &["sessions", &micros, "--time-unit", "s"],
        "the time 1767261600000000 read as epoch seconds is past the years a timestamp holds",
    );
    let server = file(
        dir.path(),
        "server.ndjson",
        "{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u1\",\"timestamp\":\"2026-01-01T10:00:00Z\",\"messageId\":\"m1\"}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &server, "--format", "csv"], 2),
        ["u1,1"]
    );
    fails(
        &["chart", SAMPLE, "--timeout", "367d"],
        "the timeout '367d' is longer than the longest accepted, 366 days",
    );
}

/// JSON exports keep their columns' order and their objects' keys' order (`annotate` writes
/// them as they came).
#[test]
fn json_columns_and_keys_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        dir.path(),
        "order.ndjson",
        "{\"zeta\":1,\"user_id\":\"u\",\"event_time\":\"2026-01-01 10:00:00\",\"event_type\":\"a\",\"alpha\":\"x\",\"props\":{\"z\":1,\"a\":2}}\n",
    );
    let out = ok(&["annotate", &path, "--format", "csv"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("zeta,user_id,event_time,event_type,alpha,props,session_id,session_number")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .contains("\"{\"\"z\"\":1,\"\"a\"\":2}\""),
        "{out}"
    );
}

/// A chart of a Segment export counts the anonymous visitor's session (actor: the user id, else
/// the anonymous id) unless the spec names the actor.
#[test]
fn a_chart_spec_can_name_the_actor_of_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let spec = file(dir.path(), "spec.toml", "[session]\nactor = \"user_id\"\n");
    let total = |extra: &[&str]| {
        let mut args = vec![
            "chart",
            "tests/fixtures/sources/segment.ndjson",
            "--interval",
            "total",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        ok(&args)
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(total(&[]), "4");
    assert_eq!(total(&["--spec", &spec]), "3");
}

/// A Mixpanel or PostHog export in two files (JSON read into memory, then combined) gives the
/// sessions of the same export in one file. DataFusion's leaf-expression pushdown moved the
/// sources' `json_get_str` through the union and failed ("... which would be ambiguous").
#[test]
fn a_json_export_in_two_files_gives_the_sessions_of_one() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("mixpanel.ndjson", vec![]),
        ("posthog.ndjson", vec!["--session-source", "sdk"]),
    ] {
        let whole = format!("tests/fixtures/sources/{name}");
        let text = std::fs::read_to_string(common::root().join(&whole)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (first, second) = lines.split_at(lines.len() / 2);
        let folder = dir.path().join(name.replace('.', "-"));
        std::fs::create_dir(&folder).unwrap();
        file(&folder, "part-1.ndjson", &format!("{}\n", first.join("\n")));
        file(
            &folder,
            "part-2.ndjson",
            &format!("{}\n", second.join("\n")),
        );
        let mut one = vec!["sessions", whole.as_str()];
        one.extend(&extra);
        let folder = folder.to_str().unwrap().to_string();
        let mut two = vec!["sessions", folder.as_str()];
        two.extend(&extra);
        assert_eq!(normalized(&ok(&two)), normalized(&ok(&one)), "{name}");
    }
}

/// `--print-sql` reads `events` as the command prepared it (the source mapped, the identities
/// applied): `query` with the same flags runs it to the same rows. A Segment export (two
/// identities, so an `actor` column), `--actor a,b`, `--stitch`, and a Mixpanel export's chart.
/// Before `query` took `--actor` and `--stitch` and applied a source's identities, the first
/// failed with "No field named actor".
#[test]
fn printed_sql_runs_through_query_with_the_same_flags() {
    let dir = tempfile::tempdir().unwrap();
    let segment = "tests/fixtures/sources/segment.ndjson";
    let mixpanel = "tests/fixtures/sources/mixpanel.ndjson";
    let cases: [(&str, &str, &[&str]); 5] = [
        ("sessions", segment, &[]),
        ("sessions", segment, &["--actor", "userId,anonymousId"]),
        ("sessions", segment, &["--stitch", "anonymousId=userId"]),
        ("annotate", segment, &["--stitch", "anonymousId=userId"]),
        ("chart", mixpanel, &["--source", "mixpanel"]),
    ];
    for (i, (command, input, flags)) in cases.into_iter().enumerate() {
        let mut args = vec![command, input, "--format", "csv"];
        if command == "chart" {
            args.extend(["--interval", "day"]);
        }
        args.extend_from_slice(flags);
        let direct = normalized(&ok(&args));
        args.push("--print-sql");
        let sql = ok(&args);
        let path = dir.path().join(format!("{i}.sql"));
        std::fs::write(&path, &sql).unwrap();
        let mut query = vec![
            "query",
            input,
            "-f",
            path.to_str().unwrap(),
            "--format",
            "csv",
        ];
        query.extend_from_slice(flags);
        let mut through_query = normalized(&ok(&query));
        let mut direct = direct;
        if command == "chart" {
            through_query = through_query.iter().map(|l| rounded(l)).collect();
            direct = direct.iter().map(|l| rounded(l)).collect();
        }
        assert!(direct.len() > 1, "{command} {flags:?}: {direct:?}");
        assert_eq!(through_query, direct, "{command} {flags:?}");
    }
    let message = fails(&["query", "SELECT 1", "--actor", "a,b"], "PATH");
    assert!(message.contains("--actor"), "{message}");
}

/// Found by a newcomer run: `query --actor` with one column that does not exist was accepted, and
/// `--source mixpanel` on a Segment export read every time as null without a word. Now the first
/// is one sentence and the second a note naming the source the columns fit.
#[test]
fn a_missing_actor_in_query_and_a_source_that_fits_another_export() {
    let message = fails(
        &["query", SAMPLE, "--actor", "nosuch", "SELECT 1"],
        "no column 'nosuch'",
    );
    assert!(message.contains("--actor"), "{message}");
    let out = common::sessionize(&[
        "query",
        "tests/fixtures/sources/segment.ndjson",
        "--source",
        "mixpanel",
        "SELECT count(*) FROM events",
    ]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "looks like a Segment export (--source segment), but is read as --source mixpanel"
        ),
        "{said}"
    );
}

/// One visit that logs in midway, in each of the seven shapes, worked out by hand. Device `dv`
/// browses anonymously at 10:00 and 10:05, logs in as `uv` at 10:10 and browses at 10:20, all in
/// one SDK session where the shape has one. With the user id, else the device, as the actor: two
/// sessions, dv 10:00-10:05 and uv 10:10-10:20 (Amplitude's shapes with `--actor
/// user_id,device_id`; their default actor, the user id, leaves the anonymous events out).
/// Stitched (`--stitch device_id=user_id`): one session of uv, 10:00-10:20, 4 events, in every
/// shape. SDK sessions: one of 4 events where the key is the device's (GA4, Snowplow, PostHog),
/// and Amplitude's once stitched.
#[test]
fn a_visit_that_logs_in_midway_in_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    // (time, identified)
    let visit = [
        ("10:00", false),
        ("10:05", false),
        ("10:10", true),
        ("10:20", true),
    ];
    let mut shapes: Vec<(&str, String, &[&str])> = vec![];
    let lines = |f: &dyn Fn(usize, &str, bool) -> String| {
        visit
            .iter()
            .enumerate()
            .map(|(i, (t, known))| f(i, t, *known))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let json_user = |known: bool| if known { "\"uv\"" } else { "null" };
    shapes.push((
        "amplitude.json",
        lines(&|i, t, known| {
            format!(
                "{{\"user_id\":{},\"device_id\":\"dv\",\"event_time\":\"2026-01-05 {t}:00.000000\",\"event_type\":\"view\",\"session_id\":1767607200000,\"$insert_id\":\"i{i}\",\"event_properties\":{{}}}}",
                json_user(known)
            )
        }),
        &["--actor", "user_id,device_id"],
    ));
    shapes.push((
        "fivetran.csv",
        "id,_insert_id,_fivetran_synced,event_time,event_type,user_id,device_id,session_id\n"
            .to_string()
            + &lines(&|i, t, known| {
                format!(
                    "e{i},i{i},2026-01-06 00:00:00,2026-01-05 {t}:00.000,view,{},dv,1767607200000",
                    if known { "uv" } else { "" }
                )
            }),
        &["--actor", "user_id,device_id"],
    ));
    shapes.push((
        "segment.ndjson",
        lines(&|i, t, known| {
            format!(
                "{{\"type\":\"track\",\"event\":\"view\",\"userId\":{},\"anonymousId\":\"dv\",\"timestamp\":\"2026-01-05T{t}:00.000Z\",\"messageId\":\"m{i}\",\"properties\":{{}}}}",
                json_user(known)
            )
        }),
        &[],
    ));
    shapes.push((
        "mixpanel.ndjson",
        lines(&|i, t, known| {
            let secs = 1_767_607_200 + 60 * t[3..].parse::<i64>().unwrap();
            let who = if known {
                "\"distinct_id\":\"uv\",\"$user_id\":\"uv\""
            } else {
                "\"distinct_id\":\"$device:dv\""
            };
            format!(
                "{{\"event\":\"view\",\"properties\":{{\"time\":{secs},{who},\"$device_id\":\"dv\",\"$insert_id\":\"m{i}\"}}}}"
            )
        }),
        &[],
    ));
    shapes.push((
        "posthog.ndjson",
        lines(&|i, t, known| {
            format!(
                "{{\"uuid\":\"p{i}\",\"event\":\"view\",\"distinct_id\":\"{}\",\"timestamp\":\"2026-01-05T{t}:00+00:00\",\"properties\":{{\"$device_id\":\"dv\",\"$session_id\":\"019b8d99-6900-7000-8000-019b8d996900\"}}}}",
                if known { "uv" } else { "dv" }
            )
        }),
        &[],
    ));
    shapes.push((
        "snowplow.csv",
        "event_id,derived_tstamp,collector_tstamp,event_name,user_id,domain_userid,domain_sessionid,domain_sessionidx\n"
            .to_string()
            + &lines(&|i, t, known| {
                format!(
                    "e{i},2026-01-05 {t}:00,2026-01-05 {t}:01,view,{},dv,s1,1",
                    if known { "uv" } else { "" }
                )
            }),
        &[],
    ));
    let mut paths: Vec<(String, &[&str], bool)> = shapes
        .into_iter()
        .map(|(name, text, extra)| {
            let sdk = !matches!(name, "segment.ndjson" | "mixpanel.ndjson");
            (file(dir.path(), name, &text), extra, sdk)
        })
        .collect();
    // GA4 as Parquet, from the Segment shape's events.
    let ga4 = dir.path().join("ga4.parquet");
    ok(&[
        "query",
        &paths[2].0,
        "SELECT CAST(event_time AS BIGINT) AS event_timestamp, event_type AS event_name, \
         make_array(named_struct('key', 'ga_session_id', 'value', named_struct('string_value', \
         CAST(NULL AS VARCHAR), 'int_value', 1767607200))) AS event_params, user_id, \
         device_id AS user_pseudo_id FROM events",
        "--output",
        ga4.to_str().unwrap(),
    ]);
    paths.push((ga4.to_str().unwrap().to_string(), &[], true));
    let two = [
        "dv,2,2026-01-05T10:00:00Z,2026-01-05T10:05:00Z",
        "uv,2,2026-01-05T10:10:00Z,2026-01-05T10:20:00Z",
    ];
    let one = ["uv,4,2026-01-05T10:00:00Z,2026-01-05T10:20:00Z"];
    for (path, extra, sdk) in &paths {
        let run = |more: &[&str]| {
            let mut args = vec!["sessions", path.as_str(), "--format", "csv"];
            args.extend_from_slice(more);
            session_rows(&args, 4)
        };
        assert_eq!(run(extra), two, "{path}");
        assert_eq!(
            run(&["--stitch", "device_id=user_id"]),
            one,
            "{path} stitched"
        );
        if *sdk {
            let by_device = ["dv,4,2026-01-05T10:00:00Z,2026-01-05T10:20:00Z"];
            let got = run(&["--session-source", "sdk"]);
            if path.contains("amplitude") || path.contains("fivetran") {
                let stitched = run(&["--session-source", "sdk", "--stitch", "device_id=user_id"]);
                assert_eq!(stitched, one, "{path} SDK stitched");
            } else {
                assert_eq!(got, by_device, "{path} SDK");
            }
        }
    }
}

/// A visit that logs in midway is one SDK session in GA4 and Snowplow, whose session keys belong to
/// the device (found by an audit: with the user id, else the device, as the actor, the session was
/// split into the anonymous part and the identified part).
#[test]
fn an_sdk_session_with_a_login_midway_is_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let csv = file(
        dir.path(),
        "snowplow.csv",
        "domain_userid,user_id,network_userid,derived_tstamp,collector_tstamp,event_name,\
         domain_sessionid,domain_sessionidx,page_url\n\
         d9,,n9,2026-01-05 10:00:00,2026-01-05 10:00:01,page_view,s9,1,/a\n\
         d9,,n9,2026-01-05 10:05:00,2026-01-05 10:05:01,page_view,s9,1,/b\n\
         d9,u9,n9,2026-01-05 10:10:00,2026-01-05 10:10:01,login,s9,1,/c\n",
    );
    let table = ok(&[
        "sessions",
        &csv,
        "--session-source",
        "sdk",
        "--format",
        "csv",
    ]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    let header = table.lines().next().unwrap();
    let events = header
        .split(',')
        .position(|h| h == "events_per_session")
        .unwrap();
    assert_eq!(rows[0].split(',').nth(events), Some("3"), "{table}");
}

/// Parquet files whose other columns differ in type are read together, as `--into` reads them
/// one by one (newcomer audit: "conflicting column types", naming no file): a `user_id` of int32
/// in one file and int64 or text in another is one actor. Types no column can hold both of fail
/// naming the column, both types and both files.
#[test]
fn a_column_of_other_types_in_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, user: &str, extra: &str, minute: i64| {
        let path = dir.path().join(name);
        let sql = format!(
            "SELECT {user} AS user_id, 'view' AS event_type, {extra} AS extra, \
             arrow_cast(to_timestamp(1767607200 + 60 * {minute}), \
             'Timestamp(Microsecond, Some(\"UTC\"))') AS event_time"
        );
        ok(&["query", &sql, "--output", path.to_str().unwrap()]);
        path.to_str().unwrap().to_string()
    };
    let int32 = write("a.parquet", "arrow_cast(7, 'Int32')", "1", 0);
    let int64 = write("b.parquet", "arrow_cast(7, 'Int64')", "1", 5);
    let text = write("c.parquet", "'7'", "1", 10);
    let one = ["7,3,2026-01-05T10:00:00Z,2026-01-05T10:10:00Z"];
    assert_eq!(
        session_rows(&["sessions", &int32, &int64, &text, "--format", "csv"], 4),
        one
    );
    let nested = write("d.parquet", "'7'", "named_struct('a', 1)", 15);
    let err = fails(
        &["sessions", &int32, &nested, "--format", "csv"],
        "conflicting column types: column 'extra' is Int64 in",
    );
    assert!(
        err.contains("a.parquet") && err.contains("d.parquet") && err.contains("Struct"),
        "{err}"
    );
}

/// The files of one export whose source time column differs in type are read together, as the
/// commands' own `event_time` is (found by a newcomer's audit of issue 16: "conflicting column
/// types"): Segment's `timestamp` in ns with a zone in one Parquet file and in ms without one in
/// the other (and `received_at` likewise), PostHog's `timestamp` as text in one and a timestamp in
/// the other, Segment CSVs with ISO text in one and epoch milliseconds in the other. An
/// unparsable value names the file, the line and the export's column.
#[test]
fn a_source_time_column_that_differs_between_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| {
        let path = dir.path().join(name);
        ok(&["query", sql, "--output", path.to_str().unwrap()]);
        path.to_str().unwrap().to_string()
    };
    let segment = |t: &str, unit: &str| {
        format!(
            "SELECT 'm' || e AS message_id, 'a1' AS anonymous_id, 'u1' AS user_id, 'view' AS event, \
             arrow_cast(to_timestamp(1767607200 + 300 * e), '{t}') AS timestamp, \
             arrow_cast(to_timestamp(1767607201 + 300 * e), '{unit}') AS received_at \
             FROM (VALUES (0), (1)) AS v(e)"
        )
    };
    let a = write(
        "a.parquet",
        &segment(
            "Timestamp(Nanosecond, Some(\"UTC\"))",
            "Timestamp(Nanosecond, None)",
        ),
    );
    let b = write(
        "b.parquet",
        &segment(
            "Timestamp(Millisecond, None)",
            "Timestamp(Millisecond, None)",
        )
        .replace("(0), (1)", "(2), (3)"),
    );
    let one = ["u1,4,2026-01-05T10:00:00Z,2026-01-05T10:15:00Z"];
    assert_eq!(
        session_rows(&["sessions", &a, &b, "--format", "csv"], 4),
        one
    );
    let posthog = |name: &str, time: &str, uuid: &str| {
        write(
            name,
            &format!(
                "SELECT '{uuid}' AS uuid, 'view' AS event, 'u1' AS distinct_id, {time} AS timestamp, \
                 '{{}}' AS properties"
            ),
        )
    };
    let c = posthog("c.parquet", "'2026-01-05T12:00:00+02:00'", "p1");
    let d = posthog(
        "d.parquet",
        "arrow_cast(TIMESTAMP '2026-01-05 10:10:00', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        "p2",
    );
    assert_eq!(
        session_rows(&["sessions", &c, &d, "--format", "csv"], 4),
        ["u1,2,2026-01-05T10:00:00Z,2026-01-05T10:10:00Z"]
    );
    let header = "type,event,user_id,anonymous_id,timestamp,message_id\n";
    let e = file(
        dir.path(),
        "e.csv",
        &format!("{header}track,a,u1,d,2026-01-05T10:00:00Z,m1\n"),
    );
    let f = file(
        dir.path(),
        "f.csv",
        &format!("{header}track,b,u1,d,1767607800000,m2\n"),
    );
    assert_eq!(
        session_rows(&["sessions", &e, &f, "--format", "csv"], 4),
        ["u1,2,2026-01-05T10:00:00Z,2026-01-05T10:10:00Z"]
    );
    let bad = file(
        dir.path(),
        "bad.ndjson",
        "{\"type\":\"track\",\"event\":\"a\",\"userId\":\"u1\",\"anonymousId\":\"d\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"messageId\":\"m1\"}\n\
         {\"type\":\"track\",\"event\":\"b\",\"userId\":\"u1\",\"anonymousId\":\"d\",\"timestamp\":\"garbage\",\"messageId\":\"m2\"}\n",
    );
    fails(
        &["sessions", &bad],
        "bad.ndjson' line 2: cannot parse the time 'garbage' in column 'timestamp'",
    );
}

/// Mixpanel's `properties.time` as ISO-8601 text, epoch seconds with a fraction or epoch
/// milliseconds all read (audit: text times were null and the events silently left out); an
/// unparsable one names the column. A field that is text in some lines and a number in others
/// (a user id sent as "42" and 42) is read as text (audit: Arrow's reader refused the file).
#[test]
fn mixpanel_times_of_every_kind_and_fields_of_two_types() {
    let dir = tempfile::tempdir().unwrap();
    let times = file(
        dir.path(),
        "times.ndjson",
        "{\"event\":\"a\",\"properties\":{\"time\":\"2026-01-05T10:00:00Z\",\"distinct_id\":\"u1\"}}\n\
         {\"event\":\"b\",\"properties\":{\"time\":1767607800.5,\"distinct_id\":\"u1\"}}\n\
         {\"event\":\"c\",\"properties\":{\"time\":1767607900000,\"distinct_id\":\"u1\"}}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &times, "--format", "csv"], 4),
        ["u1,3,2026-01-05T10:00:00Z,2026-01-05T10:11:40Z"]
    );
    let bad = file(
        dir.path(),
        "bad.ndjson",
        "{\"event\":\"b\",\"properties\":{\"time\":\"nope\",\"distinct_id\":\"u1\"}}\n",
    );
    fails(
        &["sessions", &bad, "--source", "mixpanel"],
        "'column properties.time': cannot parse the time 'nope'",
    );
    let mixed = file(
        dir.path(),
        "mixed.ndjson",
        "{\"type\":\"track\",\"event\":\"a\",\"userId\":\"42\",\"anonymousId\":\"d\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"messageId\":\"m1\"}\n\
         {\"type\":\"track\",\"event\":\"b\",\"userId\":42,\"anonymousId\":\"d\",\"timestamp\":\"2026-01-05T10:10:00Z\",\"messageId\":\"m2\"}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &mixed, "--format", "csv"], 4),
        ["42,2,2026-01-05T10:00:00Z,2026-01-05T10:10:00Z"]
    );
}

/// The audit's smaller findings: `--session-id-col` names the session id of a source without one
/// of its own (Segment's `context_session_id`); `--compat dbt` refuses `--session-source` (it
/// takes the SDK's sessions) and names the events it leaves out for a null time; Fivetran's table
/// is named on stderr when recognised; `--row events:` without a name is refused.
#[test]
fn session_id_columns_compat_notes_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.parquet");
    ok(&[
        "query",
        "SELECT 'm' || e AS message_id, 'a1' AS anonymous_id, 'u1' AS user_id, 'view' AS event, \
         arrow_cast(to_timestamp(1767607200 + 3000 * e), 'Timestamp(Microsecond, Some(\"UTC\"))') AS timestamp, \
         7 AS context_session_id FROM (VALUES (0), (1)) AS v(e)",
        "--output",
        path.to_str().unwrap(),
    ]);
    let path = path.to_str().unwrap();
    // One SDK session of two events 50 minutes apart (derived sessions would be two).
    assert_eq!(
        session_rows(
            &[
                "sessions",
                path,
                "--session-source",
                "sdk",
                "--session-id-col",
                "context_session_id",
                "--format",
                "csv"
            ],
            4
        ),
        ["u1,2,2026-01-05T10:00:00Z,2026-01-05T10:50:00Z"]
    );
    fails(
        &["sessions", path, "--session-source", "sdk"],
        "or name a column of the export that holds one with --session-id-col",
    );
    let both = common::sessionize(&[
        "sessions",
        "tests/golden/events.csv",
        "--compat",
        "dbt",
        "--session-source",
        "derived",
    ]);
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains(
            "'--compat <COMPAT>' cannot be used with '--session-source <SESSION_SOURCE>'"
        )
    );
    let untimed = file(
        dir.path(),
        "untimed.csv",
        "user_id,event_id,event_type,event_time,session_id,insert_id,client_upload_time\n\
         u1,1,a,2026-01-05 10:00:00,5,i1,2026-01-05 10:00:01\n\
         u1,2,b,,5,i2,2026-01-05 10:00:01\n",
    );
    let out = common::sessionize(&["sessions", &untimed, "--compat", "dbt"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--compat dbt left out 1 event whose event_time is null"),
        "{said}"
    );
    let out = common::sessionize(&["sessions", "tests/fixtures/sources/amplitude_fivetran.csv"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("(--source amplitude-fivetran;"), "{said}");
    // Amplitude's export is the commands' own shape: read without a note.
    let out = common::sessionize(&["sessions", "tests/fixtures/sources/amplitude.zip"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("reading"),
        "the commands' own shape is read without a note"
    );
    fails(
        &["chart", "tests/golden/events.csv", "--row", "events:"],
        "with an event name after the colon",
    );
}

/// A second newcomer audit of issue 16, each case red before its fix: a Parquet file keeping its
/// times in milliseconds beside a CSV file (converted to µs) gave sessions 1,000 times too long and
/// a chart without them; `annotate` wrote a folder's Parquet rows before its CSV and JSON rows;
/// GA4's BigQuery JSON export (`event_params` as a JSON list, INT64 as text) failed in `ga4_param`
/// and `geo.city`; a gzipped CSV was read as plain text; an empty user id was a user.
#[test]
fn mixed_formats_gzipped_csv_ga4_json_and_empty_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    ok(&[
        "query",
        "SELECT 'u1' AS user_id, arrow_cast(to_timestamp(t), 'Timestamp(Millisecond, None)') AS event_time, e AS event_type \
         FROM (VALUES (1767607200, 'b'), (1767608400, 'c')) AS v(t, e)",
        "--output",
        mixed.join("b.parquet").to_str().unwrap(),
    ]);
    file(
        &mixed,
        "a.csv",
        "user_id,event_time,event_type\nu1,2026-01-05 10:30:00,a\n",
    );
    file(
        &mixed,
        "c.ndjson",
        "{\"user_id\":\"u1\",\"event_time\":\"2026-01-05 10:40:00\",\"event_type\":\"d\"}\n",
    );
    let mixed = mixed.to_str().unwrap();
    let table = common::csv_table(&ok(&["sessions", mixed, "--format", "csv"]));
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0]["session_length_seconds"], "2400.0");
    assert_eq!(table[0]["session_id"], "1767607200000");
    let chart = common::csv_table(&ok(&[
        "chart",
        mixed,
        "--interval",
        "total",
        "--format",
        "csv",
    ]));
    assert_eq!(chart[0]["A_total_sessions"], "1");
    // By path: a.csv, b.parquet (two rows), c.ndjson.
    let order: Vec<String> = common::csv_table(&ok(&["annotate", mixed, "--format", "csv"]))
        .iter()
        .map(|r| r["event_type"].clone())
        .collect();
    assert_eq!(order, ["a", "b", "c", "d"]);

    let ga4 = file(
        dir.path(),
        "ga4.ndjson",
        "{\"event_timestamp\":\"1767607200000000\",\"event_name\":\"page_view\",\"event_params\":[{\"key\":\"page_location\",\"value\":{\"string_value\":\"https://x/a\"}},{\"key\":\"ga_session_id\",\"value\":{\"int_value\":\"1767607200\"}}],\"user_id\":null,\"user_pseudo_id\":\"123.456\",\"geo\":{\"city\":\"Tokyo\"}}\n",
    );
    assert_eq!(
        session_rows(
            &[
                "sessions",
                &ga4,
                "--session-source",
                "sdk",
                "--format",
                "csv"
            ],
            4
        ),
        ["123.456,1,2026-01-05T10:00:00Z,2026-01-05T10:00:00Z"]
    );
    let by = common::csv_table(&ok(&[
        "chart",
        &ga4,
        "--group-by",
        "event.page_location",
        "--group-by",
        "geo.city",
        "--interval",
        "total",
        "--format",
        "csv",
    ]));
    assert_eq!(
        (
            by[0]["event.page_location"].as_str(),
            by[0]["geo.city"].as_str()
        ),
        ("https://x/a", "Tokyo")
    );

    let gz = dir.path().join("events.csv.gz");
    {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        encoder
            .write_all(b"user_id,event_time,event_type\nu1,2026-01-05 10:00:00,a\nu1,2026-01-05 10:10:00,b\n")
            .unwrap();
        encoder.finish().unwrap();
    }
    assert_eq!(
        session_rows(&["sessions", gz.to_str().unwrap(), "--format", "csv"], 4),
        ["u1,2,2026-01-05T10:00:00Z,2026-01-05T10:10:00Z"]
    );

    let empty = file(
        dir.path(),
        "empty.ndjson",
        "{\"type\":\"track\",\"event\":\"a\",\"userId\":\"\",\"anonymousId\":\"anon1\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"messageId\":\"1\"}\n\
         {\"type\":\"track\",\"event\":\"a\",\"userId\":\"\",\"anonymousId\":\"anon2\",\"timestamp\":\"2026-01-05T10:05:00Z\",\"messageId\":\"2\"}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &empty, "--format", "csv"], 2),
        ["anon1,1", "anon2,1"]
    );
}

/// Text times past 2262-04-11 (where i64 nanoseconds end; `9999-12-31` is a common far-future
/// sentinel) read as any other (audit: JSON said "cannot parse the time").
#[test]
fn text_times_past_2262_read() {
    let dir = tempfile::tempdir().unwrap();
    let json = file(
        dir.path(),
        "far.ndjson",
        "{\"user_id\":\"u1\",\"event_time\":\"9999-12-31T23:59:59Z\",\"event_type\":\"a\"}\n\
         {\"user_id\":\"u1\",\"event_time\":\"2262-04-12 00:00:00\",\"event_type\":\"a\"}\n",
    );
    assert_eq!(
        session_rows(&["sessions", &json, "--format", "csv"], 3),
        // Sorted as text, by the session id first: "u1-253..." before "u1-9...".
        ["u1,1,9999-12-31T23:59:59Z", "u1,1,2262-04-12T00:00:00Z"]
    );
}

/// GA4's `ga_session_id` stored as a double (or as text) is read as the integer it holds, and
/// text that is no number is out of session, rather than stopping every command with a cast error
/// (audit of issue 16: "Cannot cast string '1767603600.0' to value of Int64 type").
#[test]
fn ga4_session_ids_of_other_value_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ga4.parquet");
    ok(&[
        "query",
        "SELECT 1767603600000000 + 60000000 * e AS event_timestamp, 'page_view' AS event_name, \
         CAST(NULL AS VARCHAR) AS user_id, 'p1' AS user_pseudo_id, \
         make_array(named_struct('key', 'ga_session_id', 'value', named_struct('string_value', \
           CASE WHEN e = 2 THEN 'abc' END, 'double_value', CASE WHEN e < 2 THEN 1767603600.0 END))) AS event_params \
         FROM (VALUES (0), (1), (2)) AS v(e)",
        "--output",
        path.to_str().unwrap(),
    ]);
    let path = path.to_str().unwrap();
    let sdk = common::csv_table(&ok(&[
        "sessions",
        path,
        "--session-source",
        "sdk",
        "--format",
        "csv",
    ]));
    assert_eq!(sdk.len(), 1, "{sdk:?}");
    assert_eq!(sdk[0]["session_id"], "1767603600");
    assert_eq!(sdk[0]["events_per_session"], "2");
    ok(&["annotate", path, "--format", "csv"]);
}
