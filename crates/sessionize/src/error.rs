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
        object_store_sentence(&message)
            .unwrap_or_else(|| message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// An object store's failure in one sentence: the service's own error code and message (S3's
/// XML body otherwise runs to several lines of request ids), or the address that could not be
/// reached.
fn object_store_sentence(message: &str) -> Option<String> {
    // What the project said before the store's own error ("cannot list 'URL'"), without
    // delta-rs's wrappers.
    let cut = message.find("Generic ").unwrap_or(0);
    let before = message[..cut].trim_end_matches([' ', ':']);
    let before = before
        .trim_start_matches("Kernel error: ")
        .trim_start_matches("Error interacting with object store")
        .trim_start_matches([' ', ':']);
    let with_context = |sentence: String| {
        if before.is_empty() {
            sentence
        } else {
            format!("{before}: {sentence}")
        }
    };
    let between = |from: &str, to: &str| -> Option<String> {
        let start = message.find(from)? + from.len();
        let end = start + message[start..].find(to)?;
        Some(message[start..end].trim().to_string())
    };
    let url = message
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"));
    if let (Some(code), Some(text)) = (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        let bucket = between("<BucketName>", "</BucketName>")
            .map(|b| format!(" (bucket '{b}')"))
            .unwrap_or_default();
        return Some(with_context(format!(
            "the object store refused the request: {code}: {text}{bucket}"
        )));
    }
    if message.contains("error sending request") {
        let host = url
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| format!("{}://{}", u.scheme(), u.authority()))
            .unwrap_or_else(|| "its address".to_string());
        return Some(with_context(format!(
            "cannot reach the object store at {host} (error sending request): check \
             AWS_ENDPOINT_URL (or the store's own variables) and the network"
        )));
    }
    None
}

/// What a [`UserError`] is about, for the callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An input that is not there: a path that does not exist, or a glob that matches nothing.
    InputNotFound,
    /// An input without events: files that are empty, CSV with a header and no rows, JSON
    /// without objects.
    NoEvents,
    /// A Delta table that another run committed to first ([`crate::delta`]).
    TableChanged,
}

/// An error whose message is the user's sentence, with what it is about.
#[derive(Debug)]
pub struct UserError {
    pub kind: Kind,
    pub message: String,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// A [`UserError`] of `kind` saying `message`.
pub fn user_error(kind: Kind, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(UserError { kind, message }))
}

/// Whether `e` (or the error it wraps) is a [`UserError`] of `kind`.
pub fn is_kind(e: &DataFusionError, kind: Kind) -> bool {
    matches!(e.find_root(), DataFusionError::External(inner)
        if inner.downcast_ref::<UserError>().is_some_and(|u| u.kind == kind))
}

/// An [`Kind::InputNotFound`] error with `message`.
pub fn input_not_found(message: String) -> DataFusionError {
    user_error(Kind::InputNotFound, message)
}

/// Whether `e` comes from input that is not there (a path that does not exist, a glob that
/// matches nothing).
pub fn is_not_found(e: &DataFusionError) -> bool {
    is_kind(e, Kind::InputNotFound)
        || matches!(e.find_root(), DataFusionError::IoError(io) if io.kind() == std::io::ErrorKind::NotFound)
}

/// A [`Kind::NoEvents`] error with `message`.
pub fn no_events(message: String) -> DataFusionError {
    user_error(Kind::NoEvents, message)
}

/// Whether `e` says the input holds no events.
pub fn is_no_events(e: &DataFusionError) -> bool {
    is_kind(e, Kind::NoEvents)
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

#[cfg(test)]
mod object_store_tests {
    #[test]
    fn object_store_errors_become_one_sentence() {
        let s3 = "Generic S3 error: Error performing list request: Error performing GET \
                  http://127.0.0.1:5056/nobucket?list-type=2 in 3ms - 404 Not Found: <?xml \
                  version=\"1.0\"?> <Error><Code>NoSuchBucket</Code><Message>The specified \
                  bucket does not exist</Message><BucketName>nobucket</BucketName><RequestId>x\
                  </RequestId></Error>";
        assert_eq!(
            super::object_store_sentence(s3).unwrap(),
            "the object store refused the request: NoSuchBucket: The specified bucket does not \
             exist (bucket 'nobucket')"
        );
        let down = "Generic S3 error: Error performing GET http://127.0.0.1:5999/bkt/y in 4ms, \
                    after 3 retries - HTTP error: error sending request";
        assert!(
            super::object_store_sentence(down)
                .unwrap()
                .starts_with("cannot reach the object store at http://127.0.0.1:5999 ")
        );
        assert_eq!(super::object_store_sentence("no column 'x'"), None);
        let listed = format!("cannot list 's3://nobucket/e.csv': {s3}");
        assert!(
            super::object_store_sentence(&listed)
                .unwrap()
                .starts_with("cannot list 's3://nobucket/e.csv': the object store refused")
        );
        let wrapped = format!("Kernel error: Error interacting with object store: {s3}");
        assert!(
            super::object_store_sentence(&wrapped)
                .unwrap()
                .starts_with("the object store refused")
        );
    }
}
