//! Kafka Streams' relational smoke system test against kstreams, on the real broker: Kafka's own
//! driver (`RelationalSmokeTest driver <bootstrap>`, from the `kafka-streams` test jar on Maven
//! Central) produces 1000 articles and 10 000 comments (each naming an article, Zipf-like) into
//! `in-article` / `in-comment` over a minute or so, then reads every input and output topic from
//! the beginning (`read_committed`) until the outputs of the `relational_smoke_test_client`
//! example (Kafka's `RelationalSmokeTest.App`: comments joined to their article by foreign key,
//! comment counts per article left-joined back to the articles) agree with the inputs: an
//! augmented article per article with the number of augmented comments naming it, an augmented
//! comment per comment carrying its article's current text prefix. Meanwhile three instances
//! sharing one application id run and, until the driver has produced everything, are killed with
//! SIGKILL (every third time losing the state directory), stopped gracefully and restarted, as
//! Kafka's `streams_relational_smoke_test.py` crashes and replaces its processors.
//!
//! The verdict is the driver's: `Smoke test complete: passed`. The verifier compares the last
//! value per key, so duplicates from at-least-once crashes do not matter and upstream demands a
//! pass under every guarantee; so does this test. Each run takes about two minutes.
//! `KSTREAMS_RELATIONAL_ROUNDS=<n>` (default 1) runs the driver `n` times in a row against the
//! same topics and application, bounces throughout: every later round rewrites all articles and
//! comments under the same ids (new texts, comments moving to other articles), so foreign keys
//! change, counts go down as well as up and article updates reach their comments; the verifier
//! then checks the final state of everything. `KSTREAMS_RELATIONAL_BOUNCE_SECONDS` sets how often
//! an instance is bounced (default 15). Ignored by a plain `cargo test`; `scripts/test.sh` runs
//! them.

mod support;

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::system::{
    chaos_while, delete_leftovers, dump, kafka_main, kafka_tests_classpath, wait_for_line, Chaos,
    Instance,
};
use support::{real_kafka, Cluster};

/// The driver's topics (fixed names) with the partitions `streams_relational_smoke_test.py`
/// gives them: the two sides of the foreign-key join are deliberately not co-partitioned.
const TOPICS: [(&str, i32); 4] = [
    ("in-article", 3),
    ("in-comment", 5),
    ("out-augmented-article", 3),
    ("out-augmented-comment", 5),
];

const APP: &str = "RelationalSmokeTest";
const INSTANCES: usize = 3;

/// The topic names are fixed: one run at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one run of the driver said.
struct Round {
    seconds: u64,
    articles_sent: usize,
    comments_sent: usize,
    /// `Evaluation passed (a/b) articles and (c/d) comments`, as printed.
    evaluation: String,
    chaos: Chaos,
}

fn driver_round(
    classpath: &str,
    bootstrap: &str,
    round: u64,
    instances: &mut [Instance],
    work: &std::path::Path,
) -> Round {
    let started = Instant::now();
    let log = work.join(format!("driver-{round}.log"));
    let file = std::fs::File::create(&log).expect("driver log");
    // slf4j-simple writes the driver's log to stderr; `main` prints its arguments on stdout.
    let mut driver = kafka_main(classpath, "RelationalSmokeTest", &["driver", bootstrap])
        .stdout(file.try_clone().expect("driver log"))
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("start Kafka's relational smoke test driver");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // Bounce while the driver produces (its verification needs all input), at most 5 minutes.
    let bounce_until = Instant::now() + Duration::from_secs(300);
    let every = Duration::from_secs(env_number("KSTREAMS_RELATIONAL_BOUNCE_SECONDS", 15));
    let chaos = chaos_while(instances, every, || {
        Instant::now() < bounce_until && !read().contains("Smoke test finished producing")
    });
    // Producing takes a minute or two, verification at most 10 minutes more.
    let deadline = Instant::now() + Duration::from_secs(780);
    let status = loop {
        if let Some(status) = driver.try_wait().expect("wait for the driver") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!(
                "Kafka's relational smoke test driver (round {round}) did not finish in time:\n{}\nclients:\n{}",
                findings(&read()),
                dump(instances)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let out = read();
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "relational-driver-{}-round{round}.log",
        work.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    ));
    let _ = std::fs::write(&kept, &out);
    assert!(
        status.success() && out.contains("Smoke test complete: passed"),
        "Kafka's relational smoke test driver did not accept kstreams in round {round} \
         ({status:?}):\n{}\n(the driver's whole log: {})\nclients:\n{}",
        findings(&out),
        kept.display(),
        dump(instances)
    );
    Round {
        seconds: started.elapsed().as_secs(),
        articles_sent: out.matches("sent in-article ").count(),
        comments_sent: out.matches("sent in-comment ").count(),
        evaluation: out
            .lines()
            .find_map(|l| {
                l.split_once("Evaluation passed ")
                    .map(|(_, e)| e.to_owned())
            })
            .unwrap_or_default(),
        chaos,
    }
}

