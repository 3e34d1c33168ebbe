//! Serdes: how typed keys and values become bytes and back.
//!
//! A [`Serde<T>`] turns a `T` into bytes and bytes into a `T`. The built-ins match Kafka's Java
//! serializers byte for byte, so a kstreams application and a JVM one can share topics:
//!
//! | Rust type | serde | bytes |
//! |---|---|---|
//! | `String` | [`Serdes::string`] | UTF-8 (Kafka `StringSerializer`) |
//! | `Vec<u8>` | [`Serdes::bytes`] | as is (`ByteArraySerializer`) |
//! | `i32` | [`Serdes::i32`] | 4 bytes big-endian (`IntegerSerializer`) |
//! | `i64` | [`Serdes::i64`] | 8 bytes big-endian (`LongSerializer`) |
//! | `f64` | [`Serdes::f64`] | IEEE 754 bits, 8 bytes big-endian (`DoubleSerializer`) |
//! | any `serde` type | [`Serdes::json`] | JSON via `serde_json` |
//! | any `serde` type | [`Serdes::bincode`] | bincode 2, standard config |
//! | `()` | [`Serdes::unit`] | null (any bytes read as `()`) |
//! | `Option<T>` | [`Serdes::option`] | null for `None`, the inner serde for `Some` |
//!
//! # Null
//!
//! Kafka keys and values may be null (no key; a tombstone). A serde says what null means for its
//! type through [`Serde::null_value`] and [`Serde::is_null`]. Most types have no null, and a null
//! payload read as one of them is an error that names the remedy: use `Option<T>`
//! ([`Serdes::option`]) or `()` ([`Serdes::unit`]) for keys and values that may be absent.

use std::marker::PhantomData;
use std::sync::Arc;

/// Why a value could not be serialized or deserialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerdeError {
    /// A fixed-width type got the wrong number of bytes.
    #[error("{type_name} needs exactly {expected} bytes, got {actual}")]
    Length {
        /// The Rust type being read.
        type_name: &'static str,
        /// The width the type needs.
        expected: usize,
        /// The width found.
        actual: usize,
    },
    /// The bytes are not valid UTF-8.
    #[error("invalid UTF-8 for a String: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// JSON (de)serialization failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// bincode (de)serialization failed.
    #[error("bincode: {0}")]
    Bincode(String),
    /// A null payload met a type that has no null.
    #[error(
        "null cannot be read as {type_name}; use Option<{type_name}> (Serdes::option) or () \
         (Serdes::unit) where it may be absent"
    )]
    Null {
        /// The Rust type that has no null.
        type_name: &'static str,
    },
    /// A user serde's own error.
    #[error("{0}")]
    Custom(String),
}

