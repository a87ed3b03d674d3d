//! Export sources: the shape each analytics tool exports its events in, mapped onto the columns
//! every command reads (Amplitude's names): `user_id` (the actor), `device_id`, `event_time`
//! (`Timestamp(µs, "UTC")`), `event_type`, `session_id` (the SDK's session key, Int64), `insert_id`,
//! `event_properties` (JSON text), and, where the export has it, `platform`. The export's other
//! columns follow unchanged.
//!
//! One file per source holds its mapping and cites where the vendor documents the schema. A
//! source is chosen by name (`--source`) or recognised from its signature columns; Amplitude's
//! shapes (the Export API, the S3 export, Fivetran's `event` table) already have these names and
//! need no mapping.

mod amplitude;
mod ga4;
mod mixpanel;
mod posthog;
mod segment;
mod snowplow;

use std::fmt::Write as _;

use datafusion::arrow::datatypes::{DataType, Fields, Schema};
use datafusion::common::{Result, plan_err};
use datafusion::prelude::SessionContext;

use crate::sessions::{ident, literal};

/// An export format.
#[derive(Debug)]
pub struct Source {
    /// The `--source` name.
    pub name: &'static str,
    /// What stderr calls it: "a GA4 export".
    pub title: &'static str,
    /// Where the vendor documents the schema.
    pub documented_at: &'static str,
    /// Columns that identify the export: each inner list is alternatives, one of which must
    /// exist.
    pub signature: &'static [&'static [&'static str]],
    /// What the SDK's session key is, or `None` when the export has none.
    pub session_key: Option<&'static str>,
    /// The actor when none is asked for: the first non-null of these mapped columns (the user
    /// id, else the device or anonymous id), see [`crate::identity`].
    pub default_actors: &'static [&'static str],
    /// The actor of SDK sessions when none is asked for, where the SDK's session key belongs to
    /// the device rather than the person (GA4's `ga_session_id` pairs with `user_pseudo_id`,
    /// Snowplow's `domain_sessionid` with `domain_userid`): the user id, else the device, would
    /// split a session in which the user logs in. Empty: [`Self::default_actors`].
    pub sdk_actors: &'static [&'static str],
    /// The mapping: SQL for each canonical column over the raw columns. `None` for Amplitude's
    /// own shapes, read as they are.
    mapping: Option<fn(&Raw) -> Mapping>,
}

use crate::scalar::EpochUnit;

/// The canonical columns as SQL over the raw ones (`None`: the export has no such column).
#[derive(Debug, Default)]
struct Mapping {
    user_id: String,
    device_id: Option<String>,
    event_time: String,
    event_type: String,
    session_id: Option<String>,
    insert_id: Option<String>,
    event_properties: Option<String>,
    platform: Option<String>,
}

/// The raw export's columns, for building a mapping, and the unit of epoch-number times.
struct Raw<'a> {
    schema: &'a Schema,
    unit: EpochUnit,
}

impl Raw<'_> {
    /// `event_time(expr, unit, name)`, with `default` as the unit where none was asked for;
    /// `name` is the export's column, named in the error on an unparsable value.
    fn time(&self, expr: &str, default: EpochUnit, name: &str) -> String {
        let unit = match self.unit {
            EpochUnit::Auto => default,
            unit => unit,
        };
        format!(
            "event_time({expr}, '{}', {})",
            unit.as_str(),
            literal(&format!("column {name}"))
        )
    }

    fn has(&self, name: &str) -> bool {
        self.schema.field_with_name(name).is_ok()
    }

    /// The first of `names` the export has, quoted.
    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find(|n| self.has(n)).map(|n| ident(n))
    }

    /// The first of `names` the export has, as a properties object.
    fn properties(&self, names: &[&str]) -> Option<Properties<'_>> {
        let field = names
            .iter()
            .find_map(|n| self.schema.field_with_name(n).ok())?;
        let fields = match field.data_type() {
            DataType::Struct(fields) => Some(fields),
            _ => None,
        };
        Some(Properties {
            sql: ident(field.name()),
            fields,
        })
    }

    /// `COALESCE` of those of `names` the export has (text), or NULL.
    fn coalesce_text(&self, names: &[&str]) -> String {
        let present: Vec<String> = names
            .iter()
            .filter(|n| self.has(n))
            .map(|n| format!("CAST({} AS VARCHAR)", ident(n)))
            .collect();
        match present.len() {
            0 => "CAST(NULL AS VARCHAR)".to_string(),
            1 => present[0].clone(),
            _ => format!("COALESCE({})", present.join(", ")),
        }
    }
}

/// An export's properties object: JSON text, or a struct (Parquet written from JSON objects by
/// Spark, pandas, Polars or PyArrow). Each read gives `event_properties` and the mapped columns the
/// same values in both forms.
struct Properties<'a> {
    sql: String,
    /// The struct's fields; `None` for text.
    fields: Option<&'a Fields>,
}

