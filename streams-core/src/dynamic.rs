//! Type erasure inside a task: records travel between processors as boxed values whose types the
//! topology checked when it was built, and are downcast back at each processor.
//!
//! Values must be `Clone` so a record can be handed to several children (the last child gets the
//! original, the others clones).

use std::any::{Any, TypeId};

use crate::record::{Headers, Record};

/// A value of some `Clone + Send` type, boxed.
pub(crate) trait AnyValue: Any + Send {
    fn clone_value(&self) -> Box<dyn AnyValue>;
    fn type_name(&self) -> &'static str;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Any + Send + Clone> AnyValue for T {
    fn clone_value(&self) -> Box<dyn AnyValue> {
        Box::new(self.clone())
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

pub(crate) type DynValue = Box<dyn AnyValue>;

/// A record with erased key and value types.
pub(crate) struct DynRecord {
    pub(crate) key: DynValue,
    pub(crate) value: DynValue,
    pub(crate) timestamp: i64,
    pub(crate) headers: Headers,
}

impl Clone for DynRecord {
    fn clone(&self) -> Self {
        DynRecord {
            key: self.key.clone_value(),
            value: self.value.clone_value(),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
        }
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

fn downcast<T: 'static>(value: DynValue) -> Result<T, TypeMismatch> {
    let found = value.type_name();
    value
        .into_any()
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| TypeMismatch {
            expected: std::any::type_name::<T>(),
            found,
        })
}

impl DynRecord {
    pub(crate) fn erase<K, V>(record: Record<K, V>) -> Self
    where
        K: Any + Send + Clone,
        V: Any + Send + Clone,
    {
        DynRecord {
            key: Box::new(record.key),
            value: Box::new(record.value),
            timestamp: record.timestamp,
            headers: record.headers,
        }
    }

    pub(crate) fn typed<K: 'static, V: 'static>(self) -> Result<Record<K, V>, TypeMismatch> {
        Ok(Record {
            key: downcast(self.key)?,
            value: downcast(self.value)?,
            timestamp: self.timestamp,
            headers: self.headers,
        })
    }
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
