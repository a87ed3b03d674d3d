//! The sets a run looks its rows up in: the touched actors with their cuts, the fresh actors, the
//! changed sessions' keys, the applied files' stamps ([`Keys`]), and `sessionize_touched`, the
//! function that asks them from SQL and from delta-rs's replace predicate ([`Touched`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A set of texts (actors, session keys or file stamps), each with a cut (microseconds since the
/// epoch) or none. The texts sit end to end in one buffer, found through a hash table of their
/// indexes: a run builds sets of 400,000 actors, and a `String` per key made building one take
/// 0.1 s (an allocation each) and freeing it 0.03 s more; in one buffer it takes 0.01 s.
#[derive(Default)]
pub(super) struct Keys {
    /// Every text, end to end.
    texts: String,
    /// Where each text ends in `texts` (it starts where the one before ends).
    ends: Vec<usize>,
    /// Each text's cut.
    cuts: Vec<Option<i64>>,
    /// The indexes of the texts, by the texts' hashes.
    table: hashbrown::HashTable<usize>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Keys {
    /// An empty set with room for `keys` texts.
    pub(super) fn with_capacity(keys: usize) -> Self {
        Keys {
            ends: Vec::with_capacity(keys),
            cuts: Vec::with_capacity(keys),
            table: hashbrown::HashTable::with_capacity(keys),
            ..Keys::default()
        }
    }

    fn text(&self, index: usize) -> &str {
        text_at(&self.texts, &self.ends, index)
    }

    fn find(&self, hash: u64, text: &str) -> Option<usize> {
        self.table.find(hash, |&i| self.text(i) == text).copied()
    }

    /// Adds `text` with its `cut`; a text already held takes the new cut.
    pub(super) fn insert(&mut self, text: &str, cut: Option<i64>) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(text);
        if let Some(i) = self.find(hash, text) {
            self.cuts[i] = cut;
            return;
        }
        self.texts.push_str(text);
        self.ends.push(self.texts.len());
        self.cuts.push(cut);
        let index = self.ends.len() - 1;
        // (The table moves texts' indexes as it grows, hashing each again.)
        let Keys {
            table,
            texts,
            ends,
            hasher,
            ..
        } = self;
        table.insert_unique(hash, index, |&i| hasher.hash_one(text_at(texts, ends, i)));
    }

    /// `Some` of the cut of `text` when the set holds it.
    pub(super) fn get(&self, text: &str) -> Option<Option<i64>> {
        use std::hash::BuildHasher;
        self.find(self.hasher.hash_one(text), text)
            .map(|i| self.cuts[i])
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The texts, in the order they were first added.
    pub(super) fn texts(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.text(i))
    }
}

/// The text `index` of `texts`, whose texts end at `ends`.
fn text_at<'a>(texts: &'a str, ends: &[usize], index: usize) -> &'a str {
    let start = if index == 0 { 0 } else { ends[index - 1] };
    &texts[start..ends[index]]
}

/// The set's size, not its texts (see [`Touched`]'s).
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("len", &self.len()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<(S, Option<i64>)> for Keys {
    fn from_iter<I: IntoIterator<Item = (S, Option<i64>)>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut keys = Keys::with_capacity(iter.size_hint().0);
        for (text, cut) in iter {
            keys.insert(text.as_ref(), cut);
        }
        keys
    }
}

/// A timestamp column of any unit (or zone) as microseconds since the epoch: the unit of every cut
/// and of the times a run compares with them.
pub(super) fn micros(array: &ArrayRef) -> Result<datafusion::arrow::array::Int64Array> {
    let naive = cast_array(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(cast_array(&naive, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// Calls `f` with each row of `array` as text (`None` where null): any string layout as it is,
/// other types cast to text.
pub(super) fn each_text(array: &ArrayRef, mut f: impl FnMut(usize, Option<&str>)) -> Result<()> {
    match array.data_type() {
        DataType::Utf8View => {
            let a = array.as_string_view();
            (0..a.len()).for_each(|i| f(i, a.is_valid(i).then(|| a.value(i))));
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            (0..a.len()).for_each(|i| f(i, a.is_valid(i).then(|| a.value(i))));
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            (0..a.len()).for_each(|i| f(i, a.is_valid(i).then(|| a.value(i))));
        }
        _ => {
            let text = cast_array(array, &DataType::Utf8)?;
            let a = text.as_string::<i32>();
            (0..a.len()).for_each(|i| f(i, a.is_valid(i).then(|| a.value(i))));
        }
    }
    Ok(())
}

/// `sessionize_touched(key [, start])`: whether the key (an actor, or a session's
/// `unique_session_id`), as text, is one of a run's set and (given a session start or an event
/// time) it is at or after that key's cut (false for a null key).
#[derive(Clone)]
pub(super) struct Touched {
    from: Arc<Keys>,
    signature: Signature,
}

/// The set's size, not its keys: a commit formats its plan with `Debug` somewhere inside, and
/// printing a set of 800,000 session keys took 1.5 s of a 2.2 s commit (perf, 100M events).
impl std::fmt::Debug for Touched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Touched")
            .field("keys", &self.from.len())
            .finish()
    }
}

impl PartialEq for Touched {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.from, &other.from)
    }
}

