//! The tails of a sessions table, or of an annotated events table: each actor's last session,
//! kept beside the table so that a run finds where each actor's sessions continue without reading
//! the whole table.
//!
//! # Where, and why it can be trusted
//! `TABLE/_sessionize_tails/v{VERSION}.parquet`: one row per actor (`user_id`, and its last
//! session's `session_started_at`, `session_ended_at`, `user_session_number`,
//! `last_session_ended_at`, `session_started_at_day`), where `VERSION` is the sessions table's
//! version the rows mirror. A run uses the file only when its name is the sessions table's latest
//! version, it carries the token that version's commit recorded ([`COMMIT_TOKEN`]; in the file's
//! Parquet metadata), it has the tails' columns and it can be read; otherwise (a run that died
//! after its sessions commit, a table built before tails, a file copied from another table or
//! version, a damaged file) it computes the tails from the sessions table in one pass, as the file
//! would have held them. (A newcomer's audit found that copying another version's file in place
//! silently gave a wrong table before the token.) A run writes the new tails under a pending name while its
//! sessions commit is made (a temporary file renamed, or a completed multipart upload), renames
//! them after the version that commit made, and then removes every other file of the folder.
//! Delta's `VACUUM` leaves folders starting with `_` alone. An annotated events table's tails
//! are the same, with the first four columns ([`Source::Events`]), computed from its events.
//!
//! # Cost
//! A file of one row per actor (about 40 bytes an actor: 20 MB at 485,000 actors), read once and
//! written once per run; against the sessions table's one row per session, read twice by the join
//! it replaces (17M rows at 100M events).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::output::{self, Format};

/// The tails' folder inside the sessions table's.
pub const TAILS_FOLDER: &str = "_sessionize_tails";
/// The `commitInfo` field of a sessions commit: the token of the tails written with it.
pub const COMMIT_TOKEN: &str = "sessionizeTails";
/// The Parquet key-value metadata field of a tails file: its token.
const FILE_TOKEN: &str = "sessionize.tails";

/// A new token for the tails a run writes: the run's sessions commit records it, and the file
/// carries it, so that a file is used only with the commit it was written with (not a copy from
/// another table or version).
pub fn token() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

/// What tails are computed from, which also decides their columns.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source<'a> {
    /// A relation with the sessions table's columns: a sessions table's tails (`user_id`,
    /// `session_started_at`, `session_ended_at`, `user_session_number`, `last_session_ended_at`,
    /// `session_started_at_day`).
    Sessions(&'a str),
    /// A relation of annotated events, with its actor's and time's columns (SQL identifiers) and
    /// `session_number`: an annotated events table's tails (`user_id`, `session_started_at`,
    /// `session_ended_at`, `user_session_number`: the first four of a sessions table's).
    Events {
        relation: &'a str,
        actor: &'a str,
        time: &'a str,
    },
}

impl Source<'_> {
    /// The relation tails are computed from.
    fn relation(&self) -> &str {
        match *self {
            Source::Sessions(relation) | Source::Events { relation, .. } => relation,
        }
    }

    /// The SQL of each actor's last session.
    fn sql(&self) -> String {
        match *self {
            Source::Sessions(sessions) => last_sessions_sql(sessions),
            Source::Events {
                relation,
                actor,
                time,
            } => last_events_sql(relation, actor, time),
        }
    }

    /// The tails' columns: names, and types (`None`: text of any layout).
    fn expected(&self) -> Vec<(&'static str, Option<datafusion::arrow::datatypes::DataType>)> {
        use datafusion::arrow::datatypes::{DataType, TimeUnit};
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut expected = vec![
            ("user_id", None),
            ("session_started_at", Some(utc.clone())),
            ("session_ended_at", Some(utc.clone())),
            ("user_session_number", Some(DataType::Int64)),
        ];
        if let Source::Sessions(_) = self {
            expected.push(("last_session_ended_at", Some(utc)));
            expected.push(("session_started_at_day", Some(DataType::Date32)));
        }
        expected
    }
}

