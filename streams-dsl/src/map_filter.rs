//! Stateless stream processors: filter, map, map values, flat map, select key, peek, foreach,
//! split into branches, and pass-through (merge, branch children).
//!
//! Each holds its user function in an `Arc`, so the factory that creates one processor per task
//! shares the function rather than copying it.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;

use crate::Data;

/// Accepts or rejects a record.
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;
/// Computes a new value from key and value.
pub(crate) type ValueMapper<K, V, V2> = Arc<dyn Fn(&K, V) -> V2 + Send + Sync>;
/// Computes a new key and value.
pub(crate) type KeyValueMapper<K, V, K2, V2> = Arc<dyn Fn(K, V) -> (K2, V2) + Send + Sync>;
/// Computes zero or more new records.
pub(crate) type FlatMapper<K, V, K2, V2> = Arc<dyn Fn(K, V) -> Vec<(K2, V2)> + Send + Sync>;
/// Computes zero or more new values.
pub(crate) type FlatValueMapper<K, V, V2> = Arc<dyn Fn(&K, V) -> Vec<V2> + Send + Sync>;
/// Computes a new key.
pub(crate) type KeySelector<K, V, K2> = Arc<dyn Fn(&K, &V) -> K2 + Send + Sync>;
/// Looks at a record.
pub(crate) type Action<K, V> = Arc<dyn Fn(&K, &V) + Send + Sync>;
/// Takes a record.
pub(crate) type Consumer<K, V> = Arc<dyn Fn(K, V) + Send + Sync>;

pub(crate) struct Filter<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    /// `filter_not`: keep the records the predicate rejects.
    pub(crate) negate: bool,
}

impl<K: Data, V: Data> Processor<K, V, K, V> for Filter<K, V> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> ProcessorResult {
        if (self.predicate)(&r.key, &r.value) != self.negate {
            ctx.forward(r)?;
        }
        Ok(())
    }
}

pub(crate) struct Map<K, V, K2, V2> {
    pub(crate) f: KeyValueMapper<K, V, K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Processor<K, V, K2, V2> for Map<K, V, K2, V2> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K2, V2>,
    ) -> ProcessorResult {
        let (k, v) = (self.f)(r.key, r.value);
        ctx.forward(Record {
            key: k,
            value: v,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

pub(crate) struct MapValues<K, V, V2> {
    pub(crate) f: ValueMapper<K, V, V2>,
}

impl<K: Data, V: Data, V2: Data> Processor<K, V, K, V2> for MapValues<K, V, V2> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V2>,
    ) -> ProcessorResult {
        let v = (self.f)(&r.key, r.value);
        ctx.forward(Record {
            key: r.key,
            value: v,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

pub(crate) struct FlatMap<K, V, K2, V2> {
    pub(crate) f: FlatMapper<K, V, K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Processor<K, V, K2, V2> for FlatMap<K, V, K2, V2> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K2, V2>,
    ) -> ProcessorResult {
        for (k, v) in (self.f)(r.key, r.value) {
            ctx.forward(Record {
                key: k,
                value: v,
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        Ok(())
    }
}

pub(crate) struct FlatMapValues<K, V, V2> {
    pub(crate) f: FlatValueMapper<K, V, V2>,
}

impl<K: Data, V: Data, V2: Data> Processor<K, V, K, V2> for FlatMapValues<K, V, V2> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V2>,
    ) -> ProcessorResult {
        for v in (self.f)(&r.key, r.value) {
            ctx.forward(Record {
                key: r.key.clone(),
                value: v,
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        Ok(())
    }
}

pub(crate) struct SelectKey<K, V, K2> {
    pub(crate) f: KeySelector<K, V, K2>,
}

impl<K: Data, V: Data, K2: Data> Processor<K, V, K2, V> for SelectKey<K, V, K2> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K2, V>,
    ) -> ProcessorResult {
        let k = (self.f)(&r.key, &r.value);
        ctx.forward(r.with_key(k))
    }
}

pub(crate) struct Peek<K, V> {
    pub(crate) f: Action<K, V>,
}

impl<K: Data, V: Data> Processor<K, V, K, V> for Peek<K, V> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> ProcessorResult {
        (self.f)(&r.key, &r.value);
        ctx.forward(r)
    }
}

pub(crate) struct Foreach<K, V> {
    pub(crate) f: Consumer<K, V>,
}

impl<K: Data, V: Data> Processor<K, V, K, V> for Foreach<K, V> {
    fn process(
        &mut self,
        r: Record<K, V>,
        _ctx: &mut ProcessorContext<'_, K, V>,
    ) -> ProcessorResult {
        (self.f)(r.key, r.value);
        Ok(())
    }
}

/// Forwards every record unchanged (merge points, branch children).
pub(crate) struct PassThrough<K, V>(pub(crate) PhantomData<fn(K, V)>);

impl<K: Data, V: Data> Processor<K, V, K, V> for PassThrough<K, V> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> ProcessorResult {
        ctx.forward(r)
    }
}

/// A branch predicate and the child that takes what it accepts.
pub(crate) type Branch<K, V> = (Predicate<K, V>, String);

/// Sends each record to the first branch whose predicate accepts it, else to the default branch
/// (if any), else drops it.
pub(crate) struct Split<K, V> {
    pub(crate) branches: Arc<Vec<Branch<K, V>>>,
    pub(crate) default: Option<String>,
}

impl<K: Data, V: Data> Processor<K, V, K, V> for Split<K, V> {
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> ProcessorResult {
        for (predicate, child) in self.branches.iter() {
            if predicate(&r.key, &r.value) {
                return ctx.forward_to(child, r);
            }
        }
        match &self.default {
            Some(child) => ctx.forward_to(child, r),
            None => Ok(()),
        }
    }
}
