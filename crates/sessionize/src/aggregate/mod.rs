//! Aggregate functions (UDAF): `session_count`, `session_seconds`, `session_list`, `session_table`,
//! and `session_first_value` / `session_last_value` (their shared kernel in `session_value`).
//!
//! Used with `GROUP BY actor`. A [`GroupsAccumulator`] keeps each group's timestamps (and the
//! timestamps where a restart happened) and, when the group is emitted, sorts only those and runs
//! them through [`for_each_session`]. There is no sort of the whole input, and partial states
//! (lists of timestamps) merge across partitions and nodes without changing the result.

mod session_count;
mod session_first_value;
mod session_last_value;
mod session_list;
mod session_seconds;
mod session_table;
mod session_value;

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::make_array;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

pub use session_count::session_count_udaf;
pub use session_first_value::session_first_value_udaf;
pub use session_last_value::session_last_value_udaf;
pub use session_list::session_list_udaf;
pub use session_seconds::session_seconds_udaf;
pub use session_table::session_table_udaf;

use crate::args::{self, TS};
use crate::docs::DocFn;
use crate::rules::{SessionRule, for_each_session, to_epoch_millis, units_per_second};

/// All aggregate functions of the project.
pub fn all_udafs() -> Vec<Arc<AggregateUDF>> {
    vec![
        session_count_udaf(),
        session_seconds_udaf(),
        session_list_udaf(),
        session_table_udaf(),
        session_first_value_udaf(),
        session_last_value_udaf(),
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
    /// One struct per session with the previous session's end (List of Struct).
    Table,
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

/// The fields of a `session_table` element: those of `session_list` and `previous_ended_at`.
pub fn session_table_fields(ts_type: &DataType) -> Fields {
    let mut fields: Vec<FieldRef> = session_struct_fields(ts_type).iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        "previous_ended_at",
        ts_type.clone(),
        true,
    )));
    Fields::from(fields)
}

fn item_fields(output: AggOutput, ts_type: &DataType) -> Fields {
    match output {
        AggOutput::Table => session_table_fields(ts_type),
        _ => session_struct_fields(ts_type),
    }
}

