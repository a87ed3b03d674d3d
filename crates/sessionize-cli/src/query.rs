//! `sessionize query`: SQL over event tables, with every function registered.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use sessionize::output::{self, Format};

use crate::CliError;

/// Arguments of `sessionize query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Register a table: NAME=PATH, where PATH is a Parquet file, a folder or a glob, or
    /// delta:FOLDER for a Delta table (its latest version). Repeatable.
    #[arg(long = "table", short = 't', value_name = "NAME=PATH")]
    tables: Vec<String>,
    /// Read the SQL from this file; several statements run in order.
    #[arg(long = "file", short = 'f', value_name = "FILE.sql")]
    file: Option<PathBuf>,
    /// Output format: table, csv, json, ndjson or parquet (default: from the --output extension, else
    /// table).
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
    /// Write the result to this file (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The export's shape: amplitude, amplitude-fivetran, segment, mixpanel, posthog, ga4 or
    /// snowplow (default: recognised from its columns), with PATH: `events` holds user_id, event_time,
    /// event_type, session_id, insert_id and event_properties.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// With PATH, as for `sessions`: the actor column, or several separated by commas, whose first
    /// non-null becomes a column `actor` of `events` (a source with two identities, such as
    /// Segment's user_id and anonymous_id, adds it by itself). With these flags the SQL that
    /// `sessions --print-sql` prints runs here as it ran there.
    #[arg(long, value_name = "COLUMN[,COLUMN...]")]
    actor: Option<String>,
    /// With PATH, as for `sessions`: ANONYMOUS=USER, the stitched identity as the column `actor`.
    #[arg(long, value_name = "ANONYMOUS=USER")]
    stitch: Option<String>,
    /// Number of partitions DataFusion plans for (default: the number of cores).
    #[arg(long, value_name = "N")]
    target_partitions: Option<usize>,
    #[command(flatten)]
    pub cluster: crate::ClusterArgs,
    /// `[PATH...] SQL`: optional files, folders or globs (read as `sessions` reads them),
    /// registered together as `events`, then the SQL (with --file, only the PATHs).
    #[arg(value_name = "PATH | SQL")]
    positional: Vec<String>,
}

/// The format for `output` when none was given.
fn default_format(output: Option<&PathBuf>) -> Format {
    let extension = output
        .and_then(|p| p.extension())
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some("ndjson" | "jsonl") => Format::NdJson,
        Some("parquet") => Format::Parquet,
        _ => Format::Table,
    }
}

pub async fn run(args: QueryArgs) -> Result<(), CliError> {
    let (paths, sql) = match (&args.file, args.positional.as_slice()) {
        (Some(file), paths) => {
            let sql = std::fs::read_to_string(file).map_err(|e| {
                CliError(format!(
                    "cannot read the SQL file '{}': {e}",
                    file.display()
                ))
            })?;
            (paths.to_vec(), sql)
        }
        (None, []) => {
            return Err(CliError(
                "no SQL given: pass it as an argument or with --file".into(),
            ));
        }
        (None, [paths @ .., sql]) => {
            // SQL is never one word: `query x.parquet SELECT * FROM events` (the SQL unquoted)
            // or `query a.parquet b.parquet` (no SQL) would otherwise read words as files.
            if !paths.is_empty() && !sql.trim().contains(char::is_whitespace) {
                return Err(CliError(format!(
                    "expected [PATH...] SQL, and the last argument '{sql}' is not SQL: quote the \
                     SQL as one argument"
                )));
            }
            (paths.to_vec(), sql.clone())
        }
    };

    let mut config = SessionConfig::new().with_information_schema(true);
    if let Some(n) = args.target_partitions {
        config = config.with_target_partitions(n.max(1));
    }
    let ctx = crate::context(args.cluster.cluster.as_deref(), config).await?;
    let load = sessionize::tables::LoadOptions {
        time_column: Some("event_time".into()),
        for_cluster: args.cluster.cluster.is_some(),
        sorted_by: crate::sorted_by(),
        // Columns named like sessionize's helpers can be renamed here.
        allow_reserved: true,
        ..Default::default()
    };
    if !paths.is_empty() {
        // Several files are one table, as `sessions` and `annotate` read them, so that the SQL
        // their --print-sql prints runs here over the same files.
        sessionize::tables::register_inputs(&ctx, "events", &paths, &load).await?;
        // The events as `sessions` prepares them: the source mapped, the identities applied.
        let job = sessionize::job::SessionsJob {
            source: args.source.clone(),
            actor: args.actor.clone(),
            stitch: args.stitch.clone(),
            ..Default::default()
        };
        let mut options = job.options()?;
        for note in job.prepare(&ctx, "events", &mut options).await? {
            eprintln!("note: {note}");
        }
        if args.actor.is_some() {
            // One actor column is used as it is (no `actor` column): it must exist.
            let schema = ctx.table("events").await?.schema().as_arrow().clone();
            sessionize::sessions::require_column(&schema, &options.actor, "--actor")?;
        }
    } else if args.actor.is_some() || args.stitch.is_some() {
        return Err(CliError(
            "--actor and --stitch prepare the events of PATH: give the export as the first \
             argument"
                .into(),
        ));
    }
    for table in &args.tables {
        let Some((name, path)) = table.split_once('=') else {
            return Err(CliError(format!(
                "--table expects NAME=PATH, but got '{table}'"
            )));
        };
        match sessionize::delta::location(path.trim()) {
            Some(location) => sessionize::delta::register(&ctx, name.trim(), location).await?,
            None => {
                sessionize::tables::register_inputs(
                    &ctx,
                    name.trim(),
                    &[path.trim().to_string()],
                    &load,
                )
                .await?
            }
        }
    }

    let format = args
        .format
        .unwrap_or_else(|| default_format(args.output.as_ref()));
    run_statements(&ctx, &sql, format, args.output.as_ref()).await
}

/// Runs every statement of `sql` in order and writes the result of the last one.
async fn run_statements(
    ctx: &SessionContext,
    sql: &str,
    format: Format,
    output: Option<&PathBuf>,
) -> Result<(), CliError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let Some(dialect) = dialect_from_str(dialect) else {
        return Err(CliError(format!("unsupported SQL dialect {dialect}")));
    };
    let mut statements = DFParser::parse_sql_with_dialect(sql, dialect.as_ref())?;
    let Some(last) = statements.pop_back() else {
        return Err(CliError("no SQL statement to run".into()));
    };
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await?;
        ctx.execute_logical_plan(plan).await?.collect().await?;
    }
    let plan = ctx.state().statement_to_plan(last).await?;
    let stream = ctx
        .execute_logical_plan(plan)
        .await?
        .execute_stream()
        .await?;
    match output {
        Some(path) => {
            output::write_to(ctx, stream, format, &path.to_string_lossy(), None).await?;
        }
        None => {
            let stdout = std::io::stdout();
            if format == Format::Parquet && stdout.is_terminal() {
                return Err(CliError(
                    "Parquet output is binary: pass --output FILE.parquet or redirect stdout"
                        .into(),
                ));
            }
            output::write_stream(stream, format, std::io::BufWriter::new(stdout), None).await?;
        }
    }
    Ok(())
}
