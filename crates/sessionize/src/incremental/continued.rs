//! Each actor's continuation (how many sessions come before its recomputed ones, and when the
//! last of them ended) as an SQL function of the actor, for
//! [`crate::sessions::sessions_sql_continued`].
//!
//! # Why functions, not a joined table
//! The continued sessions SQL gives each actor's recomputed sessions their numbers and first
//! previous end from the continuation. As a hash join of each actor's list of sessions with the
//! continuation, most of its time was the join copying the lists (0.25 s of CPU for a delivery's
//! 368,000 actors and 879,000 sessions at 100M events, against the tails' 485,000 actors); a
//! look-up per actor copies nothing (one for both values: each is a cache miss).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int64Type, TimeUnit};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::touched::{self, Keys};

/// The continuations of a set of actors: per actor (a key of `actors`, whose cut is the index),
/// its number offset and previous end (microseconds since the epoch, or none).
struct Continuations {
    actors: Keys,
    offsets: Vec<i64>,
    ends: Vec<Option<i64>>,
}

/// `{name}(actor)`: the struct of the actor's `number_offset` (0 for an actor without one) and
/// `previous_ended_at` (null for an actor without one).
struct Lookup {
    name: String,
    from: Arc<Continuations>,
    signature: Signature,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("name", &self.name)
            .field("actors", &self.from.actors.len())
            .finish()
    }
}

impl PartialEq for Lookup {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.from, &other.from)
    }
}

impl Eq for Lookup {}

impl std::hash::Hash for Lookup {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        Arc::as_ptr(&self.from).hash(state);
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The fields of the function's struct.
fn fields() -> Fields {
    Fields::from(vec![
        Field::new("number_offset", DataType::Int64, false),
        Field::new("previous_ended_at", utc(), true),
    ])
}

impl ScalarUDFImpl for Lookup {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [actor] = args.args.as_slice() else {
            return plan_err!("{} takes an actor", self.name);
        };
        let actor = actor.to_array(args.number_rows)?;
        let from = &self.from;
        let index = |text: Option<&str>| {
            text.and_then(|t| from.actors.get(t))
                .flatten()
                .map(|i| i as usize)
        };
        let (mut offsets, mut ends) = (
            Vec::with_capacity(actor.len()),
            Vec::with_capacity(actor.len()),
        );
        touched::each_text(&actor, |_, text| match index(text) {
            Some(i) => {
                offsets.push(from.offsets[i]);
                ends.push(from.ends[i]);
            }
            None => {
                offsets.push(0);
                ends.push(None);
            }
        })?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(offsets)),
            Arc::new(TimestampMicrosecondArray::from(ends).with_timezone("UTC")),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            fields(),
            columns,
            None,
        )?)))
    }
}

/// Registers `{name}(actor)` over `batches`, rows of (`user_id`, `number_offset`,
/// `previous_ended_at`), in that order: a struct of the actor's number offset (0 for an actor
/// without a row) and previous end (a timestamp in UTC, microseconds; null for an actor without a
/// row or without one). An actor with several rows takes the last.
pub(super) fn register(ctx: &SessionContext, name: &str, batches: &[RecordBatch]) -> Result<()> {
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let mut from = Continuations {
        actors: Keys::with_capacity(rows),
        offsets: Vec::with_capacity(rows),
        ends: Vec::with_capacity(rows),
    };
    for batch in batches {
        if batch.num_columns() < 3 {
            return plan_err!("a continuation has an actor, a number offset and a previous end");
        }
        let offsets = cast_array(batch.column(1), &DataType::Int64)?;
        let offsets = offsets.as_primitive::<Int64Type>();
        let ends = touched::micros(batch.column(2))?;
        touched::each_text(batch.column(0), |i, actor| {
            let Some(actor) = actor else { return };
            from.actors.insert(actor, Some(from.offsets.len() as i64));
            from.offsets.push(if offsets.is_valid(i) {
                offsets.value(i)
            } else {
                0
            });
            from.ends.push(ends.is_valid(i).then(|| ends.value(i)));
        })?;
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Lookup {
        name: name.to_string(),
        from: Arc::new(from),
        signature: Signature::any(1, Volatility::Immutable),
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[tokio::test]
    async fn an_actor_without_a_continuation_starts_from_none() {
        let ctx = SessionContext::new();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Utf8, true),
                Field::new("number_offset", DataType::Int64, true),
                Field::new("previous_ended_at", utc(), true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
                Arc::new(Int64Array::from(vec![Some(3), Some(0)])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        register(&ctx, "c", &[batch]).unwrap();
        let out = ctx
            .sql(
                "SELECT c(u)['number_offset'], arrow_cast(c(u)['previous_ended_at'], 'Int64') \
                 FROM (VALUES ('a'), ('b'), ('z'), (NULL)) t(u)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let offsets = out[0].column(0).as_primitive::<Int64Type>();
        let ends = out[0].column(1).as_primitive::<Int64Type>();
        assert_eq!(offsets.values().to_vec(), [3, 0, 0, 0]);
        assert_eq!(
            (0..4)
                .map(|i| ends.is_valid(i).then(|| ends.value(i)))
                .collect::<Vec<_>>(),
            [Some(1_000_000), None, None, None]
        );
    }
}