fn list_item_field(output: AggOutput, ts_type: &DataType) -> FieldRef {
    Arc::new(Field::new_list_field(
        DataType::Struct(item_fields(output, ts_type)),
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
            groups: 0,
            times: Timestamps::default(),
            restarts: Timestamps::default(),
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
            AggOutput::List | AggOutput::Table => {
                DataType::List(list_item_field(self.output, &ts_type))
            }
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
        state.resize(1)?;
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
///
/// Rows are appended as (group, timestamp) pairs in arrival order, in two parallel vectors (4 + 8
/// bytes a row): one sequential write per row, with no per-group vector to grow. Merged partial
/// states are not copied again: their lists stay in the arrays they arrived in (or in a copy of
/// the part used, when that array is far larger), and only (group, list) references are kept.
/// When groups are emitted, one counting sort by group lays the appended timestamps out
/// contiguously; a result then sorts each group's timestamps (a pattern-defeating quicksort,
/// linear on runs that are already sorted) in place, or gathered with its merged lists into one
/// scratch vector, and a state copies each group's into one list array.
struct GroupTimes {
    name: &'static str,
    output: AggOutput,
    rule: SessionRule,
    unit: TimeUnit,
    ts_type: DataType,
    /// Number of groups (the highest `total_num_groups` seen).
    groups: usize,
    times: Timestamps,
    restarts: Timestamps,
}

/// The most pairs a block holds: blocks grow without the copies (and the transient double memory)
/// of one vector doubling.
const BLOCK: usize = 1 << 16;

/// (group, timestamp) pairs in arrival order, in blocks of [`BLOCK`].
#[derive(Default)]
struct Pairs {
    blocks: Vec<(Vec<u32>, Vec<i64>)>,
}

impl Pairs {
    /// The last block, with room for at least one more pair.
    fn open_block(&mut self) -> &mut (Vec<u32>, Vec<i64>) {
        let full = self
            .blocks
            .last()
            .is_none_or(|(groups, _)| groups.len() == groups.capacity());
        if full {
            // Blocks double from 1Ki pairs up to BLOCK, so a small group set stays small.
            let size = self
                .blocks
                .last()
                .map_or(1024, |(groups, _)| (groups.capacity() * 2).min(BLOCK));
            self.blocks
                .push((Vec::with_capacity(size), Vec::with_capacity(size)));
        }
        let last = self.blocks.len() - 1;
        &mut self.blocks[last]
    }

    fn push(&mut self, group: usize, ts: i64) {
        let (groups, values) = self.open_block();
        groups.push(group as u32);
        values.push(ts);
    }

    /// Appends `values` with groups `groups(i)` for the i-th value.
    fn extend(&mut self, values: &[i64], groups: impl Fn(usize) -> u32) {
        let mut done = 0;
        while done < values.len() {
            let (block_groups, block_values) = self.open_block();
            let take = (block_groups.capacity() - block_groups.len()).min(values.len() - done);
            block_groups.extend((done..done + take).map(&groups));
            block_values.extend_from_slice(&values[done..done + take]);
            done += take;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.blocks
            .iter()
            .flat_map(|(groups, values)| groups.iter().zip(values))
            .map(|(&group, &ts)| (group as usize, ts))
    }

    fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|(g, v)| g.capacity() * size_of::<u32>() + v.capacity() * size_of::<i64>())
            .sum()
    }

    /// Keeps the pairs of groups `n..`, renumbered from 0.
    fn drop_first(&mut self, n: usize) {
        let mut kept = Pairs::default();
        for (group, ts) in self.iter() {
            if group >= n {
                kept.push(group - n, ts);
            }
        }
        *self = kept;
    }
}

/// Lists of timestamps merged from partial states, left in the buffers they arrived in.
#[derive(Default)]
struct Runs {
    /// The value buffers of the merged list arrays (shared with those arrays, not copied).
    sources: Vec<ScalarBuffer<i64>>,
    /// One entry per merged list.
    slices: Vec<Slice>,
}

/// Group `group`'s items `sources[source][start..start + len]`: a list of a merged partial state,
/// left where it is.
#[derive(Clone, Copy, Default)]
pub(super) struct Slice {
    pub(super) group: u32,
    pub(super) source: u32,
    pub(super) start: u32,
    pub(super) len: u32,
}

impl Slice {
    /// The slices of groups `0..n` laid out by group (a counting sort): group `g`'s are
    /// `slices[offsets[g]..offsets[g + 1]]`, returned as `(offsets, slices)`.
    pub(super) fn by_group(slices: &[Slice], n: usize) -> (Vec<usize>, Vec<Slice>) {
        let offsets = group_offsets(slices.iter().map(|s| s.group as usize), n);
        let mut cursor = offsets[..n].to_vec();
        let mut laid_out = vec![Slice::default(); offsets[n]];
        for slice in slices {
            let group = slice.group as usize;
            if group < n {
                laid_out[cursor[group]] = *slice;
                cursor[group] += 1;
            }
        }
        (offsets, laid_out)
    }
}

/// Where each of groups `0..n` starts in a layout by group of items whose groups are `groups`
/// (items of groups `n..` left out): `offsets[g]..offsets[g + 1]` is group `g`'s range. The first
/// step of every counting sort by group here.
pub(super) fn group_offsets(groups: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; n + 1];
    for g in groups {
        if g < n {
            offsets[g + 1] += 1;
        }
    }
    for g in 0..n {
        offsets[g + 1] += offsets[g];
    }
    offsets
}

/// The new number of groups of an accumulator that numbers them in `u32`, or an error naming
/// `function` past that.
pub(super) fn checked_groups(
    function: &str,
    current: usize,
    total_num_groups: usize,
) -> Result<usize> {
    if total_num_groups > u32::MAX as usize {
        return exec_err!(
            "{function}: more than {} groups in one partition; raise datafusion.execution.target_partitions",
            u32::MAX
        );
    }
    Ok(current.max(total_num_groups))
}

impl Runs {
    /// Keeps the lists of groups `n..`, renumbered from 0, and the buffers they use.
    fn drop_first(&mut self, n: usize) {
        let mut used = vec![None; self.sources.len()];
        let mut sources = vec![];
        let mut slices = vec![];
        for slice in &self.slices {
            if (slice.group as usize) < n {
                continue;
            }
            let source = *used[slice.source as usize].get_or_insert_with(|| {
                sources.push(self.sources[slice.source as usize].clone());
                sources.len() as u32 - 1
            });
            slices.push(Slice {
                group: slice.group - n as u32,
                source,
                ..*slice
            });
        }
        *self = Self { sources, slices };
    }

    fn bytes(&self) -> usize {
        self.sources
            .iter()
            .map(|s| s.inner().capacity())
            .sum::<usize>()
            + self.slices.capacity() * size_of::<Slice>()
    }
}

/// Appended (group, timestamp) pairs and merged lists: all timestamps of one kind.
#[derive(Default)]
struct Timestamps {
    pairs: Pairs,
    runs: Runs,
}

impl Timestamps {
    /// Keeps the timestamps of groups `n..`, renumbered from 0.
    fn drop_first(&mut self, n: usize) {
        self.pairs.drop_first(n);
        self.runs.drop_first(n);
    }

    fn bytes(&self) -> usize {
        self.pairs.bytes() + self.runs.bytes()
    }

    /// Adds the lists of a partial state: row `i` of `lists` belongs to `group_indices[i]`.
    fn merge(&mut self, name: &str, lists: &ArrayRef, group_indices: &[usize]) -> Result<()> {
        let Some(lists) = lists.as_list_opt::<i32>() else {
            return internal_err!("{name}: state must be a list, got {}", lists.data_type());
        };
        let (values, _) = args::timestamp_values(name, lists.values())?;
        let Ok(source) = u32::try_from(self.runs.sources.len()) else {
            return internal_err!("{name}: too many merged states");
        };
        let offsets = lists.value_offsets();
        let (lo, hi) = (offsets[0] as usize, offsets[group_indices.len()] as usize);
        if lists.null_count() == 0
            && hi - lo == group_indices.len()
            && offsets.windows(2).all(|w| w[1] - w[0] == 1)
        {
            // One timestamp per row (a partial aggregation that passed its rows through as state,
            // `convert_to_state`): kept as pairs, 12 bytes a row, not as a slice each.
            self.pairs
                .extend(&values[lo..hi], |i| group_indices[i] as u32);
            return Ok(());
        }
        // A state sliced out of a larger one and taken apart by a repartition sits in a buffer
        // several times larger than its lists (arrow's `take` of a list reserves room for the
        // whole child array the list was sliced from): the part used is copied, so that the large
        // buffer goes with the batch instead of staying until the groups are emitted.
        let (values, base) = if values.inner().capacity() > 2 * (hi - lo) * size_of::<i64>() {
            (ScalarBuffer::from(values[lo..hi].to_vec()), lo as u32)
        } else {
            (values, 0)
        };
        let before = self.runs.slices.len();
        for (row, &group) in group_indices.iter().enumerate() {
            let (start, end) = (offsets[row] as u32 - base, offsets[row + 1] as u32 - base);
            if lists.is_valid(row) && end > start {
                self.runs.slices.push(Slice {
                    group: group as u32,
                    source,
                    start,
                    len: end - start,
                });
            }
        }
        if self.runs.slices.len() > before {
            self.runs.sources.push(values);
        }
        Ok(())
    }
}

/// The timestamps of groups `0..n`, contiguous: group `g` is `values[offsets[g]..offsets[g + 1]]`.
struct Gathered {
    offsets: Vec<usize>,
    values: Vec<i64>,
}

impl Gathered {
    /// Counting sort of the appended pairs whose group is below `n`.
    fn of(pairs: &Pairs, n: usize) -> Self {
        let offsets = group_offsets(pairs.iter().map(|(group, _)| group), n);
        let mut cursor = offsets[..n].to_vec();
        let mut values = vec![0i64; offsets[n]];
        for (group, ts) in pairs.iter() {
            if group < n {
                values[cursor[group]] = ts;
                cursor[group] += 1;
            }
        }
        Self { offsets, values }
    }

    fn group(&self, g: usize) -> &[i64] {
        &self.values[self.offsets[g]..self.offsets[g + 1]]
    }

    fn group_mut(&mut self, g: usize) -> &mut [i64] {
        &mut self.values[self.offsets[g]..self.offsets[g + 1]]
    }
}

/// The timestamps of groups `0..n`, taken out of a state: the appended pairs laid out by group
/// (one counting sort), and the merged lists left in the buffers they arrived in, indexed by
/// group. A final aggregation never copies its merged lists into one more array of every
/// timestamp: each group's are gathered into a scratch vector when that group is finished.
struct Taken {
    pairs: Gathered,
    /// The merged lists of group `g`: `runs[run_offsets[g]..run_offsets[g + 1]]`.
    run_offsets: Vec<usize>,
    runs: Vec<Slice>,
    sources: Vec<ScalarBuffer<i64>>,
}

impl Taken {
    fn of(timestamps: &Timestamps, n: usize) -> Self {
        let (run_offsets, runs) = Slice::by_group(&timestamps.runs.slices, n);
        Self {
            pairs: Gathered::of(&timestamps.pairs, n),
            run_offsets,
            runs,
            sources: timestamps.runs.sources.clone(),
        }
    }

    fn len(&self) -> usize {
        self.run_offsets.len() - 1
    }

    /// The merged lists of group `g`.
    fn lists(&self, g: usize) -> impl Iterator<Item = &[i64]> {
        self.runs[self.run_offsets[g]..self.run_offsets[g + 1]]
            .iter()
            .map(|s| &self.sources[s.source as usize][s.start as usize..(s.start + s.len) as usize])
    }

    /// Group `g`'s timestamps, sorted: in place when it has no merged lists, else gathered into
    /// `scratch`.
    fn sorted<'a>(&'a mut self, g: usize, scratch: &'a mut Vec<i64>) -> &'a [i64] {
        if self.run_offsets[g] == self.run_offsets[g + 1] {
            let group = self.pairs.group_mut(g);
            group.sort_unstable();
            return group;
        }
        scratch.clear();
        scratch.extend_from_slice(self.pairs.group(g));
        for list in self.lists(g) {
            scratch.extend_from_slice(list);
        }
        scratch.sort_unstable();
        scratch
    }

    /// Every group's timestamps in one contiguous array (a state's list values): the laid-out
    /// pairs themselves when nothing was merged.
    fn into_gathered(self) -> Gathered {
        if self.runs.is_empty() {
            return self.pairs;
        }
        let n = self.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let total =
            self.pairs.values.len() + self.runs.iter().map(|s| s.len as usize).sum::<usize>();
        let mut values = Vec::with_capacity(total);
        for g in 0..n {
            values.extend_from_slice(self.pairs.group(g));
            for list in self.lists(g) {
                values.extend_from_slice(list);
            }
            offsets.push(values.len());
        }
        Gathered { offsets, values }
    }
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
            groups: 0,
            times: Timestamps::default(),
            restarts: Timestamps::default(),
        }
    }

    fn resize(&mut self, total_num_groups: usize) -> Result<()> {
        self.groups = checked_groups(self.name, self.groups, total_num_groups)?;
        Ok(())
    }

    /// The groups `emit_to` names, removed from the state (later groups are renumbered from 0).
    fn take(&mut self, emit_to: EmitTo) -> (Taken, Taken) {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let gathered = (Taken::of(&self.times, n), Taken::of(&self.restarts, n));
        if n == self.groups {
            self.times = Timestamps::default();
            self.restarts = Timestamps::default();
        } else {
            self.times.drop_first(n);
            self.restarts.drop_first(n);
        }
        self.groups -= n;
        gathered
    }

    /// All groups, leaving the state as it is.
    fn peek(&self) -> (Taken, Taken) {
        (
            Taken::of(&self.times, self.groups),
            Taken::of(&self.restarts, self.groups),
        )
    }

    /// The state of gathered groups: two lists of timestamps per group.
    fn state_arrays(&self, times: Taken, restarts: Taken) -> Result<Vec<ArrayRef>> {
        let item = Arc::new(Field::new_list_field(self.ts_type.clone(), false));
        let list = |groups: Taken| -> Result<ArrayRef> {
            let groups = groups.into_gathered();
            let lengths = groups.offsets.windows(2).map(|w| w[1] - w[0]);
            let offsets = OffsetBuffer::from_lengths(lengths);
            let values = timestamp_array(groups.values, &self.ts_type)?;
            Ok(Arc::new(ListArray::try_new(
                Arc::clone(&item),
                offsets,
                values,
                None,
            )?))
        };
        Ok(vec![list(times)?, list(restarts)?])
    }

    /// The final value of each gathered group.
    fn finish(&self, mut times: Taken, mut restarts: Taken) -> Result<ArrayRef> {
        let mut out = OutputBuilder::new(self.output, self.unit);
        let (mut time_scratch, mut restart_scratch) = (vec![], vec![]);
        for g in 0..times.len() {
            let group_times = times.sorted(g, &mut time_scratch);
            let group_restarts = restarts.sorted(g, &mut restart_scratch);
            for_each_session(&self.rule, group_times, group_restarts, |s| out.push(s));
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
        self.resize(total_num_groups)?;
        let (ts, nulls) = args::timestamp_values(self.name, &values[TS])?;
        // A null buffer without nulls, or a restart column without a true value, changes nothing.
        let nulls = nulls.filter(|n| n.null_count() > 0);
        let restart =
            args::restart_values(self.name, values, values.len())?.filter(|r| r.true_count() > 0);
        if nulls.is_none() && opt_filter.is_none() && restart.is_none() {
            // The common case, without per-row checks.
            self.times
                .pairs
                .extend(&ts[..group_indices.len()], |i| group_indices[i] as u32);
            return Ok(());
        }
        for (row, &group) in group_indices.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(row))
                || opt_filter.is_some_and(|f| !(f.is_valid(row) && f.value(row)))
            {
                continue;
            }
            self.times.pairs.push(group, ts[row]);
            if args::is_restart(restart, row) {
                self.restarts.pairs.push(group, ts[row]);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (times, restarts) = self.take(emit_to);
        self.finish(times, restarts)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (times, restarts) = self.take(emit_to);
        self.state_arrays(times, restarts)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups)?;
        let [times, restarts] = states else {
            return internal_err!(
                "{}: expected 2 state arrays, got {}",
                self.name,
                states.len()
            );
        };
        self.times.merge(self.name, times, group_indices)?;
        self.restarts.merge(self.name, restarts, group_indices)?;
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
        let (times, restarts) = single.take(EmitTo::All);
        single.state_arrays(times, restarts)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.times.bytes() + self.restarts.bytes()
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
        let (times, restarts) = self.state.peek();
        let result = self.state.finish(times, restarts)?;
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(&self.state)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (times, restarts) = self.state.peek();
        self.state
            .state_arrays(times, restarts)?
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
    /// `session_table`: the previous session's end in the group, and whether there is one.
    previous_ends: Vec<i64>,
    previous_valid: Vec<bool>,
    last_end: Option<i64>,
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
            previous_ends: vec![],
            previous_valid: vec![],
            last_end: None,
            lengths: vec![],
            group_len: 0,
        }
    }

    fn push(&mut self, s: crate::rules::Session) {
        match self.output {
            AggOutput::Count => self.group_value += 1,
            AggOutput::Seconds => self.group_value += i128::from(s.end) - i128::from(s.start),
            AggOutput::List | AggOutput::Table => {
                if self.output == AggOutput::Table {
                    let previous = self.last_end.replace(s.end);
                    self.previous_ends.push(previous.unwrap_or_default());
                    self.previous_valid.push(previous.is_some());
                }
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
        self.last_end = None;
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
            AggOutput::List | AggOutput::Table => {
                let mut columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(self.numbers)),
                    Arc::new(Int64Array::from(self.ids)),
                    timestamp_array(self.starts, ts_type)?,
                    timestamp_array(self.ends, ts_type)?,
                    Arc::new(Int64Array::from(self.events)),
                ];
                if self.output == AggOutput::Table {
                    let previous = timestamp_array(self.previous_ends, ts_type)?;
                    let nulls = NullBuffer::from(self.previous_valid);
                    columns.push(make_array(
                        previous
                            .to_data()
                            .into_builder()
                            .nulls(Some(nulls))
                            .build()?,
                    ));
                }
                let fields = item_fields(self.output, ts_type);
                let sessions = StructArray::try_new(fields, columns, None)?;
                Arc::new(ListArray::try_new(
                    list_item_field(self.output, ts_type),
                    OffsetBuffer::from_lengths(self.lengths),
                    Arc::new(sessions),
                    None,
                )?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::UInt32Array;

    fn counter(output: AggOutput) -> GroupTimes {
        GroupTimes {
            name: "test",
            output,
            rule: SessionRule::new(10 * 1_000_000_000, None, TimeUnit::Second),
            unit: TimeUnit::Second,
            ts_type: DataType::Timestamp(TimeUnit::Second, None),
            groups: 0,
            times: Timestamps::default(),
            restarts: Timestamps::default(),
        }
    }

    fn counts(array: &ArrayRef) -> Vec<i64> {
        array
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    /// Emitting the first groups early (as DataFusion does for sorted input or under memory
    /// pressure) leaves the other groups renumbered from 0 with all their timestamps, across more
    /// than one block of pairs.
    #[test]
    fn emit_first_keeps_the_rest() {
        let mut acc = counter(AggOutput::Count);
        // Three groups; group g has sessions every 100 s, (g + 1) * 30,000 events each.
        let rows = 6 * 30_000;
        let mut groups = vec![];
        let mut ts = vec![];
        for g in 0..3usize {
            for i in 0..(g + 1) * 30_000 {
                groups.push(g);
                ts.push((i as i64 / 3) * 100 + i as i64 % 3);
            }
        }
        assert!(rows > BLOCK);
        let values: Vec<ArrayRef> = vec![Arc::new(TimestampSecondArray::from(ts.clone()))];
        acc.update_batch(&values, &groups, None, 3).unwrap();
        assert!(acc.size() >= rows * 12);
        let first = acc.evaluate(EmitTo::First(1)).unwrap();
        assert_eq!(counts(&first), vec![10_000]);
        assert_eq!(acc.groups, 2);
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!(counts(&rest), vec![20_000, 30_000]);

        // The same through state and merge, in two partial accumulators.
        let mut whole = counter(AggOutput::Count);
        for half in [0, 1] {
            let mut part = counter(AggOutput::Count);
            let range = (half * rows / 2)..((half + 1) * rows / 2);
            let values: Vec<ArrayRef> = vec![Arc::new(TimestampSecondArray::from(
                ts[range.clone()].to_vec(),
            ))];
            part.update_batch(&values, &groups[range], None, 3).unwrap();
            let state = part.state(EmitTo::All).unwrap();
            whole.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        }
        assert!(whole.size() >= rows * 8);
        // The merged lists are referenced, not copied: emitting the first group early keeps the
        // others' lists (and only the buffers they use), renumbered from 0.
        assert_eq!(
            counts(&whole.evaluate(EmitTo::First(1)).unwrap()),
            vec![10_000]
        );
        assert_eq!(
            counts(&whole.evaluate(EmitTo::All).unwrap()),
            vec![20_000, 30_000]
        );
    }

    /// The final aggregation of merged partial states gives what the same rows appended to one
    /// accumulator give: several unsorted lists per group from several partial states, each
    /// numbering the groups its own way, a group without rows, restart events, the previous
    /// session's end.
    #[test]
    fn merged_lists_match_appended_rows() {
        let batch = |ts: &[i64], restart: &[bool]| -> Vec<ArrayRef> {
            vec![
                Arc::new(TimestampSecondArray::from(ts.to_vec())),
                // Argument 2 (the timeout) is read once, when the accumulator is made, not per batch: a
                // placeholder that puts the restart flags at argument 3.
                Arc::new(TimestampSecondArray::from(vec![0; ts.len()])),
                Arc::new(BooleanArray::from(restart.to_vec())),
            ]
        };
        // Rows of groups 0, 1 and 3 (group 2 has none) in no order, split into three partial states.
        let (mut groups, mut ts, mut restart) = (vec![], vec![], vec![]);
        for i in 0..600i64 {
            let group = [0, 1, 3][(i * 7 % 3) as usize];
            groups.push(group);
            ts.push((i * 7919) % 1000 + if group == 1 { 5000 } else { 0 });
            restart.push(i % 97 == 0);
        }
        let mut direct = counter(AggOutput::Table);
        direct
            .update_batch(&batch(&ts, &restart), &groups, None, 4)
            .unwrap();
        let expected = direct.evaluate(EmitTo::All).unwrap();

        let mut merged = counter(AggOutput::Table);
        for part in 0..3 {
            // Partial state `part` numbers the groups in its own order: local id of group g is
            // (g + part) % 4, and the merge maps them back.
            let mine: Vec<usize> = (0..ts.len()).filter(|i| i % 3 == part).collect();
            let local: Vec<usize> = mine.iter().map(|&i| (groups[i] + part) % 4).collect();
            let t: Vec<i64> = mine.iter().map(|&i| ts[i]).collect();
            let r: Vec<bool> = mine.iter().map(|&i| restart[i]).collect();
            let mut partial = counter(AggOutput::Table);
            partial
                .update_batch(&batch(&t, &r), &local, None, 4)
                .unwrap();
            let state = partial.state(EmitTo::All).unwrap();
            let back: Vec<usize> = (0..4).map(|l| (l + 4 - part) % 4).collect();
            merged.merge_batch(&state, &back, 4).unwrap();
        }
        assert!(merged.times.pairs.blocks.is_empty() && !merged.times.runs.slices.is_empty());
        let found = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(merged.groups, 0);
        assert_eq!(found.len(), 4);
        assert_eq!(found.as_list::<i32>().value_length(2), 0);
        assert!(found.as_list::<i32>().value_length(0) > 1);
        assert_eq!(&found, &expected);
    }

    /// States as a partial aggregation that skips grouping sends them (`convert_to_state`: one
    /// timestamp per row), and as a repartition sends a grouped one (a slice of the emitted state,
    /// taken apart by `take`, in a buffer reserved for the whole state): both merge to what the
    /// rows appended directly give, the first as 12-byte pairs, the second without keeping the
    /// oversized buffer.
    #[test]
    fn passed_through_and_taken_states_merge() {
        use datafusion::arrow::compute::take;
        let batch = |ts: &[i64]| -> Vec<ArrayRef> {
            vec![Arc::new(TimestampSecondArray::from(ts.to_vec()))]
        };
        let (groups, ts): (Vec<usize>, Vec<i64>) = (0..40_000i64)
            .map(|i| ((i % 400) as usize, (i * 7919) % 100_000))
            .unzip();
        let mut direct = counter(AggOutput::Table);
        direct
            .update_batch(&batch(&ts), &groups, None, 400)
            .unwrap();
        let expected = direct.evaluate(EmitTo::All).unwrap();

        let mut passed = counter(AggOutput::Table);
        let state = passed.convert_to_state(&batch(&ts), None).unwrap();
        passed.merge_batch(&state, &groups, 400).unwrap();
        assert!(passed.times.runs.slices.is_empty());
        assert_eq!(passed.times.pairs.iter().count(), ts.len());
        assert_eq!(&passed.evaluate(EmitTo::All).unwrap(), &expected);

        let mut partial = counter(AggOutput::Table);
        partial
            .update_batch(&batch(&ts), &groups, None, 400)
            .unwrap();
        let state = partial.state(EmitTo::All).unwrap();
        let mut merged = counter(AggOutput::Table);
        // Groups 100..150 of the state, every other one: what one output partition of a
        // repartition gets from one batch.
        let rows = UInt32Array::from((0..50).map(|i| i * 2).collect::<Vec<u32>>());
        let sliced: Vec<ArrayRef> = state.iter().map(|a| a.slice(100, 100)).collect();
        let taken: Vec<ArrayRef> = sliced
            .iter()
            .map(|a| take(a, &rows, None).unwrap())
            .collect();
        let taken_capacity = taken[0].as_list::<i32>().values().to_data().buffers()[0].capacity();
        let group_ids: Vec<usize> = (0..50).map(|i| 100 + i * 2).collect();
        merged.merge_batch(&taken, &group_ids, 400).unwrap();
        // 50 groups of 100 timestamps, kept in 40,000 bytes, not in the buffer `take` reserved.
        assert!(
            taken_capacity >= 3 * 5_000 * 8,
            "take reserved {taken_capacity} bytes"
        );
        assert!(
            merged.times.bytes() < 2 * 5_000 * 8,
            "{}",
            merged.times.bytes()
        );
        let found = merged.evaluate(EmitTo::All).unwrap();
        for (i, &g) in group_ids.iter().enumerate() {
            assert_eq!(
                &found.as_list::<i32>().value(g),
                &expected.as_list::<i32>().value(g),
                "group {i}"
            );
        }
    }

    /// A partial state merged into a state that also holds appended rows: both kinds count.
    #[test]
    fn merged_lists_and_appended_rows_together() {
        let ts = |v: Vec<i64>| -> Vec<ArrayRef> { vec![Arc::new(TimestampSecondArray::from(v))] };
        let mut part = counter(AggOutput::Count);
        part.update_batch(&ts(vec![0, 100, 5]), &[0, 0, 1], None, 2)
            .unwrap();
        let state = part.state(EmitTo::All).unwrap();
        let mut whole = counter(AggOutput::Count);
        // Group 0 gets 105 and 50 directly: with the merged 0 and 100, sessions start at 0, 50
        // and 100 (gaps of 50 > 10 s), or 3. Group 1: 5 merged, 8 appended, one session.
        whole
            .update_batch(&ts(vec![105, 50, 8]), &[0, 0, 1], None, 2)
            .unwrap();
        whole.merge_batch(&state, &[0, 1], 2).unwrap();
        assert_eq!(counts(&whole.evaluate(EmitTo::All).unwrap()), vec![3, 1]);
    }
}
