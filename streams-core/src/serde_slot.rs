//! Where a node gets its serde: given explicitly, or the application's default key or value serde
//! from the configuration, resolved (and type-checked) when the application or test driver is
//! built, so a mismatch is reported before any record flows.

use std::any::Any;
use std::sync::Arc;

use state_stores::serdes::Serde;

use crate::dynamic::TypeTag;
use crate::error::{Result, StreamsError};

/// A serde given explicitly, or "the configured default".
pub enum SerdeSlot<T> {
    /// This serde.
    Explicit(Arc<dyn Serde<T>>),
    /// `default.key.serde` from the configuration.
    DefaultKey,
    /// `default.value.serde` from the configuration.
    DefaultValue,
    /// Built from other slots when resolved (for example an `Option<T>` serde around `T`'s).
    Derived(Resolver<T>),
}

/// Resolves a [`SerdeSlot::Derived`].
pub type Resolver<T> = Arc<dyn Fn(&DefaultSerdes, &str) -> Result<Arc<dyn Serde<T>>> + Send + Sync>;

impl<T> Clone for SerdeSlot<T> {
    fn clone(&self) -> Self {
        match self {
            SerdeSlot::Explicit(s) => SerdeSlot::Explicit(s.clone()),
            SerdeSlot::DefaultKey => SerdeSlot::DefaultKey,
            SerdeSlot::DefaultValue => SerdeSlot::DefaultValue,
            SerdeSlot::Derived(r) => SerdeSlot::Derived(r.clone()),
        }
    }
}

impl<T> std::fmt::Debug for SerdeSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SerdeSlot::Explicit(_) => write!(f, "Explicit<{}>", std::any::type_name::<T>()),
            SerdeSlot::DefaultKey => f.write_str("DefaultKey"),
            SerdeSlot::DefaultValue => f.write_str("DefaultValue"),
            SerdeSlot::Derived(_) => write!(f, "Derived<{}>", std::any::type_name::<T>()),
        }
    }
}

impl<T: 'static> SerdeSlot<T> {
    /// The slot holding `serde`.
    pub fn explicit(serde: impl Serde<T>) -> Self {
        SerdeSlot::Explicit(Arc::new(serde))
    }

    /// A slot for `U` whose serde `wrap` builds from this slot's serde once it is resolved.
    pub fn derive<U: 'static>(
        &self,
        wrap: impl Fn(Arc<dyn Serde<T>>) -> Arc<dyn Serde<U>> + Send + Sync + 'static,
    ) -> SerdeSlot<U> {
        let inner = self.clone();
        SerdeSlot::Derived(Arc::new(move |defaults: &DefaultSerdes, owner: &str| {
            Ok(wrap(inner.resolve(defaults, owner)?))
        }))
    }

    /// A slot for `Option<T>`: null is `None`, anything else this slot's serde.
    pub fn optional(&self) -> SerdeSlot<Option<T>> {
        self.derive(|inner| Arc::new(state_stores::serdes::OptionSerde(inner)))
    }

    /// The serde itself, taking the default from `defaults` when asked to. `owner` names the
    /// node or store that needs it, for the error message.
    pub fn resolve(&self, defaults: &DefaultSerdes, owner: &str) -> Result<Arc<dyn Serde<T>>> {
        let (default, key) = match self {
            SerdeSlot::Explicit(serde) => return Ok(serde.clone()),
            SerdeSlot::Derived(resolve) => return resolve(defaults, owner),
            SerdeSlot::DefaultKey => (&defaults.key, "default.key.serde"),
            SerdeSlot::DefaultValue => (&defaults.value, "default.value.serde"),
        };
        let Some(default) = default else {
            return Err(StreamsError::config(
                key,
                format!(
                    "`{owner}` needs a serde for {} and none was given; pass one to the operator or set {key}",
                    std::any::type_name::<T>()
                ),
            ));
        };
        default.typed::<T>().ok_or_else(|| {
                StreamsError::config(
                    key,
                    format!(
                        "`{owner}` needs a serde for {} but {key} is a serde for {}; pass one to the operator",
                        std::any::type_name::<T>(),
                        default.tag.name()
                    ),
                )
            })
    }
}

/// A serde of some type, kept as a configuration default.
#[derive(Clone)]
pub struct ErasedSerde {
    tag: TypeTag,
    /// An `Arc<dyn Serde<T>>`, boxed.
    serde: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for ErasedSerde {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serde<{}>", self.tag.name())
    }
}

impl ErasedSerde {
    /// Erases `serde`.
    pub fn new<T: 'static>(serde: impl Serde<T>) -> Self {
        Self::from_arc::<T>(Arc::new(serde))
    }

    /// Erases a shared serde.
    pub fn from_arc<T: 'static>(serde: Arc<dyn Serde<T>>) -> Self {
        ErasedSerde {
            tag: TypeTag::of::<T>(),
            serde: Arc::new(serde),
        }
    }

    /// The serde, if it is one for `T`.
    pub(crate) fn typed<T: 'static>(&self) -> Option<Arc<dyn Serde<T>>> {
        self.serde.downcast_ref::<Arc<dyn Serde<T>>>().cloned()
    }

    /// The serde for `T` of store `store`'s keys or values (`what`), or an error naming both types.
    pub(crate) fn downcast<T: 'static>(
        &self,
        store: &str,
        what: &str,
    ) -> Result<Arc<dyn Serde<T>>> {
        self.typed::<T>().ok_or_else(|| {
            StreamsError::topology(
                store,
                format!(
                    "the store holds {what}s of type {}, not {}",
                    self.tag.name(),
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// The serialized type.
    pub fn type_name(&self) -> &'static str {
        self.tag.name()
    }
}

/// The configured default serdes.
#[derive(Debug, Clone, Default)]
pub struct DefaultSerdes {
    /// `default.key.serde`.
    pub key: Option<ErasedSerde>,
    /// `default.value.serde`.
    pub value: Option<ErasedSerde>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_stores::Serdes;

    #[test]
    fn defaults_resolve_by_type_and_mismatches_name_the_key() {
        let defaults = DefaultSerdes {
            key: Some(ErasedSerde::new(Serdes::string())),
            value: None,
        };
        let ok: SerdeSlot<String> = SerdeSlot::DefaultKey;
        assert!(ok.resolve(&defaults, "KSTREAM-SOURCE-0000000000").is_ok());
        let wrong: SerdeSlot<i64> = SerdeSlot::DefaultKey;
        let err = wrong
            .resolve(&defaults, "KSTREAM-SOURCE-0000000000")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("default.key.serde") && err.contains("i64") && err.contains("String"),
            "{err}"
        );
        let missing: SerdeSlot<i64> = SerdeSlot::DefaultValue;
        let err = missing
            .resolve(&defaults, "counts")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("default.value.serde") && err.contains("`counts`"),
            "{err}"
        );
        let explicit: SerdeSlot<i64> = SerdeSlot::explicit(Serdes::i64());
        assert!(explicit.resolve(&DefaultSerdes::default(), "x").is_ok());
    }
}
