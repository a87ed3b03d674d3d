//! Loading event tables: Parquet files, folders and globs.
//!
//! Errors name the path and say what was wrong with it, since they are shown to users as they are.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

/// Whether `path` holds glob characters.
fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Registers the Parquet file, folder or glob at `path` as table `name`.
pub async fn register_events(ctx: &SessionContext, name: &str, path: &str) -> Result<()> {
    let has_scheme = path.contains("://");
    let mut extension = "";
    if !has_scheme && !is_glob(path) {
        match std::fs::metadata(path) {
            Err(e) => return plan_err!("cannot read '{path}': {e}"),
            Ok(meta) if meta.is_dir() => extension = ".parquet",
            Ok(_) => {}
        }
    } else if has_scheme && !path.starts_with("file://") {
        return plan_err!(
            "cannot read '{path}': only local paths and file:// URLs are supported by this build"
        );
    }
    let url = ListingTableUrl::parse(path)
        .map_err(|e| DataFusionError::Plan(format!("'{path}' is not a valid path or URL: {e}")))?;
    let state = ctx.state();
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(extension);
    let store = state.runtime_env().object_store(&url)?;
    let files = url
        .list_all_files(&state, store.as_ref(), extension)
        .await
        .map_err(|e| DataFusionError::Plan(format!("cannot list '{path}': {e}")))?;
    let count = {
        use futures::TryStreamExt;
        files.try_collect::<Vec<_>>().await?.len()
    };
    if count == 0 {
        return if is_glob(path) {
            plan_err!("no files match '{path}'")
        } else {
            plan_err!("the folder '{path}' holds no .parquet files")
        };
    }
    let schema = options.infer_schema(&state, &url).await.map_err(|e| {
        DataFusionError::Plan(format!(
            "cannot read '{path}' as Parquet: {}",
            e.strip_backtrace()
        ))
    })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}
