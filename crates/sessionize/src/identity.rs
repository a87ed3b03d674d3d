//! Who an event belongs to, when an export carries more than one identity: the user id, and a
//! device or anonymous id for events before the user identifies.
//!
//! - **First non-null** (`--actor user_id,device_id`; an empty text counts as null): Amplitude's
//!   sessions of users not yet identified are per device; Segment's and PostHog's events carry an
//!   anonymous id beside the user id.
//! - **Stitched** (`--stitch anonymous_id=user_id`): an event without a user id takes the user id
//!   its anonymous id was most recently seen with (by event time, over the whole input), so a visit
//!   that logs in midway is one session of one user. This is dbt's Segment package rule for its
//!   `blended_user_id` (the latest user id per anonymous id), except that an event that carries a
//!   user id keeps it: on a shared device the package moves every event of the anonymous id to its
//!   latest user, which would move one person's identified events to another. Amplitude merges
//!   an anonymous device into the user it identifies as (<https://amplitude.com/docs/data/sources/
//!   instrument-track-unique-users>), which is this rule for the events before identification;
//!   Mixpanel's ID merge does the same with `$device_id` and `$user_id`.
//!
//! Both keep the table's columns and add the identity as a text column `actor` (the sessions
//! table's `user_id`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::sessions::{ident, require_column, require_mapped_column};

/// The columns of an `--actor` list (`user_id,device_id`): comma-separated, trimmed, empty names
/// dropped.
pub fn parse_actors(text: &str) -> Vec<String> {
    text.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The (anonymous id, user id) columns of a `--stitch ANONYMOUS=USER` text.
///
/// Errors: text that is not `ANONYMOUS=USER`.
pub fn parse_stitch(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((a, u)) if !a.trim().is_empty() && !u.trim().is_empty() => {
            Ok((a.trim().to_string(), u.trim().to_string()))
        }
        _ => plan_err!(
            "--stitch expects ANONYMOUS=USER, for example anonymous_id=user_id, but got '{text}'"
        ),
    }
}

/// The actor columns of a run: those asked for (`given`, an `--actor` list), else none when
/// stitching (the stitched user id is the actor), else the export source's own (the user id, else
/// the device or anonymous id; of SDK sessions, the device where the SDK's session key is the
/// device's), else `user_id`.
pub fn actors_of(
    given: Option<&str>,
    stitching: bool,
    source: Option<&crate::sources::Source>,
    sdk: bool,
) -> Vec<String> {
    match (given, source) {
        (Some(given), _) => parse_actors(given),
        (None, _) if stitching => vec![],
        (None, Some(source)) if sdk => source.sdk_session_actors(),
        (None, Some(source)) => source.actors(),
        (None, None) => vec!["user_id".to_string()],
    }
}

