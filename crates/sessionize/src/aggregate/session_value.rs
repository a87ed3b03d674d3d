//! The shared implementation of `session_first_value` and `session_last_value`: per group, one
//! value per session (the sessions of `session_list`, in time order), that of the session's first
//! (last) event.
//!
//! Several events can share a session's first (last) time: they are ordered by event type, then by
//! the value itself, each as text with nulls last, so that the choice never depends on row order
//! (for text, what `first_value(value ORDER BY event_time, event_type, value)` over a session's
//! events gives).
//!
//! A chart split by a property of each session's first event used to get it by joining every
//! session back to the events at its start time, reading every event's properties a second time;
//! this takes it in the pass that finds the sessions. Each event keeps its time and two numbers
//! (its event type and value, numbered per distinct text), 20 bytes; partial states carry the
//! texts as dictionaries, so a repartition moves numbers, not text.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, Int64Array, LargeStringArray,
    ListArray, StringViewArray, StringViewBuilder, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit, UInt32Type};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use hashbrown::HashMap;

use super::{Slice, checked_groups, group_offsets, session_struct_fields, timestamp_array};
use crate::args::{self, TS};
use crate::docs::DocFn;
use crate::rules::{SessionRule, for_each_session, to_epoch_millis};

/// Index of the `event_type` argument (after `ts`, `timeout`, `restart`).
const EVENT_TYPE: usize = 3;
/// Index of the `value` argument.
const VALUE: usize = 4;
/// The number standing for a null text.
const NULL: u32 = u32::MAX;

/// `session_first_value` or `session_last_value`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SessionValue {
    name: &'static str,
    last: bool,
    signature: Signature,
    documentation: DocFn,
}

impl SessionValue {
    pub(super) fn new(
        name: &'static str,
        last: bool,
        documentation: fn() -> &'static Documentation,
    ) -> Self {
        Self {
            name,
            last,
            signature: Signature::user_defined(Volatility::Immutable),
            documentation: DocFn(documentation),
        }
    }

    fn check(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let given = arg_types.len();
        if given != 5 {
            return datafusion::common::plan_err!(
                "{} takes 5 arguments (ts, timeout, restart, event_type, value), but {given} {} given",
                self.name,
                if given == 1 { "was" } else { "were" }
            );
        }
        let mut coerced = args::check_session_args(self.name, &arg_types[..3])?;
        for (position, name) in [(4, "event_type"), (5, "value")] {
            let found = &arg_types[position - 1];
            let binary = matches!(
                found,
                DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
                    | DataType::FixedSizeBinary(_)
            );
            if binary || !can_cast_types(found, &DataType::Utf8View) {
                return datafusion::common::plan_err!(
                    "{}: argument {position} ({name}) must be text or a value that casts to text \
                     (a number, boolean, date or time), but found {found}",
                    self.name
                );
            }
            coerced.push(DataType::Utf8View);
        }
        Ok(coerced)
    }

    fn accumulator_state(&self, args: &AccumulatorArgs) -> Result<Values> {
        let Some(ts_field) = args.expr_fields.get(TS) else {
            return internal_err!("{} needs a timestamp argument", self.name);
        };
        let ts_type = ts_field.data_type().clone();
        let unit = args::timestamp_unit(self.name, &ts_type)?;
        // The rule's arguments are the first three (no max_length).
        let rule = args::session_rule(self.name, &args.exprs[..3.min(args.exprs.len())], unit)?;
        Ok(Values::new(self.name, self.last, rule, unit, ts_type))
    }
}