/// Whether `schema` is the tails' own for `source`, with `token` in its metadata.
fn is_tails(
    schema: &datafusion::arrow::datatypes::Schema,
    token: &str,
    source: Source<'_>,
) -> bool {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let same = |found: &DataType, expected: &DataType| match (found, expected) {
        // A time zone of UTC, however written.
        (DataType::Timestamp(TimeUnit::Microsecond, Some(_)), DataType::Timestamp(..)) => true,
        _ => found == expected,
    };
    let expected = source.expected();
    schema.metadata().get(FILE_TOKEN).map(String::as_str) == Some(token)
        && schema.fields().len() == expected.len()
        && schema.fields().iter().zip(expected).all(|(f, (name, ty))| {
            f.name() == name
                && match ty {
                    Some(ty) => same(f.data_type(), &ty),
                    None => matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ),
                }
        })
}

/// The tails' columns, in their stored types, from a relation with the sessions table's columns
/// (`from`, an SQL name or alias).
pub(super) fn columns(from: &str) -> String {
    format!(
        "CAST({from}.user_id AS VARCHAR) AS user_id, \
         arrow_cast({from}.session_started_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS session_started_at, \
         arrow_cast({from}.session_ended_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS session_ended_at, \
         CAST({from}.user_session_number AS BIGINT) AS user_session_number, \
         arrow_cast({from}.last_session_ended_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS last_session_ended_at, \
         CAST({from}.session_started_at_day AS DATE) AS session_started_at_day"
    )
}

/// The SQL of each actor's last session (its highest `user_session_number`) in `sessions`, a
/// relation with the sessions table's columns; actors without a user id have no tail.
///
/// One aggregate, without a join back to the rows: in the sessions that continue (derived, one
/// timeout) an actor's sessions follow one another in time, so each of the tails' columns
/// (start, end, number, the previous session's end, the start's day) is at its greatest in the
/// last session, and its `max` over the actor's sessions is the last session's value (the
/// previous end is null only in an actor's first session).
pub fn last_sessions_sql(sessions: &str) -> String {
    let utc =
        |c: &str| format!("arrow_cast(max({c}), 'Timestamp(Microsecond, Some(\"UTC\"))') AS {c}");
    format!(
        "SELECT CAST(user_id AS VARCHAR) AS user_id, {}, {}, \
         CAST(max(user_session_number) AS BIGINT) AS user_session_number, {}, \
         CAST(max(session_started_at_day) AS DATE) AS session_started_at_day \
         FROM {sessions} WHERE user_id IS NOT NULL GROUP BY CAST(user_id AS VARCHAR)",
        utc("session_started_at"),
        utc("session_ended_at"),
        utc("last_session_ended_at"),
    )
}

/// The SQL of each actor's last session in `events`, a relation of annotated events with the
/// columns `actor` and `time` (SQL identifiers; times in microseconds) and `session_number`;
/// actors without a user id, and events without a session, have no tail.
///
/// One aggregate: in the sessions that continue, an actor's session numbers follow their starts,
/// and the last session holds the actor's latest event that has a session; so the start is the
/// earliest time of the highest number (`first_value` ordered by number, then time), the end the
/// latest time.
pub fn last_events_sql(events: &str, actor: &str, time: &str) -> String {
    let utc = |e: &str| format!("arrow_cast({e}, 'Timestamp(Microsecond, Some(\"UTC\"))')");
    format!(
        "SELECT CAST({actor} AS VARCHAR) AS user_id, {} AS session_started_at, \
         {} AS session_ended_at, CAST(max(session_number) AS BIGINT) AS user_session_number \
         FROM {events} WHERE {actor} IS NOT NULL AND session_number IS NOT NULL \
         GROUP BY CAST({actor} AS VARCHAR)",
        utc(&format!(
            "first_value({time} ORDER BY session_number DESC, {time} ASC)"
        )),
        utc(&format!("max({time})")),
    )
}

fn folder(location: &str) -> String {
    format!("{}/{TAILS_FOLDER}/", location.trim_end_matches('/'))
}

fn file_name(version: i64) -> String {
    format!("v{version}.parquet")
}

/// The object store holding the tails of the table at `location`, and the folder's path in it.
fn store(
    ctx: &SessionContext,
    location: &str,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
    let folder = folder(location);
    if output::is_remote(&folder) {
        crate::tables::register_object_store(ctx, &folder)?;
    }
    let url = ListingTableUrl::parse(&folder)?;
    let store = ctx.state().runtime_env().object_store(&url)?;
    Ok((store, url.prefix().clone()))
}

