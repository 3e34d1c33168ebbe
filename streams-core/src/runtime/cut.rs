//! Cuts through a producer's stream of records, so that an at-least-once commit need not stop
//! processing while its records are acknowledged.
//!
//! Every record a stream thread's producer sends carries the number of the epoch it was sent in
//! (as its delivery opaque). Starting a commit takes a [`Cut`]: the epoch ends, and the cut
//! remembers how many records were sent up to then, in all epochs so far. The commit's input
//! offsets cover those records' inputs, so they may go to Kafka once every record of the cut's
//! epoch and of every earlier one has a delivery report ([`EpochAcks::reached`]), while the
//! thread goes on processing (and sending in the next epoch). Counting earlier epochs matters
//! when a commit was given up while its tasks kept running: the next commit covers their
//! inputs too. Epochs only matter to at-least-once: exactly-once commits through the
//! transaction instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The epoch records are sent in now, and how many were sent in all epochs.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    current: AtomicUsize,
    sent: AtomicU64,
}

/// The records sent before a commit started: every record of `epoch` and earlier epochs,
/// `sent` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) epoch: usize,
    pub(crate) sent: u64,
}

impl Epochs {
    /// The epoch to tag a record with before sending it.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// A record tagged with the current epoch was handed to the client. (The thread that cuts
    /// is the one that sends, so the epoch cannot have ended in between.)
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the current epoch and returns it with the count of records sent up to now.
    pub(crate) fn cut(&self) -> Cut {
        let epoch = self.current.fetch_add(1, Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        Cut { epoch, sent }
    }
}

/// Delivery reports per epoch (successes and failures alike: a failure is judged by the
/// production handler, but the record is no longer on its way).
#[derive(Debug, Default)]
pub(crate) struct EpochAcks {
    /// Reports of epochs no cut has reached yet.
    acked: HashMap<usize, u64, foldhash::fast::RandomState>,
    /// Reports of the epochs folded in by reached cuts.
    folded: u64,
}

impl EpochAcks {
    /// A delivery report for a record of `epoch`.
    pub(crate) fn record(&mut self, epoch: usize) {
        *self.acked.entry(epoch).or_insert(0) += 1;
    }

    /// Whether every record of the cut (its epoch and all earlier ones) has a delivery report;
    /// once it has, the counts of those epochs are folded into one.
    pub(crate) fn reached(&mut self, cut: Cut) -> bool {
        let acked = self.folded
            + self
                .acked
                .iter()
                .filter(|(&epoch, _)| epoch <= cut.epoch)
                .map(|(_, &n)| n)
                .sum::<u64>();
        if acked < cut.sent {
            return false;
        }
        self.folded = acked;
        self.acked.retain(|&epoch, _| epoch > cut.epoch);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_reached_once_every_record_sent_before_it_is_acknowledged() {
        let epochs = Epochs::default();
        let mut acks = EpochAcks::default();
        for _ in 0..3 {
            assert_eq!(epochs.current(), 0);
            epochs.sent();
        }
        let cut = epochs.cut();
        assert_eq!(cut, Cut { epoch: 0, sent: 3 });
        // Records of the next epoch, acknowledged first, do not count for the cut.
        epochs.sent();
        acks.record(epochs.current());
        acks.record(0);
        acks.record(0);
        assert!(!acks.reached(cut));
        acks.record(0);
        assert!(acks.reached(cut));
        let next = epochs.cut();
        assert_eq!(next, Cut { epoch: 1, sent: 4 });
        assert!(
            acks.reached(next),
            "its record was acknowledged before the cut"
        );
    }

    #[test]
    fn a_cut_after_a_given_up_one_waits_for_the_given_up_records_too() {
        let epochs = Epochs::default();
        let mut acks = EpochAcks::default();
        epochs.sent();
        epochs.sent();
        let abandoned = epochs.cut();
        acks.record(abandoned.epoch);
        // The commit was given up with one record of its epoch unacknowledged; the next cut has
        // sent nothing of its own, yet covers the inputs of both.
        let empty = epochs.cut();
        assert!(
            !acks.reached(empty),
            "a record of the given-up epoch is still on its way"
        );
        acks.record(abandoned.epoch);
        assert!(acks.reached(empty));
        assert!(acks.acked.is_empty(), "reached epochs are folded");
        epochs.sent();
        let last = epochs.cut();
        assert!(!acks.reached(last));
        acks.record(last.epoch);
        assert!(acks.reached(last));
    }
}