impl Properties<'_> {
    fn has(&self, key: &str) -> bool {
        self.fields
            .is_some_and(|fields| fields.iter().any(|f| f.name() == key))
    }

    /// The value at `key` as text (null where the object has no such key).
    fn text(&self, key: &str) -> String {
        match self.fields {
            None => format!("json_get_str({}, {})", self.sql, literal(key)),
            Some(_) if self.has(key) => {
                format!("CAST(get_field({}, {}) AS VARCHAR)", self.sql, literal(key))
            }
            Some(_) => "CAST(NULL AS VARCHAR)".to_string(),
        }
    }

    /// The value at `key` as text, a JSON number included (Mixpanel's numeric `distinct_id`).
    fn id(&self, key: &str) -> String {
        match self.fields {
            None => format!(
                "COALESCE({}, CAST(json_get_int({}, {}) AS VARCHAR))",
                self.text(key),
                self.sql,
                literal(key)
            ),
            Some(_) => self.text(key),
        }
    }

    /// The value at `key` for `event_time`: as text where the properties are JSON (a number as
    /// written, so that epoch seconds, milliseconds and ISO-8601 text all read), as stored in a
    /// struct.
    fn time(&self, key: &str) -> String {
        match self.fields {
            None => format!("json_as_text({}, {})", self.sql, literal(key)),
            Some(_) if self.has(key) => format!("get_field({}, {})", self.sql, literal(key)),
            Some(_) => "CAST(NULL AS DOUBLE)".to_string(),
        }
    }

    /// The whole object as JSON text.
    fn json(&self) -> String {
        match self.fields {
            None => format!("CAST({} AS VARCHAR)", self.sql),
            Some(_) => format!("to_json({})", self.sql),
        }
    }
}

/// The raw time columns of the sources' exports (Segment's and PostHog's `timestamp`, Snowplow's
/// `derived_tstamp` and `collector_tstamp`, GA4's `event_timestamp`): the loader reads them as
/// times where an input has no column of the commands' own time name, so that the files of one
/// export whose time columns differ in type are read together.
pub const RAW_TIME_COLUMNS: &[&str] = &[
    "timestamp",
    "derived_tstamp",
    "collector_tstamp",
    "event_timestamp",
];

/// Every source, in the order they are tried when recognising an export.
pub const SOURCES: &[&Source] = &[
    &ga4::GA4,
    &snowplow::SNOWPLOW,
    &posthog::POSTHOG,
    &segment::SEGMENT,
    &mixpanel::MIXPANEL,
    &amplitude::AMPLITUDE,
    &amplitude::AMPLITUDE_FIVETRAN,
];

impl Source {
    /// The actor columns of the mapped events: [`Self::default_actors`], else the user id alone
    /// (for [`crate::identity::apply`]).
    pub fn actors(&self) -> Vec<String> {
        if self.default_actors.is_empty() {
            vec!["user_id".to_string()]
        } else {
            self.default_actors.iter().map(|a| a.to_string()).collect()
        }
    }

    /// The actor columns of SDK sessions: [`Self::sdk_actors`], else [`Self::actors`].
    pub fn sdk_session_actors(&self) -> Vec<String> {
        if self.sdk_actors.is_empty() {
            self.actors()
        } else {
            self.sdk_actors.iter().map(|a| a.to_string()).collect()
        }
    }

    /// Whether `schema` has this source's signature columns.
    pub fn fits(&self, schema: &Schema) -> bool {
        self.signature
            .iter()
            .all(|any| any.iter().any(|c| schema.field_with_name(c).is_ok()))
    }

    /// The signature columns `schema` lacks (one name per missing group).
    fn missing(&self, schema: &Schema) -> Vec<String> {
        self.signature
            .iter()
            .filter(|any| !any.iter().any(|c| schema.field_with_name(c).is_ok()))
            .map(|any| any.join(" or "))
            .collect()
    }

    /// The SQL of the mapped events over the table `raw`, or `None` for Amplitude's shapes: the
    /// mapped columns the export has, then the export's columns, those whose names a mapped
    /// column took (with other values) kept as `NAME_raw`.
    pub fn view_sql(&self, raw: &str, schema: &Schema, unit: EpochUnit) -> Option<String> {
        let mapping = (self.mapping?)(&Raw { schema, unit });
        let columns: Vec<(&str, String)> = [
            ("user_id", Some(mapping.user_id)),
            ("device_id", mapping.device_id),
            ("event_time", Some(mapping.event_time)),
            ("event_type", Some(mapping.event_type)),
            ("session_id", mapping.session_id),
            ("insert_id", mapping.insert_id),
            ("event_properties", mapping.event_properties),
            ("platform", mapping.platform),
        ]
        .into_iter()
        .filter_map(|(name, expr)| expr.map(|e| (name, e)))
        .collect();
        let mut sql = String::from("SELECT ");
        for (name, expr) in &columns {
            write!(sql, "{expr} AS {}, ", ident(name)).ok();
        }
        for field in schema.fields() {
            let name = field.name();
            match columns.iter().find(|(n, _)| n == name) {
                None => write!(sql, "{}, ", ident(name)).ok(),
                Some((_, expr)) => {
                    let same = *expr == ident(name)
                        || *expr == format!("CAST({} AS VARCHAR)", ident(name));
                    if same {
                        None
                    } else {
                        write!(
                            sql,
                            "{} AS {}, ",
                            ident(name),
                            ident(&format!("{name}_raw"))
                        )
                        .ok()
                    }
                }
            };
        }
        sql.truncate(sql.len() - 2);
        write!(sql, " FROM {}", ident(raw)).ok();
        Some(sql)
    }
}

