//! `sessionize-datagen`: writes a reproducible Amplitude-style export as Parquet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessionize_datagen::{Config, write_parquet};

/// Writes a reproducible Amplitude-style event export as one Parquet file.
#[derive(Debug, Parser)]
#[command(name = "sessionize-datagen", version)]
struct Args {
    /// Approximate number of events.
    #[arg(long, default_value_t = 6_000)]
    events: usize,
    /// Number of users.
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// Days covered, from 2026-01-05 UTC.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Seed of the random generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Sort rows by user and time instead of shuffling them.
    #[arg(long)]
    sorted: bool,
    /// Where to write the Parquet file.
    #[arg(long, short)]
    output: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        users: args.users,
        events: args.events,
        days: args.days,
        seed: args.seed,
        sorted: args.sorted,
    };
    match write_parquet(&config, &args.output) {
        Ok(rows) => {
            eprintln!("wrote {rows} events to {}", args.output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.output.display());
            ExitCode::FAILURE
        }
    }
}
