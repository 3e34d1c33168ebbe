//! Reading consumed records out of librdkafka, where rdkafka's safe accessors fall short (with
//! [`super::produce`], the crate's `unsafe` code).
//!
//! Headers: rdkafka's safe header accessors turn each header name into a `&str` with an
//! `unwrap`, so one record whose header name is not UTF-8 would panic the stream thread on every
//! restart: a poison record nothing could skip. [`read_headers`] reads them through librdkafka's
//! C API instead and keeps such a name as lossy UTF-8 (invalid bytes become U+FFFD), logged and
//! counted; the record is processed like any other.
//!
//! librdkafka parses a record's headers on first access, and for a record without headers that
//! still costs a buffer allocated and freed (every v2 record carries a header count, even a zero
//! one): about 5% of a pass-through stream thread. [`read_headers`] reads the count's first byte
//! itself when the linked librdkafka is the one whose message layout this module mirrors
//! ([`NativeMsg`]), and skips the parse when it is zero.
//!
//! Topics: rdkafka's `Message::topic` measures and checks the name's UTF-8 on every call, a
//! noticeable cost per record on the hot path. [`topic_handle`] gives librdkafka's handle of the
//! record's topic instead: one handle per topic and client, so comparing handles tells whether
//! two records of one poll came from the same topic without reading either name.

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

use crate::record::Headers;

/// librdkafka 2.12.1's `rd_kafka_msg_t` (`rdkafka_msg.h`) up to the consumer's unparsed headers:
/// the public message, the queue link, flags, timestamp type and value, parsed headers, status,
/// broker id, then the union whose consumer arm starts with the headers' bytes
/// (`rd_kafkap_bytes_t`: length, then pointer). Read only when [`layout_matches`] holds.
#[repr(C)]
struct NativeMsg {
    message: rd::rd_kafka_message_t,
    link: [*mut std::ffi::c_void; 2],
    flags: std::ffi::c_int,
    timestamp_type: std::ffi::c_int,
    timestamp: i64,
    headers: *mut rd::rd_kafka_headers_t,
    status: std::ffi::c_int,
    broker_id: i32,
    raw_headers_len: i32,
    raw_headers: *const u8,
}

/// The librdkafka release whose `rd_kafka_msg_t` [`NativeMsg`] mirrors.
const MIRRORED_VERSION: std::ffi::c_int = 0x020c_01ff;

// An rdkafka-sys that bundles another librdkafka fails the build here: check `NativeMsg`
// against that release's `rdkafka_msg.h`, then update the version. (At run time a mismatch
// only turns the shortcut off.)
const _: () = assert!(rd::RD_KAFKA_VERSION == MIRRORED_VERSION);
// The offsets librdkafka 2.12.1 has on 64-bit targets: the union starts at 120.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    std::mem::size_of::<rd::rd_kafka_message_t>() == 72
        && std::mem::offset_of!(NativeMsg, broker_id) == 116
        && std::mem::offset_of!(NativeMsg, raw_headers_len) == 120
        && std::mem::offset_of!(NativeMsg, raw_headers) == 128
);

/// Whether the linked librdkafka is the release [`NativeMsg`] mirrors (checked once).
#[allow(unsafe_code)]
fn layout_matches() -> bool {
    static MATCHES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: `rd_kafka_version` only returns a constant.
    *MATCHES.get_or_init(|| unsafe { rd::rd_kafka_version() } == MIRRORED_VERSION)
}

/// Whether `message` certainly has no headers (its header count is zero), read without
/// librdkafka's parse; `false` when that cannot be told here (another librdkafka, headers
/// already parsed, or a count that is not zero).
#[allow(unsafe_code)]
fn surely_without_headers(message: &BorrowedMessage<'_>) -> bool {
    if !layout_matches() {
        return false;
    }
    let ptr = message.ptr().cast::<NativeMsg>();
    // SAFETY: a consumed message is the first field of librdkafka's `rd_kafka_msg_t`, which
    // `NativeMsg` mirrors for the version checked above; the message is live while borrowed.
    let native = unsafe { &*ptr };
    // Cross-check the mirror against two public accessors that read the fields just before the
    // headers' bytes; on any mismatch the caller takes librdkafka's parse.
    let mut timestamp_type = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: `message.ptr()` is live; both accessors only read it.
    let (timestamp, broker_id) = unsafe {
        (
            rd::rd_kafka_message_timestamp(message.ptr(), &mut timestamp_type),
            rd::rd_kafka_message_broker_id(message.ptr()),
        )
    };
    if timestamp != native.timestamp
        || broker_id != native.broker_id
        || timestamp_type as std::ffi::c_int != native.timestamp_type
        || !native.headers.is_null()
        || native.raw_headers_len < 1
        || native.raw_headers.is_null()
    {
        return false;
    }
    // SAFETY: the headers' bytes are `raw_headers_len` (>= 1) bytes at `raw_headers`, inside the
    // fetched buffer the message keeps alive. A varint count of zero is the single byte 0.
    unsafe { *native.raw_headers == 0 }
}

