//! Randomized decoding tests of the public windowed-key serdes, byte-compatible with Kafka's
//! `WindowedSerdes` (time windows: key then start; session windows: key, end, start): arbitrary
//! and damaged bytes (truncated, bit-flipped, length prefixes pointing past the end) give a
//! value or a typed error, never a panic, and a value they give encodes back to the same bytes;
//! what decodes prints as Kafka's `Windowed.toString()`. The crate-private serdes (table changes,
//! joins, suppression) have the same tests in their own files (`decoding_tests` modules).
//!
//! Case counts: `KSTREAMS_FUZZ_CASES` per property (default 512). Millions on demand:
//! `KSTREAMS_FUZZ_CASES=1000000 cargo test --release -p streams-dsl --test decoding`.

use std::time::Duration;

use proptest::prelude::*;
use streams_dsl::prelude::*;
use streams_dsl::{Window, Windowed, WindowedSerdes};

#[allow(dead_code)]
#[path = "../src/fuzz.rs"]
mod fuzz;

use fuzz::{apply, bytes, check_canonical, check_round_trip, config, damage};

fn check_windowed(input: &[u8]) -> Result<(), TestCaseError> {
    let time = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_secs(60));
    let session = WindowedSerdes::session_windowed(Serdes::string());
    let longs = WindowedSerdes::time_windowed(Serdes::i64(), Duration::from_millis(1));
    check_canonical("time-windowed string", &time, input)?;
    check_canonical("session-windowed string", &session, input)?;
    check_canonical("time-windowed i64", &longs, input)?;
    if let Ok(w) = time.deserialize(input) {
        prop_assert_eq!(w.window.end, w.window.start.saturating_add(60_000));
        prop_assert_eq!(
            w.to_string(),
            format!("[{}@{}/{}]", w.key, w.window.start, w.window.end)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn windowed_serdes_take_arbitrary_bytes(input in bytes(40)) {
        check_windowed(&input)?;
    }

    #[test]
    fn windowed_serdes_take_damaged_encodings(
        key in ".{0,8}",
        start in any::<i64>(),
        end in any::<i64>(),
        damage in damage(),
    ) {
        let time = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_secs(60));
        let session = WindowedSerdes::session_windowed(Serdes::string());
        let t = Windowed::new(key.clone(), Window::new(start, start.saturating_add(60_000)));
        let t = check_round_trip("time-windowed", &time, &t)?;
        check_windowed(&apply(&t, &damage))?;
        let s = check_round_trip("session-windowed", &session, &Windowed::new(key, Window::new(start, end)))?;
        check_windowed(&apply(&s, &damage))?;
    }
}

/// Too short for the window's times: an error that says which serde.
#[test]
fn short_windowed_keys_name_the_window_kind() {
    let session = WindowedSerdes::session_windowed(Serdes::string());
    let err = session.deserialize(&[0; 15]).unwrap_err();
    assert!(err.to_string().contains("session window"), "{err}");
    let time = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_secs(1));
    let err = time.deserialize(&[0; 7]).unwrap_err();
    assert!(err.to_string().contains("time window"), "{err}");
}
