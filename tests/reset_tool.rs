//! The application reset tool (`examples/reset.rs`) against a real broker: it refuses while an
//! instance runs (KIP-848 and classic groups), and after it a rerun reprocesses all input.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::wordcount::{produce_lines, read_counts, wait_caught_up};
use support::{real_kafka, unique, Cluster};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --examples --all-features`",
        path.display()
    );
    path
}

fn start_wordcount(
    bootstrap: &str,
    input: &str,
    output: &str,
    app: &str,
    state: &Path,
    protocol: &str,
) -> Child {
    // The group protocol comes from a Kafka Streams properties file (Kafka Streams 4.1's name).
    let file = state.join(format!("{app}-{protocol}.properties"));
    std::fs::write(
        &file,
        format!("# the group protocol\ngroup.protocol = {protocol}\n").replace(
            "group.protocol = consumer",
            "consumer.group.protocol = consumer",
        ),
    )
    .expect("write properties");
    Command::new(example("wordcount"))
        .args(["--config-file", file.to_str().expect("utf-8 path")])
        .args([
            "--bootstrap-servers",
            bootstrap,
            "--input-topic",
            input,
            "--output-topic",
            output,
        ])
        .args([
            "--application-id",
            app,
            "--state-dir",
            state.to_str().expect("utf-8 path"),
        ])
        .args(["--partitions", "2", "--commit-interval-ms", "300"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wordcount")
}

fn stop(mut child: Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "wordcount exit status {status:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wordcount did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reset(bootstrap: &str, app: &str, input: &str, state: &Path, extra: &[&str]) -> Output {
    Command::new(example("reset"))
        .args([
            "--application-id",
            app,
            "--bootstrap-servers",
            bootstrap,
            "--input-topics",
            input,
        ])
        .args(["--state-dir", state.to_str().expect("utf-8 path")])
        .args(extra)
        .output()
        .expect("run reset")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn committed(bootstrap: &str, app: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    c.elements().iter().map(|e| e.offset()).collect()
}

fn topics(bootstrap: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    md.topics().iter().map(|t| t.name().to_owned()).collect()
}

fn output_records(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..2)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .expect("watermarks")
                .1
        })
        .sum()
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn reset_refuses_while_running_and_a_rerun_reprocesses_everything_consumer_protocol() {
    reset_round_trip("consumer");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn reset_refuses_while_running_and_a_rerun_reprocesses_everything_classic_protocol() {
    reset_round_trip("classic");
}

fn reset_round_trip(protocol: &str) {
    support::init_logs();
    let kafka = real_kafka();
    let bootstrap = kafka.bootstrap();
    let (input, output, app) = (unique("rs-lines"), unique("rs-counts"), unique("rs-app"));
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    let bystander = format!("{app}x-other-changelog");
    kafka.create_topic(&bystander, 1);
    produce_lines(&kafka, &input, 0..2_000);
    let state = tempfile::tempdir().expect("state dir");
    let app_state = state.path().join(&app);
    let repartition = format!("{app}-counts-repartition");

    let child = start_wordcount(&bootstrap, &input, &output, &app, state.path(), protocol);
    wait_caught_up(
        &kafka,
        &app,
        &[input.clone(), repartition.clone()],
        2,
        Duration::from_secs(180),
    );

    // While it runs: refused, and nothing changed.
    for extra in [&[][..], &["--force"][..], &["--dry-run"][..]] {
        let out = reset(&bootstrap, &app, &input, state.path(), extra);
        assert!(
            !out.status.success(),
            "reset {extra:?} must refuse while the app runs: {}",
            text(&out)
        );
        assert!(
            text(&out).contains("active members") || text(&out).contains("locked"),
            "{}",
            text(&out)
        );
    }
    // Another machine's view (no local state): the group itself refuses.
    let elsewhere = tempfile::tempdir().expect("other state dir");
    let out = reset(&bootstrap, &app, &input, elsewhere.path(), &[]);
    assert!(
        !out.status.success() && text(&out).contains("active members"),
        "{}",
        text(&out)
    );
    assert!(topics(&bootstrap).contains(&repartition));
    assert!(committed(&bootstrap, &app, &input, 2)
        .iter()
        .all(|o| *o != Offset::Offset(0)));
    stop(child);

    let mut want = HashMap::new();
    support::wordcount::oracle(0..2_000, &mut want);
    support::wordcount::assert_counts_equal(&read_counts(&kafka, &output, 2), &want);
    let first_run = output_records(&bootstrap, &output);

    // Dry run: says what it would do, changes nothing.
    let out = reset(&bootstrap, &app, &input, state.path(), &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("would delete internal topic {repartition}")),
        "{}",
        text(&out)
    );
    assert!(app_state.exists());
    assert!(topics(&bootstrap).contains(&repartition));

    let out = reset(&bootstrap, &app, &input, state.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        committed(&bootstrap, &app, &input, 2),
        vec![Offset::Offset(0); 2],
        "{}",
        text(&out)
    );
    let after = topics(&bootstrap);
    assert!(
        !after.iter().any(|t| t.starts_with(&format!("{app}-"))),
        "internal topics left: {after:?}"
    );
    assert!(after.contains(&input) && after.contains(&output) && after.contains(&bystander));
    assert!(!app_state.exists(), "local state not removed");

    // The rerun starts from scratch: the same counts (not doubled), written again.
    let child = start_wordcount(&bootstrap, &input, &output, &app, state.path(), protocol);
    wait_caught_up(
        &kafka,
        &app,
        &[input.clone(), repartition.clone()],
        2,
        Duration::from_secs(180),
    );
    stop(child);
    support::wordcount::assert_counts_equal(&read_counts(&kafka, &output, 2), &want);
    assert!(
        output_records(&bootstrap, &output) > first_run,
        "the rerun wrote nothing"
    );
}
