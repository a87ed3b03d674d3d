//! `sessionize chart`: the User Sessions chart from a spec file and/or flags.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use sessionize::chart::{Buckets, ChartSpec, Condition, IntervalKind, RowSpec, Segment};
use sessionize::output::{self, Format};
use sessionize::sessions::exclude_preset;
use sessionize::tables::{LoadOptions, register_inputs};

use crate::CliError;

/// Arguments of `sessionize chart`.
#[derive(Debug, Args)]
pub struct ChartCommand {
    /// Event exports (as for `sessions`).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// A chart spec (TOML, or JSON when the name ends in .json); flags given too override it.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// First day, YYYY-MM-DD (inclusive).
    #[arg(long, value_name = "DAY")]
    from: Option<String>,
    /// Last day, YYYY-MM-DD (inclusive).
    #[arg(long, value_name = "DAY")]
    to: Option<String>,
    /// day, week, month or total.
    #[arg(long, value_name = "INTERVAL")]
    interval: Option<String>,
    /// IANA time zone of days and intervals.
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// derived or sdk.
    #[arg(long, value_name = "SOURCE")]
    session_source: Option<String>,
    /// Inactivity timeout (derived sessions).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// An event type that starts a new session. Repeatable.
    #[arg(long = "restart-event", value_name = "NAME")]
    restart_events: Vec<String>,
    /// An inactive event type. Repeatable.
    #[arg(long = "exclude-event", value_name = "NAME")]
    exclude_events: Vec<String>,
    /// A named list of inactive event types: clevertap.
    #[arg(long = "exclude-preset", value_name = "PRESET")]
    exclude_presets: Vec<String>,
    /// A row: `sessions`, `events` (any event) or `events:NAME`. Repeatable: rows A, B, C, ...
    #[arg(long = "row", value_name = "ROW")]
    rows: Vec<String>,
    /// Minimum session duration of every row, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    min_duration: Option<String>,
    /// Split series by a property: event.NAME, user.NAME or a column. Repeatable.
    #[arg(long = "group-by", value_name = "PROPERTY")]
    group_by: Vec<String>,
    /// A segment: `NAME:PROPERTY=V1|V2`, e.g. `pro:user.plan=pro`. Repeatable.
    #[arg(long = "segment", value_name = "SEGMENT")]
    segments: Vec<String>,
    /// Formulas separated by `;`, e.g. `%:SESSIONTOTALS(A)/SESSIONTOTALS(B)`.
    #[arg(long, value_name = "FORMULAS")]
    formula: Option<String>,
    /// Length distribution bucket edges in seconds, e.g. 0,3,10,30,60.
    #[arg(long, value_name = "EDGES", value_delimiter = ',')]
    buckets: Vec<f64>,
    /// Print the chart's SQL instead of running it.
    #[arg(long)]
    print_sql: bool,
    /// Output format: table, csv, json, ndjson or parquet.
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
    /// Write the table to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<String>,
}

fn row_from_flag(flag: &str) -> Result<RowSpec, CliError> {
    let (kind, event) = match flag.split_once(':') {
        Some((kind, event)) => (kind, Some(event.to_string())),
        None => (flag, None),
    };
    match kind {
        "sessions" if event.is_none() => Ok(RowSpec::default()),
        "events" => Ok(RowSpec {
            kind: "events".into(),
            event,
            ..RowSpec::default()
        }),
        _ => Err(CliError(format!(
            "--row expects sessions, events or events:NAME, but got '{flag}'"
        ))),
    }
}

fn segment_from_flag(flag: &str) -> Result<Segment, CliError> {
    let usage = || {
        CliError(format!(
            "--segment expects NAME:PROPERTY=V1|V2, for example pro:user.plan=pro, but got '{flag}'"
        ))
    };
    let (name, condition) = flag.split_once(':').ok_or_else(usage)?;
    let (property, values) = condition.split_once('=').ok_or_else(usage)?;
    Ok(Segment {
        name: name.to_string(),
        user: vec![Condition {
            property: property.trim().to_string(),
            one_of: values.split('|').map(|v| v.trim().to_string()).collect(),
        }],
        performed: vec![],
    })
}

