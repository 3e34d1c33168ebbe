//! The inside of a running task: its processor nodes, what they share (time, stores, the record
//! collector, punctuation schedules), and [`Exec`], a view of all that from one node, which is
//! what a [`ProcessorContext`](crate::processor::ProcessorContext) wraps.
//!
//! Forwarding takes the child's processor out of its slot for the duration of the call, so the
//! child can itself reach every other node and the shared state.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use state_stores::typed::{SharedKeyValueStore, SharedSessionStore, SharedWindowStore};
use state_stores::StateStore;

use crate::collector::RecordCollector;
use crate::dynamic::RecordSlot;
use crate::error::StreamsError;
use crate::processor::{BoxError, ErasedProcessor, ProcessorResult, PunctuationType, PunctuatorId};
use crate::record::RecordMetadata;
use crate::serde_slot::ErasedSerde;
use crate::task::TaskId;

/// A processor failed; names the node where it happened.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub(crate) struct NodeFailure {
    pub(crate) node: String,
    #[source]
    pub(crate) source: BoxError,
}

/// Wraps `error` with `node` unless a deeper node already claimed it.
pub(crate) fn at_node(node: &str, error: BoxError) -> BoxError {
    if error.downcast_ref::<NodeFailure>().is_some() {
        error
    } else {
        Box::new(NodeFailure {
            node: node.to_owned(),
            source: error,
        })
    }
}

/// A processor panicked; carries the panic's message.
#[derive(Debug, thiserror::Error)]
#[error("panicked: {0}")]
pub(crate) struct Panicked(pub(crate) String);

/// The message of a panic payload (`&str` or `String`; anything else has none).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

pub(crate) struct NodeSlot {
    pub(crate) name: String,
    pub(crate) children: Vec<usize>,
    /// `None` for sources (they only forward) and, briefly, while the processor runs.
    pub(crate) processor: Option<Box<dyn ErasedProcessor>>,
    pub(crate) is_source: bool,
    /// Stores this node may use.
    pub(crate) stores: Vec<String>,
}

/// A store as a task holds it: the shared cell and its resolved serdes.
#[derive(Clone)]
pub(crate) enum StoreHandle {
    KeyValue(SharedKeyValueStore, ErasedSerde, ErasedSerde),
    Window(SharedWindowStore, ErasedSerde, ErasedSerde),
    Session(SharedSessionStore, ErasedSerde, ErasedSerde),
}

impl StoreHandle {
    pub(crate) fn flush(&self) -> state_stores::Result<()> {
        match self {
            StoreHandle::KeyValue(c, ..) => c.with(|s| s.flush())?,
            StoreHandle::Window(c, ..) => c.with(|s| s.flush())?,
            StoreHandle::Session(c, ..) => c.with(|s| s.flush())?,
        }
    }

    /// The address of the shared cell: tells two openings of a store apart.
    pub(crate) fn identity(&self) -> usize {
        match self {
            StoreHandle::KeyValue(c, ..) => Arc::as_ptr(c) as *const () as usize,
            StoreHandle::Window(c, ..) => Arc::as_ptr(c) as *const () as usize,
            StoreHandle::Session(c, ..) => Arc::as_ptr(c) as *const () as usize,
        }
    }

    pub(crate) fn close(&self) -> state_stores::Result<()> {
        self.with_state_store(|s| s.close())?
    }

    /// Closes without writing down or logging anything buffered (after a failure).
    pub(crate) fn close_dirty(&self) -> state_stores::Result<()> {
        self.with_state_store(|s| s.close_dirty())?
    }

    /// Seals the writes for the next commit; see [`StateStore::prepare_commit`].
    pub(crate) fn prepare_commit(&self) -> state_stores::Result<()> {
        self.with_state_store(|s| s.prepare_commit())?
    }

    /// Makes the store durable as of `changelog_offset`; see [`StateStore::commit`].
    pub(crate) fn commit(&self, changelog_offset: Option<i64>) -> state_stores::Result<()> {
        self.with_state_store(|s| s.commit(changelog_offset))?
    }

