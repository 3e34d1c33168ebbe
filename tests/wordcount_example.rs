//! The wordcount example's command-line interface, as other tools drive it: on the embedded
//! broker (no Kafka needed) and against a real cluster until SIGTERM.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::wordcount::{produce_lines, read_counts, wait_caught_up};
use support::{real_kafka, unique, Cluster};

/// `target/<profile>/examples/wordcount`, which `cargo test` builds with the tests.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join("wordcount");
    assert!(
        path.exists(),
        "{} is missing; `cargo test` builds it",
        path.display()
    );
    path
}

fn oracle(text: &[u8]) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for line in text.split(|b| *b == b'\n') {
        if let Ok(line) = std::str::from_utf8(line) {
            for w in support::wordcount::words(line) {
                *counts.entry(w).or_default() += 1;
            }
        }
    }
    counts
}

#[test]
fn embedded_run_prints_the_top_words_and_skips_unreadable_lines() {
    embedded_run("at_least_once");
}

/// The embedded broker keeps no transactional offset commits: the run must still see its input
/// processed and committed, and end.
#[test]
fn embedded_run_under_exactly_once_v2_finishes_with_the_same_counts() {
    embedded_run("exactly_once_v2");
}

fn embedded_run(guarantee: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    let mut text =
        b"The quick brown fox; the LAZY dog.\nthe end -- THE end\n\nfox_trot 42 fox\n".to_vec();
    text.extend_from_slice(b"bad \xff\xfe line\nthe last line\n");
    std::fs::write(&input, &text).expect("write input");
    let out = Command::new(example())
        .args([
            "--input-file",
            input.to_str().expect("utf-8 path"),
            "--top",
            "3",
            "--partitions",
            "2",
            "--processing-guarantee",
            guarantee,
        ])
        .args([
            "--state-dir",
            dir.path().join("state").to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let want = oracle(&text);
    let rows: Vec<(String, i64)> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| rank"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].parse().expect("count"))
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("the".to_owned(), 5),
            ("end".to_owned(), 2),
            ("fox".to_owned(), 2)
        ],
        "{stdout}"
    );
    for (word, count) in &rows {
        assert_eq!(want.get(word), Some(count), "{word}");
    }
    assert!(stdout.contains("1 skipped as unreadable"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} distinct", want.len())),
        "{stdout}"
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn on_a_cluster_it_counts_until_sigterm_and_exits_cleanly() {
    let kafka = real_kafka();
    let (input, output, app) = (
        unique("ex-lines"),
        unique("ex-counts"),
        unique("ex-wordcount"),
    );
    let state = tempfile::tempdir().expect("state dir");
    let mut child = Command::new(example())
        .args(["--bootstrap-servers", &kafka.bootstrap()])
        .args([
            "--input-topic",
            &input,
            "--output-topic",
            &output,
            "--application-id",
            &app,
        ])
        .args([
            "--state-dir",
            state.path().to_str().expect("utf-8 path"),
            "--threads",
            "2",
        ])
        .args(["--partitions", "3", "--commit-interval-ms", "500"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");

    // It creates the topics itself; wait for them, then feed it.
    support::wait_for_topic(&kafka.bootstrap(), &input, 3);
    produce_lines(&kafka, &input, 0..5_000);
    wait_caught_up(
        &kafka,
        &app,
        &[input.clone(), format!("{app}-counts-repartition")],
        3,
        Duration::from_secs(180),
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}");

    let mut want = HashMap::new();
    support::wordcount::oracle(0..5_000, &mut want);
    support::wordcount::assert_counts_equal(&read_counts(&kafka, &output, 3), &want);
}
