//! `conditional_true_event(condition)`: Snowflake's running counter of rows where a condition holds.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

use crate::docs::DOC_SECTION_SESSIONS;

const NAME: &str = "conditional_true_event";

/// The `conditional_true_event` window function.
pub fn conditional_true_event_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::new_from_impl(ConditionalTrueEvent {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ConditionalTrueEvent {
    signature: Signature,
}

impl WindowUDFImpl for ConditionalTrueEvent {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // Wrong types pass through and are reported by `field`, whose errors reach users as written.
        Ok(check_condition(arg_types).unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(RunningTrueCount::default()))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let types = crate::args::input_types(field_args.input_fields());
        check_condition(&types)?;
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            false,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_SESSIONS,
                "Returns a counter (Int64) that starts at 0 and goes up by one at every row where \
                 `condition` is true (null counts as false), as Snowflake's function of that name, so \
                 that Snowflake sessionization SQL runs unchanged. Rows that tie on the ORDER BY key \
                 are counted together (the default RANGE frame), so the result never depends on the \
                 order of tied rows.",
                "conditional_true_event(condition) OVER (PARTITION BY actor ORDER BY ts)",
            )
            .with_argument("condition", "A boolean expression.")
            .with_sql_example(
                r#"```sql
> SELECT user_id, event_time,
         conditional_true_event(event_type = 'app_open') OVER (PARTITION BY user_id ORDER BY event_time) AS opens
  FROM events;
```"#,
            )
            .with_related_udf("session_number")
            .build()
        });
        Some(&DOC)
    }
}

/// Checks the argument types of `conditional_true_event`; returns the types to coerce them to.
fn check_condition(arg_types: &[DataType]) -> Result<Vec<DataType>> {
    match arg_types {
        [DataType::Boolean | DataType::Null] => Ok(vec![DataType::Boolean]),
        [other] => plan_err!(
            "{NAME}: argument 1 (condition) must be a boolean expression such as \
             gap > INTERVAL '30 minutes', but found {other}"
        ),
        _ => plan_err!(
            "{NAME} takes exactly 1 argument (condition), but {} were given",
            arg_types.len()
        ),
    }
}

/// The number of true conditions among the rows up to the end of the current frame.
#[derive(Debug, Default)]
struct RunningTrueCount {
    counted_upto: usize,
    count: i64,
}

impl PartitionEvaluator for RunningTrueCount {
    fn uses_window_frame(&self) -> bool {
        true
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let Some(condition) = values.first().and_then(|v| v.as_boolean_opt()) else {
            return exec_err!("{NAME}: argument 1 (condition) must be boolean");
        };
        // The frame end never moves backwards and no rows are pruned (no `memoize`), so each row is
        // counted once.
        while self.counted_upto < range.end {
            let i = self.counted_upto;
            if condition.is_valid(i) && condition.value(i) {
                self.count += 1;
            }
            self.counted_upto += 1;
        }
        Ok(ScalarValue::Int64(Some(self.count)))
    }
}