/// Replaces `table` by a view with a column [`ACTOR`]: the first non-null of `actors` (all cast
/// to text), or, with `stitch` = (anonymous id, user id), the user id, else the user id the
/// anonymous id was last seen with (by `time`), else the anonymous id. The raw table becomes
/// `__identity_<table>`. Returns the actor column to use: [`ACTOR`], or the one column of `actors`
/// when there is one and no `stitch` (nothing is changed then).
///
/// Errors: a missing column (naming the flag), an empty list without `stitch`, `stitch` with
/// several actors.
pub async fn apply(
    ctx: &SessionContext,
    table: &str,
    actors: &[String],
    stitch: Option<(&str, &str)>,
    time: &str,
) -> Result<String> {
    if stitch.is_none() {
        match actors {
            [] => return plan_err!("--actor names no column"),
            [only] => return Ok(only.clone()),
            _ => {}
        }
    }
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    for actor in actors {
        require_column(&schema, actor, "--actor")?;
    }
    let raw = format!("__identity_{table}");
    // An empty identity is no identity (a `userId` of "" sent before login).
    let text = |c: &str| format!("NULLIF(CAST({} AS VARCHAR), '')", ident(c));
    let actor = match stitch {
        None => {
            let coalesced: Vec<String> = actors.iter().map(|a| text(a)).collect();
            format!("COALESCE({})", coalesced.join(", "))
        }
        Some((anonymous, user)) => {
            if actors.len() > 1 {
                return plan_err!(
                    "--stitch puts the stitched user id in the actor column: give --actor one column"
                );
            }
            require_mapped_column(&schema, anonymous, "--stitch ANONYMOUS=USER")?;
            require_mapped_column(&schema, user, "--stitch ANONYMOUS=USER")?;
            require_column(&schema, time, "--time")?;
            let (a, u, t) = (ident(anonymous), ident(user), ident(time));
            // The user each anonymous id was last seen with: the latest of its events that
            // carry a user id (ties: the greatest user id, so that the choice never depends on
            // the rows' order). Kept in memory, one entry per such anonymous id, and looked up
            // by a function, so the events keep their order (a join would not).
            let latest = format!(
                "SELECT CAST({a} AS VARCHAR) AS anonymous, \
                 last_value(CAST({u} AS VARCHAR) ORDER BY {t} ASC NULLS FIRST, CAST({u} AS VARCHAR) ASC) AS user \
                 FROM {} WHERE {u} IS NOT NULL AND {a} IS NOT NULL AND CAST({u} AS VARCHAR) <> '' \
                 AND CAST({a} AS VARCHAR) <> '' GROUP BY CAST({a} AS VARCHAR)",
                ident(table)
            );
            let mut users = HashMap::new();
            for batch in ctx.sql(&latest).await?.collect().await? {
                let anonymous = cast(batch.column(0), &DataType::Utf8)?;
                let user = cast(batch.column(1), &DataType::Utf8)?;
                let (anonymous, user) = (anonymous.as_string::<i32>(), user.as_string::<i32>());
                for row in 0..batch.num_rows() {
                    if anonymous.is_valid(row) && user.is_valid(row) {
                        users.insert(
                            anonymous.value(row).to_string(),
                            user.value(row).to_string(),
                        );
                    }
                }
            }
            let name = format!("__stitched_{table}");
            ctx.register_udf(ScalarUDF::new_from_impl(Stitched {
                name: name.clone(),
                users: Arc::new(users),
                signature: Signature::any(1, Volatility::Immutable),
            }));
            format!(
                "COALESCE({}, {name}({}), {})",
                text(user),
                text(anonymous),
                text(anonymous)
            )
        }
    };
    // The identity is a column of its own, `actor` (the input's columns stay as they were),
    // unless the input has a column of that name, which it then replaces.
    let sql = if schema.field_with_name(ACTOR).is_ok() {
        format!("SELECT * REPLACE ({actor} AS {ACTOR}) FROM {}", ident(&raw))
    } else {
        format!("SELECT *, {actor} AS {ACTOR} FROM {}", ident(&raw))
    };
    let provider = ctx.table_provider(table).await?;
    ctx.deregister_table(table)?;
    ctx.register_table(&raw, provider)?;
    let view = ctx.sql(&sql).await?.into_view();
    ctx.register_table(table, view)?;
    Ok(ACTOR.to_string())
}

/// The column that holds the identity when [`apply`] makes one.
pub const ACTOR: &str = "actor";

/// The look-up of [`apply`]'s stitching: an anonymous id's latest user id, or null.
#[derive(Debug)]
struct Stitched {
    name: String,
    users: Arc<HashMap<String, String>>,
    signature: Signature,
}

impl PartialEq for Stitched {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.users, &other.users)
    }
}

impl Eq for Stitched {}

impl std::hash::Hash for Stitched {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Stitched {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let anonymous = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let users: StringArray = anonymous
            .as_string::<i32>()
            .iter()
            .map(|a| a.and_then(|a| self.users.get(a).map(String::as_str)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(users)))
    }
}
