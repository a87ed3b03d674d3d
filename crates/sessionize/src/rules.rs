//! The sessionization rule: the one place that decides where a session starts.
//!
//! Every path of the project (window functions, aggregate functions, the sessions table, the CLI and
//! the cluster) feeds an actor's events to [`SessionTracker::advance`], one *distinct* timestamp at a
//! time and in ascending order, so the rule is written exactly once:
//!
//! * the actor's first event starts a session;
//! * an event whose gap to the previous event is **strictly greater** than the timeout starts one
//!   (a gap equal to the timeout stays in the session);
//! * an event at a timestamp where any event restarts (for example `event_type = 'app_open'`) starts one;
//! * an event more than `max_length` after the first event of its session starts one.
//!
//! Because the tracker sees timestamps and not rows, events with equal timestamps always share a
//! session, and a restart anywhere among tied events starts the new session at that timestamp. Results
//! therefore never depend on row order, batch size or partitioning.

use datafusion::arrow::datatypes::TimeUnit;

/// Nanoseconds in one unit of `unit`.
pub fn nanos_per_unit(unit: TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// Units of `unit` in one second.
pub fn units_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Epoch milliseconds (floored) of a timestamp in `unit`: Amplitude's session id convention.
pub fn to_epoch_millis(ts: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => ts.saturating_mul(1_000),
        TimeUnit::Millisecond => ts,
        TimeUnit::Microsecond => ts.div_euclid(1_000),
        TimeUnit::Nanosecond => ts.div_euclid(1_000_000),
    }
}

/// The parameters of the rule, expressed in the unit of the timestamps it will be fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRule {
    /// A gap strictly greater than this many units starts a new session.
    timeout: i64,
    /// An event strictly more than this many units after its session's first event starts a new one.
    max_length: Option<i64>,
}

impl SessionRule {
    /// A rule from a timeout and an optional maximum session length, both in nanoseconds (positive),
    /// for timestamps in `unit`.
    ///
    /// A gap `g` in units is "strictly greater than `T` ns" exactly when `g > floor(T / ns_per_unit)`,
    /// so converting the limits (not the timestamps) keeps the rule exact for every unit: the same
    /// instants in s, ms, µs or ns give the same sessions.
    pub fn new(timeout_nanos: i128, max_length_nanos: Option<i128>, unit: TimeUnit) -> Self {
        let to_units = |nanos: i128| {
            let units = nanos.div_euclid(nanos_per_unit(unit));
            i64::try_from(units).unwrap_or(i64::MAX)
        };
        Self {
            timeout: to_units(timeout_nanos),
            max_length: max_length_nanos.map(to_units),
        }
    }

    /// Whether an event at `ts` starts a new session, given the previous distinct timestamp `prev` and
    /// the start `start` of the current session.
    fn splits(&self, start: i64, prev: i64, ts: i64, restart: bool) -> bool {
        let gap = i128::from(ts) - i128::from(prev);
        restart
            || gap > i128::from(self.timeout)
            || self
                .max_length
                .is_some_and(|max| i128::from(ts) - i128::from(start) > i128::from(max))
    }
}

/// Running state of the rule over one actor's distinct timestamps in ascending order.
#[derive(Debug, Clone, Default)]
pub struct SessionTracker {
    last: Option<i64>,
    start: i64,
    number: i64,
}

impl SessionTracker {
    /// Feeds the next distinct timestamp of the actor (ascending; `restart` is true when any event at
    /// this timestamp restarts). Returns true when this timestamp starts a new session.
    pub fn advance(&mut self, rule: &SessionRule, ts: i64, restart: bool) -> bool {
        let new_session = match self.last {
            None => true,
            Some(prev) => rule.splits(self.start, prev, ts, restart),
        };
        if new_session {
            self.number += 1;
            self.start = ts;
        }
        self.last = Some(ts);
        new_session
    }

    /// The 1-based ordinal of the current session (0 before the first timestamp).
    pub fn number(&self) -> i64 {
        self.number
    }

    /// The first timestamp of the current session.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The last timestamp fed.
    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

/// One session found in an actor's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub number: i64,
    pub start: i64,
    pub end: i64,
    pub events: i64,
}

/// Calls `emit` with every session of one actor, in time order.
///
/// `timestamps` must be sorted ascending (ties allowed); `restarts` sorted ascending (duplicates
/// allowed): the timestamps at which some event restarts a session.
pub fn for_each_session(
    rule: &SessionRule,
    timestamps: &[i64],
    restarts: &[i64],
    mut emit: impl FnMut(Session),
) {
    let mut tracker = SessionTracker::default();
    let mut restart_idx = 0;
    let mut current: Option<Session> = None;
    let mut i = 0;
    while i < timestamps.len() {
        let ts = timestamps[i];
        let mut j = i + 1;
        while j < timestamps.len() && timestamps[j] == ts {
            j += 1;
        }
        while restart_idx < restarts.len() && restarts[restart_idx] < ts {
            restart_idx += 1;
        }
        let restart = restart_idx < restarts.len() && restarts[restart_idx] == ts;
        let tied = (j - i) as i64;
        if tracker.advance(rule, ts, restart) {
            if let Some(done) = current.take() {
                emit(done);
            }
            current = Some(Session {
                number: tracker.number(),
                start: ts,
                end: ts,
                events: tied,
            });
        } else if let Some(session) = current.as_mut() {
            session.end = ts;
            session.events += tied;
        }
        i = j;
    }
    if let Some(done) = current {
        emit(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i128 = 60_000_000_000;

    fn sessions(ts: &[i64], restarts: &[i64], rule: SessionRule) -> Vec<Session> {
        let mut out = vec![];
        for_each_session(&rule, ts, restarts, |s| out.push(s));
        out
    }

    #[test]
    fn gap_equal_to_timeout_stays_and_one_more_unit_splits() {
        let rule = SessionRule::new(30 * MIN, None, TimeUnit::Second);
        let s = sessions(&[0, 1800, 3601], &[], rule);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].start, s[0].end, s[0].events), (0, 1800, 2));
        assert_eq!((s[1].number, s[1].start, s[1].events), (2, 3601, 1));
    }

    #[test]
    fn restart_among_ties_starts_at_that_timestamp() {
        let rule = SessionRule::new(30 * MIN, None, TimeUnit::Second);
        let s = sessions(&[0, 10, 10, 10, 20], &[10], rule);
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].start, s[1].end, s[1].events), (10, 20, 4));
    }

    #[test]
    fn max_length_caps_a_session() {
        let rule = SessionRule::new(30 * MIN, Some(60 * MIN), TimeUnit::Second);
        let ts: Vec<i64> = (0..=10).map(|k| k * 600).collect(); // every 10 minutes for 100 minutes
        let s = sessions(&ts, &[], rule);
        assert_eq!(s.iter().map(|s| s.start).collect::<Vec<_>>(), vec![0, 4200]);
    }

    #[test]
    fn units_are_exact() {
        // A timeout of 1.5 s: a gap of 1 s stays, 2 s splits, in every unit.
        let rule_s = SessionRule::new(1_500_000_000, None, TimeUnit::Second);
        assert_eq!(sessions(&[0, 1, 3], &[], rule_s).len(), 2);
        let rule_ms = SessionRule::new(1_500_000_000, None, TimeUnit::Millisecond);
        assert_eq!(sessions(&[0, 1500, 3001], &[], rule_ms).len(), 2);
        assert_eq!(to_epoch_millis(-1, TimeUnit::Microsecond), -1);
    }
}
