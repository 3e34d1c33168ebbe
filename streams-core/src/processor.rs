//! The Processor API: the [`Processor`] trait every node of a topology implements, and the
//! [`ProcessorContext`] through which it forwards records, schedules punctuation, reads record
//! metadata and reaches its state stores.
//!
//! # Contract
//!
//! A task calls `init` once before any record, then `process` for each record in timestamp order
//! across the task's input partitions, `punctuate` when a scheduled punctuation is due, `flushed`
//! during each commit after the processor's stores were flushed, and `close` once at the end. All
//! calls for one task happen on one thread, one at a time. `forward` runs the children
//! synchronously, depth first, before it returns.

use std::marker::PhantomData;
use std::time::Duration;

use state_stores::typed::{KeyValueStore, SessionStore, WindowStore};

use crate::dynamic::{take, RecordSlot};
use crate::error::StreamsError;
use crate::record::{Record, RecordMetadata};
use crate::task::runtime::{Exec, StoreHandle};
use crate::task::TaskId;

/// An error a processor returns: any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of a processor callback.
pub type ProcessorResult<T = ()> = Result<T, BoxError>;

/// When a punctuation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// When the task's stream time (the largest record timestamp it has seen) passes the next
    /// due time. Does not fire while no records arrive.
    StreamTime,
    /// When wall-clock time passes the next due time, whether or not records arrive.
    WallClockTime,
}

/// Identifies a scheduled punctuation, for [`Processor::punctuate`] and cancelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PunctuatorId(pub(crate) u64);

/// A node of a topology that consumes records of `(KIn, VIn)` and forwards `(KOut, VOut)`.
pub trait Processor<KIn, VIn, KOut, VOut>: Send {
    /// Called once before the first record: look up stores, schedule punctuation.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> ProcessorResult {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record.
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> ProcessorResult;

    /// A punctuation scheduled with [`ProcessorContext::schedule`] is due. `timestamp` is the
    /// stream time or wall-clock time that triggered it.
    fn punctuate(
        &mut self,
        id: PunctuatorId,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> ProcessorResult {
        let _ = (id, timestamp, ctx);
        Ok(())
    }

    /// The task flushed this processor's state stores as part of a commit. A processor that
    /// owns a caching store forwards what the cache wrote down
    /// ([`KeyValueStore::drain_emissions`]) here.
    fn flushed(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> ProcessorResult {
        let _ = ctx;
        Ok(())
    }

    /// Called once when the task closes.
    fn close(&mut self) -> ProcessorResult {
        Ok(())
    }
}

/// What a processor sees of its task while it runs.
pub struct ProcessorContext<'a, KOut, VOut> {
    pub(crate) exec: Exec<'a>,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<'a, KOut, VOut> ProcessorContext<'a, KOut, VOut> {
    pub(crate) fn new(exec: Exec<'a>) -> Self {
        ProcessorContext {
            exec,
            _types: PhantomData,
        }
    }

    /// The processor's name.
    pub fn node_name(&self) -> &str {
        self.exec.node_name()
    }

    /// The task this processor belongs to.
    pub fn task_id(&self) -> TaskId {
        self.exec.rt.shared.task_id
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.exec.rt.shared.application_id
    }

    /// Where the record being processed came from; `None` during punctuation.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.exec.rt.shared.current()
    }

    /// The task's stream time: the largest timestamp of the records it has processed
    /// (`i64::MIN` before the first).
    pub fn stream_time(&self) -> i64 {
        self.exec.rt.shared.stream_time
    }

    /// The current wall-clock time in epoch milliseconds (the test driver's mock clock in tests).
    pub fn wall_clock_time(&self) -> i64 {
        self.exec.rt.shared.wall_clock_ms
    }

    /// Schedules `punctuate` every `interval`, by stream time or wall-clock time.
    pub fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<PunctuatorId, StreamsError> {
        self.exec.schedule(interval, kind)
    }

    /// Cancels a scheduled punctuation.
    pub fn cancel(&mut self, id: PunctuatorId) {
        self.exec.rt.shared.punctuators.cancel(id);
    }

