//! Shared pieces of the functions' DataFusion [`Documentation`].

use datafusion::logical_expr::Documentation;
use datafusion::logical_expr::{DocSection, DocumentationBuilder};

/// The documentation section of every sessionize function.
pub const DOC_SECTION_SESSIONS: DocSection = DocSection {
    include: true,
    label: "Sessionization Functions",
    description: Some("Functions that group an actor's events into sessions by inactivity."),
};

/// The documentation section of the scalar functions behind the sessions table's columns.
pub const DOC_SECTION_COLUMNS: DocSection = DocSection {
    include: true,
    label: "Session Column Functions",
    description: Some(
        "Scalar functions that compute the sessions table's keys, days and seconds in one pass.",
    ),
};

/// A builder with `ts`, `timeout` and `restart`, the arguments of the session rule.
fn rule_arguments(description: &str, syntax: &str) -> DocumentationBuilder {
    Documentation::builder(DOC_SECTION_SESSIONS, description, syntax)
        .with_argument(
            "ts",
            "The event time: a timestamp of any unit, with or without a time zone.",
        )
        .with_argument(
            "timeout",
            "A constant, positive INTERVAL without months, e.g. INTERVAL '30 minutes'. A gap \
             strictly greater than it starts a new session; an equal gap does not.",
        )
        .with_argument(
            "restart",
            "A boolean expression, e.g. event_type = 'app_open' (optional where the syntax shows \
             it in brackets; `false` for none): a new session starts at every timestamp where it \
             is true. Null counts as false.",
        )
}

/// A builder with the arguments every session function shares.
pub fn session_function(description: &str, syntax: &str) -> DocumentationBuilder {
    rule_arguments(description, syntax).with_argument(
        "max_length",
        "Optional constant INTERVAL: a new session also starts at an event more than this \
         after its session's first event.",
    )
}

/// A builder with the arguments of `session_first_value` and `session_last_value`.
pub fn session_value_function(description: &str, syntax: &str) -> DocumentationBuilder {
    rule_arguments(description, syntax)
        .with_argument(
            "event_type",
            "The event's type (text, or cast to text): the first tie-breaker.",
        )
        .with_argument(
            "value",
            "The value returned (text, or cast to text): the second tie-breaker.",
        )
}

/// A function's documentation, held by its implementation struct. Two functions are told apart by
/// their names, never by their documentation, so comparing and hashing ignore it.
#[derive(Debug, Clone, Copy)]
pub struct DocFn(pub fn() -> &'static Documentation);

impl DocFn {
    pub fn get(&self) -> &'static Documentation {
        (self.0)()
    }
}

impl PartialEq for DocFn {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for DocFn {}

impl std::hash::Hash for DocFn {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}