/// Registers `name` as the tails of the table at `location` at its `version`: the file of that
/// version when there is one that can be read, else computed from `source` (the table,
/// registered). Returns whether the file was read.
pub(super) async fn register(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    source: Source<'_>,
    version: i64,
) -> Result<bool> {
    ctx.deregister_table(name)?;
    // Read (or computed) once, into memory: the run joins them twice and writes them at its end.
    let (schema, batches, found) = match read(ctx, location, version, source).await {
        Some(read) => read,
        None => {
            let df = ctx.sql(&source.sql()).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            (schema, df.collect().await?, false)
        }
    };
    ctx.register_table(
        name,
        Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![batches],
        )?),
    )?;
    Ok(found)
}

/// [`register`] at the table's latest version.
pub(super) async fn register_latest(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    source: Source<'_>,
) -> Result<bool> {
    let version = crate::delta::version(location).await?;
    register(ctx, name, location, source, version).await
}

/// The tails file of `version`, when there is one written with that version's commit, of the
/// tails' schema for `source`, that can be read. Anything else (no file, another table's or version's,
/// a damaged one, a folder in its place) is a cache lost: `None`, and the tails are computed from
/// the table.
async fn read(
    ctx: &SessionContext,
    location: &str,
    version: i64,
    source: Source<'_>,
) -> Option<(
    datafusion::arrow::datatypes::SchemaRef,
    Vec<datafusion::arrow::array::RecordBatch>,
    bool,
)> {
    let info = crate::delta::last_commit_info(location).await.ok()?;
    let token = info.get(COMMIT_TOKEN)?.as_str()?.to_string();
    let (store, prefix) = store(ctx, location).ok()?;
    store.head(&prefix.join(file_name(version))).await.ok()?;
    let file = format!("{}{}", folder(location), file_name(version));
    let df = ctx
        .read_parquet(file, ParquetReadOptions::default().skip_metadata(false))
        .await
        .ok()?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    if !is_tails(&schema, &token, source) {
        return None;
    }
    // Without the file's metadata (the token), which would otherwise travel into the rows the
    // run commits, and make their schema differ from the table's.
    let schema = Arc::new(schema.as_ref().clone().with_metadata(Default::default()));
    let batches = df
        .collect()
        .await
        .ok()?
        .into_iter()
        .map(|b| {
            datafusion::arrow::array::RecordBatch::try_new(
                Arc::clone(&schema),
                b.columns().to_vec(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((schema, batches, true))
}

/// Stages the tails of the table at `location` after a run: those of `old` (a registered tails
/// table) with every actor of `computed` (recomputed sessions, or annotated events, each of its
/// actors' from some cut to its last) given its last computed session. They are written under a pending name while the run's sessions commit is made (the
/// two run at once), and [`Pending::publish`] names them after the version it made.
pub(super) async fn stage_updated(
    ctx: &SessionContext,
    location: &str,
    old: &str,
    computed: Source<'_>,
    token: &str,
) -> Result<Pending> {
    // The recomputed actors' tails, in memory: they replace the old ones of the same actors.
    const NEW_TAILS: &str = "__sessionize_new_tails";
    let new_tails = ctx.sql(&computed.sql()).await?;
    let schema = Arc::new(new_tails.schema().as_arrow().clone());
    let batches = new_tails.collect().await?;
    ctx.deregister_table(NEW_TAILS)?;
    ctx.register_table(
        NEW_TAILS,
        Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![batches],
        )?),
    )?;
    let sql = format!(
        "SELECT o.* FROM {old} o LEFT ANTI JOIN {NEW_TAILS} c ON o.user_id = c.user_id \
         UNION ALL SELECT * FROM {NEW_TAILS}"
    );
    stage(ctx, location, &sql, token).await
}

/// Writes the tails of the table at `location` at its `version`, computed from all of it (the
/// table registered as `source`'s relation here): after a full build. Returns why they could not
/// be kept where they could not (the table is right either way: tails not kept are computed by
/// the next run).
pub(super) async fn write_all(
    ctx: &SessionContext,
    location: &str,
    version: i64,
    source: Source<'_>,
    token: &str,
) -> Option<String> {
    let written = async {
        super::register_latest(ctx, source.relation(), location).await?;
        stage(ctx, location, &source.sql(), token)
            .await?
            .publish(ctx, location, version)
            .await
    };
    written.await.err().map(|e| e.to_string())
}

/// Makes a table's `commit` (which gives its new version) while its new tails are `staged`, then
/// names them after that version. Returns the version, and why the tails could not be kept where
/// they could not (the table is right either way: tails not kept are computed by the next run).
/// A commit that fails removes the staged tails and gives its error.
pub(super) async fn beside_commit(
    ctx: &SessionContext,
    location: &str,
    commit: impl std::future::Future<Output = Result<i64>>,
    staged: impl std::future::Future<Output = Result<Pending>>,
) -> Result<(i64, Option<String>)> {
    match futures::future::join(commit, staged).await {
        (Ok(version), Ok(staged)) => {
            let lost = staged.publish(ctx, location, version).await.err();
            Ok((version, lost.map(|e| e.to_string())))
        }
        (Ok(version), Err(e)) => Ok((version, Some(e.to_string()))),
        (Err(e), staged) => {
            if let Ok(staged) = staged {
                staged.discard(ctx, location).await;
            }
            Err(e)
        }
    }
}

/// Tails written under a pending name (never read as tails: only `vN.parquet` is), waiting for
/// the sessions commit whose version they mirror.
#[derive(Debug)]
pub struct Pending {
    name: String,
}

impl Pending {
    /// Names the tails after `version`, the sessions commit just made, then removes every other
    /// file of the folder (older versions, and what runs that died left).
    pub async fn publish(self, ctx: &SessionContext, location: &str, version: i64) -> Result<()> {
        let (store, prefix) = store(ctx, location)?;
        let keep = prefix.clone().join(file_name(version));
        let error = |what: &str, e: object_store::Error| {
            datafusion::error::DataFusionError::Execution(format!(
                "cannot {what} the tails of '{location}': {e}"
            ))
        };
        store
            .rename(&prefix.clone().join(self.name.as_str()), &keep)
            .await
            .map_err(|e| error("name", e))?;
        let others: Vec<_> = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_filter(|path| {
                // Only the tails' own files: older versions and pending ones.
                let name = path.filename().unwrap_or_default();
                let ours = name.ends_with(".parquet")
                    && (name.starts_with('v') || name.starts_with("pending-"));
                futures::future::ready(ours && *path != keep)
            })
            .try_collect()
            .await
            .map_err(|e| error("list", e))?;
        for path in others {
            // A file left behind is never read (its name is not the table's version).
            store.delete(&path).await.ok();
        }
        Ok(())
    }

    /// Removes the staged tails (the sessions commit failed).
    pub async fn discard(self, ctx: &SessionContext, location: &str) {
        if let Ok((store, prefix)) = store(ctx, location) {
            store.delete(&prefix.join(self.name.as_str())).await.ok();
        }
    }
}

/// Writes what `sql` gives under a pending name in the tails' folder.
async fn stage(ctx: &SessionContext, location: &str, sql: &str, token: &str) -> Result<Pending> {
    let stream = ctx.sql(sql).await?.execute_stream().await?;
    let name = format!(
        "pending-{}-{}.parquet",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let target = format!("{}{name}", folder(location));
    if !output::is_remote(&target) {
        let local = folder(location);
        let local = local.strip_prefix("file://").unwrap_or(&local);
        std::fs::create_dir_all(local).map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!(
                "cannot write the tails of '{location}': {e}"
            ))
        })?;
    }
    // Without dictionaries: one row per actor, so user ids and times are all but unique, and a
    // dictionary would only be built to be dropped.
    let properties = datafusion::parquet::file::properties::WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(vec![
            datafusion::parquet::file::metadata::KeyValue::new(
                FILE_TOKEN.to_string(),
                token.to_string(),
            ),
        ]))
        .build();
    output::write_to_with(
        ctx,
        stream,
        Format::Parquet,
        &target,
        None,
        Some(&properties),
    )
    .await?;
    Ok(Pending { name })
}
