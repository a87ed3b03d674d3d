//! `sessionize chart`: the User Sessions chart from a spec file and/or flags.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use sessionize::chart::{Buckets, ChartSpec, Condition, IntervalKind, RowSpec, Segment};
use sessionize::output::{self, Format};
use sessionize::scalar::EpochUnit;
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
    /// The export's shape: amplitude, amplitude-fivetran, segment, mixpanel, posthog, ga4 or
    /// snowplow (default: recognised from its columns), mapped onto user_id, event_time,
    /// event_type, session_id, insert_id and event_properties.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// The unit of epoch-number times: s, ms, us, ns, or auto (as for `sessions`).
    #[arg(long, default_value = "auto", value_name = "UNIT")]
    time_unit: EpochUnit,
    /// The actor column, or several separated by commas whose first non-null is the actor (as
    /// for `sessions`; the spec's `[session] actor`).
    /// [default: user_id; with an export source, the user id, else the device or anonymous id]
    #[arg(long, value_name = "COLUMN[,COLUMN...]")]
    actor: Option<String>,
    /// Stitch identities: ANONYMOUS=USER, as for `sessions` (the spec's `[session] stitch`).
    #[arg(long, value_name = "ANONYMOUS=USER")]
    stitch: Option<String>,
    /// The event time column (the spec's `[session] time`) [default: event_time].
    #[arg(long, value_name = "COLUMN")]
    time: Option<String>,
    /// The event type column (the spec's `[session] event`) [default: event_type].
    #[arg(long, value_name = "COLUMN")]
    event: Option<String>,
    /// The SDK's session id column (the spec's `[session] session_id_col`)
    /// [default: session_id].
    #[arg(long, value_name = "COLUMN")]
    session_id_col: Option<String>,
    /// derived or sdk.
    #[arg(long, value_name = "SOURCE")]
    session_source: Option<String>,
    /// Inactivity timeout (derived sessions).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    #[command(flatten)]
    event_rules: crate::sessions::EventRules,
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
    /// Print the chart's SQL instead of running it (it runs through `sessionize query PATH -f
    /// FILE` with the same --source).
    #[arg(long)]
    print_sql: bool,
    #[command(flatten)]
    pub cluster: crate::ClusterArgs,
    /// Output format: table, csv, json, ndjson or parquet.
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
    /// Write the table to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<String>,
    /// Also draw the chart: a line over intervals per series, or bars for a distribution, as SVG
    /// (FILE.svg) or an HTML page (FILE.html).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// The column to draw (default: the first formula, else A_total_sessions); a distribution such
    /// as A_length or HIST(A) draws bars.
    #[arg(long, value_name = "COLUMN")]
    plot_metric: Option<String>,
}

