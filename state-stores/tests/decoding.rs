//! Randomized decoding tests: every decoder of the state layer is fed arbitrary bytes and
//! structured-but-corrupted ones (valid encodings truncated, bit-flipped, with length prefixes
//! pointing past the end or claiming gigabytes) and must return a value or a typed error: never
//! panic, never ask the allocator for memory a length prefix claims but the input cannot hold, and
//! never accept garbage as a different value (whatever decodes re-encodes to the same value).
//! Covered: the built-in serdes, the window and session key encodings, changelog restoration of
//! every store kind (in memory and RocksDB), the committed changelog offset and observed stream
//! time a RocksDB store keeps, and the state directory's `kstreams-process-id` file.
//!
//! Case counts: `KSTREAMS_FUZZ_CASES` per property (default 512; properties that open RocksDB
//! stores run an eighth of it, at least 16). Millions on demand:
//! `KSTREAMS_FUZZ_CASES=1000000 cargo test --release -p state-stores --test decoding`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use state_stores::keys::{decode_session_key, decode_window_key, session_key, window_key};
use state_stores::serdes::{Serde, Serdes};
use state_stores::state_dir::StateDirectory;
use state_stores::{
    ChangelogRecord, KeyValueBytesStore, RocksDbMemory, SessionBytesStore, SessionWindow,
    StateStore, StoreBuilder, StoreError, WindowBytesStore,
};

// ---------------------------------------------------------------------------------------------
// Allocation bound: a counting wrapper around the system allocator.

/// The system allocator, noting the largest single request of each thread. Requests over 2 GiB
/// are refused (the process aborts with "memory allocation failed") so a decoder that believes a
/// corrupt length prefix cannot take the machine's memory down with it.
struct Tracking;

const REFUSED: usize = 1 << 31;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) -> bool {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    size <= REFUSED
}

// The one way to see what a decoder asks the allocator for; it only counts and delegates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed through unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f`; returns its result and the largest single allocation it asked for.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// What decoding `input` bytes may ask for at once: room for serde's capped pre-allocation
/// (1 MiB) plus a small multiple of the input.
fn allowed(input: usize) -> usize {
    (1 << 20) + 16 * input
}

// ---------------------------------------------------------------------------------------------
// Case counts and corruption.

fn cases() -> u32 {
    std::env::var("KSTREAMS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    }
}

/// For properties that open RocksDB stores (tens of milliseconds per case).
fn rocksdb_config() -> Config {
    Config {
        cases: (cases() / 8).max(16),
        ..config()
    }
}

/// Length prefixes that lie: past the end, `u32::MAX`, bincode varints claiming 4 GiB or 2^64.
fn lying_length() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0xff, 0xff, 0xff, 0xff]),
        Just(vec![0x7f, 0xff, 0xff, 0xff]),
        Just(vec![0x00, 0x01, 0x00, 0x00]),
        Just(vec![0xfc, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xfd, 0, 0, 0, 0, 1, 0, 0, 0]),
        Just(vec![0xfb, 0xff, 0xff]),
        proptest::collection::vec(any::<u8>(), 1..10),
    ]
}

/// One way of damaging an encoding; positions are taken modulo the encoding's length.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    FlipBit(usize, u8),
    Insert(usize, Vec<u8>),
    Overwrite(usize, Vec<u8>),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Damage::FlipBit(i, b)),
        (any::<usize>(), lying_length()).prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<usize>(), lying_length()).prop_map(|(i, b)| Damage::Overwrite(i, b)),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Damage::Append),
    ]
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
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

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

// ---------------------------------------------------------------------------------------------
// Serdes.