    /// The changelog offset the store was last committed at.
    pub(crate) fn committed_offset(&self) -> state_stores::Result<Option<i64>> {
        self.with_state_store(|s| s.committed_offset())?
    }

    /// Bytes of uncommitted writes the store holds.
    pub(crate) fn uncommitted_bytes(&self) -> state_stores::Result<usize> {
        self.with_state_store(|s| s.uncommitted_bytes())
    }

    fn with_state_store<R>(
        &self,
        f: impl FnOnce(&mut dyn StateStore) -> R,
    ) -> state_stores::Result<R> {
        match self {
            StoreHandle::KeyValue(c, ..) => c.with(|s| f(s)),
            StoreHandle::Window(c, ..) => c.with(|s| f(s)),
            StoreHandle::Session(c, ..) => c.with(|s| f(s)),
        }
    }
}

#[derive(Debug, Clone)]
struct Punctuator {
    id: PunctuatorId,
    node: usize,
    interval: i64,
    kind: PunctuationType,
    /// When it is next due; for stream time, unset until the first record.
    due: Option<i64>,
}

/// The punctuation schedules of a task.
#[derive(Debug, Default)]
pub(crate) struct Punctuators {
    next_id: u64,
    entries: Vec<Punctuator>,
}

impl Punctuators {
    pub(crate) fn cancel(&mut self, id: PunctuatorId) {
        self.entries.retain(|p| p.id != id);
    }

    /// The punctuations of `kind` due at `now`, advancing their schedule: each fires once even if
    /// several intervals passed, and is next due one interval after `now` in that case.
    pub(crate) fn take_due(
        &mut self,
        kind: PunctuationType,
        now: i64,
    ) -> Vec<(PunctuatorId, usize)> {
        let mut due = Vec::new();
        for p in self.entries.iter_mut().filter(|p| p.kind == kind) {
            let next = *p.due.get_or_insert(now.saturating_add(p.interval));
            if now >= next {
                due.push((p.id, p.node));
                let after = next.saturating_add(p.interval);
                p.due = Some(if now >= after {
                    now.saturating_add(p.interval)
                } else {
                    after
                });
            }
        }
        due
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The instance's global stores by name, shared (read-only) by every task; see
/// `runtime::global`.
pub(crate) type GlobalStores = Arc<HashMap<String, StoreHandle>>;

/// What every node of a task shares.
pub(crate) struct TaskShared {
    pub(crate) task_id: TaskId,
    pub(crate) application_id: Arc<str>,
    pub(crate) stream_time: i64,
    pub(crate) wall_clock_ms: i64,
    /// The input record being processed (while `in_record`); kept between records so that its
    /// topic name is not allocated again for each one.
    pub(super) current: Option<RecordMetadata>,
    pub(super) in_record: bool,
    pub(crate) stores: HashMap<String, StoreHandle>,
    /// The global stores, which the task reads but neither flushes, commits nor closes.
    pub(crate) globals: GlobalStores,
    pub(crate) punctuators: Punctuators,
    pub(crate) collector: Arc<dyn RecordCollector>,
    pub(crate) commit_requested: bool,
    /// The timestamp changelog records get: that of the record being processed.
    pub(crate) timestamp: Arc<AtomicI64>,
    /// Records (per window) that windowed operators dropped because their window had closed.
    pub(crate) dropped_late: u64,
    pub(crate) dropped_null_key: u64,
}

impl TaskShared {
    /// The input record being processed, if any (none during punctuation).
    pub(crate) fn current(&self) -> Option<&RecordMetadata> {
        self.current.as_ref().filter(|_| self.in_record)
    }

    /// Processing of the input record at `offset` of `topic`-`partition` begins.
    pub(crate) fn enter_record(&mut self, topic: &str, partition: i32, offset: i64) {
        match &mut self.current {
            Some(m) if m.topic == topic => {
                m.partition = partition;
                m.offset = offset;
            }
            other => {
                *other = Some(RecordMetadata {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                })
            }
        }
        self.in_record = true;
    }

    /// Processing of the input record ended.
    pub(crate) fn leave_record(&mut self) {
        self.in_record = false;
    }
}

pub(crate) struct TaskRuntime {
    pub(crate) nodes: Vec<NodeSlot>,
    pub(crate) shared: TaskShared,
}

/// A task seen from one of its nodes.
pub(crate) struct Exec<'a> {
    pub(crate) rt: &'a mut TaskRuntime,
    pub(crate) node: usize,
}

impl<'a> Exec<'a> {
    pub(crate) fn at(rt: &'a mut TaskRuntime, node: usize) -> Self {
        Exec { rt, node }
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.rt.nodes[self.node].name
    }