    /// Counts one record that a windowed operator dropped because the window it belongs to had
    /// already closed (stream time passed its end plus the grace period). Shows in the task's
    /// `dropped_late` metric. The operator logs the record at debug level itself.
    pub fn record_dropped_late(&mut self) {
        self.exec.rt.shared.dropped_late += 1;
    }

    /// Counts one record that a stateful operator skipped because its key was null (it cannot
    /// be stored or looked up). Shows in the task's `dropped_null_key` metric.
    pub fn record_dropped_null_key(&mut self) {
        self.exec.rt.shared.dropped_null_key += 1;
    }

    /// Asks for a commit as soon as the current record is done.
    pub fn commit(&mut self) {
        self.exec.rt.shared.commit_requested = true;
    }

    /// The key-value store `name`, which must be connected to this processor.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<K, V>, StreamsError> {
        match self.exec.store(name)? {
            StoreHandle::KeyValue(cell, keys, values) => Ok(KeyValueStore::new(
                cell.clone(),
                keys.downcast::<K>(name, "key")?,
                values.downcast::<V>(name, "value")?,
            )),
            _ => Err(self.exec.wrong_kind(name, "key-value")),
        }
    }

    /// The window store `name`, which must be connected to this processor.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<K, V>, StreamsError> {
        match self.exec.store(name)? {
            StoreHandle::Window(cell, keys, values) => Ok(WindowStore::new(
                cell.clone(),
                keys.downcast::<K>(name, "key")?,
                values.downcast::<V>(name, "value")?,
            )),
            _ => Err(self.exec.wrong_kind(name, "window")),
        }
    }

    /// The session store `name`, which must be connected to this processor.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStore<K, V>, StreamsError> {
        match self.exec.store(name)? {
            StoreHandle::Session(cell, keys, values) => Ok(SessionStore::new(
                cell.clone(),
                keys.downcast::<K>(name, "key")?,
                values.downcast::<V>(name, "value")?,
            )),
            _ => Err(self.exec.wrong_kind(name, "session")),
        }
    }
}

impl<KOut, VOut> ProcessorContext<'_, KOut, VOut>
where
    KOut: Clone + Send + 'static,
    VOut: Clone + Send + 'static,
{
    /// Sends `record` to every child, each in turn, depth first.
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> ProcessorResult {
        self.exec.forward(&mut Some(record), None)
    }

    /// Sends `record` to the child named `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<KOut, VOut>) -> ProcessorResult {
        self.exec.forward(&mut Some(record), Some(child))
    }
}

/// A processor with its types erased, as a task holds it.
pub(crate) trait ErasedProcessor: Send {
    fn init(&mut self, exec: Exec<'_>) -> ProcessorResult;
    /// Takes the record out of `record` (see [`crate::dynamic`]) and processes it.
    fn process(&mut self, record: &mut dyn RecordSlot, exec: Exec<'_>) -> ProcessorResult;
    fn punctuate(&mut self, id: PunctuatorId, timestamp: i64, exec: Exec<'_>) -> ProcessorResult;
    fn flushed(&mut self, exec: Exec<'_>) -> ProcessorResult;
    fn close(&mut self) -> ProcessorResult;
}

/// Adapts a typed processor.
pub(crate) struct TypedProcessor<P, KIn, VIn, KOut, VOut> {
    pub(crate) inner: P,
    pub(crate) _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> ErasedProcessor for TypedProcessor<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KIn: 'static,
    VIn: 'static,
{
    fn init(&mut self, exec: Exec<'_>) -> ProcessorResult {
        self.inner.init(&mut ProcessorContext::new(exec))
    }
    fn process(&mut self, record: &mut dyn RecordSlot, exec: Exec<'_>) -> ProcessorResult {
        let record = take::<KIn, VIn>(record)?;
        self.inner.process(record, &mut ProcessorContext::new(exec))
    }
    fn punctuate(&mut self, id: PunctuatorId, timestamp: i64, exec: Exec<'_>) -> ProcessorResult {
        self.inner
            .punctuate(id, timestamp, &mut ProcessorContext::new(exec))
    }
    fn flushed(&mut self, exec: Exec<'_>) -> ProcessorResult {
        self.inner.flushed(&mut ProcessorContext::new(exec))
    }
    fn close(&mut self) -> ProcessorResult {
        self.inner.close()
    }
}
