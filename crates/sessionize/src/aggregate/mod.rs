//! Aggregate functions (UDAF): `session_count`, `session_seconds`, `session_list`.
//!
//! Used with `GROUP BY actor`. A [`GroupsAccumulator`] keeps each group's timestamps (and the
//! timestamps where a restart happened) and, when the group is emitted, sorts only those and runs
//! them through [`for_each_session`]. There is no sort of the whole input, and partial states
//! (lists of timestamps) merge across partitions and nodes without changing the result.

mod session_count;
mod session_list;
mod session_seconds;

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

pub use session_count::session_count_udaf;
pub use session_list::session_list_udaf;
pub use session_seconds::session_seconds_udaf;

use crate::args::{self, TS};
use crate::docs::DocFn;
use crate::rules::{SessionRule, for_each_session, to_epoch_millis, units_per_second};

/// All aggregate functions of the project.
pub fn all_udafs() -> Vec<Arc<AggregateUDF>> {
    vec![
        session_count_udaf(),
        session_seconds_udaf(),
        session_list_udaf(),
    ]
}

/// What a session aggregate returns for each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AggOutput {
    /// Number of sessions (Int64).
    Count,
    /// Total seconds in sessions (Float64).
    Seconds,
    /// One struct per session (List of Struct).
    List,
}

/// The fields of a `session_list` element, for timestamps of type `ts_type`.
pub fn session_struct_fields(ts_type: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("session_number", DataType::Int64, false),
        Field::new("session_id", DataType::Int64, false),
        Field::new("started_at", ts_type.clone(), false),
        Field::new("ended_at", ts_type.clone(), false),
        Field::new("event_count", DataType::Int64, false),
    ])
}

fn list_item_field(ts_type: &DataType) -> FieldRef {
    Arc::new(Field::new_list_field(
        DataType::Struct(session_struct_fields(ts_type)),
        true,
    ))
}

/// The shared implementation of the three aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionAggregate {
    name: &'static str,
    output: AggOutput,
    signature: Signature,
    documentation: DocFn,
}

impl SessionAggregate {
    fn new(
        name: &'static str,
        output: AggOutput,
        documentation: fn() -> &'static Documentation,
    ) -> Self {
        Self {
            name,
            output,
            signature: Signature::user_defined(Volatility::Immutable),
            documentation: DocFn(documentation),
        }
    }

    fn state(&self, args: &AccumulatorArgs) -> Result<GroupTimes> {
        let Some(ts_field) = args.expr_fields.get(TS) else {
            return internal_err!("{} needs a timestamp argument", self.name);
        };
        let ts_type = ts_field.data_type().clone();
        let unit = args::timestamp_unit(self.name, &ts_type)?;
        Ok(GroupTimes {
            name: self.name,
            output: self.output,
            rule: args::session_rule(self.name, args.exprs, unit)?,
            unit,
            ts_type,
            times: vec![],
            restarts: vec![],
        })
    }
}

impl AggregateUDFImpl for SessionAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        args::coerce_session_args(self.name, arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let ts_type = args::checked_timestamp_type(self.name, arg_types)?;
        Ok(match self.output {
            AggOutput::Count => DataType::Int64,
            AggOutput::Seconds => DataType::Float64,
            AggOutput::List => DataType::List(list_item_field(&ts_type)),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let Some(ts_field) = args.input_fields.get(TS) else {
            return internal_err!("{} needs a timestamp argument", self.name);
        };
        let item = Arc::new(Field::new_list_field(ts_field.data_type().clone(), false));
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "timestamps"),
                DataType::List(Arc::clone(&item)),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "restarts"),
                DataType::List(item),
                false,
            )),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut state = self.state(&acc_args)?;
        state.resize(1);
        Ok(Box::new(SessionAccumulator { state }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.state(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }
}

/// Each group's timestamps and restart timestamps, in the unit of the input.
struct GroupTimes {
    name: &'static str,
    output: AggOutput,
    rule: SessionRule,
    unit: TimeUnit,
    ts_type: DataType,
    times: Vec<Vec<i64>>,
    restarts: Vec<Vec<i64>>,
}

impl GroupTimes {
    /// A state with the same settings and no groups.
    fn empty_like(&self) -> Self {
        Self {
            name: self.name,
            output: self.output,
            rule: self.rule,
            unit: self.unit,
            ts_type: self.ts_type.clone(),
            times: vec![],
            restarts: vec![],
        }
    }

    fn resize(&mut self, total_num_groups: usize) {
        if self.times.len() < total_num_groups {
            self.times.resize_with(total_num_groups, Vec::new);
            self.restarts.resize_with(total_num_groups, Vec::new);
        }
    }

    /// The state of the groups `emit_to` names: two lists of timestamps per group.
    fn state_arrays(&self, times: &[Vec<i64>], restarts: &[Vec<i64>]) -> Result<Vec<ArrayRef>> {
        let item = Arc::new(Field::new_list_field(self.ts_type.clone(), false));
        let list = |groups: &[Vec<i64>]| -> Result<ArrayRef> {
            let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
            let values = timestamp_array(groups.concat(), &self.ts_type)?;
            Ok(Arc::new(ListArray::try_new(
                Arc::clone(&item),
                offsets,
                values,
                None,
            )?))
        };
        Ok(vec![list(times)?, list(restarts)?])
    }

    /// The final value of each of the given groups.
    fn finish(&self, times: &mut [Vec<i64>], restarts: &mut [Vec<i64>]) -> Result<ArrayRef> {
        let mut out = OutputBuilder::new(self.output, self.unit);
        for (ts, rs) in times.iter_mut().zip(restarts.iter_mut()) {
            ts.sort_unstable();
            rs.sort_unstable();
            for_each_session(&self.rule, ts, rs, |s| out.push(s));
            out.end_group();
        }
        out.finish(&self.ts_type)
    }
}

impl GroupsAccumulator for GroupTimes {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let (ts, nulls) = args::timestamp_values(self.name, &values[TS])?;
        let restart = args::restart_values(self.name, values, values.len())?;
        for (row, &group) in group_indices.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(row))
                || opt_filter.is_some_and(|f| !(f.is_valid(row) && f.value(row)))
            {
                continue;
            }
            self.times[group].push(ts[row]);
            if args::is_restart(restart, row) {
                self.restarts[group].push(ts[row]);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut times = emit_to.take_needed(&mut self.times);
        let mut restarts = emit_to.take_needed(&mut self.restarts);
        self.finish(&mut times, &mut restarts)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let times = emit_to.take_needed(&mut self.times);
        let restarts = emit_to.take_needed(&mut self.restarts);
        self.state_arrays(&times, &restarts)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let [times, restarts] = states else {
            return internal_err!(
                "{}: expected 2 state arrays, got {}",
                self.name,
                states.len()
            );
        };
        for (lists, target) in [(times, &mut self.times), (restarts, &mut self.restarts)] {
            let Some(lists) = lists.as_list_opt::<i32>() else {
                return internal_err!("{}: state must be a list", self.name);
            };
            let (values, _) = args::timestamp_values(self.name, lists.values())?;
            let offsets = lists.value_offsets();
            for (row, &group) in group_indices.iter().enumerate() {
                if lists.is_valid(row) {
                    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                    target[group].extend_from_slice(&values[start..end]);
                }
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut single = self.empty_like();
        let groups: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &groups, opt_filter, rows)?;
        single.state_arrays(&single.times, &single.restarts)
    }

    fn size(&self) -> usize {
        let inner: usize = self
            .times
            .iter()
            .chain(self.restarts.iter())
            .map(|v| v.capacity() * size_of::<i64>() + size_of::<Vec<i64>>())
            .sum();
        size_of::<Self>() + inner
    }
}

/// The single-group accumulator (aggregates without GROUP BY, or used as window aggregates).
struct SessionAccumulator {
    state: GroupTimes,
}

impl std::fmt::Debug for SessionAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionAccumulator({})", self.state.name)
    }
}

