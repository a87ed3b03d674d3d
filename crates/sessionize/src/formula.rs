//! The chart formula language: `SESSIONTOTALS(A) / SESSIONTOTALS(B)`, `%:UNIQUES(A1)`, `HIST(B)`.
//!
//! A hand-written recursive-descent parser turns each formula into an [`Expr`]; the chart compiles it
//! to a SQL expression over the chart's per-row metrics (see [`crate::chart`]). Errors carry the
//! column of the offending character, shown with a caret by [`FormulaError::render`]. The parser
//! never panics on any input.

use std::fmt;

/// A formula function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Number of sessions of a row.
    SessionTotals,
    /// Number of the row's chosen events inside its sessions.
    EventTotals,
    /// Distinct users with sessions of the row.
    Uniques,
    /// Total duration in seconds of the row's sessions.
    PropSum,
    /// Distribution of the row's session durations; cannot be mixed into arithmetic.
    Hist,
}

impl Func {
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "SESSIONTOTALS" => Some(Self::SessionTotals),
            "EVENTTOTALS" => Some(Self::EventTotals),
            "UNIQUES" => Some(Self::Uniques),
            "PROPSUM" => Some(Self::PropSum),
            "HIST" => Some(Self::Hist),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::SessionTotals => "SESSIONTOTALS",
            Self::EventTotals => "EVENTTOTALS",
            Self::Uniques => "UNIQUES",
            Self::PropSum => "PROPSUM",
            Self::Hist => "HIST",
        }
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// A parsed formula expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    /// `FUNC(row)` or `FUNC(row segment)`, e.g. `UNIQUES(A2)`: row A in segment 2 (1-based).
    Call {
        func: Func,
        row: char,
        segment: Option<usize>,
        column: usize,
    },
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

/// How a formula's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Number,
    /// `%:` prefix: a percentage (the value times 100).
    Percent,
    /// `$:` prefix: a currency amount.
    Currency,
}

/// One parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    pub text: String,
    pub display: Display,
    pub expr: Expr,
}

/// A formula error at a column (1-based) of the formula text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormulaError {
    pub formula: String,
    pub column: usize,
    pub message: String,
}

