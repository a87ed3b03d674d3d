//! The User Sessions chart: session metrics per interval and series, with filters, group-bys,
//! segments and formulas, compiled to one DataFusion SQL query.
//!
//! A [`ChartSpec`] (TOML or JSON, or CLI flags) becomes one SQL statement ([`chart_sql`]) built from the
//! project's window functions: events are filtered, sessionized per row with `session_number` (or
//! grouped by the SDK's session id), summarized per session, filtered by session, joined to the users
//! of each segment and aggregated per interval, segment and group. Formulas become SQL expressions
//! over the rows' metrics. `--print-sql` shows the statement; running it through `sessionize query`
//! gives the same table.

use std::fmt::Write as _;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::formula::{self, Display, Expr, Formula, Func, Op};
use crate::sessions::{
    check_day, check_time_zone, ident, interval, literal, require_mapped_column,
};

/// The interval a session counts in (by its start time, in the chart's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalKind {
    #[default]
    Day,
    Week,
    Month,
    Total,
}

/// How sessions are defined.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionDefinition {
    /// `derived` (by inactivity) or `sdk` (the SDK's session ids).
    pub source: String,
    /// Inactivity timeout, e.g. `30m`.
    pub timeout: String,
    pub restart_events: Vec<String>,
    /// Inactive event types: never part of a session, not activity.
    pub exclude_events: Vec<String>,
    /// The actor column, or several separated by commas (the first non-null of them).
    pub actor: String,
    /// `ANONYMOUS=USER`: stitched identities, as `sessions --stitch`.
    pub stitch: Option<String>,
    pub time: String,
    pub event: String,
    pub session_id_col: String,
    /// Sessions longer than this are left out of every metric.
    pub max_session_length: String,
}

impl Default for SessionDefinition {
    fn default() -> Self {
        Self {
            source: "derived".into(),
            timeout: "30m".into(),
            restart_events: vec![],
            exclude_events: vec![],
            actor: "user_id".into(),
            stitch: None,
            time: "event_time".into(),
            event: "event_type".into(),
            session_id_col: "session_id".into(),
            max_session_length: "24h".into(),
        }
    }
}

/// A condition on a property: `event.page`, `user.plan` (JSON properties) or a column name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Condition {
    pub property: String,
    /// The property equals one of these values.
    pub one_of: Vec<String>,
}

/// A "session contains event E" filter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contains {
    pub event: String,
    pub at_least: Option<u64>,
    pub at_most: Option<u64>,
    pub exactly: Option<u64>,
    /// Only events of type `event` with this property condition count.
    pub property: Option<Condition>,
}

/// One lettered row of the chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RowSpec {
    /// `sessions`, or `events` (events performed within sessions).
    pub kind: String,
    /// For `events` rows: the chosen event type (none: any event).
    pub event: Option<String>,
    /// Event property filters, applied before sessions are formed.
    pub event_filters: Vec<Condition>,
    /// Minimum session duration, e.g. `10s`.
    pub min_duration: Option<String>,
    pub contains: Vec<Contains>,
    pub first_event: Option<Condition>,
    pub last_event: Option<Condition>,
}

impl Default for RowSpec {
    fn default() -> Self {
        Self {
            kind: "sessions".into(),
            event: None,
            event_filters: vec![],
            min_duration: None,
            contains: vec![],
            first_event: None,
            last_event: None,
        }
    }
}

/// A "performed event E" condition of a segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Performed {
    pub event: String,
    pub at_least: Option<u64>,
    pub at_most: Option<u64>,
    pub exactly: Option<u64>,
}

/// A named set of users.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    /// User property conditions (the user's latest value in the date range).
    pub user: Vec<Condition>,
    pub performed: Vec<Performed>,
}

/// Bucket edges: explicit `edges`, or `min`, `max` and `size`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Buckets {
    pub edges: Vec<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub size: Option<f64>,
}

/// Default length-distribution edges in seconds: 0, 3 s, 10 s, 30 s, 1 min, 3 min, 10 min, 30 min,
/// 1 h, 24 h.
pub const DEFAULT_LENGTH_EDGES: [f64; 10] = [
    0.0, 3.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0, 86400.0,
];
/// Default events-distribution edges (times the event occurred in a session).
pub const DEFAULT_EVENT_EDGES: [f64; 8] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 100.0];

impl Buckets {
    /// The edges, checked: at least two, strictly increasing.
    pub fn edges(&self, default: &[f64]) -> Result<Vec<f64>> {
        let edges = match (self.min, self.max, self.size) {
            _ if !self.edges.is_empty() => self.edges.clone(),
            (Some(min), Some(max), Some(size)) => {
                if size <= 0.0 || max <= min {
                    return plan_err!(
                        "bucket min {min}, max {max} and size {size} give no buckets: size must be positive and max above min"
                    );
                }
                let count = ((max - min) / size).ceil() as usize;
                if count > 1000 {
                    return plan_err!(
                        "buckets of size {size} from {min} to {max} are more than 1000"
                    );
                }
                (0..=count)
                    .map(|k| (min + k as f64 * size).min(max))
                    .collect()
            }
            (None, None, None) => default.to_vec(),
            _ => return plan_err!("buckets need either edges, or all of min, max and size"),
        };
        if edges.len() < 2 {
            return plan_err!("buckets need at least two edges, but got {edges:?}");
        }
        if edges
            .windows(2)
            .any(|w| w[0] >= w[1] || w[0].is_nan() || w[1].is_nan())
        {
            return plan_err!(
                "bucket edges must be strictly increasing (no overlaps), but got {edges:?}"
            );
        }
        Ok(edges)
    }
}

/// A User Sessions chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChartSpec {
    /// First day (inclusive), `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last day (inclusive).
    pub to: Option<String>,
    pub interval: IntervalKind,
    /// IANA time zone of days and intervals.
    pub time_zone: String,
    pub session: SessionDefinition,
    /// Rows A, B, C, ...
    pub rows: Vec<RowSpec>,
    /// Properties that split each row into series; a session takes its first event's value, or its
    /// last event's with a `last:` prefix (`last:event.page`).
    pub group_by: Vec<String>,
    /// Segments; none means all users.
    pub segments: Vec<Segment>,
    /// Length distribution buckets (seconds).
    pub length_buckets: Buckets,
    /// Events distribution buckets (event counts).
    pub event_buckets: Buckets,
    /// Formulas over the rows, e.g. `%:SESSIONTOTALS(A)/SESSIONTOTALS(B)`.
    pub formulas: Vec<String>,
}

impl Default for ChartSpec {
    fn default() -> Self {
        Self {
            from: None,
            to: None,
            interval: IntervalKind::Day,
            time_zone: "UTC".into(),
            session: SessionDefinition::default(),
            rows: vec![RowSpec::default()],
            group_by: vec![],
            segments: vec![],
            length_buckets: Buckets::default(),
            event_buckets: Buckets::default(),
            formulas: vec![],
        }
    }
}

impl ChartSpec {
    /// Reads a spec from TOML or JSON text (`name` decides which: `.json` is JSON).
    pub fn from_text(name: &str, text: &str) -> Result<Self> {
        let parsed = if name.to_ascii_lowercase().ends_with(".json") {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        };
        parsed.or_else(|e| plan_err!("cannot read the chart spec '{name}': {e}"))
    }