/// Turns a `T` into bytes and back. Implementations must be cheap to share across threads.
///
/// ```
/// use state_stores::serdes::{Serde, Serdes};
///
/// let s = Serdes::i64();
/// assert_eq!(s.serialize(&258).unwrap(), vec![0, 0, 0, 0, 0, 0, 1, 2]);
/// assert_eq!(s.deserialize(&[0, 0, 0, 0, 0, 0, 1, 2]).unwrap(), 258);
/// ```
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the bytes of `value` to `out`.
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Reads a value from `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;

    /// The bytes of `value` in a new buffer.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        let mut out = Vec::new();
        self.serialize_into(value, &mut out)?;
        Ok(out)
    }

    /// What a null payload stands for, or `None` if this type has no null.
    fn null_value(&self) -> Option<T> {
        None
    }

    /// Whether `value` is written as null rather than as bytes.
    fn is_null(&self, _value: &T) -> bool {
        false
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Arc<S> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize_into(value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        (**self).serialize(value)
    }
    fn null_value(&self) -> Option<T> {
        (**self).null_value()
    }
    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Box<S> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize_into(value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        (**self).serialize(value)
    }
    fn null_value(&self) -> Option<T> {
        (**self).null_value()
    }
    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
}

/// Serializes `value` as a Kafka payload: `None` when the serde writes it as null.
pub fn to_payload<T, S: Serde<T> + ?Sized>(
    serde: &S,
    value: &T,
) -> Result<Option<Vec<u8>>, SerdeError> {
    if serde.is_null(value) {
        Ok(None)
    } else {
        serde.serialize(value).map(Some)
    }
}

/// Reads a Kafka payload that may be null.
pub fn from_payload<T, S: Serde<T> + ?Sized>(
    serde: &S,
    payload: Option<&[u8]>,
) -> Result<T, SerdeError> {
    match payload {
        Some(bytes) => serde.deserialize(bytes),
        None => serde.null_value().ok_or(SerdeError::Null {
            type_name: std::any::type_name::<T>(),
        }),
    }
}

/// Constructors for the built-in serdes.
#[derive(Debug, Clone, Copy)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings (Kafka `StringSerializer`).
    pub fn string() -> StringSerde {
        StringSerde
    }
    /// Raw bytes (Kafka `ByteArraySerializer`).
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }
    /// `i32` as 4 big-endian bytes (Kafka `IntegerSerializer`).
    pub fn i32() -> I32Serde {
        I32Serde
    }
    /// `i64` as 8 big-endian bytes (Kafka `LongSerializer`).
    pub fn i64() -> I64Serde {
        I64Serde
    }
    /// `f64` as its IEEE 754 bits, 8 big-endian bytes (Kafka `DoubleSerializer`).
    pub fn f64() -> F64Serde {
        F64Serde
    }
    /// Any `serde` type as JSON.
    pub fn json<T>() -> JsonSerde<T> {
        JsonSerde(PhantomData)
    }
    /// Any `serde` type in bincode 2's standard encoding (compact, not self-describing).
    pub fn bincode<T>() -> BincodeSerde<T> {
        BincodeSerde(PhantomData)
    }
    /// `()`, written as null; any payload reads as `()`. For keys a stream does not use.
    pub fn unit() -> UnitSerde {
        UnitSerde
    }
    /// `Option<T>`: `None` is null, `Some` uses `inner`.
    pub fn option<S>(inner: S) -> OptionSerde<S> {
        OptionSerde(inner)
    }
}

/// UTF-8 `String`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize_into(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        Ok(std::str::from_utf8(bytes)?.to_owned())
    }
}

/// Raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize_into(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

macro_rules! fixed_width_serde {
    ($name:ident, $ty:ty, $width:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$ty> for $name {
            fn serialize_into(&self, value: &$ty, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$ty, SerdeError> {
                let array: [u8; $width] = bytes.try_into().map_err(|_| SerdeError::Length {
                    type_name: stringify!($ty),
                    expected: $width,
                    actual: bytes.len(),
                })?;
                Ok(<$ty>::from_be_bytes(array))
            }
        }
    };
}

fixed_width_serde!(I32Serde, i32, 4, "`i32`, 4 bytes big-endian.");
fixed_width_serde!(I64Serde, i64, 8, "`i64`, 8 bytes big-endian.");
fixed_width_serde!(
    F64Serde,
    f64,
    8,
    "`f64`, IEEE 754 bits, 8 bytes big-endian."
);

/// Any `serde` type as JSON.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Serde<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value)?;
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Any `serde` type in bincode 2's standard encoding.
pub struct BincodeSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for BincodeSerde<T> {
    fn clone(&self) -> Self {
        BincodeSerde(PhantomData)
    }
}

impl<T> std::fmt::Debug for BincodeSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BincodeSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Serde<T> for BincodeSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map_err(|e| SerdeError::Bincode(e.to_string()))?;
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (value, read) = bincode_decode::<T>(bytes).map_err(|e| match e {
            bincode::error::DecodeError::LimitExceeded => SerdeError::Bincode(format!(
                "a length prefix in a {} claims more than the {}-byte input holds",
                std::any::type_name::<T>(),
                bytes.len()
            )),
            e => SerdeError::Bincode(format!("{} ({e})", std::any::type_name::<T>())),
        })?;
        if read != bytes.len() {
            return Err(SerdeError::Bincode(format!(
                "{} trailing bytes after a {}",
                bytes.len() - read,
                std::any::type_name::<T>()
            )));
        }
        Ok(value)
    }
}

/// Decodes `bytes` in bincode's standard encoding with a limit on what length prefixes may claim.
///
/// Through serde, bincode allocates a string's or byte buffer's full claimed length before reading
/// it: a corrupt 5-byte payload claiming 4 GiB would allocate 4 GiB (or abort the process, or panic
/// with "capacity overflow" for lengths near `u64::MAX`). Only those buffers count against
/// bincode's limit (sequences and maps pre-allocate through serde, which caps it at 1 MiB), and
/// their bytes must all be in the input, so no valid payload claims more than its own length. The
/// limit is a constant of the configuration's type: the input's length rounded up to a power of
/// 16, at least 64 KiB, bounds any single allocation to 16 times the input.
fn bincode_decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice;
    match bytes.len() {
        0..=0xffff => decode_from_slice(bytes, standard().with_limit::<0x1_0000>()),
        0x1_0000..=0xf_ffff => decode_from_slice(bytes, standard().with_limit::<0x10_0000>()),
        0x10_0000..=0xff_ffff => decode_from_slice(bytes, standard().with_limit::<0x100_0000>()),
        0x100_0000..=0xfff_ffff => decode_from_slice(bytes, standard().with_limit::<0x1000_0000>()),
        // Past Kafka's message sizes; 4 GiB is still at most 16 times the input.
        _ => decode_from_slice(bytes, standard().with_limit::<LARGEST_BINCODE_LIMIT>()),
    }
}

/// 4 GiB where `usize` holds it.
const LARGEST_BINCODE_LIMIT: usize = (u32::MAX as usize).saturating_add(1);

/// `()`: written as null, and any payload (or none) reads as `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize_into(&self, _value: &(), _out: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }
    fn deserialize(&self, _bytes: &[u8]) -> Result<(), SerdeError> {
        Ok(())
    }
    fn null_value(&self) -> Option<()> {
        Some(())
    }
    fn is_null(&self, _value: &()) -> bool {
        true
    }
}