impl AggregateUDFImpl for SessionValue {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // As the session functions do: wrong types are reported by `return_type`.
        Ok(self.check(arg_types).unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let coerced = self.check(arg_types)?;
        Ok(DataType::List(item_field(&coerced[TS])))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let Some(ts_field) = args.input_fields.get(TS) else {
            return internal_err!("{} needs a timestamp argument", self.name);
        };
        let list = |item: DataType| {
            let nullable = item_nullable(&item);
            DataType::List(Arc::new(Field::new_list_field(item, nullable)))
        };
        let text = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::LargeUtf8));
        let ts = ts_field.data_type().clone();
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "timestamps"),
                list(ts.clone()),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "event_types"),
                list(text.clone()),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "values"),
                list(text),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "restarts"),
                list(ts),
                false,
            )),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut state = self.accumulator_state(&acc_args)?;
        state.groups = 1;
        Ok(Box::new(OneGroup(state)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.accumulator_state(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }
}

/// One session: `session_list`'s fields and the value of its first (last) event.
fn session_fields(ts_type: &DataType) -> Fields {
    let mut fields: Vec<FieldRef> = session_struct_fields(ts_type).iter().cloned().collect();
    fields.push(Arc::new(Field::new("value", DataType::Utf8View, true)));
    Fields::from(fields)
}

fn item_field(ts_type: &DataType) -> FieldRef {
    Arc::new(Field::new_list_field(
        DataType::Struct(session_fields(ts_type)),
        true,
    ))
}

/// Timestamps are never null in a state's lists; event types and values can be.
fn item_nullable(item: &DataType) -> bool {
    matches!(item, DataType::Dictionary(_, _))
}

/// The distinct texts of one accumulator, numbered in the order first seen.
#[derive(Default)]
struct Texts {
    ids: HashMap<Box<str>, u32>,
    /// Texts of at most 12 bytes by their string view, which holds the whole text (one 16-byte
    /// key to hash rather than a string): event types and property values are mostly that short.
    inline: HashMap<u128, u32>,
    texts: Vec<Box<str>>,
    bytes: usize,
}

impl Texts {
    /// The number of row `row` of a string view array (`NULL` for null).
    fn id_of_view(&mut self, name: &str, array: &StringViewArray, row: usize) -> Result<u32> {
        if array.is_null(row) {
            return Ok(NULL);
        }
        let view = array.views()[row];
        if (view as u32) > 12 {
            return self.id(name, Some(array.value(row)));
        }
        if let Some(&id) = self.inline.get(&view) {
            return Ok(id);
        }
        let id = self.id(name, Some(array.value(row)))?;
        self.inline.insert(view, id);
        Ok(id)
    }

    fn id(&mut self, name: &str, text: Option<&str>) -> Result<u32> {
        let Some(text) = text else {
            return Ok(NULL);
        };
        if let Some(&id) = self.ids.get(text) {
            return Ok(id);
        }
        // `NULL` (u32::MAX) is not a text's number.
        let Some(id) = u32::try_from(self.texts.len())
            .ok()
            .filter(|&id| id != NULL)
        else {
            return exec_err!(
                "{name}: more than {} distinct texts in one partition; raise \
                 datafusion.execution.target_partitions",
                u32::MAX - 1
            );
        };
        self.ids.insert(text.into(), id);
        self.texts.push(text.into());
        self.bytes += 2 * text.len() + 64;
        Ok(id)
    }

    fn get(&self, id: u32) -> Option<&str> {
        (id != NULL).then(|| &*self.texts[id as usize])
    }

    /// The rank of each text in text order, as a function of its number (`NULL` ranks after
    /// every text), and the number of each rank.
    fn ranks(&self) -> (impl Fn(u32) -> u32 + '_, Vec<u32>) {
        let mut by_rank: Vec<u32> = (0..self.texts.len() as u32).collect();
        by_rank.sort_unstable_by(|&a, &b| self.texts[a as usize].cmp(&self.texts[b as usize]));
        let mut rank_of = vec![0u32; self.texts.len()];
        for (rank, &id) in by_rank.iter().enumerate() {
            rank_of[id as usize] = rank as u32;
        }
        let rank = move |id: u32| {
            if id == NULL {
                NULL
            } else {
                rank_of[id as usize]
            }
        };
        (rank, by_rank)
    }

    /// Every text, as the values of a dictionary.
    fn array(&self) -> LargeStringArray {
        LargeStringArray::from_iter_values(self.texts.iter().map(|t| &**t))
    }
}

/// One event: its time, group, and the numbers of its event type and value (20 bytes, packed: the
/// events are most of the state's memory).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Event {
    ts: i64,
    group: u32,
    event_type: u32,
    value: u32,
}

/// The most events a block holds (blocks grow without copying, as the session aggregates' do).
const BLOCK: usize = 1 << 16;

/// Items in arrival order, in blocks of at most [`BLOCK`].
struct Blocks<T> {
    blocks: Vec<Vec<T>>,
}

impl<T: Copy> Blocks<T> {
    fn new() -> Self {
        Self { blocks: vec![] }
    }

