//! `sessionize scheduler` and `sessionize executor`: Ballista's scheduler and executor processes
//! with every function of the project registered (feature `cluster`).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::Args;

use crate::CliError;

/// Arguments of `sessionize scheduler` (as Ballista's scheduler).
#[derive(Debug, Args)]
pub struct SchedulerCommand {
    /// Local address to bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 50050)]
    bind_port: u16,
    /// Host name executors and clients use to reach this scheduler.
    #[arg(long, default_value = "localhost")]
    external_host: String,
    /// Seconds without a heartbeat after which an executor is lost and its tasks run elsewhere.
    #[arg(long, default_value_t = 180)]
    executor_timeout_seconds: u64,
}

/// Arguments of `sessionize executor` (as Ballista's executor).
#[derive(Debug, Args)]
pub struct ExecutorCommand {
    /// Local address to bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// Host name the scheduler and other executors use to reach this executor.
    #[arg(long)]
    external_host: Option<String>,
    /// Arrow Flight port (shuffle data).
    #[arg(long, default_value_t = 50051)]
    bind_port: u16,
    /// gRPC port.
    #[arg(long, default_value_t = 50052)]
    bind_grpc_port: u16,
    /// The scheduler's host.
    #[arg(long, default_value = "localhost")]
    scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    scheduler_port: u16,
    /// Task slots (default: the number of cores).
    #[arg(long, alias = "concurrent-tasks")]
    task_slots: Option<usize>,
    /// Folder for shuffle files.
    #[arg(long)]
    work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 60)]
    heartbeat_interval_seconds: u64,
    /// Seconds to wait at start for the scheduler to accept connections (an executor started
    /// beside its scheduler may come up first); past them the executor stops with an error.
    #[arg(long, default_value_t = 60)]
    scheduler_wait_seconds: u64,
}

/// Waits until `host:port` accepts TCP connections, trying every 200 ms for `seconds`. Ballista's
/// executor registers once at start and stops if the scheduler is not there yet.
async fn wait_for_scheduler(host: &str, port: u16, seconds: u64) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut noted = false;
    loop {
        let error = match std::net::TcpStream::connect((host, port)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if std::time::Instant::now() >= deadline {
            return Err(CliError(format!(
                "cannot reach the scheduler at {host}:{port} after {seconds} s: {error}; start it \
                 first or pass --scheduler-host and --scheduler-port"
            )));
        }
        if !noted {
            eprintln!("waiting for the scheduler at {host}:{port} ({error})");
            noted = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn scheduler(args: SchedulerCommand) -> Result<(), CliError> {
    let address: SocketAddr = format!("{}:{}", args.bind_host, args.bind_port)
        .parse()
        .map_err(|e| CliError(format!("bad scheduler address: {e}")))?;
    let config = SchedulerConfig {
        bind_host: args.bind_host.clone(),
        bind_port: args.bind_port,
        external_host: args.external_host.clone(),
        executor_timeout_seconds: args.executor_timeout_seconds,
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(Arc::new(sessionize::cluster::scheduler_session_builder));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| CliError(format!("cannot start the scheduler: {e}")))?;
    eprintln!("sessionize scheduler listening on {address}");
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(|e| CliError(format!("the scheduler stopped: {e}")))
}

pub async fn executor(args: ExecutorCommand) -> Result<(), CliError> {
    let mut config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.clone(),
        port: args.bind_port,
        grpc_port: args.bind_grpc_port,
        scheduler_host: args.scheduler_host.clone(),
        scheduler_port: args.scheduler_port,
        work_dir: args.work_dir.clone(),
        executor_heartbeat_interval_seconds: args.heartbeat_interval_seconds,
        override_function_registry: Some(Arc::new(
            sessionize::cluster::executor_function_registry()?,
        )),
        ..ExecutorProcessConfig::default()
    };
    if let Some(slots) = args.task_slots {
        config.vcores = slots.max(1);
    }
    eprintln!(
        "sessionize executor on {}:{} for scheduler {}:{}",
        args.bind_host, args.bind_port, args.scheduler_host, args.scheduler_port
    );
    wait_for_scheduler(
        &args.scheduler_host,
        args.scheduler_port,
        args.scheduler_wait_seconds,
    )
    .await?;
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| CliError(format!("the executor stopped: {e}")))
}
