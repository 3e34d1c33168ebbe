//! Type erasure inside a task. A record travels between processors in a typed slot,
//! `Option<Record<K, V>>`, on the forwarding code's stack; each child borrows it as
//! `&mut dyn RecordSlot` and takes the record out after checking its type (the topology checked
//! the types when it was built, so a mismatch means a processor forwarded a type it did not
//! declare). Nothing is boxed on the way from one processor to the next: only a fan-out to
//! several children clones the record, for every child but the last, and a source boxes each
//! record it decodes once.

use std::any::{Any, TypeId};

use crate::record::Record;

/// A record of erased key and value types, in its slot; see the [module docs](self).
pub(crate) trait RecordSlot {
    /// The record's timestamp (`None` once the record was taken).
    fn timestamp(&self) -> Option<i64>;
    fn set_timestamp(&mut self, timestamp: i64);
    /// The record type's name, for messages.
    fn type_name(&self) -> &'static str;
    fn as_any(&mut self) -> &mut dyn Any;
    /// A slot holding a copy of the record, for one more child.
    fn clone_slot(&self) -> Box<dyn RecordSlot>;
}

impl<K, V> RecordSlot for Option<Record<K, V>>
where
    K: Any + Clone,
    V: Any + Clone,
{
    fn timestamp(&self) -> Option<i64> {
        self.as_ref().map(|r| r.timestamp)
    }
    fn set_timestamp(&mut self, timestamp: i64) {
        if let Some(r) = self {
            r.timestamp = timestamp;
        }
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Record<K, V>>()
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
    fn clone_slot(&self) -> Box<dyn RecordSlot> {
        Box::new(self.clone())
    }
}

/// A record's key or value was not of the type the receiving processor declared. The topology
/// checks types when it is built, so this means a processor forwarded a type it did not declare.
#[derive(Debug, thiserror::Error)]
#[error("expected a {expected} but received a {found}")]
pub(crate) struct TypeMismatch {
    pub(crate) expected: &'static str,
    pub(crate) found: &'static str,
}

/// Takes the record of type `Record<K, V>` out of `slot`.
pub(crate) fn take<K: 'static, V: 'static>(
    slot: &mut dyn RecordSlot,
) -> Result<Record<K, V>, TypeMismatch> {
    let found = slot.type_name();
    slot.as_any()
        .downcast_mut::<Option<Record<K, V>>>()
        .and_then(Option::take)
        .ok_or(TypeMismatch {
            expected: std::any::type_name::<Record<K, V>>(),
            found,
        })
}

/// A Rust type, remembered for checking and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeTag {
    id: TypeId,
    name: &'static str,
}

impl TypeTag {
    /// The tag of `T`.
    pub fn of<T: 'static>() -> Self {
        TypeTag {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}
