//! Reading consumed records out of librdkafka, where rdkafka's safe accessors fall short (with
//! [`super::produce`], the crate's `unsafe` code).
//!
//! Headers: rdkafka's safe header accessors turn each header name into a `&str` with an
//! `unwrap`, so one record whose header name is not UTF-8 would panic the stream thread on every
//! restart: a poison record nothing could skip. [`read_headers`] reads them through librdkafka's
//! C API instead and keeps such a name as lossy UTF-8 (invalid bytes become U+FFFD), logged and
//! counted; the record is processed like any other.
//!
//! Topics: rdkafka's `Message::topic` measures and checks the name's UTF-8 on every call, a
//! noticeable cost per record on the hot path. [`topic_handle`] gives librdkafka's handle of the
//! record's topic instead: one handle per topic and client, so comparing handles tells whether
//! two records of one poll came from the same topic without reading either name.

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

use crate::record::Headers;

/// The headers of `message`, and how many of their names were not UTF-8.
#[allow(unsafe_code)]
pub(crate) fn read_headers(message: &BorrowedMessage<'_>) -> (Headers, usize) {
    let mut headers = Headers::new();
    let mut lossy = 0;
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
