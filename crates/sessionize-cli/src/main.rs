//! The `sessionize` command line: a thin shell over the `sessionize` library.

mod chart;
#[cfg(feature = "cluster")]
mod cluster;
mod query;
mod sessions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use datafusion::error::DataFusionError;

/// Sessions and session metrics from product-analytics event exports.
#[derive(Debug, Parser)]
#[command(name = "sessionize", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    resources: Resources,
}

/// How much of the machine a run may use (the flags of datafusion-cli).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Resources {
    /// Memory for query execution, e.g. 4GB or 512M; past it, grouping and sorting spill to temporary
    /// files (DataFusion's fair spill pool). Default: no limit.
    #[arg(long, short = 'm', global = true, value_parser = parse_size, value_name = "SIZE")]
    pub memory_limit: Option<usize>,
    /// The Parquet inputs are already sorted by these columns (comma-separated, ascending, nulls
    /// last), for example user_id,event_time: window functions then do not sort again and
    /// grouping by the first column streams (`sessions` groups in one partition unless --threads is
    /// given). Declaring an order the files do not have gives wrong results.
    #[arg(long, global = true, value_delimiter = ',', value_name = "COLUMNS")]
    pub sorted_by: Vec<String>,
    /// Threads and partitions to run on. Default: one per core.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    pub threads: Option<u16>,
}

static RESOURCES: std::sync::OnceLock<Resources> = std::sync::OnceLock::new();

/// The columns `--sorted-by` declares.
pub fn sorted_by() -> Vec<String> {
    RESOURCES
        .get()
        .map(|r| r.sorted_by.clone())
        .unwrap_or_default()
}

/// Maps the `events` table by the export source `--source` names, or by the one it is recognised
/// as, saying on stderr which it recognised (Amplitude's own shapes need no mapping and are not
/// mentioned).
pub async fn map_source(
    ctx: &datafusion::prelude::SessionContext,
    source: Option<&str>,
    unit: sessionize::scalar::EpochUnit,
) -> Result<Option<&'static sessionize::sources::Source>, CliError> {
    let mut notes = vec![];
    let source = sessionize::job::map_source(ctx, "events", source, unit, &mut notes).await?;
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(source)
}

/// Whether `--threads` was given.
pub fn threads_given() -> bool {
    RESOURCES.get().is_some_and(|r| r.threads.is_some())
}

/// A size such as `4GB`, `512M`, `1.5g` or `1000000` (bytes).
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let factor: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        _ => {
            return Err(format!(
                "'{text}' is not a size: use a number with K, M, G or T, e.g. 4GB"
            ));
        }
    };
    match digits.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * factor) as usize),
        _ => Err(format!(
            "'{text}' is not a size: use a number with K, M, G or T, e.g. 4GB"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL over event exports with the session functions registered.
    Query(query::QueryArgs),
    /// One row per session, with the columns of the dbt model amplitude__sessions.
    Sessions(sessions::SessionsCommand),
    /// Every event with its session_id and session_number (CleverTap's session properties).
    Annotate(sessions::AnnotateCommand),
    /// The User Sessions chart: session metrics per interval and series, with formulas.
    Chart(chart::ChartCommand),
    /// CleverTap's session board as an HTML page: length distribution, time and sessions per day.
    Board(chart::BoardCommand),
    /// A Ballista scheduler that knows every sessionize function.
    #[cfg(feature = "cluster")]
    Scheduler(cluster::SchedulerCommand),
    /// A Ballista executor that knows every sessionize function.
    #[cfg(feature = "cluster")]
    Executor(cluster::ExecutorCommand),
}

/// Where a command runs: in-process, or on a Ballista cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Run on the Ballista cluster whose scheduler is at this URL (df://HOST:PORT); inputs must be
    /// Parquet that its executors can reach (an object store URL or a shared folder).
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// With --cluster: stop with an error when the job has not finished after this long (a lost
    /// executor can stall a Ballista 55 job); nothing is written then.
    #[arg(long, default_value = "1h", value_parser = sessions::parse_duration, value_name = "DURATION")]
    pub cluster_timeout: std::time::Duration,
}

/// A user-facing error: one sentence, printed to stderr, exit code 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl From<DataFusionError> for CliError {
    fn from(e: DataFusionError) -> Self {
        // The innermost error carries the sentence meant for the user; DataFusion's wrappers
        // ("Error during planning: ...") only say where it happened.
        let mut message = sessionize::error::user_message(&e);
        if message.starts_with("table '") && message.ends_with("not found") {
            message.push_str(
                "; register it with --table NAME=PATH, or pass a PATH argument to register `events`",
            );
        }
        CliError(message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError(e.to_string())
    }
}