impl FormulaError {
    /// The message, the formula and a caret under the column.
    pub fn render(&self) -> String {
        format!(
            "{} (column {}):\n  {}\n  {}^",
            self.message,
            self.column,
            self.formula,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for FormulaError {}

/// Parses up to 10 formulas separated by `;`.
pub fn parse_formulas(text: &str) -> Result<Vec<Formula>, FormulaError> {
    let parts: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 10 {
        return Err(FormulaError {
            formula: text.to_string(),
            column: 1,
            message: format!(
                "at most 10 formulas are allowed, but {} were given",
                parts.len()
            ),
        });
    }
    parts.into_iter().map(parse_formula).collect()
}

/// Parses one formula.
pub fn parse_formula(text: &str) -> Result<Formula, FormulaError> {
    let chars: Vec<char> = text.chars().collect();
    let mut parser = Parser {
        text,
        chars: &chars,
        pos: 0,
        depth: 0,
    };
    parser.skip_spaces();
    let display = if parser.eat_str("%:") {
        Display::Percent
    } else if parser.eat_str("$:") {
        Display::Currency
    } else {
        Display::Number
    };
    let expr = parser.expr()?;
    parser.skip_spaces();
    if parser.pos < chars.len() {
        let c = chars[parser.pos];
        return Err(parser.error(if c == ')' {
            "unbalanced parentheses: this ')' has no '('".to_string()
        } else {
            format!("unexpected '{c}'")
        }));
    }
    if let Expr::Binary(..) | Expr::Neg(_) = &expr
        && let Some(column) = hist_column(&expr)
    {
        return Err(FormulaError {
            formula: text.to_string(),
            column,
            message: "HIST gives a distribution and cannot be mixed into arithmetic; use it alone, as HIST(A)".into(),
        });
    }
    Ok(Formula {
        text: text.to_string(),
        display,
        expr,
    })
}

/// The column of a HIST call inside `expr`, if any.
fn hist_column(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Call {
            func: Func::Hist,
            column,
            ..
        } => Some(*column),
        Expr::Call { .. } | Expr::Number(_) => None,
        Expr::Neg(inner) => hist_column(inner),
        Expr::Binary(_, l, r) => hist_column(l).or_else(|| hist_column(r)),
    }
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a str,
    chars: &'a [char],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: String) -> FormulaError {
        FormulaError {
            formula: self.text.to_string(),
            column: self.pos + 1,
            message,
        }
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_spaces();
        self.chars.get(self.pos).copied()
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let wanted: Vec<char> = s.chars().collect();
        if self.chars[self.pos..].starts_with(&wanted) {
            self.pos += wanted.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("the formula is nested too deeply".into()));
        }
        let mut left = self.term()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let right = self.term()?;
            let op = if c == '+' { Op::Add } else { Op::Sub };
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, FormulaError> {
        let mut left = self.unary()?;
        while let Some(c @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            let right = self.unary()?;
            let op = if c == '*' { Op::Mul } else { Op::Div };
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        if self.peek() == Some('-') {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error("the formula is nested too deeply".into()));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FormulaError> {
        match self.peek() {
            None => Err(self
                .error("the formula ends too early: expected a number, a function or '('".into())),
            Some('(') => {
                let open = self.pos;
                self.pos += 1;
                let inner = self.expr()?;
                if self.peek() != Some(')') {
                    return Err(FormulaError {
                        formula: self.text.to_string(),
                        column: open + 1,
                        message: "unbalanced parentheses: this '(' is never closed".into(),
                    });
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() => self.call(),
            Some(c) => Err(self.error(format!(
                "unexpected '{c}': expected a number, a function such as SESSIONTOTALS(A) or '('"
            ))),
        }
    }

    fn number(&mut self) -> Result<Expr, FormulaError> {
        let start = self.pos;
        while self.pos < self.chars.len()
            && (self.chars[self.pos].is_ascii_digit() || self.chars[self.pos] == '.')
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse::<f64>()
            .map(Expr::Number)
            .map_err(|_| FormulaError {
                formula: self.text.to_string(),
                column: start + 1,
                message: format!("'{text}' is not a number"),
            })
    }

    fn call(&mut self) -> Result<Expr, FormulaError> {
        let start = self.pos;
        while self.pos < self.chars.len() && self.chars[self.pos].is_ascii_alphanumeric() {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let Some(func) = Func::from_name(&name) else {
            return Err(FormulaError {
                formula: self.text.to_string(),
                column: start + 1,
                message: format!(
                    "unknown function '{name}': expected SESSIONTOTALS, EVENTTOTALS, UNIQUES, PROPSUM or HIST"
                ),
            });
        };
        if self.peek() != Some('(') {
            return Err(self.error(format!(
                "{} takes one row in parentheses, as {}(A)",
                func.name(),
                func.name()
            )));
        }
        self.pos += 1;
        let row = match self.peek() {
            Some(c) if c.is_ascii_alphabetic() => c.to_ascii_uppercase(),
            Some(')') => {
                return Err(self.error(format!(
                    "{} takes exactly one row, as {}(A), but got none",
                    func.name(),
                    func.name()
                )));
            }
            _ => return Err(self.error(format!("{} takes a row letter such as A", func.name()))),
        };
        self.pos += 1;
        let digits_start = self.pos;
        while self.pos < self.chars.len() && self.chars[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let segment = if self.pos > digits_start {
            let digits: String = self.chars[digits_start..self.pos].iter().collect();
            match digits.parse::<usize>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(FormulaError {
                        formula: self.text.to_string(),
                        column: digits_start + 1,
                        message: format!(
                            "'{digits}' is not a segment number (segments count from 1)"
                        ),
                    });
                }
            }
        } else {
            None
        };
        match self.peek() {
            Some(')') => {
                self.pos += 1;
                Ok(Expr::Call {
                    func,
                    row,
                    segment,
                    column: start + 1,
                })
            }
            Some(',') => Err(self.error(format!(
                "{} takes exactly one row, as {}(A)",
                func.name(),
                func.name()
            ))),
            None => Err(FormulaError {
                formula: self.text.to_string(),
                column: start + name.len() + 1,
                message: "unbalanced parentheses: this '(' is never closed".into(),
            }),
            Some(c) => Err(self.error(format!("unexpected '{c}' in {}(...)", func.name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(func: Func, row: char, segment: Option<usize>, column: usize) -> Expr {
        Expr::Call {
            func,
            row,
            segment,
            column,
        }
    }

    #[test]
    fn parses_arithmetic_with_precedence_and_prefixes() {
        let f = parse_formula("%:sessiontotals(A) / SESSIONTOTALS(b2) * 2 - -1").unwrap();
        assert_eq!(f.display, Display::Percent);
        let expected = Expr::Binary(
            Op::Sub,
            Box::new(Expr::Binary(
                Op::Mul,
                Box::new(Expr::Binary(
                    Op::Div,
                    Box::new(call(Func::SessionTotals, 'A', None, 3)),
                    Box::new(call(Func::SessionTotals, 'B', Some(2), 22)),
                )),
                Box::new(Expr::Number(2.0)),
            )),
            Box::new(Expr::Neg(Box::new(Expr::Number(1.0)))),
        );
        assert_eq!(f.expr, expected);
        assert_eq!(
            parse_formula("$:PROPSUM(A)").unwrap().display,
            Display::Currency
        );
        assert_eq!(parse_formulas("HIST(A); UNIQUES(B)").unwrap().len(), 2);
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = parse_formula("FOO(A)").unwrap_err();
        assert_eq!(
            (e.column, e.message.starts_with("unknown function 'FOO'")),
            (1, true)
        );
        assert_eq!(e.render().lines().nth(2), Some("  ^"));
        let e = parse_formula("SESSIONTOTALS(A) + (UNIQUES(A)").unwrap_err();
        assert_eq!(e.column, 20);
        assert!(e.message.contains("never closed"));
        let e = parse_formula("UNIQUES(A))").unwrap_err();
        assert_eq!(e.column, 11);
        assert!(e.message.contains("has no '('"));
        let e = parse_formula("UNIQUES(A, B)").unwrap_err();
        assert!(e.message.contains("exactly one row"));
        let e = parse_formula("HIST(A) / 2").unwrap_err();
        assert!(e.message.contains("cannot be mixed into arithmetic"));
        assert_eq!(e.column, 1);
        let e = parse_formula("").unwrap_err();
        assert!(e.message.contains("ends too early"));
    }
}