/// The driver's verdict lines and the head of its failure report (one line per finding),
/// without the dumps of every record that follow the report (each article carries some 2000
/// characters of text).
fn findings(out: &str) -> String {
    const REPORT_LINES: usize = 30;
    let mut lines = Vec::new();
    let (mut in_report, mut reported) = (false, 0usize);
    for line in out.lines() {
        if in_report && line.starts_with("Consumed Input Articles:") {
            in_report = false;
            if reported > REPORT_LINES {
                lines.push(format!("... and {} more findings", reported - REPORT_LINES));
            }
        }
        let verdict = line.contains("Smoke test")
            || line.contains("Evaluation")
            || line.contains("Exception")
            || line.starts_with("\tat ");
        if verdict || (in_report && reported < REPORT_LINES) {
            lines.push(line.chars().take(300).collect::<String>());
        }
        if in_report && !verdict {
            reported += 1;
        }
        if line.starts_with("Report:") {
            in_report = true;
        }
    }
    lines.join("\n")
}

fn relational_smoke_test(guarantee: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let kafka = real_kafka();
    let classpath = kafka_tests_classpath();
    let topics: Vec<String> = TOPICS.iter().map(|(t, _)| t.to_string()).collect();
    delete_leftovers(&kafka, &topics, APP);
    for (t, partitions) in TOPICS {
        kafka.create_topic(t, partitions);
    }

    let work = tempfile::Builder::new()
        .prefix(&format!("relational-{guarantee}-"))
        .tempdir()
        .expect("work dir");
    let bootstrap = kafka.bootstrap();
    let mut instances: Vec<Instance> = (1..=INSTANCES)
        .map(|i| {
            let name = format!("processor{i}");
            let args = [
                "--bootstrap-servers",
                &bootstrap,
                "--processing-guarantee",
                guarantee,
                "--application-id",
                APP,
                "--name",
                &name,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Instance::of("relational_smoke_test_client", &name, work.path(), args)
        })
        .collect();

    let started = Instant::now();
    // As upstream: processors up and running before the driver starts.
    for i in &mut instances {
        i.start();
    }
    for i in &instances {
        wait_for_line(i, "Streams has started.", Duration::from_secs(120));
    }

    let rounds = env_number("KSTREAMS_RELATIONAL_ROUNDS", 1).max(1);
    let mut results = Vec::new();
    for round in 1..=rounds {
        results.push(driver_round(
            &classpath,
            &bootstrap,
            round,
            &mut instances,
            work.path(),
        ));
    }
    for i in &mut instances {
        i.stop();
    }
    let exceptions: usize = instances
        .iter()
        .map(|i| i.count("SMOKE-TEST-CLIENT-EXCEPTION"))
        .sum();
    for (n, r) in results.iter().enumerate() {
        eprintln!(
            "Kafka Streams relational smoke test, {guarantee}, round {}: {} s, {INSTANCES} instances, {} SIGKILLs ({} with the state directory deleted), {} graceful restarts; sent {} articles and {} comments; verified {}; driver: passed",
            n + 1,
            r.seconds,
            r.chaos.kills,
            r.chaos.wipes,
            r.chaos.graceful,
            r.articles_sent,
            r.comments_sent,
            r.evaluation,
        );
    }
    eprintln!(
        "Kafka Streams relational smoke test, {guarantee}: {} s in all",
        started.elapsed().as_secs()
    );
    assert!(
        results.iter().map(|r| r.chaos.kills).sum::<u32>() > 0,
        "no instance was killed: the driver produced faster than one bounce interval"
    );
    assert_eq!(
        exceptions,
        0,
        "a client reported an exception:\n{}",
        dump(&instances)
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn kafka_relational_smoke_test_passes_at_least_once_with_crashes() {
    relational_smoke_test("at_least_once");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn kafka_relational_smoke_test_passes_exactly_once_v2_with_crashes() {
    relational_smoke_test("exactly_once_v2");
}

#[test]
fn a_failure_shows_the_verdict_and_the_head_of_the_report_without_the_record_dumps() {
    let mut log = String::from(
        "[main] INFO RelationalSmokeTest - sent in-article 1\n\
         [main] ERROR RelationalSmokeTest - Evaluation failed\nReport: \n",
    );
    for a in 0..45 {
        log.push_str(&format!("article {a} comment count mismatch\n"));
    }
    log.push_str("Consumed Input Articles: {1=Article{key=1, text='abc'}}\n");
    log.push_str("[main] ERROR RelationalSmokeTest - Smoke test complete: failed\n");
    let shown = findings(&log);
    assert!(shown.contains("Evaluation failed"), "{shown}");
    assert!(
        shown.contains("article 29 comment count mismatch"),
        "{shown}"
    );
    assert!(!shown.contains("article 30 comment"), "{shown}");
    assert!(shown.contains("... and 15 more findings"), "{shown}");
    assert!(shown.ends_with("Smoke test complete: failed"), "{shown}");
    assert!(!shown.contains("Consumed Input") && !shown.contains("sent in-article"));
}