    fn push(&mut self, item: T) {
        let full = self.blocks.last().is_none_or(|b| b.len() == b.capacity());
        if full {
            let size = self
                .blocks
                .last()
                .map_or(1024, |b| (b.capacity() * 2).min(BLOCK));
            self.blocks.push(Vec::with_capacity(size));
        }
        if let Some(block) = self.blocks.last_mut() {
            block.push(item);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.blocks.iter().flatten()
    }

    fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.capacity() * size_of::<T>())
            .sum()
    }
}

/// Items laid out by group: group `g`'s are `items[offsets[g]..offsets[g + 1]]`.
struct ByGroup<T> {
    offsets: Vec<usize>,
    items: Vec<T>,
}

impl<T: Copy> ByGroup<T> {
    /// Counting sort of the items whose group (by `group_of`) is below `n`.
    fn of(blocks: &Blocks<T>, n: usize, group_of: impl Fn(&T) -> usize) -> Self {
        let offsets = group_offsets(blocks.iter().map(&group_of), n);
        let mut cursor = offsets[..n].to_vec();
        // Every slot is written once below, out of order: the vector starts as copies of the
        // first item.
        let mut items = match blocks.iter().next() {
            Some(first) => vec![*first; offsets[n]],
            None => vec![],
        };
        for item in blocks.iter() {
            let g = group_of(item);
            if g < n {
                items[cursor[g]] = *item;
                cursor[g] += 1;
            }
        }
        Self { offsets, items }
    }

    fn group(&self, g: usize) -> &[T] {
        &self.items[self.offsets[g]..self.offsets[g + 1]]
    }

    fn group_mut(&mut self, g: usize) -> &mut [T] {
        &mut self.items[self.offsets[g]..self.offsets[g + 1]]
    }
}

/// The events of merged partial states, copied out of their arrays once with their texts
/// renumbered, and left in those copies: group `slice.group`'s are
/// `sources[slice.source]` at `slice.start..slice.start + slice.len`.
#[derive(Default)]
struct Merged {
    sources: Vec<Source>,
    slices: Vec<Slice>,
}

/// The events of one merged state: times, event types and values (numbers of this accumulator).
struct Source {
    ts: Vec<i64>,
    event_types: Vec<u32>,
    values: Vec<u32>,
}

impl Merged {
    fn bytes(&self) -> usize {
        self.sources
            .iter()
            .map(|s| s.ts.capacity() * 8 + (s.event_types.capacity() + s.values.capacity()) * 4)
            .sum::<usize>()
            + self.slices.capacity() * size_of::<Slice>()
    }
}

/// Groups `0..n` taken out of the state: appended events laid out by group, merged slices
/// indexed by group, restart times by group.
struct Taken {
    events: ByGroup<Event>,
    /// Slices of group `g`: `slices[slice_offsets[g]..slice_offsets[g + 1]]`.
    slice_offsets: Vec<usize>,
    slices: Vec<Slice>,
    restarts: ByGroup<(u32, i64)>,
}

impl Taken {
    fn len(&self) -> usize {
        self.slice_offsets.len() - 1
    }

    /// Calls `f(ts, event_type, value)` for every event of group `g`.
    fn for_each(&self, merged: &Merged, g: usize, mut f: impl FnMut(i64, u32, u32)) {
        for e in self.events.group(g) {
            f(e.ts, e.event_type, e.value);
        }
        for slice in &self.slices[self.slice_offsets[g]..self.slice_offsets[g + 1]] {
            let source = &merged.sources[slice.source as usize];
            let range = slice.start as usize..(slice.start + slice.len) as usize;
            for i in range {
                f(source.ts[i], source.event_types[i], source.values[i]);
            }
        }
    }
}

/// The groups accumulator: every event of every group, and the restart times.
struct Values {
    name: &'static str,
    last: bool,
    rule: SessionRule,
    unit: TimeUnit,
    ts_type: DataType,
    groups: usize,
    /// Events appended by `update_batch`.
    events: Blocks<Event>,
    /// Events of merged partial states.
    merged: Merged,
    /// (group, time) of every restarting event.
    restarts: Blocks<(u32, i64)>,
    texts: Texts,
}

impl Values {
    fn new(
        name: &'static str,
        last: bool,
        rule: SessionRule,
        unit: TimeUnit,
        ts_type: DataType,
    ) -> Self {
        Self {
            name,
            last,
            rule,
            unit,
            ts_type,
            groups: 0,
            events: Blocks::new(),
            merged: Merged::default(),
            restarts: Blocks::new(),
            texts: Texts::default(),
        }
    }