/// `Option<T>`: `None` is null; `Some(v)` is `v` through the inner serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionSerde<S>(pub S);

impl<T: 'static, S: Serde<T>> Serde<Option<T>> for OptionSerde<S> {
    fn serialize_into(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize_into(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn null_value(&self) -> Option<Option<T>> {
        Some(None)
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_width_match_kafka_java_serializers() {
        // Kafka's LongSerializer/IntegerSerializer write big-endian two's complement.
        assert_eq!(
            Serdes::i64().serialize(&-2).unwrap(),
            vec![0xff; 7].into_iter().chain([0xfe]).collect::<Vec<_>>()
        );
        assert_eq!(Serdes::i32().serialize(&1).unwrap(), vec![0, 0, 0, 1]);
        // DoubleSerializer writes Double.doubleToLongBits big-endian: 1.0 = 0x3FF0000000000000.
        assert_eq!(
            Serdes::f64().serialize(&1.0).unwrap(),
            vec![0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn wrong_width_names_the_type() {
        let err = Serdes::i64().deserialize(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.to_string(), "i64 needs exactly 8 bytes, got 3");
    }

    #[test]
    fn null_payloads() {
        assert_eq!(from_payload(&Serdes::unit(), None).unwrap(), ());
        assert_eq!(
            from_payload(&Serdes::option(Serdes::string()), None).unwrap(),
            None
        );
        let err = from_payload(&Serdes::string(), None).unwrap_err();
        assert!(
            err.to_string().contains("Option<alloc::string::String>"),
            "{err}"
        );
        assert_eq!(
            to_payload(&Serdes::option(Serdes::i64()), &None).unwrap(),
            None
        );
        assert_eq!(to_payload(&Serdes::unit(), &()).unwrap(), None);
        assert_eq!(
            to_payload(&Serdes::i32(), &7).unwrap(),
            Some(vec![0, 0, 0, 7])
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert!(matches!(
            Serdes::string().deserialize(&[0xff, 0xfe]),
            Err(SerdeError::Utf8(_))
        ));
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        item: String,
        price: f64,
    }

    proptest! {
        #[test]
        fn round_trips(s in ".*", b in proptest::collection::vec(any::<u8>(), 0..64),
                       i in any::<i32>(), l in any::<i64>(), d in any::<f64>().prop_filter("NaN", |d| !d.is_nan()),
                       id in any::<u64>(), item in ".*", price in -1e9f64..1e9) {
            prop_assert_eq!(Serdes::string().deserialize(&Serdes::string().serialize(&s).unwrap()).unwrap(), s);
            prop_assert_eq!(Serdes::bytes().deserialize(&Serdes::bytes().serialize(&b).unwrap()).unwrap(), b);
            prop_assert_eq!(Serdes::i32().deserialize(&Serdes::i32().serialize(&i).unwrap()).unwrap(), i);
            prop_assert_eq!(Serdes::i64().deserialize(&Serdes::i64().serialize(&l).unwrap()).unwrap(), l);
            prop_assert_eq!(Serdes::f64().deserialize(&Serdes::f64().serialize(&d).unwrap()).unwrap(), d);
            let order = Order { id, item, price };
            let json = Serdes::json::<Order>();
            prop_assert_eq!(json.deserialize(&json.serialize(&order).unwrap()).unwrap(), order.clone());
            let bin = Serdes::bincode::<Order>();
            prop_assert_eq!(bin.deserialize(&bin.serialize(&order).unwrap()).unwrap(), order);
        }

        #[test]
        fn big_endian_preserves_order_of_non_negative_longs(a in 0i64.., b in 0i64..) {
            let (ea, eb) = (Serdes::i64().serialize(&a).unwrap(), Serdes::i64().serialize(&b).unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
        }
    }
}
