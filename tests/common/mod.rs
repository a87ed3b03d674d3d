//! Helpers shared by the end-to-end tests: run the binary from the workspace root, check its exit
//! code and message, and compare CSV tables whose row order is not part of the contract.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root, where `data/`, `sql/` and `tests/` are.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `sessionize` from the workspace root.
pub fn sessionize(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionize"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run sessionize")
}

/// Runs and expects success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    expect_ok(args, sessionize(args))
}

/// Checks that a run succeeded; returns its stdout.
pub fn expect_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "sessionize {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and expects exit code 1 with one `error:` line containing `needle`; returns that line.
pub fn fails(args: &[&str], needle: &str) -> String {
    expect_failure(args, sessionize(args), needle)
}

/// Checks that a run failed with exit code 1 and one `error:` line containing `needle`.
pub fn expect_failure(args: &[&str], out: Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "sessionize {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// The header, then the rows sorted.
pub fn normalized(csv: &str) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    if lines.len() > 1 {
        lines[1..].sort();
    }
    lines
}

/// A golden table of `tests/golden/`, normalized.
pub fn golden(name: &str) -> Vec<String> {
    normalized(&std::fs::read_to_string(root().join("tests/golden").join(name)).unwrap())
}

/// Splits one CSV line into fields (quotes with doubled quotes inside, as arrow writes them).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![];
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A CSV table as rows of (column, value) maps.
pub fn csv_table(csv: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().unwrap_or_default());
    lines
        .map(|line| header.iter().cloned().zip(csv_fields(line)).collect())
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// Writes `text` to the file `name` in `dir`; returns its path.
pub fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Checks the data files of the Delta sessions table at `table` (every `.parquet` file outside
/// its `_` folders): laid out by `sessionize::sessions::delta_table_properties`: `unique_session_id`
/// Snappy-compressed, as delta-rs writes, without a dictionary or statistics;
/// `session_started_at` delta-encoded and uncompressed. Returns how many files it checked.
pub fn check_sessions_data_files(table: &Path) -> usize {
    use datafusion::parquet::basic::{Compression, Encoding};
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a table folder") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() && !name.starts_with('_') {
                walk(&path, found);
            } else if name.ends_with(".parquet") {
                found.push(path);
            }
        }
    }
    let mut files = vec![];
    walk(table, &mut files);
    for path in &files {
        let reader = SerializedFileReader::new(std::fs::File::open(path).expect("a data file"))
            .expect("a Parquet file");
        for group in reader.metadata().row_groups() {
            let chunk = |name: &str| {
                group
                    .columns()
                    .iter()
                    .find(|c| c.column_path().string() == name)
                    .unwrap_or_else(|| panic!("{path:?}: no column {name}"))
            };
            let column = chunk("unique_session_id");
            assert_eq!(column.compression(), Compression::SNAPPY, "{path:?}");
            let encodings: Vec<Encoding> = column.encodings().collect();
            assert!(
                !encodings.contains(&Encoding::RLE_DICTIONARY)
                    && !encodings.contains(&Encoding::PLAIN_DICTIONARY),
                "{path:?}: {encodings:?}"
            );
            assert!(column.statistics().is_none(), "{path:?}");
            // The times delta-encoded and left uncompressed (`sessions::delta_table_properties`).
            let started = chunk("session_started_at");
            assert_eq!(started.compression(), Compression::UNCOMPRESSED, "{path:?}");
            assert!(
                started
                    .encodings()
                    .any(|e| e == Encoding::DELTA_BINARY_PACKED),
                "{path:?}: {:?}",
                started.encodings().collect::<Vec<_>>()
            );
        }
    }
    files.len()
}