/// The source named `name`; the error lists the names.
pub fn by_name(name: &str) -> Result<&'static Source> {
    SOURCES
        .iter()
        .copied()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map_or_else(
            || {
                let names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
                plan_err!(
                    "unknown source '{name}': expected one of {}",
                    names.join(", ")
                )
            },
            Ok,
        )
}

/// The source whose signature `schema` has, trying [`SOURCES`] in order.
pub fn recognise(schema: &Schema) -> Option<&'static Source> {
    // An export that already has the commands' own time and event columns is read as it is.
    if schema.field_with_name("event_time").is_ok() && schema.field_with_name("event_type").is_ok()
    {
        if amplitude::AMPLITUDE_FIVETRAN.fits(schema) {
            return Some(&amplitude::AMPLITUDE_FIVETRAN);
        }
        return Some(&amplitude::AMPLITUDE);
    }
    SOURCES.iter().copied().find(|s| s.fits(schema))
}

/// Whether a recognised source is named on stderr: every source but Amplitude's export, whose
/// shape is the commands' own (naming it would add a note to every run on such events; Fivetran's
/// table, read the same way, is named).
pub fn worth_naming(source: &Source) -> bool {
    source.name != amplitude::AMPLITUDE.name
}

/// The mapped source `schema` looks most like, though it lacks some of its signature: the one
/// with the largest share of its signature present, at least half. For "missing column" errors.
pub fn resembles(schema: &Schema) -> Option<&'static Source> {
    // Events in the commands' own shape (Amplitude's, or a source's once mapped) resemble none.
    if schema.field_with_name("event_time").is_ok() && schema.field_with_name("event_type").is_ok()
    {
        return None;
    }
    SOURCES
        .iter()
        .copied()
        .filter(|s| s.mapping.is_some())
        .map(|s| {
            let present = s.signature.len() - s.missing(schema).len();
            (s, present as f64 / s.signature.len() as f64)
        })
        .filter(|(_, share)| *share >= 0.5)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}

/// Maps the events of `table` by `source` (by name), or by the source they are recognised as
/// when `source` is `None`, epoch-number times read in `unit` (where the source does not fix it): the raw table becomes `__raw_<table>` and `table` a view of the mapped
/// columns. Returns the source and whether it was recognised rather than named.
///
/// Errors: an unknown name, or an export without the named source's signature columns (naming
/// them).
pub async fn apply(
    ctx: &SessionContext,
    table: &str,
    source: Option<&str>,
    unit: EpochUnit,
) -> Result<Option<(&'static Source, bool)>> {
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    let (source, recognised) = match source {
        Some(name) => {
            let source = by_name(name)?;
            let missing = source.missing(&schema);
            if !missing.is_empty() {
                return plan_err!(
                    "--source {} reads the columns of {} (documented at {}), but the input has \
                     no {}",
                    source.name,
                    source.title,
                    source.documented_at,
                    missing.join(", no ")
                );
            }
            (source, false)
        }
        None => match recognise(&schema) {
            Some(source) => (source, true),
            None => return Ok(None),
        },
    };
    let raw = format!("__raw_{table}");
    if let Some(sql) = source.view_sql(&raw, &schema, unit) {
        let provider = ctx.table_provider(table).await?;
        ctx.deregister_table(table)?;
        ctx.register_table(&raw, provider)?;
        let view = ctx.sql(&sql).await?.into_view();
        ctx.register_table(table, view)?;
    }
    Ok(Some((source, recognised)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    fn schema(names: &[&str]) -> Schema {
        Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn exports_are_recognised_by_their_columns() {
        let cases: [(&[&str], &str); 6] = [
            (
                &[
                    "event_date",
                    "event_timestamp",
                    "event_name",
                    "event_params",
                    "user_pseudo_id",
                ],
                "ga4",
            ),
            (
                &[
                    "domain_userid",
                    "derived_tstamp",
                    "event_name",
                    "domain_sessionid",
                ],
                "snowplow",
            ),
            (
                &["uuid", "event", "distinct_id", "timestamp", "properties"],
                "posthog",
            ),
            (
                &["anonymousId", "userId", "event", "timestamp", "messageId"],
                "segment",
            ),
            (&["event", "properties"], "mixpanel"),
            (
                &["user_id", "event_time", "event_type", "session_id"],
                "amplitude",
            ),
        ];
        for (columns, name) in cases {
            assert_eq!(
                recognise(&schema(columns)).map(|s| s.name),
                Some(name),
                "{columns:?}"
            );
        }
        assert!(recognise(&schema(&["a", "b"])).is_none());
        assert!(
            by_name("nope")
                .unwrap_err()
                .to_string()
                .contains("expected one of ga4")
        );
    }
}
