//! The joins example's command-line interface on the embedded broker (no Kafka needed): it
//! enriches orders with customers and matches clicks to impressions, and checks both outputs
//! against a recomputation from its input, under both processing guarantees.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/joins`, which `cargo test` builds with the tests.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join("joins");
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
        .args([
            "--orders",
            "400",
            "--impressions",
            "300",
            "--partitions",
            "2",
        ])
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
fn embedded_run_joins_and_checks_both_outputs_against_the_input() {
    let stdout = run_embedded(&[]);
    assert!(
        stdout.contains("| joins-enriched-orders | 400 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("checked: every enriched order and every matched click"),
        "{stdout}"
    );
}

/// The embedded broker keeps no transactional offset commits: the run must still see its input
/// processed and committed, and check out.
#[test]
fn embedded_run_under_exactly_once_v2_checks_out() {
    let stdout = run_embedded(&["--config", "processing.guarantee=exactly_once_v2"]);
    assert!(
        stdout.contains("checked: every enriched order and every matched click"),
        "{stdout}"
    );
}

#[test]
fn bad_settings_are_refused() {
    let out = Command::new(example())
        .args(["--config", "no-equals-sign"])
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config takes key=value"));
}
