//! `sessionize sessions` and `sessionize annotate`: the sessions table and events annotated with
//! their session, from exports.

use datafusion::parquet::file::properties::WriterProperties;
use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, ValueEnum};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use indicatif::{ProgressBar, ProgressStyle};
use sessionize::job::SessionsJob;
use sessionize::output::{self, Format};
use sessionize::scalar::EpochUnit;
use sessionize::sessions::{SessionsOptions, exclude_preset};
use sessionize::tables::{LoadOptions, register_inputs};

use crate::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// Sessions by the inactivity rule (timeout, restart and excluded events).
    Derived,
    /// Sessions as the SDK recorded them in the session id column.
    Sdk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// Reproduce Fivetran's dbt model `amplitude__sessions` exactly.
    Dbt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DedupArg {
    /// Drop repeated events with the same insert id.
    #[value(name = "insert_id")]
    InsertId,
}

/// Event types with a role in sessions: shared by `sessions`, `annotate` and `chart`.
#[derive(Debug, Args)]
pub struct EventRules {
    /// An event type that always starts a new session. Repeatable.
    #[arg(long = "restart-event", value_name = "NAME")]
    pub restart_events: Vec<String>,
    /// An event type that is not activity: left out of sessions, never extending one. Repeatable.
    #[arg(long = "exclude-event", value_name = "NAME")]
    exclude_events: Vec<String>,
    /// A named list of excluded event types: clevertap.
    #[arg(long = "exclude-preset", value_name = "PRESET")]
    exclude_presets: Vec<String>,
}

impl EventRules {
    /// The excluded event types: those named and those of the presets.
    pub fn excluded(&self) -> Result<Vec<String>, CliError> {
        let mut events = self.exclude_events.clone();
        for preset in &self.exclude_presets {
            events.extend(exclude_preset(preset)?.iter().map(|e| e.to_string()));
        }
        Ok(events)
    }
}

/// How sessions are formed: shared by `sessions` and `annotate`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Event exports: Parquet, CSV (.csv, .csv.gz) or newline-delimited JSON (.json, .json.gz, or
    /// the Export API's .zip) files, folders or globs, local or s3:// gs:// az:// http(s):// URLs.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// The export's shape: amplitude, amplitude-fivetran, segment, mixpanel, posthog, ga4 or
    /// snowplow (default: recognised from its columns), mapped onto user_id, event_time,
    /// event_type, session_id, insert_id and event_properties.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Where sessions come from [default: derived].
    #[arg(long, value_enum)]
    session_source: Option<SourceArg>,
    /// Reproduce another tool's output exactly (implies SDK session ids).
    #[arg(long, value_enum, conflicts_with = "session_source")]
    compat: Option<CompatArg>,
    /// Inactivity timeout: a gap strictly longer starts a new session (20m, 1h30m, 90s)
    /// [default: 30m].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Maximum session length: an event later than this after its session's start begins a new one.
    #[arg(long, value_parser = parse_duration)]
    max_length: Option<Duration>,
    #[command(flatten)]
    event_rules: EventRules,
    /// Per-platform timeouts: `--timeout-by platform web=30m,ios=5m,android=5m`. Sessions are then
    /// formed per actor and platform; other platforms use --timeout.
    #[arg(long, num_args = 2, value_names = ["COLUMN", "PLATFORM=DURATION,..."])]
    timeout_by: Option<Vec<String>>,
    /// The actor column, or several separated by commas: the first non-null of them (Amplitude:
    /// user_id,device_id; Segment: user_id,anonymous_id), in the first column's place.
    /// [default: user_id; with an export source, the user id, else the device or anonymous id]
    #[arg(long, value_name = "COLUMN[,COLUMN...]")]
    actor: Option<String>,
    /// Stitch identities: ANONYMOUS=USER, for example anonymous_id=user_id: an event without a
    /// user id takes the user id its anonymous id was last seen with (else the anonymous id).
    #[arg(long, value_name = "ANONYMOUS=USER")]
    stitch: Option<String>,
    /// The event time column: a timestamp, epoch numbers, or ISO-8601 text (with or without an
    /// offset; UTC without one).
    #[arg(long, default_value = "event_time", value_name = "COLUMN")]
    time: String,
    /// The unit of epoch-number times: s, ms, us, ns, or auto (each value's magnitude tells it:
    /// right for times from 1973 to the year 5138).
    #[arg(long, default_value = "auto", value_name = "UNIT")]
    time_unit: EpochUnit,
    /// The event type column.
    #[arg(long, default_value = "event_type", value_name = "COLUMN")]
    event: String,
    /// The SDK's session id column.
    #[arg(long, default_value = "session_id", value_name = "COLUMN")]
    session_id_col: String,
    /// The insert id column (default: insert_id, _insert_id or $insert_id, whichever exists).
    #[arg(long, value_name = "COLUMN")]
    insert_id_col: Option<String>,
    /// The event id column of --compat dbt's de-duplication (default: event_id, or Fivetran's id,
    /// whichever exists).
    #[arg(long, value_name = "COLUMN")]
    event_id_col: Option<String>,
    /// De-duplicate events.
    #[arg(long, value_enum)]
    dedup: Option<DedupArg>,
    /// IANA time zone of the *_day columns.
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    time_zone: String,
    /// The source_relation column's value (dbt).
    #[arg(long, default_value = "", value_name = "TEXT")]
    source_relation: String,
    /// First event day to include, YYYY-MM-DD (with --compat dbt).
    #[arg(long, value_name = "DAY")]
    date_from: Option<String>,
    /// Last event day to include, YYYY-MM-DD (with --compat dbt).
    #[arg(long, value_name = "DAY")]
    date_to: Option<String>,
    #[command(flatten)]
    cluster: crate::ClusterArgs,
}

