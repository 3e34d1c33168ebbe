//! Aggregation processors, and the materializer every table-producing processor shares.
//!
//! A [`Materializer`] writes a table's new value to its store and forwards the change. Without a
//! cache it forwards at once, with the old value it read first. With a cache it forwards what the
//! cache writes down: after each record (entries the shared budget evicted) and when the task
//! flushes for a commit, one change per key per flush, whose old value is the one last forwarded.
//!
//! Aggregations skip records with null keys, as Kafka Streams does. Their result timestamp is the
//! largest timestamp of the records that contributed.

use std::sync::Arc;

use state_stores::typed::KeyValueStore;
use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::{Headers, Record};

use crate::change::{Change, ValueAndTimestamp};
use crate::Data;

/// Writes table values and forwards their changes; see the [module docs](self).
pub(crate) struct Materializer<K, V> {
    pub(crate) store_name: String,
    pub(crate) cached: bool,
    store: Option<KeyValueStore<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> Materializer<K, V> {
    pub(crate) fn new(store_name: String, cached: bool) -> Self {
        Materializer {
            store_name,
            cached,
            store: None,
        }
    }

    pub(crate) fn init<KO, VO>(&mut self, ctx: &ProcessorContext<'_, KO, VO>) -> ProcessorResult {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn store(
        &self,
    ) -> Result<&KeyValueStore<K, ValueAndTimestamp<V>>, streams_core::processor::BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| format!("store `{}` used before init", self.store_name).into())
    }

    pub(crate) fn is_null_key(&self, key: &K) -> bool {
        self.store.as_ref().is_some_and(|s| s.is_null_key(key))
    }

    pub(crate) fn get(&self, key: &K) -> ProcessorResult<Option<ValueAndTimestamp<V>>> {
        Ok(self.store()?.get(key)?)
    }

    /// Stores `new` (or deletes, with `None`) for `key` and forwards the change.
    pub(crate) fn put(
        &self,
        key: K,
        new: Option<V>,
        old: Option<ValueAndTimestamp<V>>,
        timestamp: i64,
        headers: Headers,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessorResult {
        let store = self.store()?;
        match &new {
            Some(v) => store.put(
                &key,
                &ValueAndTimestamp {
                    value: v.clone(),
                    timestamp,
                },
            )?,
            None => {
                store.delete(&key)?;
            }
        }
        if self.cached {
            return self.forward_emissions(ctx);
        }
        if new.is_none() && old.is_none() {
            return Ok(()); // deleting an absent key changes nothing
        }
        ctx.forward(Record {
            key,
            value: Change::new(new, old.map(|o| o.value)),
            timestamp,
            headers,
        })
    }

    /// Replaces `key`'s value with what `f` makes of the current one, read and written in one
    /// store operation (the key serialized once, a cache searched once), then forwards as
    /// [`Self::put`] does. Without a cache the change needs the old value: only then is it
    /// copied.
    pub(crate) fn update(
        &self,
        key: K,
        headers: Headers,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        f: impl FnOnce(&K, Option<ValueAndTimestamp<V>>) -> ValueAndTimestamp<V>,
    ) -> ProcessorResult {
        let cached = self.cached;
        let change = self.store()?.update(&key, |old| {
            let kept = if cached { None } else { old.clone() };
            let new = f(&key, old);
            let change = (!cached).then(|| (new.clone(), kept));
            (Some(new), change)
        })?;
        match change {
            None => self.forward_emissions(ctx),
            Some((new, old)) => ctx.forward(Record {
                key,
                timestamp: new.timestamp,
                value: Change::new(Some(new.value), old.map(|o| o.value)),
                headers,
            }),
        }
    }

    /// Forwards what the cache wrote down since the last call.
    pub(crate) fn forward_emissions(
        &self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessorResult {
        if !self.cached {
            return Ok(());
        }
        for e in self.store()?.drain_emissions()? {
            let timestamp = match (&e.new_value, &e.old_value) {
                (Some(new), _) => new.timestamp,
                (None, _) => ctx.stream_time().max(0),
            };
            if e.new_value.is_none() && e.old_value.is_none() {
                continue;
            }
            ctx.forward(Record::new(
                e.key,
                Change::new(e.new_value.map(|v| v.value), e.old_value.map(|v| v.value)),
                timestamp,
            ))?;
        }
        Ok(())
    }
}

/// `(key, value, current aggregate or None) -> new aggregate`.
pub(crate) type Adder<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;
/// `(key, old value, current aggregate or None) -> new aggregate, or None to leave it absent`.
pub(crate) type Subtractor<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> Option<VA> + Send + Sync>;

/// Aggregates a grouped stream: count, reduce and aggregate.
pub(crate) struct StreamAggregate<K, V, VA> {
    pub(crate) adder: Adder<K, V, VA>,
    pub(crate) table: Materializer<K, VA>,
}

impl<K: Data, V: Data, VA: Data> Processor<K, V, K, Change<VA>> for StreamAggregate<K, V, VA> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> ProcessorResult {
        self.table.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            tracing::debug!(store = %self.table.store_name, "skipping a record with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let (adder, value, timestamp) = (&self.adder, r.value, r.timestamp);
        self.table.update(r.key, r.headers, ctx, |key, old| {
            let (old, timestamp) = match old {
                Some(o) => (Some(o.value), o.timestamp.max(timestamp)),
                None => (None, timestamp),
            };
            ValueAndTimestamp {
                value: adder(key, value, old),
                timestamp,
            }
        })
    }

    fn flushed(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}

/// Aggregates a grouped table: each change subtracts the old value (from the group it left) and
/// adds the new one.
pub(crate) struct TableAggregate<K, V, VA> {
    pub(crate) adder: Adder<K, V, VA>,
    pub(crate) subtractor: Subtractor<K, V, VA>,
    pub(crate) table: Materializer<K, VA>,
}

impl<K: Data, V: Data, VA: Data> Processor<K, Change<V>, K, Change<VA>>
    for TableAggregate<K, V, VA>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> ProcessorResult {
        self.table.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            tracing::debug!(store = %self.table.store_name, "skipping a record with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let old = self.table.get(&r.key)?;
        let mut agg = old.as_ref().map(|o| o.value.clone());
        if let Some(removed) = r.value.old_value {
            agg = (self.subtractor)(&r.key, removed, agg);
        }
        if let Some(added) = r.value.new_value {
            agg = Some((self.adder)(&r.key, added, agg));
        }
        let timestamp = old
            .as_ref()
            .map_or(r.timestamp, |o| o.timestamp.max(r.timestamp));
        if agg.is_none() && old.is_none() {
            return Ok(());
        }
        self.table.put(r.key, agg, old, timestamp, r.headers, ctx)
    }

    fn flushed(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}
