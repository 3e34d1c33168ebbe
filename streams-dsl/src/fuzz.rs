//! Helpers of the randomized decoding tests (test builds only): case counts, damaged encodings,
//! and the check every decoder must pass. The in-file test modules of the crate-private serdes
//! use it as `crate::fuzz`; `tests/decoding.rs` includes this file for the public ones.
//!
//! Case counts: `KSTREAMS_FUZZ_CASES` per property (default 512); millions on demand with
//! `KSTREAMS_FUZZ_CASES=1000000 cargo test --release -p streams-dsl --lib decoding_tests` (and
//! `--test decoding` for the public ones).

use proptest::prelude::*;
use proptest::test_runner::Config;
use state_stores::serdes::Serde;

/// `KSTREAMS_FUZZ_CASES`, default 512.
pub(crate) fn cases() -> u32 {
    std::env::var("KSTREAMS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// A proptest configuration of [`cases`] cases that keeps no regression files (named regression
/// tests keep the interesting cases instead).
pub(crate) fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Up to `max` arbitrary bytes.
pub(crate) fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Length prefixes that lie: past the end, `u32::MAX`, bincode varints claiming 4 GiB or 2^64.
fn lying_length() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0xff, 0xff, 0xff, 0xff]),
        Just(vec![0x7f, 0xff, 0xff, 0xff]),
        Just(vec![0x00, 0x00, 0x00, 0x09]),
        Just(vec![0xfc, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        proptest::collection::vec(any::<u8>(), 1..10),
    ]
}

/// One way of damaging an encoding; positions are taken modulo the encoding's length.
#[derive(Debug, Clone)]
pub(crate) enum Damage {
    Truncate(usize),
    FlipBit(usize, u8),
    Insert(usize, Vec<u8>),
    Overwrite(usize, Vec<u8>),
    Append(Vec<u8>),
}

/// Any [`Damage`].
pub(crate) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Damage::FlipBit(i, b)),
        (any::<usize>(), lying_length()).prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<usize>(), lying_length()).prop_map(|(i, b)| Damage::Overwrite(i, b)),
        bytes(8).prop_map(Damage::Append),
    ]
}

/// `bytes` with `damage` done to it.
pub(crate) fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = |i: usize| i % (bytes.len() + 1);
    match damage {
        Damage::Truncate(i) => out.truncate(at(*i)),
        Damage::FlipBit(i, bit) => {
            if !out.is_empty() {
                let i = i % out.len();
                out[i] ^= 1 << bit;
            }
        }
        Damage::Insert(i, b) => {
            let i = at(*i);
            out.splice(i..i, b.iter().copied());
        }
        Damage::Overwrite(i, b) => {
            let i = at(*i);
            let end = (i + b.len()).min(out.len());
            out.splice(i..end, b.iter().copied());
        }
        Damage::Append(b) => out.extend_from_slice(b),
    }
    out
}

/// Decodes `input` (a panic fails the case); a value it yields must encode back to `input`
/// exactly (every format here is canonical, so anything else is garbage read as a value).
/// Returns whether it decoded.
pub(crate) fn check_canonical<T, S: Serde<T> + ?Sized>(
    name: &str,
    serde: &S,
    input: &[u8],
) -> Result<bool, TestCaseError> {
    let Ok(value) = serde.deserialize(input) else {
        return Ok(false);
    };
    let encoded = serde
        .serialize(&value)
        .map_err(|e| TestCaseError::fail(format!("{name}: re-encoding a decoded value: {e}")))?;
    prop_assert_eq!(
        encoded,
        input.to_vec(),
        "{}: the bytes decoded as a different value",
        name
    );
    Ok(true)
}

/// Encodes `value` and decodes it again; the result must encode the same.
pub(crate) fn check_round_trip<T, S: Serde<T> + ?Sized>(
    name: &str,
    serde: &S,
    value: &T,
) -> Result<Vec<u8>, TestCaseError> {
    let encoded = serde
        .serialize(value)
        .map_err(|e| TestCaseError::fail(format!("{name}: encoding: {e}")))?;
    let back = serde
        .deserialize(&encoded)
        .map_err(|e| TestCaseError::fail(format!("{name}: decoding its own encoding: {e}")))?;
    let again = serde
        .serialize(&back)
        .map_err(|e| TestCaseError::fail(format!("{name}: re-encoding: {e}")))?;
    prop_assert_eq!(
        &again,
        &encoded,
        "{}: encode/decode changed the value",
        name
    );
    Ok(encoded)
}