    /// Whether the spec text (as [`Self::from_text`] reads it) names the session's `actor`, rather
    /// than leaving it to its default (an export source's own actor, where there is one).
    pub fn names_actor(name: &str, text: &str) -> bool {
        if name.to_ascii_lowercase().ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .is_some_and(|v| v.get("session").and_then(|s| s.get("actor")).is_some())
        } else {
            toml::from_str::<toml::Value>(text)
                .ok()
                .is_some_and(|v| v.get("session").and_then(|s| s.get("actor")).is_some())
        }
    }
}

/// The field `key` of the struct column `column` as text, for the property `property`: a nested
/// field (an object or a list) as JSON text, as a JSON property gives it; others cast to text.
///
/// Errors: a field the struct lacks, naming those it has.
fn struct_field_text(
    property: &str,
    column: &str,
    fields: &datafusion::arrow::datatypes::Fields,
    key: &str,
) -> Result<String> {
    let Some((_, field)) = fields.find(key) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return plan_err!(
            "unknown property '{property}': the struct column '{column}' has the fields {}",
            names.join(", ")
        );
    };
    let value = format!("get_field({}, {})", ident(column), literal(key));
    Ok(if field.data_type().is_nested() {
        format!("json_as_text(to_json(named_struct('v', {value})), 'v')")
    } else {
        format!("CAST({value} AS VARCHAR)")
    })
}

/// A group-by entry: the property, and whether the session takes its last event's value
/// (`last:event.page`, for exit pages) rather than its first's.
fn group_property(group: &str) -> (&str, bool) {
    match group.strip_prefix("last:") {
        Some(property) => (property.trim(), true),
        None => (group.trim(), false),
    }
}

/// The letter of row `index`.
pub fn row_letter(index: usize) -> char {
    (b'A' + index as u8) as char
}

fn parse_duration_secs(what: &str, text: &str) -> Result<f64> {
    crate::sessions::parse_duration(what, text)
        .map(|d| d.as_secs_f64())
        .or_else(|e| plan_err!("{e}"))
}

/// Compiles properties to SQL against the events' schema.
/// Any JSON value of `key` in the JSON text column `column`, as text: strings as they are,
/// numbers and booleans as written, objects and arrays as JSON (`json_get_str` is null for all but
/// strings).
fn json_text(column: &str, key: &str) -> String {
    format!("json_as_text({}, {})", ident(column), literal(key))
}

struct Props<'a> {
    schema: &'a Schema,
}

impl Props<'_> {
    /// The SQL (text) of a property: `event.X` / `user.X` read JSON properties (or a field of
    /// properties stored as a struct); anything else is a column, or a field of a struct column.
    fn sql(&self, property: &str) -> Result<String> {
        for (prefixes, column) in [
            (["event.", "event_properties."], "event_properties"),
            (["user.", "user_properties."], "user_properties"),
        ] {
            if let Some(key) = prefixes.iter().find_map(|p| property.strip_prefix(p)) {
                let Ok(field) = self.schema.field_with_name(column) else {
                    // Exports that keep an event's fields as columns (Snowplow's atomic events:
                    // `page_url`, `page_title`, ...) have no properties column: `event.NAME` is
                    // then the column NAME.
                    if column == "event_properties" && self.schema.field_with_name(key).is_ok() {
                        return Ok(format!("CAST({} AS VARCHAR)", ident(key)));
                    }
                    return plan_err!(
                        "unknown property '{property}': the events have no column '{column}'{}",
                        if column == "event_properties" {
                            format!(" and no column '{key}'")
                        } else {
                            String::new()
                        }
                    );
                };
                if let DataType::Struct(fields) = field.data_type() {
                    // Properties stored as a Parquet struct (an export that kept them as objects)
                    // rather than as JSON text: the field, as text.
                    return struct_field_text(property, column, fields, key);
                }
                return Ok(json_text(column, key));
            }
        }
        if let Ok(field) = self.schema.field_with_name(property) {
            if let DataType::Struct(fields) = field.data_type() {
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{property}.{}", f.name()))
                    .collect();
                return plan_err!(
                    "property '{property}' is a struct column: name one of its fields, {}",
                    names.join(", ")
                );
            }
            return Ok(format!("CAST({} AS VARCHAR)", ident(property)));
        }
        // `COLUMN.FIELD`: a field of a struct column (GA4's `geo.city`, `device.category`) ...
        if let Some((column, key)) = property.split_once('.')
            && let Ok(field) = self.schema.field_with_name(column)
            && let DataType::Struct(fields) = field.data_type()
        {
            return struct_field_text(property, column, fields, key);
        }
        // ... or of a column of JSON object text (the same export written as JSON).
        if let Some((column, key)) = property.split_once('.')
            && let Ok(field) = self.schema.field_with_name(column)
            && matches!(
                field.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
        {
            return Ok(json_text(column, key));
        }
        let found: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        plan_err!(
            "unknown property '{property}': use event.NAME or user.NAME for JSON properties, or one of the columns {}",
            found.join(", ")
        )
    }

    fn condition(&self, condition: &Condition, value_sql: Option<&str>) -> Result<String> {
        if condition.one_of.is_empty() {
            return plan_err!(
                "the condition on '{}' lists no values (one_of)",
                condition.property
            );
        }
        let value = match value_sql {
            Some(v) => v.to_string(),
            None => self.sql(&condition.property)?,
        };
        let values: Vec<String> = condition.one_of.iter().map(|v| literal(v)).collect();
        Ok(format!(
            "COALESCE({value} IN ({}), false)",
            values.join(", ")
        ))
    }
}

fn count_condition(
    count: &str,
    at_least: Option<u64>,
    at_most: Option<u64>,
    exactly: Option<u64>,
) -> String {
    let mut parts = vec![];
    if let Some(n) = exactly {
        parts.push(format!("{count} = {n}"));
    }
    if let Some(n) = at_least {
        parts.push(format!("{count} >= {n}"));
    }
    if let Some(n) = at_most {
        parts.push(format!("{count} <= {n}"));
    }
    if parts.is_empty() {
        parts.push(format!("{count} >= 1"));
    }
    parts.join(" AND ")
}