impl Eq for Touched {}

impl std::hash::Hash for Touched {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.from).hash(state);
    }
}

impl Touched {
    /// The set `from` (keys, each with its cut in microseconds or none).
    pub(super) fn new(from: Keys) -> Self {
        Touched {
            from: Arc::new(from),
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// Whether `text` is one of the set's keys (whatever its cut).
    pub(super) fn contains(&self, text: &str) -> bool {
        self.from.get(text).is_some()
    }

    /// The function over the set `from`.
    pub(super) fn udf(from: Keys) -> ScalarUDF {
        ScalarUDF::new_from_impl(Touched::new(from))
    }

    /// Whether each key of `keys` (text of any layout) is touched, given each row's `start`.
    /// This runs on every event of the days a run reads, and on every row it writes.
    pub(super) fn keys(
        &self,
        keys: &ArrayRef,
        start: Option<&datafusion::arrow::array::Int64Array>,
    ) -> Result<BooleanArray> {
        let mut touched = BooleanBuilder::with_capacity(keys.len());
        each_text(keys, |i, text| {
            let cut = text.and_then(|t| self.from.get(t));
            touched.append_value(match (cut, start) {
                (None, _) => false,
                (Some(None), _) | (Some(Some(_)), None) => true,
                (Some(Some(cut)), Some(start)) => start.is_valid(i) && start.value(i) >= cut,
            });
        })?;
        Ok(touched.finish())
    }
}

impl ScalarUDFImpl for Touched {
    fn name(&self) -> &str {
        "sessionize_touched"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (actor, start) = match args.args.as_slice() {
            [actor] => (actor, None),
            [actor, start] => (actor, Some(start)),
            _ => return plan_err!("sessionize_touched takes an actor and a time"),
        };
        let actor = actor.to_array(args.number_rows)?;
        let start = match start {
            Some(start) => Some(micros(&start.to_array(args.number_rows)?)?),
            None => None,
        };
        let touched = self.keys(&actor, start.as_ref())?;
        Ok(ColumnarValue::Array(Arc::new(touched)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StringViewArray};

    #[test]
    fn a_touched_set_prints_its_size_not_its_keys() {
        let from: Keys = (0..10_000)
            .map(|i| (format!("user-{i}"), Some(i)))
            .collect();
        let printed = format!("{:?}", Touched::new(from));
        assert!(printed.contains("10000"), "{printed}");
        assert!(printed.len() < 100, "{} bytes", printed.len());
    }

    #[test]
    fn keys_hold_each_text_once_with_its_last_cut() {
        let mut keys = Keys::with_capacity(2);
        keys.insert("a", Some(1));
        keys.insert("", None);
        keys.insert("ab", Some(2));
        keys.insert("a", Some(3));
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.get("a"), Some(Some(3)));
        assert_eq!(keys.get(""), Some(None));
        assert_eq!(keys.get("ab"), Some(Some(2)));
        assert_eq!(keys.get("b"), None);
        assert_eq!(keys.texts().collect::<Vec<_>>(), ["a", "", "ab"]);
        // Many texts, past every growth of the table.
        let many: Keys = (0..50_000).map(|i| (i.to_string(), Some(i))).collect();
        assert!((0..50_000).all(|i| many.get(&i.to_string()) == Some(Some(i))));
        assert_eq!(many.get("50000"), None);
    }

    #[test]
    fn a_key_is_touched_at_or_after_its_cut_in_any_string_layout() {
        let touched = Touched::new([("u", Some(10)), ("v", None)].into_iter().collect());
        let start = Int64Array::from(vec![Some(10), Some(9), Some(0), None, Some(99)]);
        let rows = [Some("u"), Some("u"), Some("v"), Some("u"), None];
        let expected = BooleanArray::from(vec![true, false, true, false, false]);
        let layouts: [ArrayRef; 2] = [
            Arc::new(StringArray::from(rows.to_vec())),
            Arc::new(StringViewArray::from(rows.to_vec())),
        ];
        for keys in layouts {
            assert_eq!(touched.keys(&keys, Some(&start)).unwrap(), expected);
        }
        let keys: ArrayRef = Arc::new(StringArray::from(rows.to_vec()));
        assert_eq!(
            touched.keys(&keys, None).unwrap(),
            BooleanArray::from(vec![true, true, true, true, false])
        );
    }
}