fn row_from_flag(flag: &str) -> Result<RowSpec, CliError> {
    let (kind, event) = match flag.split_once(':') {
        Some((_, event)) if event.trim().is_empty() => {
            return Err(CliError(format!(
                "--row expects sessions, events or events:NAME with an event name after the \
                 colon, but got '{flag}'"
            )));
        }
        Some((kind, event)) => (kind, Some(event.trim().to_string())),
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
    /// Whether the spec file names the session's actor.
    fn spec_names_actor(&self) -> bool {
        self.spec.as_ref().is_some_and(|path| {
            std::fs::read_to_string(path)
                .is_ok_and(|text| ChartSpec::names_actor(&path.to_string_lossy(), &text))
        })
    }

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
        for (flag, field) in [
            (&self.actor, &mut spec.session.actor),
            (&self.time, &mut spec.session.time),
            (&self.event, &mut spec.session.event),
            (&self.session_id_col, &mut spec.session.session_id_col),
        ] {
            if let Some(value) = flag {
                *field = value.clone();
            }
        }
        if self.stitch.is_some() {
            spec.session.stitch = self.stitch.clone();
        }
        spec.session
            .restart_events
            .extend(self.event_rules.restart_events.iter().cloned());
        spec.session
            .exclude_events
            .extend(self.event_rules.excluded()?);
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
    let mut spec = args.spec()?;
    let config = datafusion::prelude::SessionConfig::new();
    let ctx = crate::context(args.cluster.cluster.as_deref(), config).await?;
    let load = LoadOptions {
        time_column: Some(spec.session.time.clone()),
        time_unit: args.time_unit,
        for_cluster: args.cluster.cluster.is_some(),
        sorted_by: crate::sorted_by(),
        ..LoadOptions::default()
    };
    register_inputs(&ctx, "events", &args.inputs, &load).await?;
    let notes = sessionize::job::prepare_chart(
        &ctx,
        "events",
        &mut spec,
        args.source.as_deref(),
        args.time_unit,
        args.actor.is_some() || args.spec_names_actor(),
    )
    .await?;
    for note in notes {
        eprintln!("note: {note}");
    }
    let schema = ctx.table("events").await?.schema().as_arrow().clone();
    let sql = sessionize::chart::chart_sql("events", &schema, &spec)?;
    if args.print_sql {
        println!("{sql};");
        return Ok(());
    }
    let df = sessionize::chart::frame(&ctx, &sql).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    if let Some(plot) = &args.plot {
        let compiled = sessionize::chart::compile(
            "events",
            &ctx.table("events").await?.schema().as_arrow().clone(),
            &spec,
        )?;
        draw(
            &compiled,
            &batches,
            &spec,
            args.plot_metric.as_deref(),
            plot,
        )?;
    }
    let stream: datafusion::physical_plan::SendableRecordBatchStream = Box::pin(
        datafusion::physical_plan::memory::MemoryStream::try_new(batches, schema, None)?,
    );
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

/// Draws the chart's result into `path` (.svg or .html).
fn draw(
    compiled: &sessionize::chart::CompiledChart,
    batches: &[datafusion::arrow::array::RecordBatch],
    spec: &ChartSpec,
    metric: Option<&str>,
    path: &std::path::Path,
) -> Result<(), CliError> {
    use sessionize::plot;
    let mut series_columns = vec!["segment".to_string()];
    series_columns.extend(compiled.group_columns.iter().cloned());
    let metric = metric
        .map(str::to_string)
        .or_else(|| compiled.formulas.first().map(|(text, _)| text.clone()))
        .unwrap_or_else(|| "A_total_sessions".to_string());
    let schema = batches.first().map(|b| b.schema());
    let columns: Vec<String> = schema
        .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    // A distribution: HIST(X) or X_length / X_events draws bars over its buckets.
    let buckets: Vec<String> = columns
        .iter()
        .filter(|c| c.starts_with(&format!("{metric} [")) || c.starts_with(&format!("{metric}[")))
        .cloned()
        .collect();
    let interval = format!("{:?}", spec.interval).to_lowercase();
    let svg = if !buckets.is_empty() {
        let labels: Vec<String> = buckets
            .iter()
            .map(|b| b[metric.len()..].trim().to_string())
            .collect();
        let series = plot::distribution(batches, &series_columns, &buckets)?;
        let unit = if metric.contains("events") {
            "events in the session"
        } else {
            "session length"
        };
        plot::bar_chart(&metric, unit, "sessions", &labels, &series)?
    } else {
        if !columns.contains(&metric) {
            return Err(CliError(format!(
                "--plot-metric '{metric}' is not a column of the chart; columns: {}",
                columns.join(", ")
            )));
        }
        let (x, series) = plot::series_over_intervals(batches, &series_columns, &metric)?;
        let unit = if metric.contains("time_spent")
            || metric.contains("length")
            || metric.starts_with("PROPSUM")
        {
            "seconds"
        } else if metric.contains("sessions") || metric.starts_with("SESSIONTOTALS") {
            "sessions"
        } else if metric.contains("uniques")
            || metric.contains("users")
            || metric.starts_with("UNIQUES")
        {
            "users"
        } else if metric.contains("events") {
            "events"
        } else {
            "value"
        };
        plot::line_chart(&metric, &format!("{interval} (start)"), unit, &x, &series)?
    };
    let is_html = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let text = if is_html {
        plot::html_page("User Sessions", &[(metric, svg)])
    } else {
        svg
    };
    sessionize::output::write_text_file(path, &text)?;
    Ok(())
}

/// Arguments of `sessionize board`.
#[derive(Debug, Args)]
pub struct BoardCommand {
    /// Event exports (as for `sessions`).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// How many days, ending at the last event's day (UTC).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Inactivity timeout.
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    timeout: String,
    /// The HTML page to write.
    #[arg(long, short, value_name = "FILE.html")]
    output: PathBuf,
    /// The export's shape (as for `chart`; default: recognised from its columns).
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
}

/// CleverTap's session board: session length distribution, sum of session lengths per day and
/// sessions per day over the last days, with CleverTap's inactive events excluded.
pub async fn board(args: BoardCommand) -> Result<(), CliError> {
    use sessionize::plot;
    if args.days == 0 {
        return Err(CliError("--days must be at least 1".into()));
    }
    let ctx = sessionize::context()?;
    let load = LoadOptions {
        time_column: Some("event_time".into()),
        for_cluster: false,
        sorted_by: crate::sorted_by(),
        ..LoadOptions::default()
    };
    register_inputs(&ctx, "events", &args.inputs, &load).await?;
    let source = crate::map_source(&ctx, args.source.as_deref(), Default::default()).await?;
    let actor = match source {
        Some(source) => {
            sessionize::identity::apply(&ctx, "events", &source.actors(), None, "event_time")
                .await?
        }
        None => "user_id".to_string(),
    };
    let last = ctx
        .sql("SELECT CAST(CAST(max(event_time) AS DATE) AS VARCHAR) FROM events")
        .await?
        .collect()
        .await?;
    let last_day = plot::text_column(&last, &last[0].schema().field(0).name().clone())?
        .into_iter()
        .next()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| CliError("the events have no event_time values".into()))?;
    let first_day = ctx
        .sql(&format!(
            "SELECT CAST(DATE '{last_day}' - INTERVAL '{} days' AS VARCHAR)",
            args.days - 1
        ))
        .await?
        .collect()
        .await?;
    let first_day = plot::text_column(&first_day, &first_day[0].schema().field(0).name().clone())?
        .into_iter()
        .next()
        .unwrap_or_else(|| last_day.clone());
    let mut spec = ChartSpec {
        from: Some(first_day.clone()),
        to: Some(last_day.clone()),
        ..ChartSpec::default()
    };
    spec.session.timeout = args.timeout.clone();
    spec.session.actor = actor;
    spec.session.exclude_events = exclude_preset("clevertap")?
        .iter()
        .map(|e| e.to_string())
        .collect();
    let schema = ctx.table("events").await?.schema().as_arrow().clone();
    let compiled = sessionize::chart::compile("events", &schema, &spec)?;
    let daily = sessionize::chart::frame(&ctx, &compiled.sql)
        .await?
        .collect()
        .await?;
    let buckets = &compiled.rows[0].buckets;
    let labels: Vec<String> = buckets
        .iter()
        .map(|b| b.trim_start_matches("A_length").to_string())
        .collect();
    // The distribution over the whole range is the sum of the days' (each session counts in the
    // day it starts): no second query over the events.
    let per_day = plot::distribution(&daily, &[], buckets)?;
    let distribution = vec![plot::Series {
        name: format!("{first_day} to {last_day}"),
        values: (0..buckets.len())
            .map(|b| Some(per_day.iter().filter_map(|day| day.values[b]).sum()))
            .collect(),
    }];
    let no_series: Vec<String> = vec![];
    let (x, mut minutes) = plot::series_over_intervals(&daily, &no_series, "A_time_spent")?;
    for s in &mut minutes {
        s.name = "sum of session lengths".into();
        s.values = s.values.iter().map(|v| v.map(|secs| secs / 60.0)).collect();
    }
    let (x2, mut sessions) = plot::series_over_intervals(&daily, &no_series, "A_total_sessions")?;
    for s in &mut sessions {
        s.name = "sessions".into();
    }
    let pictures = vec![
        (
            "Session length distribution".to_string(),
            plot::bar_chart(
                "Session length distribution",
                "session length",
                "sessions",
                &labels,
                &distribution,
            )?,
        ),
        (
            "Sum of session lengths per day".to_string(),
            plot::line_chart(
                "Sum of session lengths per day",
                "day",
                "minutes",
                &x,
                &minutes,
            )?,
        ),
        (
            "Sessions per day".to_string(),
            plot::line_chart("Sessions per day", "day", "sessions", &x2, &sessions)?,
        ),
    ];
    let title = format!("Sessions, {first_day} to {last_day}");
    sessionize::output::write_text_file(&args.output, &plot::html_page(&title, &pictures))?;
    Ok(())
}
