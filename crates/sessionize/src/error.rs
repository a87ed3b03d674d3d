//! The sentence a user sees for an error, whichever way in they used (the command line, Python).

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// The user's sentence for `e`: the innermost error's message (DataFusion's wrappers, such as
/// "Error during planning: ...", only say where it happened), on one line, except a formula
/// error, whose last lines show the formula with a caret under the error.
pub fn user_message(e: &DataFusionError) -> String {
    let root = e.find_root();
    let message = match root {
        DataFusionError::SQL(error, _) => match error.as_ref() {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => {
                format!("SQL syntax error: {m}")
            }
            other => format!("SQL syntax error: {other}"),
        },
        _ => root.message().trim().to_string(),
    };
    if message.trim_end().ends_with('^') {
        message
    } else {
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// An input that is not there: a path that does not exist, or a glob that matches nothing. The
/// message is the user's sentence.
#[derive(Debug)]
pub struct InputNotFound(pub String);

impl std::fmt::Display for InputNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputNotFound {}

/// An [`InputNotFound`] error with `message`.
pub fn input_not_found(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(InputNotFound(message)))
}

/// Whether `e` comes from input that is not there (a path that does not exist, a glob that
/// matches nothing).
pub fn is_not_found(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::External(inner) => inner.downcast_ref::<InputNotFound>().is_some(),
        DataFusionError::IoError(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// An input without events: files that are empty, CSV with a header and no rows, JSON without
/// objects. The message is the user's sentence.
#[derive(Debug)]
pub struct NoEvents(pub String);

impl std::fmt::Display for NoEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoEvents {}

/// A [`NoEvents`] error with `message`.
pub fn no_events(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(NoEvents(message)))
}

/// Whether `e` says the input holds no events.
pub fn is_no_events(e: &DataFusionError) -> bool {
    matches!(e.find_root(), DataFusionError::External(inner) if inner.downcast_ref::<NoEvents>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_sentence_on_one_line() {
        let e = DataFusionError::Context(
            "outer".into(),
            Box::new(DataFusionError::Plan("a sentence\n  on two lines".into())),
        );
        assert_eq!(user_message(&e), "a sentence on two lines");
        let e = input_not_found("no files match 'x*'".into());
        assert!(is_not_found(&e));
        assert_eq!(user_message(&e), "no files match 'x*'");
    }
}
