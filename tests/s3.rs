//! Object stores end to end: a real S3-compatible server (moto's, installed from PyPI by
//! `tests/s3/setup.sh` into a private virtual environment) on 127.0.0.1, reached through the standard
//! AWS environment variables. Inputs are read from and outputs written to `s3://` URLs by the binary.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{expect_failure, expect_ok, free_port, golden, normalized, root};

/// The moto server, stopped when dropped (also when the test fails).
struct Server {
    child: Child,
    port: u16,
    bin: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn start_server() -> Server {
    let setup = Command::new("bash")
        .arg(root().join("tests/s3/setup.sh"))
        .output()
        .expect("run tests/s3/setup.sh");
    assert!(
        setup.status.success(),
        "installing moto failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&setup.stdout).trim());
    let port = free_port();
    let child = Command::new(bin.join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let server = Server { child, port, bin };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

impl Server {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs Python with boto3 against the server.
    fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.endpoint()
        );
        let out = Command::new(self.bin.join("python"))
            .args(["-c", &script])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sessionize(&self, args: &[&str]) -> Output {
        self.sessionize_at(&self.endpoint(), args)
    }

    fn sessionize_at(&self, endpoint: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sessionize"))
            .args(args)
            .current_dir(root())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .expect("run sessionize")
    }

    fn ok(&self, args: &[&str]) -> String {
        expect_ok(args, self.sessionize(args))
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self.boto(&format!(
            "for o in s3.list_objects_v2(Bucket='events', Prefix='{prefix}').get('Contents', []): print(o['Key'])"
        ));
        listed.lines().map(str::to_string).collect()
    }
}

#[test]
fn sessions_from_and_to_s3() {
    let server = start_server();
    let golden_dir = root().join("tests/golden");
    server.boto(&format!(
        "s3.create_bucket(Bucket='events')\n\
         s3.upload_file('{csv}', 'events', 'raw/events.csv')\n\
         s3.upload_file('{json}', 'events', 'raw/json/events.json')",
        csv = golden_dir.join("events.csv").display(),
        json = golden_dir.join("events.json").display(),
    ));

    // Writing Parquet to S3 (a multipart upload) and reading it back through a glob.
    server.ok(&[
        "query",
        "tests/golden/events.csv",
        "SELECT * REPLACE (arrow_cast(event_time, 'Timestamp(µs, \"UTC\")') AS event_time) FROM events",
        "--output",
        "s3://events/parquet/part-0.parquet",
    ]);
    let from_parquet = server.ok(&["sessions", "s3://events/parquet/*.parquet"]);
    assert_eq!(normalized(&from_parquet), golden("derived.csv"));

    // CSV and JSON objects, SDK sessions, a folder URL.
    let from_csv = server.ok(&[
        "sessions",
        "s3://events/raw/events.csv",
        "--session-source",
        "sdk",
    ]);
    assert_eq!(normalized(&from_csv), golden("sdk.csv"));
    let from_json = server.ok(&["sessions", "s3://events/raw/json/", "--compat", "dbt"]);
    assert_eq!(normalized(&from_json), golden("dbt.csv"));

    // The sessions table written to S3, then read back with SQL.
    server.ok(&[
        "sessions",
        "s3://events/raw/events.csv",
        "--output",
        "s3://events/out/sessions.parquet",
    ]);
    let back = server.ok(&[
        "query",
        "--table",
        "s=s3://events/out/sessions.parquet",
        "SELECT * FROM s",
        "--format",
        "csv",
    ]);
    assert_eq!(normalized(&back), golden("derived.csv"));

    // A query that fails while writing leaves no object behind.
    let failed = server.sessionize(&[
        "query",
        "s3://events/parquet/part-0.parquet",
        "SELECT event_id / (event_id - 15) FROM events",
        "--output",
        "s3://events/out/failed.csv",
    ]);
    expect_failure(&[], failed, "Divide by zero");
    assert_eq!(
        server.keys("out/"),
        vec!["out/sessions.parquet".to_string()]
    );

    // A missing bucket and an unreachable endpoint: one sentence, exit code 1.
    let missing = server.sessionize(&["sessions", "s3://nobucket/events.csv"]);
    assert_eq!(missing.status.code(), Some(1));
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.starts_with("error: cannot list 's3://nobucket/events.csv'"),
        "{message}"
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");

    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = server.sessionize_at(&closed, &["sessions", "s3://events/raw/events.csv"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let message = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        message.starts_with("error: cannot list 's3://events/raw/events.csv'"),
        "{message}"
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
}

/// Delta tables on S3: `sessions --output delta:s3://...` (a second run is version 1), read back by
/// `query --table`; `sessions --into` and `annotate --into` over two deliveries equal the full runs;
/// the same delivery again changes nothing. Each commit is one object created only if absent
/// (S3's `If-None-Match`, which moto honours).
#[test]
fn delta_tables_on_s3_kept_up_to_date() {
    let server = start_server();
    server.boto("s3.create_bucket(Bucket='events')");
    let dir = tempfile::tempdir().unwrap();
    let part = |name: &str, condition: &str| {
        let path = dir.path().join(name).to_str().unwrap().to_string();
        server.ok(&[
            "query",
            "tests/golden/events.csv",
            &format!("SELECT * FROM events WHERE {condition}"),
            "--output",
            &path,
        ]);
        path
    };
    let first = part("first.csv", "event_time < TIMESTAMP '2026-01-05 11:00:00'");
    let second = part(
        "second.csv",
        "event_time >= TIMESTAMP '2026-01-05 11:00:00' OR event_time IS NULL",
    );
    let table = "delta:s3://events/tables/sessions";
    server.ok(&["sessions", "tests/golden/events.csv", "--output", table]);
    let out = server.sessionize(&["sessions", "tests/golden/events.csv", "--output", table]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("committed version 1"), "{said}");
    // A Delta table on the store, read back as sorted CSV rows.
    let read_back = |table: &str| {
        let read = format!("t={table}");
        normalized(&server.ok(&[
            "query",
            "--table",
            &read,
            "--format",
            "csv",
            "SELECT * FROM t",
        ]))
    };
    assert_eq!(read_back(table), golden("derived.csv"));

    let sessions = "delta:s3://events/tables/incremental";
    let events = "delta:s3://events/tables/annotated";
    for delivery in [&second, &first] {
        server.ok(&["sessions", delivery, "--into", sessions]);
        server.ok(&["annotate", delivery, "--into", events]);
    }
    let again = server.sessionize(&["annotate", &first, "--into", events]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing new"));
    assert_eq!(read_back(sessions), golden("derived.csv"));
    let full = dir
        .path()
        .join("full.parquet")
        .to_str()
        .unwrap()
        .to_string();
    server.ok(&["annotate", &first, &second, "--output", &full]);
    let read = format!("t={events}");
    for sql in [
        "SELECT count(*) FROM (SELECT * EXCLUDE (_sessionize_file, _sessionize_day) FROM t \
         EXCEPT ALL SELECT * FROM events)",
        "SELECT count(*) FROM (SELECT * FROM events EXCEPT ALL \
         SELECT * EXCLUDE (_sessionize_file, _sessionize_day) FROM t)",
        "SELECT count(*) - 15 FROM t",
    ] {
        let out = server.ok(&["query", &full, "--table", &read, "--format", "csv", sql]);
        assert_eq!(out.lines().nth(1), Some("0"), "{sql}: {out}");
    }
    // A missing bucket, and a server that is not there: one sentence each (after the note on the
    // events left out, which comes first).
    let error_line = |out: Output| {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("note: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        errors[0].to_string()
    };
    let missing = error_line(server.sessionize(&[
        "sessions",
        "tests/golden/events.csv",
        "--output",
        "delta:s3://nobucket/x",
    ]));
    assert!(
        missing.contains("NoSuchBucket") && missing.contains("bucket 'nobucket'"),
        "{missing}"
    );
    assert!(!missing.contains("RequestId"), "{missing}");
    let gone = error_line(server.sessionize_at(
        "http://127.0.0.1:9",
        &[
            "sessions",
            "tests/golden/events.csv",
            "--output",
            "delta:s3://events/y",
        ],
    ));
    assert!(
        gone.starts_with("error: cannot reach the object store at http://127.0.0.1:9"),
        "{gone}"
    );
}
