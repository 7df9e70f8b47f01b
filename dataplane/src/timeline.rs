//! A resource's timeline: the intervals it is reserved for, and the earliest free slots.
//!
//! Reservations are kept as disjoint intervals sorted by start; intervals that ended are
//! pruned, so a timeline holds only what is running or reserved ahead (a few entries). A new
//! reservation may fill a gap between two others: a transfer reserved for later does not
//! block the link until then.

/// Reserved intervals of one resource (a worker, a server's uplink or downlink).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    busy: Vec<(f64, f64)>,
}

impl Timeline {
    /// Earliest start `>= t` of a free slot `dur` long.
    pub fn earliest(&self, t: f64, dur: f64) -> f64 {
        let mut at = t;
        for &(s, e) in &self.busy {
            if e <= at {
                continue;
            }
            if s >= at + dur {
                break;
            }
            at = e;
        }
        at
    }

    /// Reserves `[start, end)`; callers reserve only free slots found by `earliest`.
    pub fn reserve(&mut self, start: f64, end: f64) {
        let at = self.busy.partition_point(|&(s, _)| s <= start);
        self.busy.insert(at, (start, end));
    }

    /// Forgets intervals that ended by `now`.
    pub fn prune(&mut self, now: f64) {
        let done = self.busy.iter().take_while(|&&(_, e)| e <= now).count();
        if done > 0 {
            self.busy.drain(..done);
        }
        // An interval may end by `now` behind one that started earlier and runs longer.
        if self.busy.iter().any(|&(_, e)| e <= now) {
            self.busy.retain(|&(_, e)| e > now);
        }
    }

    /// Whether nothing is running or reserved at or after `now`.
    pub fn idle_from(&self, now: f64) -> bool {
        self.busy.iter().all(|&(_, e)| e <= now)
    }

    /// Moves the end of the interval that started at `start` and was to end at `end` to
    /// `actual` (a worker's report). Returns whether it was found.
    pub fn correct(&mut self, start: f64, end: f64, actual: f64) -> bool {
        match self.busy.iter_mut().find(|(s, e)| *s == start && *e == end) {
            Some(iv) => {
                iv.1 = actual.max(start);
                true
            }
            None => false,
        }
    }

    /// Moves the interval `[start, end)` to start at `to` (earlier, into a slot freed before
    /// it), keeping its length. Returns whether it was found.
    pub fn shift_one(&mut self, start: f64, end: f64, to: f64) -> bool {
        let Some(at) = self.busy.iter().position(|&(s, e)| s == start && e == end) else { return false };
        self.busy.remove(at);
        self.reserve(to, to + (end - start));
        true
    }

    /// Shifts every interval that starts at or after `from` by `delta` (a batch before them
    /// ran late).
    pub fn push_back(&mut self, from: f64, delta: f64) {
        for iv in self.busy.iter_mut().filter(|iv| iv.0 >= from) {
            iv.0 += delta;
            iv.1 += delta;
        }
    }

    /// Reserved intervals, in order of start.
    pub fn intervals(&self) -> &[(f64, f64)] {
        &self.busy
    }
}

/// Earliest start `>= t` at which both `a` and `b` are free for `dur`.
pub fn earliest_joint(a: &Timeline, b: &Timeline, t: f64, dur: f64) -> f64 {
    let mut at = t;
    loop {
        let x = a.earliest(at, dur);
        let y = b.earliest(x, dur);
        if y == x {
            return x;
        }
        at = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_gaps_and_skip_what_is_too_short() {
        let mut t = Timeline::default();
        t.reserve(10.0, 20.0);
        t.reserve(25.0, 30.0);
        assert_eq!(t.earliest(0.0, 5.0), 0.0);
        assert_eq!(t.earliest(0.0, 10.0), 0.0);
        assert_eq!(t.earliest(0.0, 11.0), 30.0);
        assert_eq!(t.earliest(12.0, 5.0), 20.0);
        assert_eq!(t.earliest(12.0, 6.0), 30.0);
        let mut u = Timeline::default();
        u.reserve(0.0, 22.0);
        // a free from 20 (5 long), b from 22: joint at 22? a is busy 25..30, so 30.
        assert_eq!(earliest_joint(&t, &u, 0.0, 5.0), 30.0);
        assert_eq!(earliest_joint(&t, &u, 0.0, 3.0), 22.0);
        t.prune(21.0);
        assert_eq!(t.intervals(), &[(25.0, 30.0)]);
        assert!(!t.idle_from(21.0) && t.idle_from(30.0));
        assert!(t.correct(25.0, 30.0, 27.0));
        assert_eq!(t.earliest(26.0, 3.0), 27.0);
    }
}
