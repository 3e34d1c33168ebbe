//! Settings of the randomized decoding tests (test builds only): how many cases each property
//! runs, `KSTREAMS_FUZZ_CASES` (default 512; millions on demand).

use proptest::test_runner::Config;

/// The proptest configuration of a decoding property.
pub(crate) fn config() -> Config {
    Config {
        cases: std::env::var("KSTREAMS_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..Config::default()
    }
}