/// A context with every function registered: in-process, or on the Ballista cluster at `cluster`
/// (`df://HOST:PORT`).
pub async fn context(
    cluster: Option<&str>,
    config: datafusion::prelude::SessionConfig,
) -> Result<datafusion::prelude::SessionContext, CliError> {
    let resources = RESOURCES.get().cloned().unwrap_or_default();
    let mut config = match resources.threads {
        Some(n) => config.with_target_partitions(usize::from(n)),
        None => config,
    };
    if !resources.sorted_by.is_empty() {
        // Keep the declared order: repartition preserving it rather than sort again, and read
        // each file in one stream (byte ranges of one sorted file read side by side would make the
        // order-preserving merge buffer one range while it drains the other).
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.prefer_existing_sort = true;
        optimizer.repartition_file_scans = false;
    }
    match cluster {
        None => {
            let mut runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
            if let Some(limit) = resources.memory_limit {
                let pool = datafusion::execution::memory_pool::FairSpillPool::new(limit);
                runtime = runtime.with_memory_pool(std::sync::Arc::new(pool));
            }
            Ok(sessionize::context_with_runtime(
                config,
                runtime.build_arc()?,
            )?)
        }
        #[cfg(feature = "cluster")]
        Some(url) => {
            let unreachable = |e: DataFusionError| {
                CliError(format!(
                    "cannot reach the Ballista scheduler at {url}: {}",
                    e.find_root()
                ))
            };
            let ctx = sessionize::cluster::remote_context(url, config)
                .await
                .map_err(unreachable)?;
            // A first small job, so that an unreachable scheduler is one clear sentence here.
            ctx.sql("SELECT 1")
                .await
                .map_err(unreachable)?
                .collect()
                .await
                .map_err(unreachable)?;
            Ok(ctx)
        }
        #[cfg(not(feature = "cluster"))]
        Some(_) => Err(CliError(
            "this build of sessionize has no cluster support: build it with --features cluster"
                .into(),
        )),
    }
}

/// Transparent huge pages off for this process. Where the heap gets them (an allocator that asks,
/// as mimalloc did when the binary used it, or a system set to `always`), a page fault makes the
/// kernel zero 2 MiB at a time, for memory of which a short run touches little: on 10M events, 1
/// to 1.3 s of system time (kernel page zeroing) in some runs of `sessions`, against 0.2 to 0.3 s
/// with them off; the wall time followed.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integers only and reads or writes no memory of ours; on
    // failure (an old kernel) nothing changes.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    no_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                // One sentence and exit code 1, like every other user error.
                // The first line, with the indented lines under it (the arguments a "required
                // arguments were not provided" error lists).
                let text = e.render().to_string();
                let mut lines = text.lines();
                let first = lines.next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                let sentence = if listed.is_empty() {
                    first.to_string()
                } else {
                    format!("{} {}", first.trim_end(), listed.join(", "))
                };
                eprintln!("error: {sentence} (see --help)");
                return ExitCode::FAILURE;
            }
        },
    };
    RESOURCES.get_or_init(|| cli.resources.clone());
    // Large stacks: deep query plans (a chart's) are planned and, on a cluster, serialized
    // recursively.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.resources.threads {
        builder.worker_threads(usize::from(n));
    }
    match builder.thread_stack_size(32 << 20).enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let cluster = match &cli.command {
        Command::Query(args) => Some(args.cluster.clone()),
        Command::Sessions(args) => Some(args.cluster().clone()),
        Command::Annotate(args) => Some(args.cluster().clone()),
        Command::Chart(args) => Some(args.cluster.clone()),
        _ => None,
    };
    let work = async move {
        match cli.command {
            Command::Query(args) => query::run(args).await,
            Command::Sessions(args) => sessions::run(args).await,
            Command::Annotate(args) => sessions::annotate(args).await,
            Command::Chart(args) => chart::run(args).await,
            Command::Board(args) => chart::board(args).await,
            #[cfg(feature = "cluster")]
            Command::Scheduler(args) => cluster::scheduler(args).await,
            #[cfg(feature = "cluster")]
            Command::Executor(args) => cluster::executor(args).await,
        }
    };
    let result = match cluster {
        Some(ClusterArgs {
            cluster: Some(url),
            cluster_timeout,
        }) => match tokio::time::timeout(cluster_timeout, work).await {
            Ok(Err(CliError(message)))
                if message.contains("No such file or directory")
                    || message.contains("Object at location") =>
            {
                Err(CliError(format!(
                    "{message} (with --cluster the executors read the inputs themselves: a local path \
                     must exist at the same place on every executor, for example a shared folder, or \
                     use an object store URL)"
                )))
            }
            Ok(result) => result,
            Err(_) => Err(CliError(format!(
                "the job on the cluster at {url} did not finish within {} (an executor may have been \
                 lost); nothing was written",
                humantime::format_duration(cluster_timeout)
            ))),
        },
        _ => work.await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): not an error of ours.
        Err(CliError(message)) if message.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(CliError(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
