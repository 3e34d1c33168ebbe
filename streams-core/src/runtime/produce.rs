//! Handing records to librdkafka through topic handles, where rdkafka's safe `send` falls short
//! (with [`super::consumed`], the crate's `unsafe` code).
//!
//! rdkafka's `send` makes a C string of the topic name for every record, and librdkafka then
//! finds the topic by that name under the client-wide write lock: together about a fifth of the
//! cost of producing one record in the word count's profile, paid for every word. A
//! [`TopicHandles`] keeps one librdkafka topic handle per topic a producer writes to, made on
//! the first record for it, and [`TopicHandles::produce`] passes the handle with the record
//! (`rd_kafka_produceva` with `RD_KAFKA_VTYPE_RKT`). Everything else is as with `send`: the key
//! and value are copied, the partition is the given one or the configured partitioner's choice,
//! the delivery opaque comes back in the producer context's delivery report.
//!
//! The handles must be released before their client is destroyed: [`TopicHandles`] is dropped
//! first by the producer that owns both (it is declared before the client).

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Mutex;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::record::Headers;

/// One librdkafka topic handle (an application reference, released on drop).
struct Handle(NonNull<rd::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles may be used and released from any thread.
#[allow(unsafe_code)]
unsafe impl Send for Handle {}

impl Drop for Handle {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released once, here, while
        // its client still exists (see the module docs).
        unsafe { rd::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// A record for [`TopicHandles::produce`].
pub(crate) struct Produced<'a> {
    pub(crate) topic: &'a str,
    /// `None`: the configured partitioner chooses.
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    /// Epoch milliseconds; zero or negative: librdkafka stamps the current time (as with
    /// rdkafka's `send`, which passes 0 for none).
    pub(crate) timestamp: i64,
    pub(crate) headers: &'a Headers,
    /// Comes back with the record's delivery report (rdkafka's `usize` delivery opaque).
    pub(crate) opaque: usize,
}

/// A producer's topic handles, by topic name; see the [module docs](self).
#[derive(Default)]
pub(crate) struct TopicHandles {
    handles: Mutex<HashMap<String, Handle, foldhash::fast::RandomState>>,
}

impl TopicHandles {
    /// Hands `record` to `client`'s queue. Errors are librdkafka's refusals (a full queue, a
    /// record too large, a partition that does not exist), as rdkafka's `send` reports them.
    #[allow(unsafe_code)]
    pub(crate) fn produce<C: ClientContext>(
        &self,
        client: &Client<C>,
        record: &Produced<'_>,
    ) -> Result<(), KafkaError> {
        let rk = client.native_ptr();
        let rkt = self.handle(rk, record.topic)?;
        let headers = native_headers(record.headers)?;
        let mem = |bytes: Option<&[u8]>| match bytes {
            Some(b) => rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: b.as_ptr() as *mut c_void,
                size: b.len(),
            },
            None => rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: std::ptr::null_mut(),
                size: 0,
            },
        };
        use rd::rd_kafka_vtype_t as T;
        use rd::rd_kafka_vu_s__bindgen_ty_1 as U;
        let vu = |vtype: T, u: U| rd::rd_kafka_vu_t { vtype, u };
        let vus = [
            vu(T::RD_KAFKA_VTYPE_RKT, U { rkt }),
            vu(
                T::RD_KAFKA_VTYPE_PARTITION,
                U {
                    i32_: record.partition.unwrap_or(-1), // RD_KAFKA_PARTITION_UA,
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_MSGFLAGS,
                U {
                    i: rd::RD_KAFKA_MSG_F_COPY as std::ffi::c_int,
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_VALUE,
                U {
                    mem: mem(record.value),
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_KEY,
                U {
                    mem: mem(record.key),
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_OPAQUE,
                U {
                    ptr: record.opaque as *mut c_void,
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_TIMESTAMP,
                U {
                    i64_: record.timestamp.max(0),
                },
            ),
            vu(T::RD_KAFKA_VTYPE_HEADERS, U { headers }),
        ];
        // Without headers the last entry is left out (a null header list is not accepted).
        let count = if headers.is_null() { 7 } else { 8 };
        // SAFETY: `rk` is the live client borrowed for this call, and `rkt` one of its topic
        // handles; the key and value are copied (RD_KAFKA_MSG_F_COPY) before this returns; the
        // header list is ours until librdkafka accepts the record.
        let error = unsafe { rd::rd_kafka_produceva(rk, vus.as_ptr(), count) };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: `error` is the error librdkafka returned, read and destroyed once; a refused
        // record's header list stays ours to destroy.
        let code = unsafe {
            let code = rd::rd_kafka_error_code(error);
            rd::rd_kafka_error_destroy(error);
            if !headers.is_null() {
                rd::rd_kafka_headers_destroy(headers);
            }
            code
        };
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(code)))
    }

    /// The handle of `topic`, made on first use.
    #[allow(unsafe_code)]
    fn handle(
        &self,
        rk: *mut rd::rd_kafka_t,
        topic: &str,
    ) -> Result<*mut rd::rd_kafka_topic_t, KafkaError> {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = handles.get(topic) {
            return Ok(handle.0.as_ptr());
        }
        let name = CString::new(topic).map_err(KafkaError::Nul)?;
        // SAFETY: `rk` is a live client and `name` a NUL-terminated string that outlives the
        // call; a null configuration takes the client's default topic configuration.
        let rkt = unsafe { rd::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
        let Some(rkt) = NonNull::new(rkt) else {
            // SAFETY: reads the calling thread's last librdkafka error.
            let code = unsafe { rd::rd_kafka_last_error() };
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(code)));
        };
        handles.insert(topic.to_owned(), Handle(rkt));
        Ok(rkt.as_ptr())
    }
}

/// A librdkafka header list holding `headers`, or null for none.
#[allow(unsafe_code)]
fn native_headers(headers: &Headers) -> Result<*mut rd::rd_kafka_headers_t, KafkaError> {
    if headers.is_empty() {
        return Ok(std::ptr::null_mut());
    }
    // SAFETY: a new list, ours until handed to librdkafka with the record.
    let list = unsafe { rd::rd_kafka_headers_new(headers.len()) };
    for (name, value) in headers.iter() {
        let (value_ptr, value_len) = match value {
            Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the name and value are copied into the list; their lengths are given, so
        // neither needs a NUL.
        let err = unsafe {
            rd::rd_kafka_header_add(
                list,
                name.as_ptr().cast(),
                name.len() as isize,
                value_ptr,
                value_len,
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: the list is still ours.
            unsafe { rd::rd_kafka_headers_destroy(list) };
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(err)));
        }
    }
    Ok(list)
}