impl ChartCommand {
    /// The spec: the file's, then the flags over it.
    fn spec(&self) -> Result<ChartSpec, CliError> {
        let mut spec = match &self.spec {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError(format!(
                        "cannot read the chart spec '{}': {e}",
                        path.display()
                    ))
                })?;
                ChartSpec::from_text(&path.to_string_lossy(), &text)?
            }
            None => ChartSpec::default(),
        };
        if self.from.is_some() {
            spec.from = self.from.clone();
        }
        if self.to.is_some() {
            spec.to = self.to.clone();
        }
        if let Some(interval) = &self.interval {
            spec.interval = match interval.as_str() {
                "day" => IntervalKind::Day,
                "week" => IntervalKind::Week,
                "month" => IntervalKind::Month,
                "total" => IntervalKind::Total,
                other => {
                    return Err(CliError(format!(
                        "--interval expects day, week, month or total, but got '{other}'"
                    )));
                }
            };
        }
        if let Some(tz) = &self.time_zone {
            spec.time_zone = tz.clone();
        }
        if let Some(source) = &self.session_source {
            spec.session.source = source.clone();
        }
        if let Some(timeout) = &self.timeout {
            spec.session.timeout = timeout.clone();
        }
        spec.session
            .restart_events
            .extend(self.restart_events.iter().cloned());
        spec.session
            .exclude_events
            .extend(self.exclude_events.iter().cloned());
        for preset in &self.exclude_presets {
            spec.session
                .exclude_events
                .extend(exclude_preset(preset)?.iter().map(|e| e.to_string()));
        }
        if !self.rows.is_empty() {
            spec.rows = self
                .rows
                .iter()
                .map(|r| row_from_flag(r))
                .collect::<Result<_, _>>()?;
        }
        if let Some(min) = &self.min_duration {
            for row in &mut spec.rows {
                row.min_duration = Some(min.clone());
            }
        }
        spec.group_by.extend(self.group_by.iter().cloned());
        for segment in &self.segments {
            spec.segments.push(segment_from_flag(segment)?);
        }
        if let Some(formulas) = &self.formula {
            spec.formulas.extend(
                formulas
                    .split(';')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_string),
            );
            if spec.formulas.len() > 10 {
                return Err(CliError(format!(
                    "at most 10 formulas are allowed, but {} were given",
                    spec.formulas.len()
                )));
            }
        }
        if !self.buckets.is_empty() {
            spec.length_buckets = Buckets {
                edges: self.buckets.clone(),
                ..Buckets::default()
            };
        }
        Ok(spec)
    }
}

pub async fn run(args: ChartCommand) -> Result<(), CliError> {
    let spec = args.spec()?;
    let ctx = sessionize::context()?;
    let load = LoadOptions {
        time_column: Some(spec.session.time.clone()),
    };
    register_inputs(&ctx, "events", &args.inputs, &load).await?;
    let schema = ctx.table("events").await?.schema().as_arrow().clone();
    let sql = sessionize::chart::chart_sql("events", &schema, &spec)?;
    if args.print_sql {
        println!("{sql};");
        return Ok(());
    }
    let df = ctx.sql(&sql).await?;
    let stream = df.execute_stream().await?;
    match &args.output {
        Some(target) => {
            let format = args.format.unwrap_or(Format::Csv);
            output::write_to(&ctx, stream, format, target, None).await?;
        }
        None => {
            let format = args.format.unwrap_or(Format::Table);
            if format == Format::Parquet && std::io::stdout().is_terminal() {
                return Err(CliError(
                    "Parquet output is binary: pass --output FILE.parquet or redirect stdout"
                        .into(),
                ));
            }
            output::write_stream(
                stream,
                format,
                std::io::BufWriter::new(std::io::stdout()),
                None,
            )
            .await?;
        }
    }
    Ok(())
}
