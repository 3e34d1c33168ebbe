//! Hand-offs between the stream threads of one instance under the consumer group protocol.
//!
//! With KIP-848 the group coordinator assigns partitions, and a member learns that its target
//! assignment changed only on its next heartbeat, every 5 s by default. When the threads of one
//! instance start together, the first to join gets every partition; it learns that it must give
//! half away, and the others learn that they may take them, a heartbeat or two later. So a
//! thread that joins the group, releases partitions or leaves tells its siblings, and each of
//! them asks the coordinator for its assignment shortly after (re-subscribing to the same topics
//! sends a heartbeat at once and changes nothing else). Under the classic protocol a
//! re-subscription would force a new rebalance, so nothing is nudged there.
//!
//! Across instances there is no such signal: a member of another instance gives partitions
//! back on its own next heartbeat, and the newcomer would take them on its next one, a full
//! interval after joining. So a thread that has just joined also asks once a second for its
//! first few seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When siblings ask again after a change: a joining member's first heartbeat, or a releasing
/// member's acknowledgement, reaches the coordinator a few milliseconds after the thread
/// reported it; the later asks cover a slow one. Each ask is one heartbeat, so asking early
/// costs little, and every step of a start-up hand-off waits for one.
const NUDGE_AFTER: [Duration; 6] = [
    Duration::from_millis(40),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1500),
];

/// The longest poll while a hand-off is under way; see [`Handoffs::poll_cap`].
const HANDOFF_POLL: Duration = Duration::from_millis(10);

/// When a thread that has just joined asks for partitions other instances may have released.
const ASK_AFTER_JOIN: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(4),
];

/// One thread's view of its instance's membership changes; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Handoffs {
    /// Changes (joins, releases, leaves) by any thread of the instance.
    changes: Arc<AtomicU64>,
    enabled: bool,
    /// The count this thread has reacted to (or caused).
    seen: u64,
    due: Vec<Instant>,
}

impl Handoffs {
    /// `changes` is shared by every thread of the instance; `enabled` under KIP-848 only.
    pub(crate) fn new(changes: Arc<AtomicU64>, enabled: bool) -> Self {
        let seen = changes.load(Ordering::Relaxed);
        Handoffs {
            changes,
            enabled,
            seen,
            due: Vec::new(),
        }
    }

    /// This thread joined the group, gave partitions back, or is leaving.
    pub(crate) fn changed(&mut self) {
        let before = self.changes.fetch_add(1, Ordering::Relaxed);
        if self.seen == before {
            self.seen = before + 1; // nothing for this thread to pick up from its own change
        }
    }

    /// This thread joined the group: tell its siblings, and ask for its own assignment again
    /// over the next few seconds.
    pub(crate) fn joined(&mut self) {
        self.changed();
        if self.enabled {
            let now = Instant::now();
            self.due.extend(ASK_AFTER_JOIN.iter().map(|d| now + *d));
        }
    }

    /// The longest this thread may block in a poll: while asks are scheduled (a hand-off is
    /// under way), short, so that a sibling's change is seen and each ask goes out on time
    /// rather than a whole idle poll late.
    pub(crate) fn poll_cap(&self) -> Option<Duration> {
        (self.enabled && !self.due.is_empty()).then_some(HANDOFF_POLL)
    }

    /// Whether this thread should ask the coordinator for its assignment now.
    pub(crate) fn nudge_due(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        let changes = self.changes.load(Ordering::Relaxed);
        if changes == self.seen && self.due.is_empty() {
            return false; // the common case, checked every loop: no clock read
        }
        let now = Instant::now();
        if changes != self.seen {
            self.seen = changes;
            self.due.extend(NUDGE_AFTER.iter().map(|d| now + *d));
        }
        let before = self.due.len();
        self.due.retain(|at| *at > now);
        self.due.len() < before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_are_nudged_after_a_change_and_its_author_is_not() {
        let shared = Arc::new(AtomicU64::new(0));
        let mut releaser = Handoffs::new(shared.clone(), true);
        let mut sibling = Handoffs::new(shared.clone(), true);
        let mut classic = Handoffs::new(shared, false);
        releaser.changed();
        assert!(
            !sibling.nudge_due(),
            "not at once: the coordinator has not heard of the change yet"
        );
        std::thread::sleep(NUDGE_AFTER[0] + Duration::from_millis(20));
        assert!(sibling.nudge_due());
        assert!(!sibling.nudge_due(), "once per scheduled ask");
        assert!(!releaser.nudge_due());
        assert!(!classic.nudge_due());
        std::thread::sleep(NUDGE_AFTER[1] - NUDGE_AFTER[0]);
        assert!(sibling.nudge_due(), "the second, later ask");
        assert!(!sibling.nudge_due());
    }

    #[test]
    fn a_thread_that_joined_asks_again_for_its_first_seconds() {
        let shared = Arc::new(AtomicU64::new(0));
        let mut joiner = Handoffs::new(shared.clone(), true);
        let mut classic = Handoffs::new(shared, false);
        joiner.joined();
        classic.joined();
        assert!(!joiner.nudge_due(), "not before the first interval");
        std::thread::sleep(ASK_AFTER_JOIN[0] + Duration::from_millis(20));
        assert!(joiner.nudge_due());
        assert!(!joiner.nudge_due(), "once per scheduled ask");
        assert!(!classic.nudge_due(), "never under the classic protocol");
    }
}
