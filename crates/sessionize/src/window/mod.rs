//! Window functions (UDWF): `session_number`, `session_id`, `conditional_true_event`.
//!
//! The session functions are evaluated with running state over the default window frame
//! (`RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`). That frame ends at the last row that ties
//! with the current row on the `ORDER BY` key, so when a row is evaluated the evaluator sees all of its
//! tied events and can apply the restart rule to the whole tie group. Each tie group is fed once to
//! [`SessionTracker`]; rows of a group share the cached result. The evaluator supports DataFusion's
//! bounded execution (`BoundedWindowAggExec`) and lets it drop rows it has finished with.

mod conditional_true_event;
mod session_id;
mod session_number;

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::window_state::WindowAggState;
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

pub use conditional_true_event::conditional_true_event_udwf;
pub use session_id::session_id_udwf;
pub use session_number::session_number_udwf;

use crate::args::{self, TS};
use crate::docs::DocFn;
use crate::rules::{SessionRule, SessionTracker, to_epoch_millis};

/// All window functions of the project.
pub fn all_udwfs() -> Vec<Arc<WindowUDF>> {
    vec![
        session_number_udwf(),
        session_id_udwf(),
        conditional_true_event_udwf(),
    ]
}

/// What a session window function returns for each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SessionOutput {
    /// 1-based ordinal of the session within the partition.
    Number,
    /// Epoch milliseconds of the session's first event.
    Id,
}

/// The shared implementation of `session_number` and `session_id`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionWindow {
    name: &'static str,
    output: SessionOutput,
    signature: Signature,
    documentation: DocFn,
}

impl SessionWindow {
    fn new(
        name: &'static str,
        output: SessionOutput,
        documentation: fn() -> &'static Documentation,
    ) -> Self {
        Self {
            name,
            output,
            signature: Signature::user_defined(Volatility::Immutable),
            documentation: DocFn(documentation),
        }
    }
}

impl WindowUDFImpl for SessionWindow {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        args::coerce_session_args(self.name, arg_types)
    }

    fn partition_evaluator(
        &self,
        partition_evaluator_args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let fields = partition_evaluator_args.input_fields();
        let Some(ts_field) = fields.get(TS) else {
            return exec_err!("{} needs a timestamp argument", self.name);
        };
        let unit = args::timestamp_unit(self.name, ts_field.data_type())?;
        let exprs = partition_evaluator_args.input_exprs();
        let rule = args::session_rule(self.name, exprs, unit)?;
        // Without a restart condition an event's session depends only on its timestamp and the
        // earlier ones, never on later rows tied with it.
        let causal = exprs.get(args::RESTART).is_none_or(args::is_false_literal);
        Ok(Box::new(SessionEvaluator {
            name: self.name,
            output: self.output,
            unit,
            rule,
            tracker: SessionTracker::default(),
            arg_count: fields.len(),
            current: None,
            started: false,
            causal,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let types = crate::args::input_types(field_args.input_fields());
        args::checked_timestamp_type(self.name, &types)?;
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            true,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }
}

/// Running state of `session_number` / `session_id` over one partition.
#[derive(Debug)]
struct SessionEvaluator {
    name: &'static str,
    output: SessionOutput,
    unit: TimeUnit,
    rule: SessionRule,
    tracker: SessionTracker,
    /// Number of function arguments at the front of the evaluator's values.
    arg_count: usize,
    /// The timestamp of the tie group evaluated last and its result.
    current: Option<(i64, i64)>,
    /// Whether a row of this partition was evaluated already.
    started: bool,
    /// No restart condition: each row is evaluated alone, in order, without a window frame.
    causal: bool,
}

impl SessionEvaluator {
    /// The result for the next row in time order, at `t`, whose tie group restarts or not.
    fn next(&mut self, t: i64, restarts: bool) -> Result<i64> {
        match self.current {
            Some((current, result)) if current == t => return Ok(result),
            Some((current, _)) if t < current => return self.order_error(),
            _ => {}
        }
        self.tracker.advance(&self.rule, t, restarts);
        let result = match self.output {
            SessionOutput::Number => self.tracker.number(),
            SessionOutput::Id => to_epoch_millis(self.tracker.start(), self.unit),
        };
        self.current = Some((t, result));
        Ok(result)
    }

    fn order_error<T>(&self) -> Result<T> {
        exec_err!(
            "{} must be used as {}(ts, ...) OVER (PARTITION BY actor ORDER BY ts), ordered by its \
             timestamp argument ascending and with the default window frame",
            self.name,
            self.name
        )
    }
}

impl PartitionEvaluator for SessionEvaluator {
    /// With a restart condition, the default RANGE frame shows each row its whole tie group. Without
    /// one, rows are evaluated one by one as they come ([`Self::is_causal`]), so DataFusion's
    /// bounded window operator emits every row of a batch at once: with a frame it keeps the last
    /// tie group of each batch, and concatenating that remainder with the next batch carried every
    /// earlier batch's string buffers along (`Utf8View`), which made wide `SELECT *` queries grow
    /// quadratically with the input.
    fn uses_window_frame(&self) -> bool {
        !self.causal
    }

    fn is_causal(&self) -> bool {
        self.causal
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let (ts, nulls) = args::timestamp_slice(self.name, &values[TS])?;
        let mut out = datafusion::arrow::array::Int64Builder::with_capacity(num_rows);
        for (i, &t) in ts.iter().enumerate().take(num_rows) {
            if nulls.is_some_and(|n| n.is_null(i)) {
                out.append_null();
            } else {
                out.append_value(self.next(t, false)?);
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    fn memoize(&mut self, state: &mut WindowAggState) -> Result<()> {
        // Every row evaluated so far belongs to a finished tie group and the tracker carries all it
        // needs of them, so DataFusion may drop them from its partition buffer.
        state.window_frame_range.start = state.window_frame_range.end;
        Ok(())
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        if range.is_empty() {
            return Ok(ScalarValue::Int64(None));
        }
        let (ts, nulls) = args::timestamp_slice(self.name, &values[TS])?;
        if self.causal {
            // `range` is the current row alone.
            let row = range.end - 1;
            if nulls.is_some_and(|n| n.is_null(row)) {
                return Ok(ScalarValue::Int64(None));
            }
            return Ok(ScalarValue::Int64(Some(self.next(ts[row], false)?)));
        }
        let restart = args::restart_values(self.name, values, self.arg_count)?;
        let is_null = |i: usize| nulls.is_some_and(|n| n.is_null(i));
        let last = range.end - 1;
        if !self.started {
            self.started = true;
            // The first frame of a partition holds one tie group only; anything else means the
            // window is not ordered by `ts` or has a custom frame.
            let first = range.start;
            if is_null(first) != is_null(last) || (!is_null(last) && ts[first] != ts[last]) {
                return self.order_error();
            }
        }
        if is_null(last) {
            return Ok(ScalarValue::Int64(None));
        }
        let t = ts[last];
        if range.end < ts.len() && !is_null(range.end) && ts[range.end] == t {
            // A ROWS frame cut a tie group in two.
            return self.order_error();
        }
        if let Some((current, result)) = self.current
            && current == t
        {
            return Ok(ScalarValue::Int64(Some(result)));
        }
        // The tie group of the current row ends at `last`; any restart inside it counts.
        let mut restarts = false;
        let mut i = last;
        loop {
            restarts |= args::is_restart(restart, i);
            if i == range.start || is_null(i - 1) || ts[i - 1] != t {
                break;
            }
            i -= 1;
        }
        Ok(ScalarValue::Int64(Some(self.next(t, restarts)?)))
    }
}
