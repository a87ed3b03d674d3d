//! Runs every `tests/slt/*.slt` file with sqllogictest against a DataFusion context with all
//! sessionize functions registered.
//!
//! Each file runs under three configurations (1 partition; 4 partitions; 4 partitions with
//! 2-row batches), since results must not depend on partitioning or batch size. Every failure is
//! printed and the run exits non-zero; `tests/slt_must_fail/` holds files with wrong expectations
//! that the harness runs first and must see fail, so a harness that cannot fail is caught.
//!
//! `cargo test --test sqllogictest -- FILTER` runs only files whose name contains FILTER.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

struct Db {
    ctx: SessionContext,
}

#[async_trait]
impl AsyncDB for Db {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: format_rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sessionize"
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = vec![];
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The queries of a file on Apache DataFusion Ballista's standalone mode (an in-process scheduler
/// and executor). Ballista cannot ship in-memory tables to executors, so each `CREATE TABLE ... AS`
/// runs in a local context and its rows are written to Parquet that the cluster reads; every other
/// statement runs on the cluster. The files' expected results are the local ones.
#[cfg(feature = "cluster")]
struct BallistaDb {
    local: SessionContext,
    cluster: SessionContext,
    dir: tempfile::TempDir,
}

#[cfg(feature = "cluster")]
#[async_trait]
impl AsyncDB for BallistaDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let words: Vec<&str> = sql.split_whitespace().take(3).collect();
        if let [create, table, name] = words.as_slice()
            && create.eq_ignore_ascii_case("CREATE")
            && table.eq_ignore_ascii_case("TABLE")
        {
            let name = name.split('(').next().unwrap_or(name).to_string();
            self.local.sql(sql).await?.collect().await?;
            let df = self.local.table(name.as_str()).await?;
            let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            let path = self.dir.path().join(format!("{name}.parquet"));
            let file = std::fs::File::create(&path)?;
            let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.close()?;
            self.cluster
                .register_parquet(&name, path.to_str().unwrap_or_default(), Default::default())
                .await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        Db {
            ctx: self.cluster.clone(),
        }
        .run(sql)
        .await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sessionize-ballista"
    }
}

#[cfg(feature = "cluster")]
async fn run_file_on_ballista(path: &Path) -> Result<(), String> {
    let config = SessionConfig::new()
        .with_target_partitions(4)
        .with_batch_size(2);
    let cluster = sessionize::cluster::standalone_context(config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let local = sessionize::context_with_config(config).map_err(|e| e.to_string())?;
    let mut runner = Runner::new(move || {
        let (local, cluster) = (local.clone(), cluster.clone());
        // Labelled so that a file can skip a query Ballista cannot run (`skipif ballista`).
        async move {
            Ok(BallistaDb {
                local,
                cluster,
                dir: tempfile::tempdir()?,
            })
        }
    });
    runner.add_label("ballista");
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string())
}

/// The configurations every file runs under: (label, target partitions, batch size).
const CONFIGS: [(&str, usize, usize); 3] = [
    ("1 partition", 1, 8192),
    ("4 partitions", 4, 8192),
    ("4 partitions, 2-row batches", 4, 2),
];

async fn run_file(path: &Path, partitions: usize, batch_size: usize) -> Result<(), String> {
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(batch_size)
        .with_information_schema(true);
    let ctx = sessionize::context_with_config(config).map_err(|e| e.to_string())?;
    let mut runner = Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok(Db { ctx }) }
    });
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string())
}

fn slt_files(folder: &Path, filter: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

fn main() {
    // Deep plans (the chart's) are serialized recursively on their way to Ballista's executors.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(32 << 20)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run_all());
}

async fn run_all() {
    // Paths inside .slt files (data/events.parquet) are relative to the workspace root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(&root).expect("workspace root");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));

    let mut passed = 0;
    let mut failed = 0;

    // The harness must be able to fail: these files hold wrong expectations on purpose.
    for path in slt_files(Path::new("tests/slt_must_fail"), None) {
        match run_file(&path, 1, 8192).await {
            Err(_) => passed += 1,
            Ok(()) => {
                failed += 1;
                println!(
                    "FAILED {}: the harness accepted a wrong expectation",
                    path.display()
                );
            }
        }
    }

    for path in slt_files(Path::new("tests/slt"), filter.as_deref()) {
        for (label, partitions, batch_size) in CONFIGS {
            match run_file(&path, partitions, batch_size).await {
                Ok(()) => {
                    passed += 1;
                    println!("ok     {} ({label})", path.display());
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED {} ({label}):\n{e}", path.display());
                }
            }
        }
        #[cfg(feature = "cluster")]
        match run_file_on_ballista(&path).await {
            Ok(()) => {
                passed += 1;
                println!("ok     {} (Ballista standalone)", path.display());
            }
            Err(e) => {
                failed += 1;
                println!("FAILED {} (Ballista standalone):\n{e}", path.display());
            }
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}
