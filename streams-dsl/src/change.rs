//! What flows between KTable operators, and what table stores hold.
//!
//! A table's update travels as a [`Change`]: the key's new value and, where an operator needs it,
//! its old one (`None` for "absent"), so a downstream aggregation can subtract the old value of a
//! key that moved between groups. Table stores keep each value with the timestamp of the update
//! that produced it ([`ValueAndTimestamp`]).

use std::sync::Arc;

use state_stores::serdes::{Serde, SerdeError};

/// An update of one key of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update; `None` when the key was deleted.
    pub new_value: Option<V>,
    /// The value before; `None` when the key was absent or the old value was not asked for.
    pub old_value: Option<V>,
}

impl<V> Change<V> {
    /// A change from `old_value` to `new_value`.
    pub fn new(new_value: Option<V>, old_value: Option<V>) -> Self {
        Change {
            new_value,
            old_value,
        }
    }
}

/// A table value with the timestamp of the update that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueAndTimestamp<V> {
    /// The value.
    pub value: V,
    /// Epoch milliseconds.
    pub timestamp: i64,
}

/// `ValueAndTimestamp<V>` as 8 bytes of big-endian timestamp followed by the value's bytes.
pub(crate) struct TimestampedSerde<V>(pub(crate) Arc<dyn Serde<V>>);

impl<V: 'static> Serde<ValueAndTimestamp<V>> for TimestampedSerde<V> {
    fn serialize_into(
        &self,
        value: &ValueAndTimestamp<V>,
        out: &mut Vec<u8>,
    ) -> Result<(), SerdeError> {
        out.extend_from_slice(&value.timestamp.to_be_bytes());
        self.0.serialize_into(&value.value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<ValueAndTimestamp<V>, SerdeError> {
        if bytes.len() < 8 {
            return Err(SerdeError::Length {
                type_name: "ValueAndTimestamp",
                expected: 8,
                actual: bytes.len(),
            });
        }
        let (ts, value) = bytes.split_at(8);
        Ok(ValueAndTimestamp {
            value: self.0.deserialize(value)?,
            timestamp: i64::from_be_bytes([ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ts[6], ts[7]]),
        })
    }
}

/// `Change<V>` on a repartition topic: a flags byte (1: has new, 2: has old), then the new
/// value's length (4 bytes big-endian) and bytes when present, then the old value's bytes.
pub(crate) struct ChangeSerde<V>(pub(crate) Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Change<V>> for ChangeSerde<V> {
    fn serialize_into(&self, change: &Change<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        let flags =
            u8::from(change.new_value.is_some()) | (u8::from(change.old_value.is_some()) << 1);
        out.push(flags);
        if let Some(new) = &change.new_value {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            self.0.serialize_into(new, out)?;
            let len = u32::try_from(out.len() - at - 4)
                .map_err(|_| SerdeError::Custom("a table value over 4 GiB".into()))?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        if let Some(old) = &change.old_value {
            self.0.serialize_into(old, out)?;
        }
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Change<V>, SerdeError> {
        let bad = || {
            SerdeError::Custom(format!(
                "not an encoded table change ({} bytes)",
                bytes.len()
            ))
        };
        let (&flags, mut rest) = bytes.split_first().ok_or_else(bad)?;
        if flags > 3 {
            return Err(SerdeError::Custom(format!(
                "not an encoded table change: unknown flags {flags:#04x} ({} bytes)",
                bytes.len()
            )));
        }
        let new_value = if flags & 1 != 0 {
            let len: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            let len = u32::from_be_bytes(len) as usize;
            let value = rest.get(4..4 + len).ok_or_else(bad)?;
            rest = &rest[4 + len..];
            Some(self.0.deserialize(value)?)
        } else {
            None
        };
        let old_value = if flags & 2 != 0 {
            Some(self.0.deserialize(rest)?)
        } else if rest.is_empty() {
            None
        } else {
            return Err(bad());
        };
        Ok(Change {
            new_value,
            old_value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use state_stores::Serdes;

    proptest! {
        #[test]
        fn changes_round_trip(new in proptest::option::of(".*"), old in proptest::option::of(".*")) {
            let serde = ChangeSerde::<String>(Arc::new(Serdes::string()));
            let change = Change { new_value: new, old_value: old };
            let bytes = serde.serialize(&change).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(serde.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, change);
        }

        #[test]
        fn timestamped_values_round_trip(v in any::<i64>(), ts in any::<i64>()) {
            let serde = TimestampedSerde::<i64>(Arc::new(Serdes::i64()));
            let value = ValueAndTimestamp { value: v, timestamp: ts };
            let bytes = serde.serialize(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(bytes.len(), 16);
            prop_assert_eq!(serde.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, value);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let serde = ChangeSerde::<String>(Arc::new(Serdes::string()));
        for bytes in [&[][..], &[1, 0, 0], &[1, 0, 0, 0, 9, b'a'], &[0, b'x']] {
            assert!(serde.deserialize(bytes).is_err());
        }
    }
}

/// Arbitrary and damaged bytes for the table serdes (`KSTREAMS_FUZZ_CASES`, see `crate::fuzz`):
/// a value, a typed error, never a panic, never garbage read as a value.
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::{apply, bytes, check_canonical, check_round_trip, config, damage};
    use proptest::prelude::*;
    use state_stores::Serdes;

    fn changes() -> ChangeSerde<String> {
        ChangeSerde(Arc::new(Serdes::string()))
    }

    fn timestamped() -> TimestampedSerde<String> {
        TimestampedSerde(Arc::new(Serdes::string()))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn table_serdes_take_arbitrary_bytes(input in bytes(32)) {
            check_canonical("Change", &changes(), &input)?;
            check_canonical("ValueAndTimestamp", &timestamped(), &input)?;
            let longs = ChangeSerde::<i64>(Arc::new(Serdes::i64()));
            check_canonical("Change<i64>", &longs, &input)?;
        }

        #[test]
        fn table_serdes_take_damaged_encodings(
            new in proptest::option::of(".{0,8}"),
            old in proptest::option::of(".{0,8}"),
            timestamp in any::<i64>(),
            damage in damage(),
        ) {
            let value = new.clone().unwrap_or_default();
            let change = check_round_trip("Change", &changes(), &Change::new(new, old))?;
            check_canonical("Change", &changes(), &apply(&change, &damage))?;
            let stamped = check_round_trip("ValueAndTimestamp", &timestamped(), &ValueAndTimestamp { value, timestamp })?;
            check_canonical("ValueAndTimestamp", &timestamped(), &apply(&stamped, &damage))?;
        }
    }

    /// Regression: flag bits other than "has new" and "has old" were ignored, so a damaged flags
    /// byte read as a valid change.
    #[test]
    fn unknown_change_flags_are_an_error() {
        let good = changes()
            .serialize(&Change::new(Some("a".to_owned()), None))
            .unwrap();
        assert_eq!(good[0], 1);
        let mut bad = good.clone();
        bad[0] = 0x05;
        let err = changes().deserialize(&bad).unwrap_err();
        assert!(err.to_string().contains("flags"), "{err}");
    }
}
