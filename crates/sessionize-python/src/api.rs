//! sessions, annotate, chart and SQL with sessionize's own engine, for users without
//! datafusion-python: the command line's jobs, taking the Python API's already-named options (see
//! `python/sessionize/__init__.py`, which documents them) and returning an [`ArrowResult`] and the
//! notes the command line would print on stderr.

use std::time::Duration;

use datafusion::physical_plan::common::collect;
use datafusion::prelude::SessionContext;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use sessionize::job::SessionsJob;
use sessionize::scalar::EpochUnit;
use sessionize::tables::LoadOptions;

use crate::arrow::{ArrowResult, read_stream};
use crate::run::{run, to_py};

/// A result and the notes to show the user.
type Answer = (ArrowResult, Vec<String>);

/// The value of `key` in `options`, or `None` when it is absent or `None`.
fn get<'py, T>(options: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>>
where
    T: for<'a> FromPyObject<'a, 'py, Error = PyErr>,
{
    match options.get_item(key)? {
        Some(value) if !value.is_none() => {
            Ok(Some(value.extract::<T>().map_err(|e| {
                PyValueError::new_err(format!("{key}: {}", e.value(options.py())))
            })?))
        }
        _ => Ok(None),
    }
}

fn duration(options: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Duration>> {
    match get::<String>(options, key)? {
        None => Ok(None),
        Some(text) => sessionize::sessions::parse_duration(key, &text)
            .map(Some)
            .map_err(PyValueError::new_err),
    }
}

fn time_unit(options: &Bound<'_, PyDict>) -> PyResult<EpochUnit> {
    match get::<String>(options, "time_unit")? {
        None => Ok(EpochUnit::default()),
        Some(text) => text.parse().map_err(PyValueError::new_err),
    }
}

/// The value of `key` in `options`, one of `allowed`, or `None` when absent.
///
/// Errors: `ValueError` naming the values allowed.
fn choice(
    options: &Bound<'_, PyDict>,
    key: &str,
    allowed: &[&'static str],
) -> PyResult<Option<&'static str>> {
    let Some(value) = get::<String>(options, key)? else {
        return Ok(None);
    };
    match allowed.iter().find(|a| **a == value) {
        Some(found) => Ok(Some(found)),
        None => {
            let listed: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
            Err(PyValueError::new_err(format!(
                "{key} expects {} or None, but got '{value}'",
                listed.join(", ")
            )))
        }
    }
}

/// The library's job from the Python API's options (names as the command line's flags, in snake
/// case).
fn job(options: &Bound<'_, PyDict>) -> PyResult<SessionsJob> {
    let defaults = SessionsJob::default();
    let session_source = choice(options, "session_source", &["derived", "sdk"])?;
    let compat_dbt = choice(options, "compat", &["dbt"])?.is_some();
    if compat_dbt && session_source.is_some() {
        return Err(PyValueError::new_err(
            "compat='dbt' takes the SDK's sessions as dbt_amplitude does: leave session_source out",
        ));
    }
    let sdk_sessions = session_source == Some("sdk");
    let dedup_insert_id = choice(options, "dedup", &["insert_id"])?.is_some();
    Ok(SessionsJob {
        source: get(options, "source")?,
        sdk_sessions,
        compat_dbt,
        timeout: duration(options, "timeout")?,
        max_length: duration(options, "max_length")?,
        restart_events: get(options, "restart_events")?.unwrap_or_default(),
        exclude_events: get(options, "exclude_events")?.unwrap_or_default(),
        exclude_presets: get(options, "exclude_presets")?.unwrap_or_default(),
        timeout_by: get(options, "timeout_by")?,
        actor: get(options, "actor")?,
        stitch: get(options, "stitch")?,
        time: get(options, "time")?.unwrap_or(defaults.time),
        time_unit: time_unit(options)?,
        event: get(options, "event")?.unwrap_or(defaults.event),
        session_id_col: get(options, "session_id_col")?.unwrap_or(defaults.session_id_col),
        insert_id_col: get(options, "insert_id_col")?,
        event_id_col: get(options, "event_id_col")?,
        dedup_insert_id,
        time_zone: get(options, "time_zone")?.unwrap_or(defaults.time_zone),
        source_relation: get(options, "source_relation")?.unwrap_or_default(),
        date_from: get(options, "date_from")?,
        date_to: get(options, "date_to")?,
    })
}

/// A context with every function registered; `threads` sets its partitions.
fn context(options: &Bound<'_, PyDict>) -> PyResult<SessionContext> {
    let mut config = datafusion::prelude::SessionConfig::new().with_information_schema(true);
    if let Some(threads) = get::<usize>(options, "threads")? {
        config = config.with_target_partitions(threads.max(1));
    }
    sessionize::context_with_config(config).map_err(to_py)
}

/// Registers `data` as table `name`: a list of paths (files, folders, globs, URLs) read as the
/// command line reads them, or Arrow data read through its C stream.
fn load(
    py: Python<'_>,
    ctx: &SessionContext,
    name: &str,
    data: &Bound<'_, PyAny>,
    load: &LoadOptions,
) -> PyResult<()> {
    if let Ok(list) = data.cast::<PyList>() {
        let paths: Vec<String> = list.extract()?;
        if let [path] = paths.as_slice()
            && let Some(location) = sessionize::delta::location(path)
        {
            return run(py, sessionize::delta::register(ctx, name, location));
        }
        return run(
            py,
            sessionize::tables::register_inputs(ctx, name, &paths, load),
        );
    }
    let (schema, batches) = read_stream(data)?;
    let display = format!("the {} data", data.get_type().name()?);
    sessionize::tables::register_batches(ctx, name, schema, batches, load, &display).map_err(to_py)
}

/// Runs `df` and returns its batches.
async fn collect_frame(
    df: datafusion::dataframe::DataFrame,
) -> datafusion::error::Result<ArrowResult> {
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    ArrowResult::new(schema, batches)
}

/// The sessions table (`sessionize sessions`).
#[pyfunction]
pub fn sessions(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    options: &Bound<'_, PyDict>,
) -> PyResult<Answer> {
    let job = job(options)?;
    let mut session_options = job.options().map_err(to_py)?;
    let ctx = context(options)?;
    let load_options = LoadOptions {
        time_column: Some(session_options.time.clone()),
        time_unit: job.time_unit,
        ..LoadOptions::default()
    };
    load(py, &ctx, "events", data, &load_options)?;
    run(py, async {
        let mut notes = job.prepare(&ctx, "events", &mut session_options).await?;
        notes.extend(sessionize::job::left_out_notes(&ctx, "events", &session_options).await?);
        let schema = ctx.table("events").await?.schema().as_arrow().clone();
        let sql = sessionize::sessions::sessions_sql("events", &schema, &session_options)?;
        let result = collect_frame(ctx.sql(&sql).await?).await?;
        Ok((result, notes))
    })
}

/// Every event with its session (`sessionize annotate`), in the input's order.
#[pyfunction]
pub fn annotate(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    options: &Bound<'_, PyDict>,
) -> PyResult<Answer> {
    let job = job(options)?;
    let concluded = get::<bool>(options, "concluded")?.unwrap_or(false);
    let mut session_options = job.options().map_err(to_py)?;
    let ctx = context(options)?;
    let load_options = LoadOptions {
        time_column: Some(session_options.time.clone()),
        time_unit: job.time_unit,
        ..LoadOptions::default()
    };
    load(py, &ctx, "events", data, &load_options)?;
    run(py, async {
        let notes = job.prepare(&ctx, "events", &mut session_options).await?;
        let stream =
            sessionize::annotate::annotate(&ctx, "events", &session_options, concluded).await?;
        let schema = stream.schema();
        let batches = collect(stream).await?;
        Ok((ArrowResult::new(schema, batches)?, notes))
    })
}

/// The User Sessions chart (`sessionize chart`) of the spec given as JSON text.
#[pyfunction]
pub fn chart(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    spec: &str,
    options: &Bound<'_, PyDict>,
) -> PyResult<Answer> {
    // The spec names the session's actor only where the user gave one (the Python API leaves
    // the key out otherwise): then an export source's own actor does not replace it.
    let names_actor = sessionize::chart::ChartSpec::names_actor("spec.json", spec);
    let mut spec = sessionize::chart::ChartSpec::from_text("spec.json", spec).map_err(to_py)?;
    for preset in get::<Vec<String>>(options, "exclude_presets")?.unwrap_or_default() {
        let events = sessionize::sessions::exclude_preset(&preset).map_err(to_py)?;
        spec.session
            .exclude_events
            .extend(events.iter().map(|e| e.to_string()));
    }
    let source = get::<String>(options, "source")?;
    let unit = time_unit(options)?;
    let ctx = context(options)?;
    let load_options = LoadOptions {
        time_column: Some(spec.session.time.clone()),
        time_unit: unit,
        ..LoadOptions::default()
    };
    load(py, &ctx, "events", data, &load_options)?;
    run(py, async {
        let notes = sessionize::job::prepare_chart(
            &ctx,
            "events",
            &mut spec,
            source.as_deref(),
            unit,
            names_actor,
        )
        .await?;
        let df = sessionize::chart::chart_of(&ctx, "events", &spec).await?;
        Ok((collect_frame(df).await?, notes))
    })
}

/// SQL over tables (`sessionize query`): `tables` maps each name to its data; the table `events`
/// is mapped by its export source (named, or recognised).
#[pyfunction]
pub fn sql(
    py: Python<'_>,
    query: &str,
    tables: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
) -> PyResult<Answer> {
    let ctx = context(options)?;
    let source = get::<String>(options, "source")?;
    let unit = time_unit(options)?;
    let load_options = LoadOptions {
        time_column: Some("event_time".into()),
        time_unit: unit,
        ..LoadOptions::default()
    };
    for (name, data) in tables.iter() {
        let name: String = name.extract()?;
        load(py, &ctx, &name, &data, &load_options)?;
    }
    let has_events = tables.contains("events")?;
    run(py, async {
        let mut notes = vec![];
        if has_events {
            sessionize::job::map_source(&ctx, "events", source.as_deref(), unit, &mut notes)
                .await?;
        }
        let df = ctx.sql(query).await?;
        Ok((collect_frame(df).await?, notes))
    })
}