/// The headers of `message`, and how many of their names were not UTF-8.
#[allow(unsafe_code)]
pub(crate) fn read_headers(message: &BorrowedMessage<'_>) -> (Headers, usize) {
    let mut headers = Headers::new();
    let mut lossy = 0;
    if surely_without_headers(message) {
        return (headers, 0);
    }
    let mut native: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is a live message for as long as `message` is borrowed; librdkafka
    // parses its headers on demand and hands back a pointer it owns, valid as long as the
    // message.
    let err = unsafe { rd::rd_kafka_message_headers(message.ptr(), &mut native) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        // RD_KAFKA_RESP_ERR__NOENT: the record has no headers.
        return (headers, 0);
    }
    // SAFETY: `native` is the message's header list, checked non-null above.
    let count = unsafe { rd::rd_kafka_header_cnt(native) };
    for idx in 0..count {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `idx` is below the count; the out-pointers are valid locals.
        let err =
            unsafe { rd::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka stores header names NUL-terminated, and values as `size` bytes
        // (`value` null for a null value); both live as long as the message, and are copied
        // before this function returns.
        let (name, value) = unsafe {
            (
                std::ffi::CStr::from_ptr(name).to_bytes(),
                (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size)),
            )
        };
        let name = match std::str::from_utf8(name) {
            Ok(name) => name.to_owned(),
            Err(_) => {
                lossy += 1;
                tracing::warn!(
                    topic = rdkafka::Message::topic(message),
                    partition = rdkafka::Message::partition(message),
                    offset = rdkafka::Message::offset(message),
                    name = ?String::from_utf8_lossy(name),
                    "a header name is not UTF-8; it is kept with its invalid bytes replaced"
                );
                String::from_utf8_lossy(name).into_owned()
            }
        };
        headers.add(name, value.map(<[u8]>::to_vec));
    }
    (headers, lossy)
}

/// The identity of `message`'s topic within its client: equal for two live messages of the same
/// topic, different for different topics. Only an identity: never dereferenced.
#[allow(unsafe_code)]
pub(crate) fn topic_handle(message: &BorrowedMessage<'_>) -> usize {
    // SAFETY: `message.ptr()` is a live message for as long as `message` is borrowed; its
    // public `rkt` field is the topic handle librdkafka keeps while the message lives.
    unsafe { (*message.ptr()).rkt as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedKafka;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::Message;
    use std::time::{Duration, Instant};

    /// The mirrored layout is the linked librdkafka's: a record without headers is told apart
    /// without the parse, and records with headers (a null value among them) still read in full.
    #[test]
    fn records_without_headers_skip_the_parse_and_others_read_in_full() {
        let kafka = EmbeddedKafka::start().unwrap();
        kafka.create_topic("hdrs", 1).unwrap();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .unwrap();
        let with = || {
            OwnedHeaders::new()
                .insert(Header {
                    key: "a",
                    value: Some("1"),
                })
                .insert(Header::<&[u8]> {
                    key: "b",
                    value: None,
                })
        };
        for i in 0..6 {
            let mut record = BaseRecord::<str, str>::to("hdrs").key("k").payload("v");
            if i % 2 == 1 {
                record = record.headers(with());
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", "hdrs")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["hdrs"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = 0;
        while seen < 6 && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap();
            let has_headers = m.offset() % 2 == 1;
            assert_eq!(
                surely_without_headers(&m),
                !has_headers,
                "offset {}: the mirrored rd_kafka_msg_t does not match the linked librdkafka",
                m.offset()
            );
            let (headers, lossy) = read_headers(&m);
            assert_eq!(lossy, 0);
            let read: Vec<(String, Option<Vec<u8>>)> = headers
                .iter()
                .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                .collect();
            let want = if has_headers {
                vec![
                    ("a".to_owned(), Some(b"1".to_vec())),
                    ("b".to_owned(), None),
                ]
            } else {
                vec![]
            };
            assert_eq!(read, want, "offset {}", m.offset());
            seen += 1;
        }
        assert_eq!(seen, 6, "every record consumed");
    }
}
