//! `sessionize-datagen`: writes a reproducible Amplitude-style export as Parquet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessionize_datagen::{Config, write_parquet_files};

/// Writes a reproducible Amplitude-style event export as Parquet: one file, or with --files N a
/// folder of N files.
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
    /// Write N files into the folder --output (part-00000.parquet, ...) instead of one file.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    files: u32,
    /// Where to write the Parquet file (or the folder, with --files).
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
        ..Config::default()
    };
    let paths: Vec<PathBuf> = if args.files == 1 {
        vec![args.output.clone()]
    } else {
        if let Err(e) = std::fs::create_dir_all(&args.output) {
            eprintln!(
                "error: cannot create the folder {}: {e}",
                args.output.display()
            );
            return ExitCode::FAILURE;
        }
        (0..args.files)
            .map(|k| args.output.join(format!("part-{k:05}.parquet")))
            .collect()
    };
    let paths: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    match write_parquet_files(&config, &paths) {
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
