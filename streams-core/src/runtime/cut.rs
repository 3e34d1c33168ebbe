//! Cuts through a producer's stream of records, so that an at-least-once commit need not stop
//! processing while its records are acknowledged.
//!
//! Every record a stream thread's producer sends carries the number of the epoch it was sent in
//! (as its delivery opaque). Starting a commit takes a [`Cut`]: the epoch ends, and the cut
//! remembers how many records were sent in it. The commit's input offsets cover exactly those
//! records' inputs, so they may go to Kafka once every record of the epoch has a delivery report
//! ([`EpochAcks::reached`]), while the thread goes on processing (and sending in the next epoch).
//! Epochs only matter to at-least-once: exactly-once commits through the transaction instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The epoch records are sent in now, and how many were sent in it.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    current: AtomicUsize,
    sent: AtomicU64,
}

/// The records sent before a commit started: every record of `epoch`, `sent` of them.
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

    /// Ends the current epoch and returns it with its count of records.
    pub(crate) fn cut(&self) -> Cut {
        let epoch = self.current.fetch_add(1, Ordering::Relaxed);
        let sent = self.sent.swap(0, Ordering::Relaxed);
        Cut { epoch, sent }
    }
}

/// Delivery reports per epoch (successes and failures alike: a failure is judged by the
/// production handler, but the record is no longer on its way).
#[derive(Debug, Default)]
pub(crate) struct EpochAcks {
    acked: HashMap<usize, u64, foldhash::fast::RandomState>,
}

impl EpochAcks {
    /// A delivery report for a record of `epoch`.
    pub(crate) fn record(&mut self, epoch: usize) {
        *self.acked.entry(epoch).or_insert(0) += 1;
    }

    /// Whether every record of the cut has a delivery report; once it has, the counts of its
    /// epoch and of earlier ones (commits given up by a recovery) are forgotten.
    pub(crate) fn reached(&mut self, cut: Cut) -> bool {
        let acked = self.acked.get(&cut.epoch).copied().unwrap_or(0);
        if acked < cut.sent {
            return false;
        }
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
        assert_eq!(next, Cut { epoch: 1, sent: 1 });
        assert!(
            acks.reached(next),
            "its record was acknowledged before the cut"
        );
    }

    #[test]
    fn an_empty_cut_is_reached_at_once_and_given_up_epochs_are_forgotten() {
        let epochs = Epochs::default();
        let mut acks = EpochAcks::default();
        epochs.sent();
        let abandoned = epochs.cut();
        let empty = epochs.cut();
        assert_eq!(empty.sent, 0);
        acks.record(abandoned.epoch);
        assert!(acks.reached(empty));
        assert!(
            acks.acked.is_empty(),
            "the abandoned epoch's count is dropped"
        );
    }
}
