//! Byte encodings of windowed and session keys, shared by the RocksDB stores, the caches and the
//! changelogs so a key has one encoding everywhere.
//!
//! - window key: `len(u32 BE) ++ key ++ time(start)`
//! - session key: `len(u32 BE) ++ key ++ time(end) ++ time(start)`
//!
//! where `time(t)` is `t` with its sign bit flipped, big-endian, so that byte order equals numeric
//! order for every `i64`. The length prefix makes a key's entries contiguous and ordered by time,
//! so fetching one key's windows is a single bounded scan with no false matches from keys that
//! share a prefix.

use crate::store::{SessionKey, SessionWindow, WindowedKey};

const LEN: usize = 4;
const TIME: usize = 8;

/// `t` as 8 bytes whose byte order is its numeric order.
pub fn encode_time(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`encode_time`].
pub fn decode_time(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

fn key_prefix(key: &[u8], extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN + key.len() + extra);
    // Keys longer than 4 GiB cannot reach a store: Kafka's message size limits are far below.
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The prefix shared by every window or session entry of `key`.
pub fn entries_of_key(key: &[u8]) -> Vec<u8> {
    key_prefix(key, 0)
}

/// Encodes a window key.
pub fn window_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut out = key_prefix(key, TIME);
    out.extend_from_slice(&encode_time(start));
    out
}

fn split_key(bytes: &[u8], suffix: usize) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..LEN)?.try_into().ok()?) as usize;
    if bytes.len() != LEN + len + suffix {
        return None;
    }
    Some((&bytes[LEN..LEN + len], &bytes[LEN + len..]))
}

/// Decodes a window key; `None` if the bytes are not one.
pub fn decode_window_key(bytes: &[u8]) -> Option<WindowedKey> {
    let (key, rest) = split_key(bytes, TIME)?;
    Some(WindowedKey {
        key: key.to_vec(),
        start: decode_time(rest.try_into().ok()?),
    })
}

/// Encodes a session key.
pub fn session_key(key: &[u8], window: SessionWindow) -> Vec<u8> {
    let mut out = key_prefix(key, 2 * TIME);
    out.extend_from_slice(&encode_time(window.end));
    out.extend_from_slice(&encode_time(window.start));
    out
}

/// Decodes a session key; `None` if the bytes are not one.
pub fn decode_session_key(bytes: &[u8]) -> Option<SessionKey> {
    let (key, rest) = split_key(bytes, 2 * TIME)?;
    let end = decode_time(rest[..TIME].try_into().ok()?);
    let start = decode_time(rest[TIME..].try_into().ok()?);
    Some(SessionKey {
        key: key.to_vec(),
        window: SessionWindow { start, end },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_order_is_byte_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), encode_time(a).cmp(&encode_time(b)));
            prop_assert_eq!(decode_time(encode_time(a)), a);
        }

        #[test]
        fn window_keys_round_trip_and_group_by_key(k in proptest::collection::vec(any::<u8>(), 0..12), s in any::<i64>(), t in any::<i64>()) {
            let a = window_key(&k, s);
            prop_assert_eq!(decode_window_key(&a), Some(WindowedKey { key: k.clone(), start: s }));
            prop_assert!(a.starts_with(&entries_of_key(&k)));
            prop_assert_eq!(s.cmp(&t), a.cmp(&window_key(&k, t)));
        }

        #[test]
        fn session_keys_round_trip(k in proptest::collection::vec(any::<u8>(), 0..12), s in any::<i64>(), e in any::<i64>()) {
            let w = SessionWindow { start: s, end: e };
            prop_assert_eq!(decode_session_key(&session_key(&k, w)), Some(SessionKey { key: k, window: w }));
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(decode_window_key(b"xy"), None);
        assert_eq!(decode_window_key(&[0, 0, 0, 9, 1, 2]), None);
        assert_eq!(decode_session_key(&window_key(b"k", 5)), None);
    }
}