/// Where and how to write.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output file, folder (with --partition-by-day) or object store URL, or delta:FOLDER for a
    /// Delta Lake table (a new version, in one commit). Without it, CSV goes to stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<String>,
    /// Output format: parquet (default with --output), csv or ndjson.
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
}

/// Arguments of `sessionize sessions`.
#[derive(Debug, Args)]
pub struct SessionsCommand {
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Write Hive-style folders session_started_at_day=YYYY-MM-DD under --output.
    #[arg(long)]
    partition_by_day: bool,
    /// Print the SQL that builds the table instead of running it. It reads `events` as this
    /// command prepares it: `sessionize query PATH -f FILE` with the same --source, --actor and
    /// --stitch runs it.
    #[arg(long)]
    print_sql: bool,
    /// Keep the Delta sessions table delta:FOLDER up to date: add the events of the inputs it
    /// does not hold yet, and compute again the sessions of their actors, in one commit (created
    /// by the first run; the README's "Incremental pipelines").
    #[arg(long, value_name = "delta:FOLDER", conflicts_with_all = ["output", "format", "print_sql"])]
    into: Option<String>,
    /// With --into: leave out events older than the table's newest event minus this (e.g. 3d);
    /// stderr says how many. Without it every late event is applied.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    late_limit: Option<Duration>,
}

/// A human duration: 30m, 1h30m, 90s.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    sessionize::sessions::parse_duration("the duration", text)
}

impl SessionArgs {
    /// The library's job from the flags.
    fn job(&self) -> SessionsJob {
        SessionsJob {
            source: self.source.clone(),
            sdk_sessions: self.session_source == Some(SourceArg::Sdk),
            compat_dbt: self.compat == Some(CompatArg::Dbt),
            timeout: self.timeout,
            max_length: self.max_length,
            restart_events: self.event_rules.restart_events.clone(),
            exclude_events: self.event_rules.exclude_events.clone(),
            exclude_presets: self.event_rules.exclude_presets.clone(),
            timeout_by: self.timeout_by.as_ref().map(|v| {
                (
                    v.first().cloned().unwrap_or_default(),
                    v.get(1).cloned().unwrap_or_default(),
                )
            }),
            actor: self.actor.clone(),
            stitch: self.stitch.clone(),
            time: self.time.clone(),
            time_unit: self.time_unit,
            event: self.event.clone(),
            session_id_col: self.session_id_col.clone(),
            insert_id_col: self.insert_id_col.clone(),
            event_id_col: self.event_id_col.clone(),
            dedup_insert_id: self.dedup.is_some(),
            time_zone: self.time_zone.clone(),
            source_relation: self.source_relation.clone(),
            date_from: self.date_from.clone(),
            date_to: self.date_to.clone(),
        }
    }