    fn resize(&mut self, total_num_groups: usize) -> Result<()> {
        self.groups = checked_groups(self.name, self.groups, total_num_groups)?;
        Ok(())
    }

    /// Groups `0..n`, laid out by group (the state is left as it is).
    fn gather(&self, n: usize) -> Taken {
        let (slice_offsets, slices) = Slice::by_group(&self.merged.slices, n);
        Taken {
            events: ByGroup::of(&self.events, n, |e| e.group as usize),
            slice_offsets,
            slices,
            restarts: ByGroup::of(&self.restarts, n, |r| r.0 as usize),
        }
    }

    /// How many groups `emit_to` names.
    fn emitted(&self, emit_to: EmitTo) -> usize {
        match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        }
    }

    /// Removes groups `0..n`, renumbering the others from 0.
    fn drop_first(&mut self, n: usize) {
        if n >= self.groups {
            self.events = Blocks::new();
            self.merged = Merged::default();
            self.restarts = Blocks::new();
        } else {
            let mut events = Blocks::new();
            for e in self.events.iter().filter(|e| e.group as usize >= n) {
                events.push(Event {
                    group: e.group - n as u32,
                    ..*e
                });
            }
            let mut restarts = Blocks::new();
            for &(g, ts) in self.restarts.iter().filter(|r| r.0 as usize >= n) {
                restarts.push((g - n as u32, ts));
            }
            self.merged.slices.retain(|s| s.group as usize >= n);
            for slice in &mut self.merged.slices {
                slice.group -= n as u32;
            }
            self.events = events;
            self.restarts = restarts;
        }
        self.groups = self.groups.saturating_sub(n);
    }

    /// One list per taken group: its sessions, each with the value of its first (last) event.
    ///
    /// Each event becomes one 128-bit key, its time above the text ranks of its event type and
    /// value (nulls last), so that one sort of plain integers orders a group's events as the
    /// window form does; a session's first (last) event is then the first (last) key of its run.
    fn finish(&self, mut taken: Taken) -> Result<ArrayRef> {
        let (rank, by_rank) = self.texts.ranks();
        let n = taken.len();
        let (mut numbers, mut ids, mut starts, mut ends, mut counts) =
            (vec![], vec![], vec![], vec![], vec![]);
        // Views: a batch of sessions may hold more than 2 GiB of values (long values, many
        // sessions), past what 32-bit offsets address.
        let mut out = StringViewBuilder::new();
        let mut lengths = Vec::with_capacity(n);
        let (mut keys, mut times, mut restart_times) = (vec![], vec![], vec![]);
        for g in 0..n {
            keys.clear();
            taken.for_each(&self.merged, g, |ts, event_type, value| {
                keys.push(
                    (u128::from((ts as u64) ^ (1 << 63)) << 64)
                        | (u128::from(rank(event_type)) << 32)
                        | u128::from(rank(value)),
                );
            });
            keys.sort_unstable();
            times.clear();
            times.extend(keys.iter().map(|k| ((k >> 64) as u64 ^ (1 << 63)) as i64));
            let restart_group = taken.restarts.group_mut(g);
            restart_times.clear();
            restart_times.extend(restart_group.iter().map(|r| r.1));
            restart_times.sort_unstable();
            let (mut first, mut sessions) = (0usize, 0usize);
            for_each_session(&self.rule, &times, &restart_times, |s| {
                let count = usize::try_from(s.events).unwrap_or(0);
                let chosen = if self.last { first + count - 1 } else { first };
                let value_rank = keys.get(chosen).map_or(NULL, |k| *k as u32);
                let text = by_rank
                    .get(value_rank as usize)
                    .and_then(|&id| self.texts.get(id));
                out.append_option(text);
                numbers.push(s.number);
                ids.push(to_epoch_millis(s.start, self.unit));
                starts.push(s.start);
                ends.push(s.end);
                counts.push(s.events);
                first += count;
                sessions += 1;
            });
            lengths.push(sessions);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(numbers)),
            Arc::new(Int64Array::from(ids)),
            timestamp_array(starts, &self.ts_type)?,
            timestamp_array(ends, &self.ts_type)?,
            Arc::new(Int64Array::from(counts)),
            Arc::new(out.finish()),
        ];
        let sessions = StructArray::try_new(session_fields(&self.ts_type), columns, None)?;
        Ok(Arc::new(ListArray::try_new(
            item_field(&self.ts_type),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(sessions),
            None,
        )?))
    }

    /// The state of groups `0..n`: four lists per group (times, event types, values, restart
    /// times), the texts as dictionaries over every text of this accumulator.
    fn state_arrays(&self, n: usize) -> Result<Vec<ArrayRef>> {
        let (mut offsets, mut ts, mut types, mut values);
        let restarts = ByGroup::of(&self.restarts, n, |r| r.0 as usize);
        if self.merged.slices.is_empty() {
            // A partial aggregation's state: one counting sort of the appended events straight
            // into the three columns.
            offsets = group_offsets(self.events.iter().map(|e| e.group as usize), n);
            let mut cursor = offsets[..n].to_vec();
            (ts, types, values) = (
                vec![0i64; offsets[n]],
                vec![0u32; offsets[n]],
                vec![0u32; offsets[n]],
            );
            for e in self.events.iter() {
                let g = e.group as usize;
                if g < n {
                    let at = cursor[g];
                    (ts[at], types[at], values[at]) = (e.ts, e.event_type, e.value);
                    cursor[g] += 1;
                }
            }
        } else {
            let taken = self.gather(n);
            offsets = Vec::with_capacity(n + 1);
            offsets.push(0);
            (ts, types, values) = (vec![], vec![], vec![]);
            for g in 0..n {
                taken.for_each(&self.merged, g, |t, event_type, value| {
                    ts.push(t);
                    types.push(event_type);
                    values.push(value);
                });
                offsets.push(ts.len());
            }
        }
        let texts: ArrayRef = Arc::new(self.texts.array());
        let dictionary = |mut keys: Vec<u32>| -> Result<ArrayRef> {
            let nulls = keys.contains(&NULL).then(|| {
                let nulls = NullBuffer::from_iter(keys.iter().map(|&k| k != NULL));
                for k in keys.iter_mut().filter(|k| **k == NULL) {
                    *k = 0;
                }
                nulls
            });
            let keys = UInt32Array::new(keys.into(), nulls);
            Ok(Arc::new(DictionaryArray::<UInt32Type>::try_new(
                keys,
                Arc::clone(&texts),
            )?))
        };
        let restart_times =
            timestamp_array(restarts.items.iter().map(|r| r.1).collect(), &self.ts_type)?;
        Ok(vec![
            list(&offsets, timestamp_array(ts, &self.ts_type)?)?,
            list(&offsets, dictionary(types)?)?,
            list(&offsets, dictionary(values)?)?,
            list(&restarts.offsets, restart_times)?,
        ])
    }

    /// Adds a state's lists: row `i` of each list array belongs to `group_indices[i]`.
    fn merge(&mut self, states: &[ArrayRef], group_indices: &[usize]) -> Result<()> {
        let name = self.name;
        let [times, types, values, restarts] = states else {
            return internal_err!("{name}: expected 4 state arrays, got {}", states.len());
        };
        let lists = |a: &ArrayRef| -> Result<ListArray> {
            match a.as_list_opt::<i32>() {
                Some(l) => Ok(l.clone()),
                None => internal_err!("{name}: state must be lists, got {}", a.data_type()),
            }
        };
        let (times, types, values, restarts) = (
            lists(times)?,
            lists(types)?,
            lists(values)?,
            lists(restarts)?,
        );
        let (ts, _) = args::timestamp_values(name, times.values())?;
        let (restart_ts, _) = args::timestamp_values(name, restarts.values())?;
        // The events in the lists' range are copied out (a state sliced out of a larger one
        // shares that one's child arrays), each dictionary's texts numbered once and each
        // event's key looked up.
        let offsets = times.value_offsets();
        let (lo, hi) = (offsets[0] as usize, offsets[group_indices.len()] as usize);
        let mut numbered = |list: &ListArray| -> Result<Vec<u32>> {
            let Some(dict) = list.values().as_dictionary_opt::<UInt32Type>() else {
                return internal_err!("{name}: state texts must be a dictionary");
            };
            let Some(texts) = dict.values().as_string_opt::<i64>() else {
                return internal_err!("{name}: state dictionary must be text");
            };
            let keys = dict.keys();
            if list.value_offsets() != offsets || keys.len() < hi {
                return internal_err!("{name}: state lists of different lengths");
            }
            let mut ids = Vec::with_capacity(texts.len());
            for i in 0..texts.len() {
                ids.push(
                    self.texts
                        .id(name, texts.is_valid(i).then(|| texts.value(i)))?,
                );
            }
            Ok((lo..hi)
                .map(|i| {
                    if keys.is_valid(i) {
                        ids.get(keys.value(i) as usize).copied().unwrap_or(NULL)
                    } else {
                        NULL
                    }
                })
                .collect())
        };
        let source = Source {
            ts: ts[lo..hi].to_vec(),
            event_types: numbered(&types)?,
            values: numbered(&values)?,
        };
        let Ok(source_index) = u32::try_from(self.merged.sources.len()) else {
            return internal_err!("{name}: too many merged states");
        };
        for (row, &group) in group_indices.iter().enumerate() {
            let (start, end) = (offsets[row] as usize - lo, offsets[row + 1] as usize - lo);
            if times.is_valid(row) && end > start {
                self.merged.slices.push(Slice {
                    group: group as u32,
                    source: source_index,
                    start: start as u32,
                    len: (end - start) as u32,
                });
            }
        }
        if hi > lo {
            self.merged.sources.push(source);
        }
        let offsets = restarts.value_offsets();
        for (row, &group) in group_indices.iter().enumerate() {
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                self.restarts.push((group as u32, restart_ts[i]));
            }
        }
        Ok(())
    }
}

