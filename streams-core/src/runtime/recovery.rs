//! What a stream thread does about an error: the one place that decides which failures the
//! thread recovers from on its own and which reach the uncaught exception handler.
//!
//! - [`Recovery::Revive`]: the open transaction (exactly-once) or the uncommitted work
//!   (at-least-once) is given up. The thread aborts the transaction, closes every task without
//!   committing (dropping caches and the stores' uncommitted writes), rewinds its input
//!   partitions to the last committed offsets, and creates the tasks again, which restore their
//!   stores' changelog tails. Nothing is lost and, under exactly-once, nothing is duplicated.
//!   For abortable transaction errors, changelog writes that failed, and broker errors that
//!   survived the Kafka client's own retries.
//! - [`Recovery::Rejoin`]: as `Revive`, with a new producer (the old one was fenced or failed
//!   fatally) and a prompt heartbeat to the group, whose answer may revoke tasks that moved to
//!   another member. For [`StreamsError::TaskMigrated`], and for
//!   [`StreamsError::ConsumerStuck`], where the consumer is replaced too.
//! - [`Recovery::Fatal`]: no retry can fix it (a processing error the processing handler chose to
//!   fail on, a configuration or topology error, a broken disk): the thread stops and the
//!   uncaught exception handler decides between replacing the thread, stopping the instance and
//!   stopping the application.
//!
//! Recoveries back off (100 ms doubling to 5 s), and a thread that keeps recovering without a
//! successful commit for five minutes gives up: the error becomes fatal, so a condition no retry
//! fixes cannot spin forever.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use state_stores::StoreError;

use crate::error::StreamsError;

/// What the thread does about an error; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Abort, close the tasks dirty, rewind to the last commit, carry on.
    Revive,
    /// As `Revive`, with a new producer and a prompt heartbeat.
    Rejoin,
    /// The uncaught exception handler decides.
    Fatal,
}

/// Broker-side conditions that pass: a coordinator or leader moving, a rebalance, a timeout.
fn transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        RequestTimedOut
            | OperationTimedOut
            | NotCoordinator
            | WaitingForCoordinator
            | CoordinatorNotAvailable
            | CoordinatorLoadInProgress
            | NotLeaderForPartition
            | LeaderNotAvailable
            | NetworkException
            | BrokerTransportFailure
            | AllBrokersDown
            | RebalanceInProgress
            | UnknownMemberId
            | IllegalGeneration
            | FencedMemberEpoch
            | StaleMemberEpoch
            | UnstableOffsetCommit
            | ConcurrentTransactions
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | KafkaStorageError
            | Fail
            | MessageTimedOut
    )
}

/// Group-membership errors: the task may belong to another member now.
fn migrated(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        UnknownMemberId
            | IllegalGeneration
            | FencedInstanceId
            | FencedMemberEpoch
            | StaleMemberEpoch
            | RebalanceInProgress
    )
}

fn kafka_code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    }
}

/// What to do about `error`; see the [module docs](self).
pub(crate) fn classify(error: &StreamsError) -> Recovery {
    match error {
        StreamsError::TaskMigrated { .. } | StreamsError::ConsumerStuck { .. } => Recovery::Rejoin,
        StreamsError::TransactionAborted { .. } | StreamsError::TaskCorrupted { .. } => {
            Recovery::Revive
        }
        // A changelog record the producer refused: a producer problem, not a store's.
        StreamsError::Store(StoreError::Changelog { .. }) => Recovery::Revive,
        StreamsError::Kafka { source, .. } => match kafka_code(source) {
            Some(code) if migrated(code) => Recovery::Rejoin,
            Some(code) if transient(code) => Recovery::Revive,
            _ => Recovery::Fatal,
        },
        _ => Recovery::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    fn kafka(error: KafkaError) -> StreamsError {
        StreamsError::kafka("committing", error)
    }

    #[test]
    fn expected_faults_recover_and_the_rest_is_fatal() {
        let migrated = StreamsError::TaskMigrated {
            task: "0_1".into(),
            reason: "fenced".into(),
        };
        assert_eq!(classify(&migrated), Recovery::Rejoin);
        let aborted = StreamsError::TransactionAborted {
            producer: "p".into(),
            reason: "abortable".into(),
        };
        assert_eq!(classify(&aborted), Recovery::Revive);
        assert_eq!(
            classify(&kafka(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress
            ))),
            Recovery::Rejoin,
            "a commit refused because the group moved on"
        );
        assert_eq!(
            classify(&kafka(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::CoordinatorLoadInProgress
            ))),
            Recovery::Revive
        );
        assert_eq!(
            classify(&kafka(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::WaitingForCoordinator
            ))),
            Recovery::Revive,
            "a commit tried before the client found the coordinator again (a broker came back)"
        );
        assert_eq!(
            classify(&StreamsError::Store(StoreError::Changelog {
                store: "counts".into(),
                topic: "app-counts-changelog".into(),
                reason: "queue full".into(),
            })),
            Recovery::Revive
        );
        assert_eq!(
            classify(&kafka(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))),
            Recovery::Fatal,
            "no retry fixes a missing permission"
        );
        assert_eq!(
            classify(&StreamsError::Processing {
                task: "0_0".into(),
                node: "p".into(),
                source: "boom".into(),
            }),
            Recovery::Fatal,
            "the processing handler already chose to fail"
        );
        assert_eq!(
            classify(&StreamsError::Fatal("disk".into())),
            Recovery::Fatal
        );
    }
}