impl Accumulator for SessionAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        GroupsAccumulator::update_batch(&mut self.state, values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let state = &mut self.state;
        let result = state.finish(&mut state.times.clone(), &mut state.restarts.clone())?;
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(&self.state)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.state
            .state_arrays(&self.state.times, &self.state.restarts)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        GroupsAccumulator::merge_batch(&mut self.state, states, &vec![0; rows], 1)
    }
}

/// A timestamp array of `ts_type` from raw values.
fn timestamp_array(values: Vec<i64>, ts_type: &DataType) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, tz) = ts_type else {
        return exec_err!("expected a timestamp type, got {ts_type}");
    };
    let tz = tz.clone();
    Ok(match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(values).with_timezone_opt(tz)),
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::from(values).with_timezone_opt(tz))
        }
        TimeUnit::Microsecond => {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(tz))
        }
        TimeUnit::Nanosecond => {
            Arc::new(TimestampNanosecondArray::from(values).with_timezone_opt(tz))
        }
    })
}

/// Collects the sessions of consecutive groups into the output column.
struct OutputBuilder {
    output: AggOutput,
    unit: TimeUnit,
    /// Per group: session count, or total duration in input units.
    per_group: Vec<i128>,
    group_value: i128,
    numbers: Vec<i64>,
    ids: Vec<i64>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    events: Vec<i64>,
    lengths: Vec<usize>,
    group_len: usize,
}

impl OutputBuilder {
    fn new(output: AggOutput, unit: TimeUnit) -> Self {
        Self {
            output,
            unit,
            per_group: vec![],
            group_value: 0,
            numbers: vec![],
            ids: vec![],
            starts: vec![],
            ends: vec![],
            events: vec![],
            lengths: vec![],
            group_len: 0,
        }
    }

    fn push(&mut self, s: crate::rules::Session) {
        match self.output {
            AggOutput::Count => self.group_value += 1,
            AggOutput::Seconds => self.group_value += i128::from(s.end) - i128::from(s.start),
            AggOutput::List => {
                self.numbers.push(s.number);
                self.ids.push(to_epoch_millis(s.start, self.unit));
                self.starts.push(s.start);
                self.ends.push(s.end);
                self.events.push(s.events);
                self.group_len += 1;
            }
        }
    }

    fn end_group(&mut self) {
        self.per_group.push(std::mem::take(&mut self.group_value));
        self.lengths.push(std::mem::take(&mut self.group_len));
    }

    fn finish(self, ts_type: &DataType) -> Result<ArrayRef> {
        Ok(match self.output {
            AggOutput::Count => Arc::new(Int64Array::from_iter_values(
                self.per_group.iter().map(|&n| n as i64),
            )),
            AggOutput::Seconds => {
                let per_second = units_per_second(self.unit) as f64;
                Arc::new(Float64Array::from_iter_values(
                    self.per_group
                        .iter()
                        .map(|&units| units as f64 / per_second),
                ))
            }
            AggOutput::List => {
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(self.numbers)),
                    Arc::new(Int64Array::from(self.ids)),
                    timestamp_array(self.starts, ts_type)?,
                    timestamp_array(self.ends, ts_type)?,
                    Arc::new(Int64Array::from(self.events)),
                ];
                let sessions = StructArray::try_new(session_struct_fields(ts_type), columns, None)?;
                Arc::new(ListArray::try_new(
                    list_item_field(ts_type),
                    OffsetBuffer::from_lengths(self.lengths),
                    Arc::new(sessions),
                    None,
                )?)
            }
        })
    }
}
