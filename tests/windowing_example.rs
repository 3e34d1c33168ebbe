//! The windowing example's command-line interface, as other tools drive it: on the embedded
//! broker (no Kafka needed), and against a real broker with out-of-order input, stopped and
//! killed mid-run, under both processing guarantees, emitting exactly one final count per key
//! and window.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::windowing::{
    expected_window_counts, flush_events, produce_events, producer, read_output, windowing_events,
};
use support::wordcount::wait_caught_up;
use support::{real_kafka, unique, Cluster, RealKafka};

/// `target/<profile>/examples/windowing`, which `cargo test` builds with the tests.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join("windowing");
    assert!(
        path.exists(),
        "{} is missing; `cargo test` builds it",
        path.display()
    );
    path
}

fn run_embedded(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(example())
        .args(["--events", "4000", "--partitions", "2"])
        .args(["--state-dir", dir.path().to_str().expect("utf-8 path")])
        .args(extra)
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn embedded_run_prints_the_windows_and_checks_them_against_the_input() {
    let stdout = run_embedded(&[]);
    assert!(
        stdout.contains("| window start (UTC) | key | count |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 2026-01-01 00:00:00 | sensor-"),
        "{stdout}"
    );
    assert!(
        stdout.contains("checked: every window's final count, once"),
        "{stdout}"
    );
    let hopping = run_embedded(&[
        "--emit",
        "updates",
        "--advance-ms",
        "20000",
        "--grace-ms",
        "1000",
    ]);
    assert!(
        hopping.contains("| 2026-01-01 00:00:20 | sensor-"),
        "{hopping}"
    );
    assert!(
        hopping.contains("checked: every window's latest count"),
        "{hopping}"
    );
}

/// The embedded broker keeps no transactional offset commits: the run must still see its input
/// processed and committed, and end with every final count once.
#[test]
fn embedded_run_under_exactly_once_v2_checks_out() {
    let stdout = run_embedded(&["--processing-guarantee", "exactly_once_v2"]);
    assert!(
        stdout.contains("checked: every window's final count, once"),
        "{stdout}"
    );
}

#[test]
fn a_bad_advance_is_refused() {
    let out = Command::new(example())
        .args(["--window-ms", "1000", "--advance-ms", "2000"])
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--advance-ms"));
}

/// One run of the example against the broker.
struct Instance {
    child: Child,
}

impl Instance {
    fn start(kafka: &RealKafka, args: &[String], state: &Path, log: &Path) -> Instance {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(example())
            .args(["--bootstrap-servers", &kafka.bootstrap()])
            .args(args)
            .args(["--state-dir", state.to_str().expect("utf-8 path")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the example");
        Instance { child }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the example did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status {status:?}");
    }

    /// SIGKILL: no commit, no clean close.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

/// Feeds the example out-of-order events in three parts; stops it gracefully after the first
/// and kills it during (exactly-once) or after (at-least-once) the second; checks that every
/// closed window was emitted exactly once with its count.
fn final_counts_exactly_once_across_restarts(guarantee: &str) {
    let kafka = real_kafka();
    let partitions = 3;
    let (input, output, app) = (unique("win-in"), unique("win-out"), unique("win-app"));
    let state = tempfile::tempdir().expect("state dir");
    let log = state.path().join("example.log");
    let (window, advance, grace) = (10_000u64, 5_000u64, 2_000u64);
    let mut args: Vec<String> = [
        "--input-topic",
        &input,
        "--output-topic",
        &output,
        "--application-id",
        &app,
        "--window-ms",
        "10000",
        "--advance-ms",
        "5000",
        "--grace-ms",
        "2000",
        "--processing-guarantee",
        guarantee,
        "--partitions",
        "3",
        // A killed member leaves the group after 6 s, and its open transaction is aborted
        // after 10 s, rather than 45 s and 60 s.
        "--config",
        "consumer.group.protocol=classic",
        "--config",
        "consumer.session.timeout.ms=6000",
        "--config",
        "consumer.heartbeat.interval.ms=1000",
        "--config",
        "producer.transaction.timeout.ms=10000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if guarantee == "at_least_once" {
        args.extend(["--commit-interval-ms".to_owned(), "300".to_owned()]);
    }

    // 9000 events 20 ms apart (3 minutes of event time), up to 4 s early: many out of order,
    // some later than the 2 s grace period.
    let mut events = windowing_events(9_000, 12, partitions, 1_700_000_000_000, 20, 4_000, 11);
    events.extend(flush_events(&events, partitions, window, grace));
    let (first, rest) = events.split_at(3_000);
    let (second, third) = rest.split_at(3_000);
    let producer = producer(&kafka);
    let caught_up = |timeout| {
        wait_caught_up(
            &kafka,
            &app,
            std::slice::from_ref(&input),
            partitions,
            timeout,
        )
    };

    // The example creates its topics; then the first part, and a graceful stop.
    let a = Instance::start(&kafka, &args, state.path(), &log);
    support::wait_for_topic(&kafka.bootstrap(), &input, partitions);
    produce_events(&producer, &input, first);
    caught_up(Duration::from_secs(60));
    a.stop();

    // The second part; the instance is killed, mid-processing under exactly-once.
    let b = Instance::start(&kafka, &args, state.path(), &log);
    if guarantee == "exactly_once_v2" {
        let (early, late) = second.split_at(second.len() / 2);
        produce_events(&producer, &input, early);
        std::thread::sleep(Duration::from_millis(1_500));
        produce_events(&producer, &input, late);
        std::thread::sleep(Duration::from_millis(300));
        b.kill();
    } else {
        // Under at-least-once, records processed after the last commit are processed again
        // after a crash (and would count twice): kill it once it has committed everything.
        produce_events(&producer, &input, second);
        caught_up(Duration::from_secs(60));
        b.kill();
    }

    // The rest, with events that close every window; then a graceful stop.
    let c = Instance::start(&kafka, &args, state.path(), &log);
    produce_events(&producer, &input, third);
    caught_up(Duration::from_secs(90));
    c.stop();

    let expected = expected_window_counts(&events, window, advance, grace);
    let output = read_output(&kafka, &output, partitions);
    let mut got: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    for (key, count) in output {
        let (name, start) = key.rsplit_once('@').expect("<key>@<start>");
        got.entry((name.to_owned(), start.parse().expect("a start")))
            .or_default()
            .push(count);
    }
    let twice: Vec<_> = got.iter().filter(|(_, c)| c.len() > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "windows emitted more than once: {twice:?}"
    );
    let got: BTreeMap<(String, i64), i64> = got.into_iter().map(|(w, c)| (w, c[0])).collect();
    let want: BTreeMap<(String, i64), i64> = expected
        .counts
        .iter()
        .filter(|(w, _)| expected.closed.contains(*w))
        .map(|(w, c)| (w.clone(), *c))
        .collect();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(w, c)| got.get(*w) != Some(c))
        .map(|(w, c)| format!("{w:?}: got {:?}, want {c}", got.get(w)))
        .chain(
            got.keys()
                .filter(|w| !want.contains_key(*w))
                .map(|w| format!("{w:?}: not a closed window")),
        )
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} windows wrong, e.g. {wrong:?}; log: {}",
        wrong.len(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(want.len() > 300, "{} windows checked", want.len());
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn final_counts_exactly_once_across_a_stop_and_a_kill_at_least_once() {
    final_counts_exactly_once_across_restarts("at_least_once");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn final_counts_exactly_once_across_a_stop_and_a_kill_exactly_once_v2() {
    final_counts_exactly_once_across_restarts("exactly_once_v2");
}