/// A list array of `values` with one list per group of `offsets`.
fn list(offsets: &[usize], values: ArrayRef) -> Result<ArrayRef> {
    let lengths = offsets.windows(2).map(|w| w[1] - w[0]);
    let field = Field::new_list_field(
        values.data_type().clone(),
        item_nullable(values.data_type()),
    );
    Ok(Arc::new(ListArray::try_new(
        Arc::new(field),
        OffsetBuffer::<i32>::from_lengths(lengths),
        values,
        None,
    )?))
}

impl GroupsAccumulator for Values {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups)?;
        let name = self.name;
        let (ts, nulls) = args::timestamp_values(name, &values[TS])?;
        // A null buffer without nulls, or a restart column without a true value, changes nothing.
        let nulls = nulls.filter(|n| n.null_count() > 0);
        let restart = args::restart_values(name, values, 3)?.filter(|r| r.true_count() > 0);
        let (Some(types), Some(texts)) = (
            values.get(EVENT_TYPE).and_then(|a| a.as_string_view_opt()),
            values.get(VALUE).and_then(|a| a.as_string_view_opt()),
        ) else {
            return internal_err!("{name}: event_type and value must be text");
        };
        let every_row = nulls.is_none() && opt_filter.is_none();
        for (row, &group) in group_indices.iter().enumerate() {
            if !every_row
                && (nulls.as_ref().is_some_and(|n| n.is_null(row))
                    || opt_filter.is_some_and(|f| !(f.is_valid(row) && f.value(row))))
            {
                continue;
            }
            let event_type = self.texts.id_of_view(name, types, row)?;
            let value = self.texts.id_of_view(name, texts, row)?;
            self.events.push(Event {
                ts: ts[row],
                group: group as u32,
                event_type,
                value,
            });
            if args::is_restart(restart, row) {
                self.restarts.push((group as u32, ts[row]));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        // Gathered, used, then removed: the taken slices point into the merged sources.
        let n = self.emitted(emit_to);
        let result = self.finish(self.gather(n));
        self.drop_first(n);
        result
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = self.emitted(emit_to);
        let result = self.state_arrays(n);
        self.drop_first(n);
        result
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups)?;
        self.merge(values, group_indices)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut single = Values::new(
            self.name,
            self.last,
            self.rule,
            self.unit,
            self.ts_type.clone(),
        );
        let groups: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &groups, opt_filter, rows)?;
        single.state_arrays(single.groups)
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.events.bytes()
            + self.merged.bytes()
            + self.restarts.bytes()
            + self.texts.bytes
    }
}

/// The row-by-row form (an aggregate without GROUP BY): one group.
struct OneGroup(Values);

impl std::fmt::Debug for OneGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OneGroup({})", self.0.name)
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        GroupsAccumulator::update_batch(&mut self.0, values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.0.finish(self.0.gather(1))?, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(&self.0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0
            .state_arrays(1)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        GroupsAccumulator::merge_batch(&mut self.0, states, &vec![0; rows], 1)
    }
}