    /// Runs `f` with the processor of `node`, taken out of its slot meanwhile.
    pub(crate) fn with_processor(
        rt: &mut TaskRuntime,
        node: usize,
        f: impl FnOnce(&mut dyn ErasedProcessor, Exec<'_>) -> ProcessorResult,
    ) -> ProcessorResult {
        let Some(mut processor) = rt.nodes[node].processor.take() else {
            let name = rt.nodes[node].name.clone();
            return Err(at_node(
                &name,
                "processor is already running (a cycle in the topology)".into(),
            ));
        };
        // A panic in user code is a failure of this node on this record, never an unwinding
        // through the runtime (which would run commits on the way out).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(processor.as_mut(), Exec::at(rt, node))
        }))
        .unwrap_or_else(|panic| Err(Box::new(Panicked(panic_message(panic.as_ref())))));
        rt.nodes[node].processor = Some(processor);
        result.map_err(|e| at_node(&rt.nodes[node].name, e))
    }

    /// Hands `record` to each child (or only the child named `only`): every child but the last
    /// a copy, the last the record itself.
    pub(crate) fn forward(
        &mut self,
        record: &mut dyn RecordSlot,
        only: Option<&str>,
    ) -> ProcessorResult {
        let children = self.rt.nodes[self.node].children.len();
        if let Some(name) = only {
            let child = (0..children)
                .map(|i| self.rt.nodes[self.node].children[i])
                .find(|c| self.rt.nodes[*c].name == name)
                .ok_or_else(|| -> BoxError {
                    format!("`{}` has no child named `{name}`", self.node_name()).into()
                })?;
            return Self::with_processor(self.rt, child, |p, exec| p.process(record, exec));
        }
        for i in 0..children {
            let child = self.rt.nodes[self.node].children[i];
            if i + 1 == children {
                Self::with_processor(self.rt, child, |p, exec| p.process(record, exec))?;
            } else {
                let mut copy = record.clone_slot();
                Self::with_processor(self.rt, child, |p, exec| p.process(copy.as_mut(), exec))?;
            }
        }
        Ok(())
    }

    pub(crate) fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<PunctuatorId, StreamsError> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval_ms < 1 {
            return Err(StreamsError::topology(
                self.node_name(),
                "punctuation intervals must be at least one millisecond",
            ));
        }
        let shared = &mut self.rt.shared;
        let id = PunctuatorId(shared.punctuators.next_id);
        shared.punctuators.next_id += 1;
        let due = match kind {
            PunctuationType::WallClockTime => {
                Some(shared.wall_clock_ms.saturating_add(interval_ms))
            }
            PunctuationType::StreamTime if shared.stream_time != i64::MIN => {
                Some(shared.stream_time.saturating_add(interval_ms))
            }
            PunctuationType::StreamTime => None,
        };
        shared.punctuators.entries.push(Punctuator {
            id,
            node: self.node,
            interval: interval_ms,
            kind,
            due,
        });
        Ok(id)
    }

    pub(crate) fn store(&self, name: &str) -> Result<&StoreHandle, StreamsError> {
        let node = &self.rt.nodes[self.node];
        if !node.stores.iter().any(|s| s == name) {
            return Err(StreamsError::topology(
                &node.name,
                format!("is not connected to store `{name}`; connect it when adding the store or the processor"),
            ));
        }
        self.rt
            .shared
            .stores
            .get(name)
            .or_else(|| self.rt.shared.globals.get(name))
            .ok_or_else(|| StreamsError::topology(name, "no such store in this task"))
    }

    pub(crate) fn wrong_kind(&self, name: &str, wanted: &str) -> StreamsError {
        StreamsError::topology(name, format!("is not a {wanted} store"))
    }
}