/// Decodes `input` with `serde` within the allocation bound. A value it yields must survive
/// encode → decode → encode unchanged; with `canonical`, its encoding must be `input` itself.
fn check_serde<T, S: Serde<T>>(
    name: &str,
    serde: &S,
    input: &[u8],
    canonical: bool,
) -> Result<bool, TestCaseError> {
    let (decoded, largest) = largest_allocation(|| serde.deserialize(input));
    prop_assert!(
        largest <= allowed(input.len()),
        "{name}: decoding {} bytes asked for {largest} bytes at once",
        input.len()
    );
    let Ok(value) = decoded else {
        return Ok(false);
    };
    let encoded = serde
        .serialize(&value)
        .map_err(|e| TestCaseError::fail(format!("{name}: re-encoding a decoded value: {e}")))?;
    if canonical {
        prop_assert_eq!(
            &encoded,
            &input.to_vec(),
            "{}: a different value decoded",
            name
        );
    }
    let again = serde
        .deserialize(&encoded)
        .map_err(|e| TestCaseError::fail(format!("{name}: decoding its own encoding: {e}")))?;
    let twice = serde
        .serialize(&again)
        .map_err(|e| TestCaseError::fail(format!("{name}: re-encoding: {e}")))?;
    prop_assert_eq!(twice, encoded, "{}: encode/decode is not stable", name);
    Ok(true)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
    price: f64,
    tags: Vec<String>,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Event {
    Created(Order),
    Renamed { id: u64, name: String },
    Counts(BTreeMap<String, Vec<i64>>),
    Deleted,
}

fn order() -> impl Strategy<Value = Order> {
    (
        any::<u64>(),
        ".{0,12}",
        any::<f64>(),
        proptest::collection::vec(".{0,6}", 0..4),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(|(id, item, price, tags, note)| Order {
            id,
            item,
            price,
            tags,
            note,
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        order().prop_map(Event::Created),
        (any::<u64>(), ".{0,12}").prop_map(|(id, name)| Event::Renamed { id, name }),
        proptest::collection::btree_map(
            ".{0,6}",
            proptest::collection::vec(any::<i64>(), 0..4),
            0..4
        )
        .prop_map(Event::Counts),
        Just(Event::Deleted),
    ]
}

/// Every built-in serde on `input`.
fn check_builtins(input: &[u8]) -> Result<(), TestCaseError> {
    check_serde("string", &Serdes::string(), input, true)?;
    check_serde("bytes", &Serdes::bytes(), input, true)?;
    check_serde("i32", &Serdes::i32(), input, true)?;
    check_serde("i64", &Serdes::i64(), input, true)?;
    check_serde("f64", &Serdes::f64(), input, true)?;
    prop_assert!(check_serde("unit", &Serdes::unit(), input, false)?);
    check_serde(
        "option(string)",
        &Serdes::option(Serdes::string()),
        input,
        true,
    )?;
    check_serde("option(i64)", &Serdes::option(Serdes::i64()), input, true)?;
    check_serde("json<Order>", &Serdes::json::<Order>(), input, false)?;
    check_serde("json<Event>", &Serdes::json::<Event>(), input, false)?;
    check_serde(
        "json<Value>",
        &Serdes::json::<serde_json::Value>(),
        input,
        false,
    )?;
    check_serde(
        "bincode<String>",
        &Serdes::bincode::<String>(),
        input,
        false,
    )?;
    check_serde(
        "bincode<Vec<String>>",
        &Serdes::bincode::<Vec<String>>(),
        input,
        false,
    )?;
    check_serde("bincode<Order>", &Serdes::bincode::<Order>(), input, false)?;
    check_serde("bincode<Event>", &Serdes::bincode::<Event>(), input, false)?;
    check_serde(
        "bincode<Vec<u64>>",
        &Serdes::bincode::<Vec<u64>>(),
        input,
        false,
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn builtin_serdes_take_arbitrary_bytes(input in bytes(64)) {
        check_builtins(&input)?;
    }

    #[test]
    fn builtin_serdes_take_damaged_encodings(e in event(), o in order(), damage in damage()) {
        let encodings = [
            Serdes::bincode::<Event>().serialize(&e),
            Serdes::bincode::<Order>().serialize(&o),
            Serdes::json::<Event>().serialize(&e),
            Serdes::bincode::<String>().serialize(&o.item),
            Serdes::bincode::<Vec<String>>().serialize(&o.tags),
        ];
        for encoding in encodings {
            let encoding = encoding.map_err(|err| TestCaseError::fail(err.to_string()))?;
            check_builtins(&apply(&encoding, &damage))?;
        }
    }

    #[test]
    fn serde_encodings_round_trip(e in event(), s in ".*", l in any::<i64>(), d in any::<f64>()) {
        let bin = Serdes::bincode::<Event>();
        let bytes = bin.serialize(&e).map_err(|err| TestCaseError::fail(err.to_string()))?;
        let back = bin.deserialize(&bytes).map_err(|err| TestCaseError::fail(err.to_string()))?;
        // NaN prices compare unequal: compare encodings.
        prop_assert_eq!(bin.serialize(&back).ok(), Some(bytes));
        let json = Serdes::json::<Event>();
        let text = json.serialize(&e).map_err(|err| TestCaseError::fail(err.to_string()))?;
        // JSON writes non-finite floats as null, which reads back as an error: that is JSON's
        // limit, not a decoder's; finite values must round-trip.
        if let Ok(back) = json.deserialize(&text) {
            prop_assert_eq!(json.serialize(&back).ok(), Some(text));
        }
        prop_assert_eq!(Serdes::string().deserialize(&Serdes::string().serialize(&s).unwrap_or_default()).ok(), Some(s));
        prop_assert_eq!(Serdes::i64().deserialize(&l.to_be_bytes()).ok(), Some(l));
        prop_assert_eq!(Serdes::f64().deserialize(&d.to_be_bytes()).ok().map(f64::to_bits), Some(d.to_bits()));
    }
}

/// Regression: a bincode string whose varint length claims 4 GiB (`0xfc` + `u32::MAX`) made
/// bincode allocate 4 GiB of zeroes before finding the 5-byte input short.
#[test]
fn bincode_string_claiming_four_gib_is_refused_without_allocating_it() {
    let input = [0xfc, 0xff, 0xff, 0xff, 0xff];
    let (result, largest) = largest_allocation(|| Serdes::bincode::<String>().deserialize(&input));
    let err = result.expect_err("a 4 GiB string in 5 bytes");
    assert!(largest <= allowed(input.len()), "asked for {largest} bytes");
    assert!(err.to_string().contains("5-byte input"), "{err}");
}

/// Regression: a bincode string whose varint length is `u64::MAX` panicked ("capacity overflow").
#[test]
fn bincode_string_claiming_u64_max_is_an_error() {
    let mut input = vec![0xfd];
    input.extend_from_slice(&[0xff; 8]);
    let (result, largest) = largest_allocation(|| Serdes::bincode::<Order>().deserialize(&input));
    assert!(result.is_err());
    assert!(largest <= allowed(input.len()), "asked for {largest} bytes");
    // The same length prefix inside a struct, after a valid `id`.
    let mut order = vec![7];
    order.extend_from_slice(&input);
    assert!(Serdes::bincode::<Order>().deserialize(&order).is_err());
}

// ---------------------------------------------------------------------------------------------
// Window and session keys.

fn check_keys(input: &[u8]) -> Result<(), TestCaseError> {
    if let Some(w) = decode_window_key(input) {
        prop_assert_eq!(window_key(&w.key, w.start), input.to_vec());
    }
    if let Some(s) = decode_session_key(input) {
        prop_assert_eq!(session_key(&s.key, s.window), input.to_vec());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn keys_take_arbitrary_bytes(input in bytes(48)) {
        check_keys(&input)?;
    }

    #[test]
    fn keys_take_damaged_encodings(k in bytes(16), s in any::<i64>(), e in any::<i64>(), damage in damage()) {
        let w = window_key(&k, s);
        let sk = session_key(&k, SessionWindow { start: s, end: e });
        prop_assert_eq!(decode_window_key(&w).map(|d| (d.key, d.start)), Some((k.clone(), s)));
        prop_assert_eq!(decode_session_key(&sk).map(|d| (d.key, d.window)), Some((k, SessionWindow { start: s, end: e })));
        check_keys(&apply(&w, &damage))?;
        check_keys(&apply(&sk, &damage))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Changelog restoration.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    KeyValue,
    Window,
    Session,
}

/// A changelog key: a valid window or session key (times near each other, or anywhere), or
/// arbitrary or damaged bytes.
fn changelog_key() -> impl Strategy<Value = Vec<u8>> {
    let time = prop_oneof![3 => 0i64..200_000, 1 => any::<i64>()];
    prop_oneof![
        3 => (bytes(4), time.clone()).prop_map(|(k, t)| window_key(&k, t)),
        3 => (bytes(4), time.clone(), 0i64..50_000)
            .prop_map(|(k, s, len)| session_key(&k, SessionWindow { start: s, end: s.saturating_add(len) })),
        1 => bytes(24),
        1 => (bytes(4), time, damage()).prop_map(|(k, t, d)| apply(&window_key(&k, t), &d)),
    ]
}

fn changelog() -> impl Strategy<Value = Vec<ChangelogRecord>> {
    proptest::collection::vec((changelog_key(), proptest::option::of(bytes(6))), 0..12).prop_map(
        |records| {
            records
                .into_iter()
                .enumerate()
                .map(|(i, (key, value))| ChangelogRecord {
                    offset: 100 + i as i64,
                    key,
                    value,
                })
                .collect()
        },
    )
}

const RETENTION: i64 = 60_000;

enum AnyStore {
    KeyValue(Box<dyn KeyValueBytesStore>),
    Window(Box<dyn WindowBytesStore>),
    Session(Box<dyn SessionBytesStore>),
}

impl AnyStore {
    fn build(kind: Kind, builder: StoreBuilder) -> Result<Self, StoreError> {
        Ok(match kind {
            Kind::KeyValue => AnyStore::KeyValue(builder.build_key_value()?),
            Kind::Window => AnyStore::Window(builder.build_window(RETENTION, Some(10_000))?),
            Kind::Session => AnyStore::Session(builder.build_session(RETENTION, Some(10_000))?),
        })
    }

    fn state(&mut self) -> &mut dyn StateStore {
        match self {
            AnyStore::KeyValue(s) => &mut **s,
            AnyStore::Window(s) => &mut **s,
            AnyStore::Session(s) => &mut **s,
        }
    }
}

/// Restores `records` into a fresh store of `kind`: an error must be `CorruptChangelog` for the
/// first record whose key is not of the kind, naming the store and offset; success must leave
/// every record's latest value readable (within retention).
fn check_restore(
    kind: Kind,
    builder: StoreBuilder,
    records: &[ChangelogRecord],
) -> Result<(), TestCaseError> {
    let mut store =
        AnyStore::build(kind, builder).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let name = store.state().name().to_owned();
    let result = store.state().restore_batch(records);
    let time_of = |key: &[u8]| match kind {
        Kind::KeyValue => Some(0),
        Kind::Window => decode_window_key(key).map(|w| w.start),
        Kind::Session => decode_session_key(key).map(|s| s.window.end),
    };
    let first_bad = records.iter().find(|r| time_of(&r.key).is_none());
    match (result, first_bad) {
        (Ok(()), None) => {}
        (Err(StoreError::CorruptChangelog { store: s, offset, reason }), Some(bad)) => {
            prop_assert_eq!(&s, &name);
            prop_assert_eq!(offset, bad.offset, "{}", reason);
        }
        (result, bad) => {
            return Err(TestCaseError::fail(format!(
                "{kind:?} store `{name}`: restore gave {result:?} where the first bad record is {bad:?}"
            )))
        }
    }
    if first_bad.is_some() {
        return Ok(());
    }
    // The latest value of each key, and the stream time the batch reached.
    let mut latest: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
    for r in records {
        latest.insert(&r.key, r.value.as_deref());
    }
    let observed = records
        .iter()
        .filter_map(|r| time_of(&r.key))
        .max()
        .unwrap_or(i64::MIN);
    let floor = state_stores::store::retention_floor(observed, RETENTION);
    for (key, value) in latest {
        let found = match &store {
            AnyStore::KeyValue(s) => s.get(key),
            AnyStore::Window(s) => {
                let Some(w) = decode_window_key(key) else {
                    continue;
                };
                if w.start < floor {
                    continue;
                }
                s.fetch(&w.key, w.start)
            }
            AnyStore::Session(s) => {
                let Some(sk) = decode_session_key(key) else {
                    continue;
                };
                if sk.window.end < floor {
                    continue;
                }
                s.fetch_session(&sk.key, sk.window)
            }
        }
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(found.as_deref(), value, "{:?} store, key {:?}", kind, key);
    }
    store
        .state()
        .close()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::KeyValue),
        Just(Kind::Window),
        Just(Kind::Session)
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn in_memory_stores_restore_arbitrary_changelogs(kind in kind(), records in changelog()) {
        check_restore(kind, StoreBuilder::in_memory("restored"), &records)?;
    }
}

proptest! {
    #![proptest_config(rocksdb_config())]

    #[test]
    fn rocksdb_stores_restore_arbitrary_changelogs(kind in kind(), records in changelog()) {
        let root = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let memory = RocksDbMemory::new(16 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_restore(kind, StoreBuilder::rocksdb("restored", root.path().join("s"), &memory), &records)?;
    }
}

// ---------------------------------------------------------------------------------------------
// What a RocksDB store keeps about itself: the committed changelog offset, the observed stream time.

const OFFSET_KEY: &[u8] = b"kstreams.changelog-offset";
const OBSERVED_KEY: &[u8] = b"kstreams.observed-stream-time";

/// Creates a store of `kind`, writes `value` under `key` in its metadata, and reopens it: eight
/// bytes open (and read back as written), anything else is a corrupt checkpoint naming the store.
fn check_metadata(kind: Kind, key: &[u8], value: &[u8]) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let root = tempfile::tempdir().map_err(|e| fail(&e))?;
    let memory = RocksDbMemory::new(16 << 20).map_err(|e| fail(&e))?;
    let path = root.path().join("meta");
    let builder = || StoreBuilder::rocksdb("tallies", &path, &memory);
    AnyStore::build(kind, builder())
        .and_then(|mut s| s.state().close())
        .map_err(|e| fail(&e))?;
    {
        let mut options = rocksdb::Options::default();
        options.create_missing_column_families(true);
        let families = rocksdb::DB::list_cf(&options, &path).map_err(|e| fail(&e))?;
        let db = rocksdb::DB::open_cf(&options, &path, &families).map_err(|e| fail(&e))?;
        match db.cf_handle("kstreams.meta") {
            Some(meta) => db.put_cf(meta, key, value),
            None => db.put(key, value),
        }
        .map_err(|e| fail(&e))?;
    }
    match AnyStore::build(kind, builder()) {
        Ok(mut store) => {
            prop_assert_eq!(value.len(), 8, "{:?}: {} bytes accepted", kind, value.len());
            let written = i64::from_be_bytes(value.try_into().map_err(|_| fail(&"8 bytes"))?);
            if key == OFFSET_KEY {
                let offset = store.state().committed_offset().map_err(|e| fail(&e))?;
                prop_assert_eq!(offset, Some(written));
            } else {
                let observed = match &store {
                    AnyStore::Window(s) => s.observed_stream_time(),
                    AnyStore::Session(s) => s.observed_stream_time(),
                    AnyStore::KeyValue(_) => written,
                };
                prop_assert_eq!(observed, written);
            }
            store.state().close().map_err(|e| fail(&e))?;
        }
        Err(err) => {
            prop_assert!(value.len() != 8, "{:?}: 8 bytes refused: {}", kind, err);
            prop_assert!(
                matches!(err, StoreError::CorruptCheckpoint { .. }),
                "{:?}: {:?}",
                kind,
                err
            );
            prop_assert!(err.to_string().contains("`tallies`"), "{}", err);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(rocksdb_config())]

    #[test]
    fn committed_offsets_of_any_bytes_open_or_are_corrupt_checkpoints(kind in kind(), value in bytes(12)) {
        check_metadata(kind, OFFSET_KEY, &value)?;
    }

    #[test]
    fn observed_stream_times_of_any_bytes_open_or_are_corrupt_checkpoints(
        kind in prop_oneof![Just(Kind::Window), Just(Kind::Session)],
        value in bytes(12),
    ) {
        check_metadata(kind, OBSERVED_KEY, &value)?;
    }
}

/// Regression: a malformed observed stream time was a configuration error, which the runtime
/// does not recover from (it wipes and rebuilds only corrupt checkpoints): the task failed on
/// every restart.
#[test]
fn a_malformed_observed_stream_time_is_a_corrupt_checkpoint() {
    for kind in [Kind::Window, Kind::Session] {
        let result = check_metadata(kind, OBSERVED_KEY, b"xyz");
        assert!(result.is_ok(), "{kind:?}: {result:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The state directory's process id file.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_process_id_file_yields_a_valid_id(
        content in prop_oneof![bytes(40), "[ -~\n\t]{0,40}".prop_map(String::into_bytes)],
    ) {
        let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
        let root = tempfile::tempdir().map_err(|e| fail(&e))?;
        let dir = StateDirectory::new(root.path(), "app").map_err(|e| fail(&e))?;
        let file = dir.path().join("kstreams-process-id");
        std::fs::write(&file, &content).map_err(|e| fail(&e))?;
        let claim = dir.claim_process("fresh-id").map_err(|e| fail(&e))?;
        let recorded = std::str::from_utf8(&content).map(str::trim).ok();
        let valid = recorded.filter(|r| state_stores::state_dir::validate_name("process id", r).is_ok());
        match valid {
            Some(id) => prop_assert_eq!(claim.id(), id),
            None => {
                prop_assert_eq!(claim.id(), "fresh-id");
                prop_assert_eq!(std::fs::read(&file).map_err(|e| fail(&e))?, b"fresh-id".to_vec());
            }
        }
    }
}