/// Bucket label for `[lo, hi)`.
fn bucket_label(prefix: &str, lo: f64, hi: f64, seconds: bool) -> String {
    let show = |v: f64| {
        if seconds {
            format_seconds(v)
        } else {
            trim_number(v)
        }
    };
    format!("{prefix}[{},{})", show(lo), show(hi))
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn format_seconds(v: f64) -> String {
    if v >= 3600.0 && (v / 3600.0).fract() == 0.0 {
        format!("{}h", trim_number(v / 3600.0))
    } else if v >= 60.0 && (v / 60.0).fract() == 0.0 {
        format!("{}m", trim_number(v / 60.0))
    } else {
        format!("{}s", trim_number(v))
    }
}

/// The names of the metric columns of row `letter` (in output order), and of its distribution
/// buckets.
pub struct RowColumns {
    pub letter: char,
    pub is_events: bool,
    pub metrics: Vec<String>,
    pub buckets: Vec<String>,
}

/// A formula's text and how its values are shown.
pub type FormulaColumn = (String, Display);

/// A compiled chart: the SQL and what its columns mean.
pub struct CompiledChart {
    pub sql: String,
    pub rows: Vec<RowColumns>,
    pub group_columns: Vec<String>,
    pub formulas: Vec<FormulaColumn>,
}

/// Compiles `spec` over the events table `table` with schema `schema` into one SQL statement.
///
/// The statement is a chain of CTEs: `ev` (events in the date range with the properties the chart
/// needs), `users` / `segs` / `active` (segment membership and active users), per row X `x_ev`
/// (sessionized events), `x_ses` (one row per session), `x_ok` (sessions that pass the filters) and
/// `x_m` (metrics per interval, segment and group), then `keys` and `wide` (the rows side by side)
/// and the output columns with the formulas.
pub fn compile(table: &str, schema: &Schema, spec: &ChartSpec) -> Result<CompiledChart> {
    for (g, group) in spec.group_by.iter().enumerate() {
        let (property, _) = group_property(group);
        if property.is_empty() || property.ends_with('.') {
            return plan_err!(
                "--group-by '{group}' names no property: give a column or event.NAME / user.NAME"
            );
        }
        if spec.group_by[..g].contains(group) {
            return plan_err!("--group-by lists '{group}' twice");
        }
    }
    let compiler = Compiler::new(table, schema, spec)?;
    let mut ctes = vec![compiler.events_cte()?];
    let segment_names = compiler.segment_ctes(&mut ctes)?;
    let mut rows = vec![];
    let mut metric_ctes = vec![];
    for (r, row) in spec.rows.iter().enumerate() {
        let (metric_cte, columns) = compiler.row_ctes(r, row, &mut ctes)?;
        metric_ctes.push(metric_cte);
        rows.push(columns);
    }
    ctes.extend(metric_ctes);
    ctes.extend(compiler.wide_ctes(&rows, segment_names.len()));
    let (out, formulas) = compiler.output_columns(&rows, &segment_names)?;
    let mut order = vec!["interval_start".to_string(), "__seg".to_string()];
    order.extend(compiler.group_keys.iter().cloned());
    let sql = format!(
        "WITH {} SELECT {} FROM wide ORDER BY {}",
        ctes.join(",\n"),
        out.join(",\n  "),
        order
            .iter()
            .map(|o| format!("{o} NULLS FIRST"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(CompiledChart {
        sql,
        rows,
        group_columns: spec.group_by.clone(),
        formulas,
    })
}

/// What the SQL of a chart is built from: the checked spec and the facts of the events' schema.
struct Compiler<'a> {
    spec: &'a ChartSpec,
    props: Props<'a>,
    table: String,
    sdk: bool,
    timeout: std::time::Duration,
    max_length: f64,
    per_second: i64,
    tz_aware: bool,
    /// Days by [`crate::scalar`]'s `utc_day` (see [`Compiler::day`]).
    utc_days: bool,
    /// Every property the chart reads, selected once in `ev` as `__p0`, `__p1`, ...
    needed: Vec<String>,
    /// SQL: the event is one of the excluded (inactive) types.
    excluded: String,
    /// SQL: the event restarts a session.
    restart: String,
    group_keys: Vec<String>,
    formulas: Vec<Formula>,
    length_edges: Vec<f64>,
    event_edges: Vec<f64>,
}

fn any_of(column: &str, values: &[String]) -> String {
    if values.is_empty() {
        "false".to_string()
    } else {
        let list: Vec<String> = values.iter().map(|e| literal(e)).collect();
        format!("COALESCE({column} IN ({}), false)", list.join(", "))
    }
}

impl<'a> Compiler<'a> {
    fn new(table: &str, schema: &'a Schema, spec: &'a ChartSpec) -> Result<Self> {
        check_time_zone(&spec.time_zone)?;
        if let Some(from) = &spec.from {
            check_day("--from", from)?;
        }
        if let Some(to) = &spec.to {
            check_day("--to", to)?;
        }
        if let (Some(from), Some(to)) = (&spec.from, &spec.to)
            && from > to
        {
            return plan_err!("the date range {from} to {to} is empty");
        }
        if spec.rows.is_empty() {
            return plan_err!("a chart needs at least one row");
        }
        if spec.rows.len() > 26 {
            return plan_err!("a chart has at most 26 rows (A to Z)");
        }
        for (i, segment) in spec.segments.iter().enumerate() {
            if !segment.name.is_empty() && spec.segments[..i].iter().any(|s| s.name == segment.name)
            {
                return plan_err!(
                    "two segments are named '{}': give each segment its own name",
                    segment.name
                );
            }
        }
        let def = &spec.session;
        let sdk = match def.source.as_str() {
            "derived" => false,
            "sdk" => true,
            other => return plan_err!("unknown session source '{other}': use derived or sdk"),
        };
        crate::sessions::require_actor(
            schema,
            &def.actor,
            "actor = \"COLUMN\" under [session] in a chart spec (--spec)",
        )?;
        require_mapped_column(
            schema,
            &def.event,
            "event = \"COLUMN\" under [session] in a chart spec (--spec)",
        )?;
        let time_type = require_mapped_column(
            schema,
            &def.time,
            "time = \"COLUMN\" under [session] in a chart spec (--spec)",
        )?;
        // A UTC chart of UTC (or zone-less) times takes its days from the raw values (`utc_day`,
        // integer arithmetic) rather than through the time zone database per event.
        let utc_days = spec.time_zone.eq_ignore_ascii_case("UTC")
            && crate::sessions::is_utc_or_naive(time_type);
        let (unit, tz_aware) = match time_type {
            DataType::Timestamp(unit, tz) => (*unit, tz.is_some()),
            other => {
                return plan_err!(
                    "the time column '{}' must be a timestamp, but it is {other}",
                    def.time
                );
            }
        };
        if sdk {
            crate::sessions::require_session_id(
                schema,
                &def.session_id_col,
                "session_id_col = \"COLUMN\" under [session] in a chart spec (--spec)",
            )?;
        }
        let mut needed: Vec<String> = spec
            .group_by
            .iter()
            .map(|g| group_property(g).0.to_string())
            .collect();
        for segment in &spec.segments {
            needed.extend(segment.user.iter().map(|c| c.property.clone()));
        }
        for row in &spec.rows {
            needed.extend(row.event_filters.iter().map(|c| c.property.clone()));
            needed.extend(row.first_event.iter().map(|c| c.property.clone()));
            needed.extend(row.last_event.iter().map(|c| c.property.clone()));
            needed.extend(
                row.contains
                    .iter()
                    .filter_map(|c| c.property.as_ref())
                    .map(|c| c.property.clone()),
            );
        }
        needed.sort();
        needed.dedup();
        let formulas = spec
            .formulas
            .iter()
            .map(|f| formula::parse_formula(f))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| datafusion::error::DataFusionError::Plan(e.render()))?;
        Ok(Self {
            spec,
            props: Props { schema },
            table: ident(table),
            sdk,
            timeout: std::time::Duration::from_secs_f64(parse_duration_secs(
                "the timeout",
                &def.timeout,
            )?),
            max_length: parse_duration_secs("the maximum session length", &def.max_session_length)?,
            per_second: crate::rules::units_per_second(unit),
            tz_aware,
            utc_days,
            needed,
            excluded: any_of("event_type", &def.exclude_events),
            restart: any_of("event_type", &def.restart_events),
            group_keys: (0..spec.group_by.len())
                .map(|g| format!("__g{g}"))
                .collect(),
            formulas,
            length_edges: spec.length_buckets.edges(&DEFAULT_LENGTH_EDGES)?,
            event_edges: spec.event_buckets.edges(&DEFAULT_EVENT_EDGES)?,
        })
    }

    /// The local time of a timestamp expression in the chart's time zone.
    fn local(&self, ts: &str) -> String {
        let zone = &self.spec.time_zone;
        if zone.eq_ignore_ascii_case("UTC") {
            if self.tz_aware {
                format!("to_local_time({ts})")
            } else {
                ts.to_string()
            }
        } else {
            let aware = if self.tz_aware {
                ts.to_string()
            } else {
                format!("({ts} AT TIME ZONE 'UTC')")
            };
            format!("to_local_time({aware} AT TIME ZONE {})", literal(zone))
        }
    }

    fn day(&self, ts: &str) -> String {
        if self.utc_days {
            format!("utc_day({ts})")
        } else {
            format!("CAST({} AS DATE)", self.local(ts))
        }
    }

    /// The first day of the interval a timestamp falls in.
    fn interval_start(&self, ts: &str) -> String {
        match self.spec.interval {
            IntervalKind::Day => self.day(ts),
            IntervalKind::Week => format!("CAST(date_trunc('week', {}) AS DATE)", self.local(ts)),
            IntervalKind::Month => format!("CAST(date_trunc('month', {}) AS DATE)", self.local(ts)),
            IntervalKind::Total => match &self.spec.from {
                Some(from) => format!("DATE {}", literal(from)),
                None => "CAST(NULL AS DATE)".to_string(),
            },
        }
    }

    /// The `ev` column that holds `property`.
    fn prop_col(&self, property: &str) -> String {
        let index = self.needed.iter().position(|p| p == property).unwrap_or(0);
        format!("__p{index}")
    }

    /// A condition on the `ev` column of its property.
    fn condition(&self, condition: &Condition) -> Result<String> {
        self.props
            .condition(condition, Some(&self.prop_col(&condition.property)))
    }

    /// `ev`: events with a user and a time in the date range, with the properties the chart needs.
    fn events_cte(&self) -> Result<String> {
        let def = &self.spec.session;
        let (actor, time) = (ident(&def.actor), ident(&def.time));
        let mut select = self.base_select();
        if self.sdk {
            write!(
                select,
                ", CAST({} AS BIGINT) AS __sid",
                ident(&def.session_id_col)
            )
            .ok();
        }
        for (i, property) in self.needed.iter().enumerate() {
            write!(select, ", {} AS __p{i}", self.props.sql(property)?).ok();
        }
        let filters = [
            format!("{actor} IS NOT NULL"),
            format!("{time} IS NOT NULL"),
        ];
        // Sessions are formed over every event and counted in the interval of their start
        // (`in_range`); users, segments and active users are those of the range's events (`evr`).
        let range = self.in_range("event_time");
        Ok(format!(
            "ev AS ({select}, {iv} AS __iv FROM {table} WHERE {}),\nevr AS (SELECT * FROM ev{})",
            filters.join(" AND "),
            if range.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", range.join(" AND "))
            },
            iv = self.interval_start(&time),
            table = self.table,
        ))
    }

    /// The start of every events CTE: the user, time and event type columns.
    fn base_select(&self) -> String {
        let def = &self.spec.session;
        let (actor, time, event) = (ident(&def.actor), ident(&def.time), ident(&def.event));
        format!(
            "SELECT CAST({actor} AS VARCHAR) AS user_id, {time} AS event_time, CAST({event} AS VARCHAR) AS event_type"
        )
    }

    /// Conditions that the day of the timestamp `ts` lies in the chart's range (none without
    /// `--from` / `--to`).
    fn in_range(&self, ts: &str) -> Vec<String> {
        let mut conditions = vec![];
        if let Some(from) = &self.spec.from {
            conditions.push(format!("{} >= DATE {}", self.day(ts), literal(from)));
        }
        if let Some(to) = &self.spec.to {
            conditions.push(format!("{} <= DATE {}", self.day(ts), literal(to)));
        }
        conditions
    }

    /// `users`, `segs` (the users of each segment, numbered from 1) and `active` (active users per
    /// interval and segment); returns the segments' names.
    fn segment_ctes(&self, ctes: &mut Vec<String>) -> Result<Vec<String>> {
        let segments = &self.spec.segments;
        let mut user_cols = String::new();
        for (s, segment) in segments.iter().enumerate() {
            for condition in &segment.user {
                let p = self.prop_col(&condition.property);
                write!(
                    user_cols,
                    ", last_value({p} ORDER BY event_time, {p}) AS __s{s}_{p}"
                )
                .ok();
            }
            for (k, performed) in segment.performed.iter().enumerate() {
                write!(
                    user_cols,
                    ", sum(CASE WHEN event_type = {} THEN 1 ELSE 0 END) AS __s{s}_perf{k}",
                    literal(&performed.event)
                )
                .ok();
            }
        }
        ctes.push(format!(
            "users AS (SELECT user_id{user_cols} FROM evr GROUP BY user_id)"
        ));
        let mut selects = vec![];
        if segments.is_empty() {
            selects.push("SELECT user_id, 1 AS __seg FROM users".to_string());
        }
        for (s, segment) in segments.iter().enumerate() {
            let mut conditions = vec!["true".to_string()];
            for condition in &segment.user {
                let column = format!("__s{s}_{}", self.prop_col(&condition.property));
                conditions.push(self.props.condition(condition, Some(&column))?);
            }
            for (k, performed) in segment.performed.iter().enumerate() {
                conditions.push(count_condition(
                    &format!("__s{s}_perf{k}"),
                    performed.at_least,
                    performed.at_most,
                    performed.exactly,
                ));
            }
            selects.push(format!(
                "SELECT user_id, {} AS __seg FROM users WHERE {}",
                s + 1,
                conditions.join(" AND ")
            ));
        }
        ctes.push(format!("segs AS ({})", selects.join(" UNION ALL ")));
        ctes.push(format!(
            "active AS (SELECT evr.__iv, {}, count(DISTINCT evr.user_id) AS __active \
             FROM evr {} WHERE NOT {} GROUP BY {})",
            self.seg_column(),
            self.segs_join("evr"),
            self.excluded,
            self.seg_group_by("evr.__iv")
        ));
        Ok(if segments.is_empty() {
            vec!["All users".to_string()]
        } else {
            segments
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if s.name.is_empty() {
                        format!("Segment {}", i + 1)
                    } else {
                        s.name.clone()
                    }
                })
                .collect()
        })
    }

    /// The join that gives the rows of `alias` (which has a `user_id`) their segments
    /// ([`Self::seg_column`]). Without segments every user is in the one segment "All users", so
    /// no join is needed.
    fn segs_join(&self, alias: &str) -> String {
        if self.spec.segments.is_empty() {
            String::new()
        } else {
            format!("JOIN segs ON {alias}.user_id = segs.user_id")
        }
    }

    /// The segment number `__seg` of a row joined by [`Self::segs_join`].
    fn seg_column(&self) -> &'static str {
        if self.spec.segments.is_empty() {
            "1 AS __seg"
        } else {
            "segs.__seg"
        }
    }

    /// `interval` and, with segments, the segment: what rows are grouped by.
    fn seg_group_by(&self, interval: &str) -> String {
        if self.spec.segments.is_empty() {
            interval.to_string()
        } else {
            format!("{interval}, segs.__seg")
        }
    }

    /// Row `r`'s `x_ev`, `x_ses` and `x_ok` CTEs (pushed to `ctes`); returns its `x_m` CTE and
    /// columns.
    fn row_ctes(
        &self,
        r: usize,
        row: &RowSpec,
        ctes: &mut Vec<String>,
    ) -> Result<(String, RowColumns)> {
        let x = row_letter(r).to_ascii_lowercase();
        let is_events = match row.kind.as_str() {
            "sessions" => false,
            "events" => true,
            other => {
                return plan_err!(
                    "row {}: unknown kind '{other}': use sessions or events",
                    row_letter(r)
                );
            }
        };
        // Events of the row, with their session.
        let mut filters = vec![format!("NOT {}", self.excluded)];
        for condition in &row.event_filters {
            filters.push(self.condition(condition)?);
        }
        if self.sdk {
            filters.push("__sid IS NOT NULL AND __sid <> -1".to_string());
        }
        // A row that needs of each session its bounds, its number of events and values of its
        // first or last event takes the bounds from the `session_list` aggregate grouped by user
        // and the values from the events at the session's first (last) time, joined on the user
        // and that time: no sort of the events, no window. Counting events of a kind in a session
        // (`contains`, an events row's event) needs every event's session: the window function.
        let no_window = !self.sdk && row.contains.is_empty() && !(is_events && row.event.is_some());
        if no_window {
            self.list_sessions(x, row, &filters, ctes)?;
        } else {
            self.window_sessions(x, row, is_events, &filters, ctes)?;
        }

        // The row's sessions in the chart's range, each flagged `__kept` when it passes the
        // row's filters and the length limit. Sessions left out stay (flagged) so that a series
        // whose every session is left out still has its rows, at 0 (the metrics count kept ones).
        let length = format!(
            "CAST(arrow_cast(__end - __start, 'Int64') AS DOUBLE) / {}",
            self.per_second
        );
        let mut session_filters = vec![format!("{length} <= {}", self.max_length)];
        if let Some(min) = &row.min_duration {
            session_filters.push(format!(
                "{length} >= {}",
                parse_duration_secs("min_duration", min)?
            ));
        }
        for (k, contains) in row.contains.iter().enumerate() {
            session_filters.push(count_condition(
                &format!("__c{k}"),
                contains.at_least,
                contains.at_most,
                contains.exactly,
            ));
        }
        if let Some(c) = &row.first_event {
            session_filters.push(self.props.condition(c, Some("__first"))?);
        }
        if let Some(c) = &row.last_event {
            session_filters.push(self.props.condition(c, Some("__last"))?);
        }
        let in_range = self.in_range("__start");
        ctes.push(format!(
            "{x}_ok AS (SELECT *, {length} AS __len, {iv} AS __iv, \
             COALESCE({kept}, false) AS __kept FROM {x}_ses{where_})",
            kept = session_filters.join(" AND "),
            iv = self.interval_start("__start"),
            where_ = if in_range.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", in_range.join(" AND "))
            },
        ));
        Ok(self.row_metrics(r, is_events))
    }

    /// The values a row takes of each session, in a fixed order: (output column, property, of the
    /// last event rather than the first) for every group-by, then the first-event and the
    /// last-event condition's property.
    fn session_values<'r>(&'r self, row: &'r RowSpec) -> Vec<(String, &'r str, bool)> {
        let mut values = vec![];
        for (g, group) in self.spec.group_by.iter().enumerate() {
            let (property, last) = group_property(group);
            values.push((format!("__g{g}"), property, last));
        }
        if let Some(c) = &row.first_event {
            values.push(("__first".into(), c.property.as_str(), false));
        }
        if let Some(c) = &row.last_event {
            values.push(("__last".into(), c.property.as_str(), true));
        }
        values
    }

    /// Row `x`'s `x_ses` from `session_list` (see [`Self::row_ctes`]): per session its bounds, its
    /// number of events and the group-by, first-event and last-event values, from
    /// `session_first_value` / `session_last_value` in the same pass (ties taken in the order of
    /// the window form: time, event type, the value itself).
    fn list_sessions(
        &self,
        x: char,
        row: &RowSpec,
        filters: &[String],
        ctes: &mut Vec<String>,
    ) -> Result<()> {
        let filters = filters.join(" AND ");
        let (timeout, restart) = (interval(self.timeout), &self.restart);
        let values = self.session_values(row);
        // With several values, one event per session for all of them: every call breaks ties by
        // the same key, the event type and then every value in order (each text with nulls last,
        // as the window form's ORDER BY event_time, event_type, value, ... does).
        let tie_break = if values.len() > 1 {
            let part = |sql: &str| {
                format!(
                    "CASE WHEN {sql} IS NULL THEN chr(2) ELSE chr(1) || replace({sql}, chr(0), '') END"
                )
            };
            let mut parts = vec![part("event_type")];
            for (_, property, _) in &values {
                parts.push(part(&self.prop_col(property)));
            }
            parts.join(" || chr(0) || ")
        } else {
            "event_type".to_string()
        };
        // Without values, `session_list`; with them, `session_first_value` (`session_last_value`)
        // gives the same sessions with a value each: the first one's sessions are the row's, the
        // others' lists are aligned with them (unnest in one SELECT zips them).
        let mut lists = vec![];
        for (name, property, last) in &values {
            let pick = if *last {
                "session_last_value"
            } else {
                "session_first_value"
            };
            lists.push((
                format!(
                    "{pick}(event_time, {timeout}, {restart}, {tie_break}, {})",
                    self.prop_col(property)
                ),
                format!(", __v{}['value'] AS {name}", lists.len()),
            ));
        }
        let (sessions, unnested, columns) = if lists.is_empty() {
            (
                format!("session_list(event_time, {timeout}, {restart})"),
                String::new(),
                String::new(),
            )
        } else {
            let mut unnested = String::new();
            let mut columns = String::new();
            for (i, (list, column)) in lists.iter().enumerate().skip(1) {
                write!(unnested, ", unnest({list}) AS __v{i}").ok();
                columns.push_str(column);
            }
            columns.insert_str(0, &lists[0].1.replace("__v0", "s"));
            (lists[0].0.clone(), unnested, columns)
        };
        ctes.push(format!(
            "{x}_ses AS (SELECT user_id, s['session_number'] AS __sn, s['started_at'] AS __start, \
             s['ended_at'] AS __end, s['event_count'] AS __events, s['event_count'] AS __chosen{columns} \
             FROM (SELECT user_id, unnest({sessions}) AS s{unnested} \
             FROM ev WHERE {filters} GROUP BY user_id))"
        ));
        Ok(())
    }

    /// Row `x`'s `x_ev` (its events, each with its session number by the window function, or the
    /// SDK's session id) and `x_ses` (per session: bounds, first- and last-event values, counts).
    fn window_sessions(
        &self,
        x: char,
        row: &RowSpec,
        is_events: bool,
        filters: &[String],
        ctes: &mut Vec<String>,
    ) -> Result<()> {
        let session_key = if self.sdk {
            "__sid".to_string()
        } else {
            format!(
                "session_number(event_time, {}, {}) OVER (PARTITION BY user_id ORDER BY event_time)",
                interval(self.timeout),
                self.restart
            )
        };
        ctes.push(format!(
            "{x}_ev AS (SELECT *, {session_key} AS __sn FROM ev WHERE {})",
            filters.join(" AND ")
        ));

        // Per session: bounds, first- and last-event values, counts.
        // A session's first (last) event value is taken in time order, ties broken by event type,
        // then by the value itself, so that no tie is left to row order.
        // One event per session for every value: the order breaks ties by the event type, then by
        // every value the row takes, in the same order for each.
        let mut tie_break = "event_type".to_string();
        for (_, property, _) in self.session_values(row) {
            write!(tie_break, ", {}", self.prop_col(property)).ok();
        }
        let order = format!("ORDER BY event_time, {tie_break}");
        let mut per_session = "SELECT user_id, __sn, min(event_time) AS __start, max(event_time) AS __end, count(*) AS __events".to_string();
        for (g, group) in self.spec.group_by.iter().enumerate() {
            let (property, last) = group_property(group);
            let pick = if last { "last_value" } else { "first_value" };
            let value = self.prop_col(property);
            write!(per_session, ", {pick}({value} {order}) AS __g{g}").ok();
        }
        if let Some(c) = &row.first_event {
            let value = self.prop_col(&c.property);
            write!(per_session, ", first_value({value} {order}) AS __first").ok();
        }
        if let Some(c) = &row.last_event {
            let value = self.prop_col(&c.property);
            write!(per_session, ", last_value({value} {order}) AS __last").ok();
        }
        for (k, contains) in row.contains.iter().enumerate() {
            let mut when = format!("event_type = {}", literal(&contains.event));
            if let Some(c) = &contains.property {
                write!(when, " AND {}", self.condition(c)?).ok();
            }
            write!(
                per_session,
                ", sum(CASE WHEN {when} THEN 1 ELSE 0 END) AS __c{k}"
            )
            .ok();
        }
        let chosen = match &row.event {
            Some(e) if is_events => format!(
                "sum(CASE WHEN event_type = {} THEN 1 ELSE 0 END)",
                literal(e)
            ),
            _ => "count(*)".to_string(),
        };
        write!(
            per_session,
            ", {chosen} AS __chosen FROM {x}_ev GROUP BY user_id, __sn"
        )
        .ok();
        ctes.push(format!("{x}_ses AS ({per_session})"));
        Ok(())
    }

    /// Row `r`'s `x_m` CTE: metrics per interval, segment and group; and its columns.
    fn row_metrics(&self, r: usize, is_events: bool) -> (String, RowColumns) {
        let x = row_letter(r).to_ascii_lowercase();
        let upper = row_letter(r);
        let mut select = format!("SELECT o.__iv, {}", self.seg_column());
        for key in &self.group_keys {
            write!(select, ", o.{key}").ok();
        }
        let mut metrics = vec![];
        for (sql, name) in [
            ("count(*) FILTER (WHERE o.__kept)", "total_sessions"),
            (
                "count(DISTINCT o.user_id) FILTER (WHERE o.__kept)",
                "uniques",
            ),
            ("sum(o.__len) FILTER (WHERE o.__kept)", "time_spent"),
            ("avg(o.__len) FILTER (WHERE o.__kept)", "avg_length"),
            ("median(o.__len) FILTER (WHERE o.__kept)", "median_length"),
            // The sorted lengths, for an exact 95th percentile in the output.
            (
                "array_sort(array_agg(o.__len) FILTER (WHERE o.__kept))",
                "lengths",
            ),
            ("sum(o.__chosen) FILTER (WHERE o.__kept)", "total_events"),
        ] {
            let name = format!("{upper}_{name}");
            write!(select, ", {sql} AS {}", ident(&name)).ok();
            metrics.push(name);
        }
        let (edges, value, seconds, prefix) = if is_events {
            (
                &self.event_edges,
                "o.__chosen",
                false,
                format!("{upper}_events"),
            )
        } else {
            (
                &self.length_edges,
                "o.__len",
                true,
                format!("{upper}_length"),
            )
        };
        let mut buckets = vec![];
        for w in edges.windows(2) {
            let name = bucket_label(&prefix, w[0], w[1], seconds);
            write!(
                select,
                ", sum(CASE WHEN o.__kept AND {value} >= {} AND {value} < {} THEN 1 ELSE 0 END) AS {}",
                w[0],
                w[1],
                ident(&name)
            )
            .ok();
            buckets.push(name);
        }
        let mut group_by = vec![self.seg_group_by("o.__iv")];
        group_by.extend(self.group_keys.iter().map(|k| format!("o.{k}")));
        write!(
            select,
            " FROM {x}_ok o {} GROUP BY {}",
            self.segs_join("o"),
            group_by.join(", ")
        )
        .ok();
        let columns = RowColumns {
            letter: upper,
            is_events,
            metrics,
            buckets,
        };
        (format!("{x}_m AS ({select})"), columns)
    }

    /// `keys` (every interval, segment and group any row has) and `wide` (the rows side by side).
    /// `intervals`: every interval of the chart, from `--from` (else the first event's interval)
    /// to `--to` (else the last event's), so that an interval without sessions has its row.
    fn intervals_cte(&self) -> String {
        let (trunc, step) = match self.spec.interval {
            IntervalKind::Total => {
                return format!("intervals AS (SELECT {} AS __iv)", self.interval_start(""));
            }
            IntervalKind::Day => (None, "1 day"),
            IntervalKind::Week => (Some("week"), "7 days"),
            IntervalKind::Month => (Some("month"), "1 month"),
        };
        let lo = match (&self.spec.from, trunc) {
            (Some(from), None) => format!("DATE {}", literal(from)),
            (Some(from), Some(unit)) => {
                format!("CAST(date_trunc('{unit}', DATE {}) AS DATE)", literal(from))
            }
            (None, _) => "__lo".to_string(),
        };
        let hi = match &self.spec.to {
            Some(to) => format!("DATE {}", literal(to)),
            None => "__hi".to_string(),
        };
        // The first and last events' intervals in one scan of the events.
        format!(
            "intervals AS (SELECT CAST(unnest(generate_series({lo}, {hi}, INTERVAL '{step}')) AS DATE) AS __iv \
             FROM (SELECT min(__iv) AS __lo, max(__iv) AS __hi FROM ev))"
        )
    }

    fn wide_ctes(&self, rows: &[RowColumns], segments: usize) -> Vec<String> {
        let mut keys_cols = vec!["__iv".to_string(), "__seg".to_string()];
        keys_cols.extend(self.group_keys.iter().cloned());
        let key_union: Vec<String> = rows
            .iter()
            .map(|rc| {
                format!(
                    "SELECT {} FROM {}_m",
                    keys_cols[1..].join(", "),
                    rc.letter.to_ascii_lowercase()
                )
            })
            .collect();
        let mut wide = String::from("SELECT k.__iv, k.__seg");
        for key in &self.group_keys {
            write!(wide, ", k.{key}").ok();
        }
        write!(wide, ", COALESCE(act.__active, 0) AS __active").ok();
        // Without group-by the keys are every interval and segment, the metrics' tables joined to
        // them. With group-by, the series are the groups found, and with one row its own table
        // gives the keys: no second evaluation of it for `keys` (DataFusion computes a CTE again
        // wherever it is referenced).
        let every_interval = self.group_keys.is_empty();
        let single = rows.len() == 1 && !every_interval;
        let alias = |rc: &RowColumns| {
            if single {
                "k".to_string()
            } else {
                format!("r_{}", rc.letter.to_ascii_lowercase())
            }
        };
        for rc in rows {
            let x = alias(rc);
            for name in rc.metrics.iter().chain(rc.buckets.iter()) {
                let counted = !name.ends_with("_avg_length")
                    && !name.ends_with("_median_length")
                    && !name.ends_with("_lengths");
                if counted {
                    write!(wide, ", COALESCE({x}.{n}, 0) AS {n}", n = ident(name)).ok();
                } else {
                    write!(wide, ", {x}.{n} AS {n}", n = ident(name)).ok();
                }
            }
        }
        if let ([only], true) = (rows, single) {
            return self.series_ctes(only);
        }
        write!(wide, " FROM keys k LEFT JOIN active act ON (k.__iv IS NOT DISTINCT FROM act.__iv) AND k.__seg = act.__seg").ok();
        for rc in rows {
            let m = rc.letter.to_ascii_lowercase();
            let x = alias(rc);
            let on: Vec<String> = keys_cols
                .iter()
                .map(|c| format!("(k.{c} IS NOT DISTINCT FROM {x}.{c})"))
                .collect();
            write!(wide, " LEFT JOIN {m}_m {x} ON {}", on.join(" AND ")).ok();
        }
        // Every interval of the chart for every segment (without group-by) or every series
        // (segment and group values) any row found.
        let keys = if every_interval {
            format!(
                "keys AS (SELECT i.__iv, s.__seg FROM intervals i CROSS JOIN \
                 (SELECT unnest(range(1, {})) AS __seg) s)",
                segments + 1
            )
        } else {
            let series: Vec<&String> = keys_cols.iter().skip(1).collect();
            let columns = series.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>();
            format!(
                "keys AS (SELECT i.__iv, {} FROM intervals i CROSS JOIN \
                 (SELECT DISTINCT {} FROM ({}) u) s)",
                columns.join(", "),
                series
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                key_union.join(" UNION ALL ")
            )
        };
        vec![self.intervals_cte(), keys, format!("wide AS ({wide})")]
    }

    /// `wide` of a one-row chart with group-by: every interval of every series (segment and
    /// group values) found, with 0 sessions where the series has none in the interval. The
    /// row's table is read once (DataFusion computes a CTE again wherever it is referenced): its
    /// rows are gathered per series into lists, which every interval looks its cell up in.
    fn series_ctes(&self, row: &RowColumns) -> Vec<String> {
        let m = format!("{}_m", row.letter.to_ascii_lowercase());
        let names: Vec<&String> = row.metrics.iter().chain(row.buckets.iter()).collect();
        let groups: String = self.group_keys.iter().map(|g| format!(", {g}")).collect();
        let fields: Vec<String> = names
            .iter()
            .map(|n| format!("{}, {}", literal(n), ident(n)))
            .collect();
        let series = format!(
            "series AS (SELECT __seg{groups}, array_agg(__iv) AS __ivs, \
             array_agg(named_struct({})) AS __cells FROM {m} GROUP BY __seg{groups})",
            fields.join(", ")
        );
        // A total has one interval (null without --from), so one cell per series.
        let cell = match self.spec.interval {
            IntervalKind::Total => "s.__cells[1]".to_string(),
            _ => "s.__cells[CAST(array_position(s.__ivs, i.__iv) AS BIGINT)]".to_string(),
        };
        let group_cols: String = self.group_keys.iter().map(|g| format!(", s.{g}")).collect();
        let keys = format!(
            "keys AS (SELECT i.__iv, s.__seg{group_cols}, {cell} AS __cell \
             FROM intervals i CROSS JOIN series s)"
        );
        let mut wide = String::from("SELECT k.__iv, k.__seg");
        for key in &self.group_keys {
            write!(wide, ", k.{key}").ok();
        }
        write!(wide, ", COALESCE(act.__active, 0) AS __active").ok();
        for name in names {
            let counted = !name.ends_with("_avg_length")
                && !name.ends_with("_median_length")
                && !name.ends_with("_lengths");
            let value = format!("k.__cell[{}]", literal(name));
            if counted {
                write!(wide, ", COALESCE({value}, 0) AS {}", ident(name)).ok();
            } else {
                write!(wide, ", {value} AS {}", ident(name)).ok();
            }
        }
        write!(wide, " FROM keys k LEFT JOIN active act ON (k.__iv IS NOT DISTINCT FROM act.__iv) AND k.__seg = act.__seg").ok();
        vec![
            self.intervals_cte(),
            series,
            keys,
            format!("wide AS ({wide})"),
        ]
    }

    /// The output columns: interval, segment, groups, per-row metrics, active users, formulas.
    fn output_columns(
        &self,
        rows: &[RowColumns],
        segment_names: &[String],
    ) -> Result<(Vec<String>, Vec<FormulaColumn>)> {
        let mut out = vec![
            "__iv AS interval_start".to_string(),
            format!(
                "CASE __seg {} END AS segment",
                segment_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("WHEN {} THEN {}", i + 1, literal(n)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ];
        for (g, name) in self.spec.group_by.iter().enumerate() {
            out.push(format!("__g{g} AS {}", ident(name)));
        }
        for rc in rows {
            let u = rc.letter;
            let q = |m: &str| ident(&format!("{u}_{m}"));
            let same = |m: &str| format!("{} AS {}", q(m), q(m));
            if rc.is_events {
                out.push(same("total_events"));
                out.push(format!(
                    "CAST({} AS DOUBLE) / NULLIF({}, 0) AS {}",
                    q("total_events"),
                    q("total_sessions"),
                    q("avg_events_per_session")
                ));
                out.push(same("total_sessions"));
            } else {
                out.push(same("total_sessions"));
                out.push(same("time_spent"));
                out.push(format!(
                    "{} / NULLIF(__active, 0) AS {}",
                    q("time_spent"),
                    q("time_spent_per_user")
                ));
                out.push(same("avg_length"));
                out.push(same("median_length"));
                out.push(format!(
                    "{} AS {}",
                    percentile(&q("lengths"), 0.95),
                    q("p95_length")
                ));
                out.push(format!(
                    "CAST({} AS DOUBLE) / NULLIF(__active, 0) AS {}",
                    q("total_sessions"),
                    q("avg_per_user")
                ));
            }
            out.push(same("uniques"));
            out.extend(rc.buckets.iter().map(|b| ident(b)));
        }
        out.push("__active AS active_users".to_string());
        let mut formulas = vec![];
        let mut partition = vec!["__iv".to_string()];
        partition.extend(self.group_keys.iter().cloned());
        for f in &self.formulas {
            for (name, sql) in formula_sql(f, rows, segment_names.len(), &partition)? {
                out.push(format!("{sql} AS {}", ident(&name)));
            }
            formulas.push((f.text.clone(), f.display));
        }
        Ok((out, formulas))
    }
}

/// The exact `p` percentile (linear interpolation between closest ranks, as `percentile_cont`) of a
/// sorted list column.
fn percentile(sorted: &str, p: f64) -> String {
    let n = format!("CAST(cardinality({sorted}) AS BIGINT)");
    let pos = format!("({p} * ({n} - 1))");
    let lo = format!("CAST(floor({pos}) AS BIGINT)");
    format!(
        "CASE WHEN {n} > 0 THEN {sorted}[{lo} + 1] + ({pos} - {lo}) * ({sorted}[least({lo} + 2, {n})] - {sorted}[{lo} + 1]) END"
    )
}

/// The SQL of one formula: one column, or one per bucket for `HIST`.
fn formula_sql(
    f: &Formula,
    rows: &[RowColumns],
    segments: usize,
    partition: &[String],
) -> Result<Vec<(String, String)>> {
    let check_row = |row: char, segment: Option<usize>, func: Func| -> Result<&RowColumns> {
        let Some(rc) = rows.iter().find(|r| r.letter == row) else {
            let known: Vec<String> = rows.iter().map(|r| r.letter.to_string()).collect();
            return plan_err!(
                "formula '{}': unknown row {row}: the chart has rows {}",
                f.text,
                known.join(", ")
            );
        };
        if let Some(s) = segment
            && s > segments
        {
            return plan_err!(
                "formula '{}': {}({row}{s}) names segment {s}, but the chart has {segments}",
                f.text,
                func.name()
            );
        }
        Ok(rc)
    };
    if let Expr::Call {
        func: Func::Hist,
        row,
        segment,
        ..
    } = &f.expr
    {
        let rc = check_row(*row, *segment, Func::Hist)?;
        if rc.is_events {
            return plan_err!(
                "formula '{}': HIST takes a sessions row; row {row} counts events",
                f.text
            );
        }
        return Ok(rc
            .buckets
            .iter()
            .map(|b| {
                (
                    format!(
                        "{} {}",
                        f.text,
                        b.trim_start_matches(&format!("{row}_length"))
                    ),
                    pick(&ident(b), *segment, partition),
                )
            })
            .collect());
    }
    let validate =
        |row: char, segment: Option<usize>, func: Func| check_row(row, segment, func).map(|_| ());
    let sql = expr_sql(&f.expr, &validate, partition)?;
    let sql = match f.display {
        Display::Percent => format!("({sql}) * 100"),
        _ => sql,
    };
    Ok(vec![(f.text.clone(), sql)])
}

/// A metric column, or its value for segment `segment` in the same interval and group.
fn pick(column: &str, segment: Option<usize>, partition: &[String]) -> String {
    match segment {
        None => format!("CAST({column} AS DOUBLE)"),
        Some(s) => format!(
            "max(CASE WHEN __seg = {s} THEN CAST({column} AS DOUBLE) END) OVER (PARTITION BY {})",
            partition.join(", ")
        ),
    }
}

fn expr_sql(
    expr: &Expr,
    check_row: &dyn Fn(char, Option<usize>, Func) -> Result<()>,
    partition: &[String],
) -> Result<String> {
    Ok(match expr {
        Expr::Number(n) => format!("CAST({n} AS DOUBLE)"),
        Expr::Neg(inner) => format!("(-{})", expr_sql(inner, check_row, partition)?),
        Expr::Binary(op, l, r) => {
            let l = expr_sql(l, check_row, partition)?;
            let r = expr_sql(r, check_row, partition)?;
            match op {
                Op::Add => format!("({l} + {r})"),
                Op::Sub => format!("({l} - {r})"),
                Op::Mul => format!("({l} * {r})"),
                // Division by zero gives null (an empty cell).
                Op::Div => format!("({l} / NULLIF({r}, 0))"),
            }
        }
        Expr::Call {
            func, row, segment, ..
        } => {
            check_row(*row, *segment, *func)?;
            let metric = match func {
                Func::SessionTotals => "total_sessions",
                Func::EventTotals => "total_events",
                Func::Uniques => "uniques",
                Func::PropSum => "time_spent",
                Func::Hist => {
                    return plan_err!(
                        "HIST cannot be mixed into arithmetic; use it alone, as HIST({row})"
                    );
                }
            };
            pick(&ident(&format!("{row}_{metric}")), *segment, partition)
        }
    })
}

/// The SQL of a chart over `table`.
pub fn chart_sql(table: &str, schema: &Schema, spec: &ChartSpec) -> Result<String> {
    Ok(compile(table, schema, spec)?.sql)
}

/// The chart over the table `events` as a DataFrame.
pub async fn chart(ctx: &SessionContext, spec: &ChartSpec) -> Result<DataFrame> {
    chart_of(ctx, "events", spec).await
}

/// The chart over the table `table` as a DataFrame.
pub async fn chart_of(ctx: &SessionContext, table: &str, spec: &ChartSpec) -> Result<DataFrame> {
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    frame(ctx, &chart_sql(table, &schema, spec)?).await
}

/// Chart SQL (from [`chart_sql`] or [`compile`]) as a DataFrame of `ctx`'s tables and functions.
///
/// The plan is made in a copy of `ctx`'s state with the project's settings
/// ([`crate::session_config`]; `ctx` itself is not changed), so that a context made elsewhere (a
/// library user's) plans the chart as the project's contexts do (among them, leaf-expression
/// pushdown off: see [`crate::session_config`]).
pub async fn frame(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let mut state = ctx.state();
    *state.config_mut() = crate::session_config(state.config().clone());
    let plan = state.create_logical_plan(sql).await?;
    Ok(DataFrame::new(state, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library entry point: a spec in, a DataFrame out.
    #[tokio::test]
    async fn chart_from_a_spec_in_a_datafusion_app() {
        let ctx = crate::context().unwrap();
        ctx.sql(
            "CREATE TABLE events AS SELECT user_id, arrow_cast(to_timestamp_seconds(t), 'Timestamp(s, \"UTC\")') AS event_time, \
             'view' AS event_type FROM (VALUES ('u', 0), ('u', 60), ('u', 5000), ('v', 86400)) AS v(user_id, t)",
        )
        .await
        .unwrap();
        let spec =
            ChartSpec::from_text("spec.toml", "interval = \"total\"\nfrom = \"1970-01-01\"\n")
                .unwrap();
        let batches = chart(&ctx, &spec).await.unwrap().collect().await.unwrap();
        let sessions = crate::plot::number_column(&batches, "A_total_sessions").unwrap();
        let time = crate::plot::number_column(&batches, "A_time_spent").unwrap();
        // u: [0, 60] and [5000]; v: [86400].
        assert_eq!((sessions, time), (vec![Some(3.0)], vec![Some(60.0)]));
    }

    #[test]
    fn bucket_edges_are_checked() {
        let b = Buckets {
            min: Some(0.0),
            max: Some(10.0),
            size: Some(4.0),
            ..Buckets::default()
        };
        assert_eq!(b.edges(&[]).unwrap(), vec![0.0, 4.0, 8.0, 10.0]);
        let overlapping = Buckets {
            edges: vec![0.0, 5.0, 5.0],
            ..Buckets::default()
        };
        assert!(overlapping.edges(&[]).is_err());
        let partial = Buckets {
            min: Some(0.0),
            ..Buckets::default()
        };
        assert!(partial.edges(&[]).is_err());
    }
}