    /// The library's options from the flags.
    pub fn options(&self) -> Result<SessionsOptions, CliError> {
        Ok(self.job().options()?)
    }

    /// A context with the inputs registered as `events`.
    pub async fn load(&self, options: &mut SessionsOptions) -> Result<SessionContext, CliError> {
        self.load_with(options, datafusion::prelude::SessionConfig::new())
            .await
    }

    /// [`Self::load`] with a session configuration.
    async fn load_with(
        &self,
        options: &mut SessionsOptions,
        config: datafusion::prelude::SessionConfig,
    ) -> Result<SessionContext, CliError> {
        let ctx = crate::context(self.cluster.cluster.as_deref(), config).await?;
        let load = LoadOptions {
            time_column: Some(options.time.clone()),
            time_unit: self.time_unit,
            for_cluster: self.cluster.cluster.is_some(),
            sorted_by: crate::sorted_by(),
            ..LoadOptions::default()
        };
        register_inputs(&ctx, "events", &self.inputs, &load).await?;
        for note in self.job().prepare(&ctx, "events", options).await? {
            eprintln!("note: {note}");
        }
        Ok(ctx)
    }
}

/// Says on stderr how many events the sessions table leaves out (null actor or time; with
/// `--compat dbt`, outside the date window).
async fn report_left_out(ctx: &SessionContext, options: &SessionsOptions) -> Result<(), CliError> {
    for note in sessionize::job::left_out_notes(ctx, "events", options).await? {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// A spinner on stderr when it is a terminal; nothing otherwise.
pub fn progress_bar(what: &'static str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("reading events and writing {what}"));
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// Whether the output is a Delta table (`--output delta:FOLDER`).
fn is_delta(output: &OutputArgs) -> bool {
    output
        .output
        .as_deref()
        .and_then(sessionize::delta::location)
        .is_some()
}

/// Writes `df` to the output the flags name, with Parquet writer properties for a single output
/// file.
pub async fn write_with(
    ctx: &SessionContext,
    df: datafusion::dataframe::DataFrame,
    output: &OutputArgs,
    partition_by_day: Option<&str>,
    what: &'static str,
    parquet: Option<&WriterProperties>,
) -> Result<(), CliError> {
    if let Some(location) = output
        .output
        .as_deref()
        .and_then(sessionize::delta::location)
    {
        let bar = progress_bar(what);
        let written = sessionize::delta::write(ctx, df, location, partition_by_day, parquet).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let version = written?;
        eprintln!("note: committed version {version} of the Delta table '{location}'");
        return Ok(());
    }
    match (partition_by_day, &output.output) {
        (Some(_), None) => Err(CliError("--partition-by-day needs --output FOLDER".into())),
        (Some(column), Some(target)) => {
            let format = table_format(output)?;
            let bar = progress_bar(what);
            let result = output::write_partitioned(ctx, df, format, target, column).await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            Ok(result.map(|_| ())?)
        }
        (None, _) => {
            let stream = df.execute_stream().await?;
            write_stream_with(ctx, stream, output, what, parquet).await
        }
    }
}

/// The format of a table written to `--output`: Parquet unless `--format` says CSV or NDJSON.
fn table_format(output: &OutputArgs) -> Result<Format, CliError> {
    // Without --format, the output's extension tells it (as for query and chart); Parquet else.
    let from_extension = output.output.as_deref().and_then(|target| {
        let lower = target.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if [".ndjson", ".jsonl", ".json"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            Some(Format::NdJson)
        } else {
            None
        }
    });
    let format = output.format.or(from_extension).unwrap_or(Format::Parquet);
    if !matches!(format, Format::Parquet | Format::Csv | Format::NdJson) {
        return Err(CliError(format!(
            "--format {format} is not a table format: use parquet, csv or ndjson"
        )));
    }
    Ok(format)
}

/// Writes the batches of `stream` to the output the flags name.
pub async fn write_stream(
    ctx: &SessionContext,
    stream: SendableRecordBatchStream,
    output: &OutputArgs,
    what: &'static str,
) -> Result<(), CliError> {
    write_stream_with(ctx, stream, output, what, None).await
}

/// [`write_stream`] with Parquet writer properties.
async fn write_stream_with(
    ctx: &SessionContext,
    stream: SendableRecordBatchStream,
    output: &OutputArgs,
    what: &'static str,
    parquet: Option<&WriterProperties>,
) -> Result<(), CliError> {
    let bar = progress_bar(what);
    let report = |rows: usize| {
        if let Some(bar) = &bar {
            bar.set_message(format!("{rows} {what} written"));
        }
    };
    let result = match &output.output {
        None => {
            let format = output.format.unwrap_or(Format::Csv);
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
                Some(&report),
            )
            .await
            .map(|_| ())
        }
        Some(target) => {
            let format = table_format(output)?;
            output::write_to_with(ctx, stream, format, target, Some(&report), parquet)
                .await
                .map(|_| ())
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(result?)
}

impl SessionsCommand {
    pub fn cluster(&self) -> &crate::ClusterArgs {
        &self.session.cluster
    }
}

impl AnnotateCommand {
    pub fn cluster(&self) -> &crate::ClusterArgs {
        &self.session.cluster
    }
}

/// `sessions --into delta:FOLDER`: one incremental run.
/// What both `--into` commands share: the table's location, a context, how inputs are loaded,
/// the progress bar and the notes; `apply` is the library's incremental run.
async fn into_table<F, Fut>(
    session: &SessionArgs,
    into: &str,
    progress: &'static str,
    apply: F,
) -> Result<(), CliError>
where
    F: FnOnce(SessionContext, LoadOptions, String) -> Fut,
    Fut: std::future::Future<
            Output = datafusion::common::Result<sessionize::incremental::IntoReport>,
        >,
{
    let Some(location) = sessionize::delta::location(into) else {
        return Err(CliError(format!(
            "--into takes a Delta table, delta:FOLDER, but got '{into}'"
        )));
    };
    let options = session.options()?;
    let ctx = crate::context(
        session.cluster.cluster.as_deref(),
        datafusion::prelude::SessionConfig::new(),
    )
    .await?;
    let load = LoadOptions {
        time_column: Some(options.time.clone()),
        time_unit: session.time_unit,
        for_cluster: session.cluster.cluster.is_some(),
        sorted_by: crate::sorted_by(),
        ..LoadOptions::default()
    };
    let bar = progress_bar(progress);
    let report = apply(ctx, load, location.to_string()).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for note in report?.notes() {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// `sessions --into`: the incremental run (see [`sessionize::incremental::sessions_into`]).
async fn run_into(args: &SessionsCommand, into: &str) -> Result<(), CliError> {
    let job = args.session.job();
    into_table(
        &args.session,
        into,
        "sessions",
        |ctx, load, location| async move {
            sessionize::incremental::sessions_into(
                &ctx,
                &job,
                &args.session.inputs,
                &load,
                &location,
                args.late_limit,
                args.partition_by_day.then_some("session_started_at_day"),
            )
            .await
        },
    )
    .await
}

pub async fn run(args: SessionsCommand) -> Result<(), CliError> {
    if let Some(into) = &args.into {
        return run_into(&args, into).await;
    }
    if args.late_limit.is_some() {
        return Err(CliError(
            "--late-limit applies to incremental runs: add --into delta:FOLDER (a full build \
             with --output applies every event)"
                .into(),
        ));
    }
    let mut options = args.session.options()?;
    let mut config = datafusion::prelude::SessionConfig::new();
    if !crate::sorted_by().is_empty()
        && !crate::threads_given()
        && args.session.cluster.cluster.is_none()
    {
        // On input declared sorted, group in one partition: the order-preserving hash repartition
        // that two partitions need buffers batches and fails under small memory limits, while one
        // partition holds only the actors not yet complete. Measured on 10M sorted events: the
        // same wall time (the Parquet writer encodes on other threads), half the peak memory.
        config = config.with_target_partitions(1);
    }
    let ctx = args.session.load_with(&mut options, config).await?;
    if is_delta(&args.output) {
        sessionize::delta::at_delta_precision(&ctx, "events", &options.time).await?;
    }
    let schema = ctx.table("events").await?.schema().as_arrow().clone();
    let sql = sessionize::sessions::sessions_sql("events", &schema, &options)?;
    if args.print_sql {
        println!("{sql}");
        return Ok(());
    }
    report_left_out(&ctx, &options).await?;
    let df = ctx.sql(&sql).await?;
    let partition = args.partition_by_day.then_some("session_started_at_day");
    let properties = if is_delta(&args.output) {
        sessionize::sessions::delta_table_properties()
    } else {
        sessionize::sessions::parquet_properties()
    };
    write_with(
        &ctx,
        df,
        &args.output,
        partition,
        "sessions",
        Some(&properties),
    )
    .await
}

/// Arguments of `sessionize annotate`.
#[derive(Debug, Args)]
pub struct AnnotateCommand {
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Append one `Session Concluded` event per session, at its last event time, with
    /// session_length in seconds.
    #[arg(long)]
    concluded: bool,
    /// Print the SQL instead of running it (it runs through `sessionize query PATH -f FILE` with
    /// the same --source, --actor and --stitch).
    #[arg(long)]
    print_sql: bool,
    /// Keep the Delta table of annotated events delta:FOLDER up to date: add the events of the
    /// inputs it does not hold yet, each with its session, and give the later events of their
    /// actors their sessions again, in one commit (created by the first run; the README's
    /// "Incremental pipelines").
    #[arg(long, value_name = "delta:FOLDER", conflicts_with_all = ["output", "format", "print_sql", "concluded"])]
    into: Option<String>,
    /// With --into: leave out events older than the table's newest event minus this (e.g. 3d);
    /// stderr says how many. Without it every late event is applied.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    late_limit: Option<Duration>,
}

/// `annotate --into`: the incremental run (see [`sessionize::incremental::annotate_into`]).
async fn annotate_into(args: &AnnotateCommand, into: &str) -> Result<(), CliError> {
    let job = args.session.job();
    into_table(
        &args.session,
        into,
        "events",
        |ctx, load, location| async move {
            sessionize::incremental::annotate_into(
                &ctx,
                &job,
                &args.session.inputs,
                &load,
                &location,
                args.late_limit,
            )
            .await
        },
    )
    .await
}

pub async fn annotate(args: AnnotateCommand) -> Result<(), CliError> {
    if let Some(into) = &args.into {
        return annotate_into(&args, into).await;
    }
    if args.late_limit.is_some() {
        return Err(CliError(
            "--late-limit applies to incremental runs: add --into delta:FOLDER (a full run \
             with --output applies every event)"
                .into(),
        ));
    }
    let mut options = args.session.options()?;
    let ctx = args.session.load(&mut options).await?;
    if is_delta(&args.output) {
        sessionize::delta::at_delta_precision(&ctx, "events", &options.time).await?;
    }
    let schema = ctx.table("events").await?.schema().as_arrow().clone();
    let sql = sessionize::sessions::annotate_sql("events", &schema, &options, args.concluded)?;
    if args.print_sql {
        println!("{sql}");
        return Ok(());
    }
    if is_delta(&args.output) {
        // The two passes as a plan that Delta's writer reads once.
        let df =
            sessionize::annotate::annotate_frame(&ctx, "events", &options, args.concluded).await?;
        return write_with(&ctx, df, &args.output, None, "events", None).await;
    }
    if let Some(target) = &args.output.output
        && table_format(&args.output)? == Format::Parquet
    {
        // Parquet input to a Parquet file: the input's column chunks are copied.
        let bar = progress_bar("events");
        let report = |rows: usize| {
            if let Some(bar) = &bar {
                bar.set_message(format!("{rows} events written"));
            }
        };
        let written = sessionize::annotate::write_parquet(
            &ctx,
            "events",
            &options,
            args.concluded,
            target,
            Some(&report),
        )
        .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if written?.is_some() {
            return Ok(());
        }
    }
    let stream = sessionize::annotate::annotate(&ctx, "events", &options, args.concluded).await?;
    write_stream(&ctx, stream, &args.output, "events").await
}
