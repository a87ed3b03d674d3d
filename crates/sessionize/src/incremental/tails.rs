//! The tails of a sessions table: each actor's last session, kept beside the table so that a run
//! finds where each actor's sessions continue without reading the whole sessions table.
//!
//! # Where, and why it can be trusted
//! `TABLE/_sessionize_tails/v{VERSION}.parquet`: one row per actor (`user_id`, and its last
//! session's `session_started_at`, `session_ended_at`, `user_session_number`,
//! `last_session_ended_at`, `session_started_at_day`), where `VERSION` is the sessions table's
//! version the rows mirror. A run uses the file only when its name is the sessions table's latest
//! version and can be read; otherwise (a run that died after its sessions commit, a table built
//! before tails, a damaged file) it computes the tails from the sessions table in one pass, as
//! the file would have held them. A run writes the new tails under a pending name while its
//! sessions commit is made (a temporary file renamed, or a completed multipart upload), renames
//! them after the version that commit made, and then removes every other file of the folder.
//! Delta's `VACUUM` leaves folders starting with `_` alone.
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
pub fn last_sessions_sql(sessions: &str) -> String {
    format!(
        "SELECT {} FROM {sessions} s JOIN \
           (SELECT user_id, max(user_session_number) AS n FROM {sessions} \
            WHERE user_id IS NOT NULL GROUP BY user_id) m \
         ON s.user_id = m.user_id AND s.user_session_number = m.n",
        columns("s")
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

/// Registers `name` as the tails of the sessions table at `location`, registered as `sessions`,
/// at its `version`: the file of that version when there is one that can be read, else computed
/// from `sessions`. Returns whether the file was read.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    sessions: &str,
    version: i64,
) -> Result<bool> {
    let (store, prefix) = store(ctx, location)?;
    let path = prefix.clone().join(file_name(version));
    ctx.deregister_table(name)?;
    // Read (or computed) once, into memory: the run joins them twice and writes them at its end.
    let (df, found) = match store.head(&path).await {
        Ok(_) => {
            let file = format!("{}{}", folder(location), file_name(version));
            match ctx.read_parquet(file, ParquetReadOptions::default()).await {
                Ok(df) => (df, true),
                Err(_) => (ctx.sql(&last_sessions_sql(sessions)).await?, false),
            }
        }
        Err(object_store::Error::NotFound { .. }) => {
            (ctx.sql(&last_sessions_sql(sessions)).await?, false)
        }
        Err(e) => {
            return Err(datafusion::error::DataFusionError::Execution(format!(
                "cannot read the tails of '{location}': {e}"
            )));
        }
    };
    let schema = Arc::new(df.schema().as_arrow().clone());
    let (schema, batches, found) = match df.collect().await {
        Ok(batches) => (schema, batches, found),
        // A file that cannot be read (damaged, or copied in part) is a cache lost: the tails
        // are computed from the table, as without a file.
        Err(_) if found => {
            let df = ctx.sql(&last_sessions_sql(sessions)).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            (schema, df.collect().await?, false)
        }
        Err(e) => return Err(e),
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

/// Stages the tails of the sessions table at `location` after a run: those of `old` (a
/// registered tails table) with every actor of `computed` (a registered table of recomputed
/// sessions, each of its actors' sessions from some cut to its last) given its last computed
/// session. They are written under a pending name while the run's sessions commit is made (the
/// two run at once), and [`Pending::publish`] names them after the version it made.
pub async fn stage_updated(
    ctx: &SessionContext,
    location: &str,
    old: &str,
    computed: &str,
) -> Result<Pending> {
    let sql = format!(
        "SELECT o.* FROM {old} o LEFT ANTI JOIN (SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id \
           FROM {computed}) c ON o.user_id = c.user_id \
         UNION ALL {}",
        last_sessions_sql(computed)
    );
    stage(ctx, location, &sql).await
}

/// Writes the tails of the sessions table at `location` (registered as `sessions`) at its
/// `version`, computed from all of it: after a full build.
pub async fn write_all(
    ctx: &SessionContext,
    location: &str,
    version: i64,
    sessions: &str,
) -> Result<()> {
    stage(ctx, location, &last_sessions_sql(sessions))
        .await?
        .publish(ctx, location, version)
        .await
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
            .try_filter(|path| futures::future::ready(*path != keep))
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
async fn stage(ctx: &SessionContext, location: &str, sql: &str) -> Result<Pending> {
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
    output::write_to(ctx, stream, Format::Parquet, &target, None).await?;
    Ok(Pending { name })
}
