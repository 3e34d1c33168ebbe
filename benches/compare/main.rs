//! Side-by-side benchmark: kstreams against Apache Kafka Streams (Java) and a raw rdkafka
//! pass-through, on one broker, with the same input and settings, in one session. Run it with
//! `scripts/bench.sh`, which builds everything and starts the broker.
//!
//! Each case runs as its own process under GNU time (CPU seconds, peak RSS), from an empty state
//! directory and a fresh consumer group, over input preloaded once. Throughput counts input
//! records from the first output record (broker append time) until the group has committed all
//! input; "start to first output" runs from process start to that first output record. Restore
//! cases time how long an instance takes to restore a preloaded 1M-key changelog and run.
//! Windowed-count cases count events (10 000 keys, 1 ms of event time apart) per key in 60 s
//! windows, tumbling and hopping by 10 s, every update through the record cache. Stream-table
//! join cases enrich the map/filter records with a 100 003-row table (`<records topic>-table`,
//! one row per record key, loaded before the records so it is read first): a left join, one
//! output record per input record; throughput counts the stream records.
#![allow(missing_docs, clippy::print_stdout)]

#[path = "../../examples/support/mod.rs"]
mod example;
mod measure;
mod report;
mod workers;

use std::process::Stdio;
use std::time::{Duration, Instant};

use measure::{
    caught_up, create_topic, delete_topics, first_append_ms, now_ms, produce, produce_at, Measured,
};
use report::{Case, RestoreRun, Run};

#[derive(Clone)]
struct Settings {
    bootstrap: String,
    java_cp: String,
    kafka_version: String,
    streams_version: String,
    lines: u64,
    records: u64,
    events: u64,
    restore_keys: u64,
    reps: usize,
    threads: usize,
    partitions: i32,
    commit_ms: u64,
    eos_commit_ms: u64,
    cache_bytes: u64,
    only: Option<String>,
    state_root: std::path::PathBuf,
    results_dir: std::path::PathBuf,
    /// Unique per run, so topics and groups left on a reused broker never mix into a new run.
    run: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Option<Settings> {
        let bootstrap = std::env::var("KSTREAMS_BENCH_BOOTSTRAP").ok()?;
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Some(Settings {
            run: now_ms() as u64,
            bootstrap,
            java_cp: std::env::var("KSTREAMS_BENCH_JAVA_CP").unwrap_or_default(),
            kafka_version: std::env::var("KSTREAMS_BENCH_KAFKA_VERSION")
                .unwrap_or_else(|_| "4.2.1".into()),
            streams_version: std::env::var("KSTREAMS_BENCH_STREAMS_VERSION")
                .unwrap_or_else(|_| "4.4.0".into()),
            lines: env_or("KSTREAMS_BENCH_LINES", 1_000_000),
            records: env_or("KSTREAMS_BENCH_RECORDS", 4_000_000),
            events: env_or("KSTREAMS_BENCH_EVENTS", 4_000_000),
            restore_keys: env_or("KSTREAMS_BENCH_RESTORE_KEYS", 1_000_000),
            reps: env_or("KSTREAMS_BENCH_REPS", 3),
            threads: env_or("KSTREAMS_BENCH_THREADS", 2),
            partitions: env_or("KSTREAMS_BENCH_PARTITIONS", 4),
            commit_ms: env_or("KSTREAMS_BENCH_COMMIT_MS", 1000),
            eos_commit_ms: env_or("KSTREAMS_BENCH_EOS_COMMIT_MS", 100),
            cache_bytes: env_or("KSTREAMS_BENCH_CACHE_BYTES", 10 << 20),
            only: std::env::var("KSTREAMS_BENCH_ONLY").ok(),
            state_root: root.join("target").join("bench-state"),
            // Only a full, untuned run goes to the committed results; a partial or tuned one
            // (KSTREAMS_BENCH_ONLY, KSTREAMS_BENCH_SET) stays under target/.
            results_dir: if std::env::var_os("KSTREAMS_BENCH_ONLY").is_some()
                || std::env::var_os("KSTREAMS_BENCH_SET").is_some()
            {
                root.join("target").join("bench-results")
            } else {
                root.join("benches").join("results")
            },
        })
    }
}

/// A text line of 6 to 13 words from a 20 000-word vocabulary, in mixed case, with punctuation.
fn line(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5151_5151;
    let mut out = String::with_capacity(96);
    for j in 0..(6 + i % 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = x % 20_000;
        match x % 5 {
            0 => out.push_str(&format!("Word{w}")),
            1 => out.push_str(&format!("WORD{w}")),
            _ => out.push_str(&format!("word{w}")),
        }
        out.push_str(if j % 3 == 2 { ", " } else { " " });
    }
    out.into_bytes()
}

/// An event for the windowed counts: one of 10 000 keys, an 8-byte value, event time 1 ms after
/// the previous event's.
fn event(i: u64, start_ms: i64) -> (Vec<u8>, Vec<u8>, i64) {
    (
        format!("sensor-{:05}", i.wrapping_mul(7919) % 10_000).into_bytes(),
        i.to_be_bytes().to_vec(),
        start_ms + i as i64,
    )
}

/// A keyed record with a 100-byte value; one in twenty starts with '#' (filtered out).
/// Distinct keys of the map/filter records, and rows of the stream-table join's table.
const TABLE_ROWS: u64 = 100_003;

fn record(i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = format!("key-{:012}", i % TABLE_ROWS).into_bytes();
    let mut value = format!("{}value-{i:020}-", if i % 20 == 7 { '#' } else { 'v' }).into_bytes();
    value.resize(100, b'x');
    (key, value)
}

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Kstreams,
    Java,
    Raw,
}

impl Impl {
    /// For names of topics and groups.
    fn short(self) -> &'static str {
        match self {
            Impl::Kstreams => "kstreams",
            Impl::Java => "java",
            Impl::Raw => "raw",
        }
    }
}

struct Spec {
    name: String,
    baseline: Option<String>,
    imp: Impl,
    mode: &'static str,
    guarantee: &'static str,
}

fn specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    for (mode, label) in [
        ("wordcount", "word count"),
        ("stateless", "map/filter"),
        ("windowed-tumbling", "windowed count tumbling"),
        ("windowed-hopping", "windowed count hopping"),
        ("stream-table-join", "stream-table join"),
    ] {
        for guarantee in ["at_least_once", "exactly_once_v2"] {
            let java = format!("Kafka Streams {label} {guarantee}");
            specs.push(Spec {
                name: format!("kstreams {label} {guarantee}"),
                baseline: Some(java.clone()),
                imp: Impl::Kstreams,
                mode,
                guarantee,
            });
            specs.push(Spec {
                name: java,
                baseline: None,
                imp: Impl::Java,
                mode,
                guarantee,
            });
        }
    }
    specs.push(Spec {
        name: "raw rdkafka pass-through (the limit)".into(),
        baseline: None,
        imp: Impl::Raw,
        mode: "stateless",
        guarantee: "at_least_once",
    });
    specs
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// With `KSTREAMS_BENCH_LOGS=<dir>`, keeps a run's worker log as `<dir>/<tag>.log` before its
/// state directory goes (for investigations; run with `RUST_LOG` to choose what it holds).
fn keep_log(state: &std::path::Path, tag: &str) {
    if let Some(dir) = std::env::var_os("KSTREAMS_BENCH_LOGS") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(state.join("worker.log"), dir.join(format!("{tag}.log")));
    }
}

fn command(
    s: &Settings,
    spec: &Spec,
    input: &str,
    output: &str,
    app: &str,
    state: &std::path::Path,
) -> (String, Vec<String>) {
    let commit = if spec.guarantee == "exactly_once_v2" {
        s.eos_commit_ms
    } else {
        s.commit_ms
    };
    let common = vec![
        spec.mode.to_string(),
        s.bootstrap.clone(),
        input.to_string(),
        output.to_string(),
        app.to_string(),
        s.threads.to_string(),
        spec.guarantee.to_string(),
        commit.to_string(),
        s.cache_bytes.to_string(),
        state.display().to_string(),
    ];
    let me = std::env::current_exe()
        .expect("own path")
        .display()
        .to_string();
    match spec.imp {
        Impl::Kstreams => (
            me,
            [vec!["worker".into(), "kstreams".into()], common].concat(),
        ),
        Impl::Java => (
            "java".into(),
            [
                vec![
                    "-cp".into(),
                    s.java_cp.clone(),
                    "io.kstreams.bench.KafkaStreamsBench".into(),
                ],
                common,
            ]
            .concat(),
        ),
        Impl::Raw => (
            me,
            vec![
                "worker".into(),
                "raw".into(),
                s.bootstrap.clone(),
                input.into(),
                output.into(),
                app.into(),
                s.threads.to_string(),
            ],
        ),
    }
}

fn run_case(s: &Settings, spec: &Spec, rep: usize, input: &str, inputs: u64) -> Option<Run> {
    let tag = format!("{}-{rep}-{}", slug(&spec.name), s.run);
    let app = format!("bench-{tag}");
    let output = format!("out-{tag}");
    create_topic(
        &s.bootstrap,
        &output,
        s.partitions,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let state = s.state_root.join(&tag);
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    let (program, args) = command(s, spec, input, &output, &app, &state);
    let mut watched = vec![input.to_string()];
    if spec.mode == "wordcount" {
        watched.push(format!("{app}-counts-repartition"));
    }
    if spec.mode == "stream-table-join" {
        watched.push(format!("{input}-table"));
    }
    let mut process = Measured::spawn(&program, &args, &state.join("time.txt"), Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut streak = 0;
    let end_ms = loop {
        std::thread::sleep(Duration::from_millis(200));
        if process.exited() {
            eprintln!(
                "{} (run {rep}): the process exited early; its log: {}",
                spec.name,
                state.join("worker.log").display()
            );
            return None;
        }
        if Instant::now() > deadline {
            eprintln!(
                "{} (run {rep}): did not finish within 30 minutes",
                spec.name
            );
            process.stop();
            return None;
        }
        streak = if caught_up(&s.bootstrap, &app, &watched, s.partitions) {
            streak + 1
        } else {
            0
        };
        // Twice in a row, so the last commit (and a cache's final flush) is out.
        if streak == 2 {
            break now_ms();
        }
    };
    let started_ms = process.started_ms;
    let usage = process.stop();
    if let Ok(log) = std::fs::read_to_string(state.join("worker.log")) {
        for line in log.lines().filter(|l| l.starts_with("stats: ")) {
            eprintln!("{} (run {rep}) {line}", spec.name);
        }
    }
    let first = first_append_ms(&s.bootstrap, &output, s.partitions);
    // The case's output and internal topics are not needed again.
    delete_topics(&s.bootstrap, &[&output, &app]);
    let Some(first) = first else {
        eprintln!(
            "{} (run {rep}): no output; its log: {}",
            spec.name,
            state.join("worker.log").display()
        );
        return None;
    };
    keep_log(&state, &tag);
    let _ = std::fs::remove_dir_all(&state);
    let window_s = ((end_ms - first) as f64 / 1000.0).max(0.001);
    Some(Run {
        records_per_sec: inputs as f64 / window_s,
        cpu_per_million: usage.cpu_seconds / inputs as f64 * 1e6,
        peak_rss_mib: usage.peak_rss_kb as f64 / 1024.0,
        first_output_s: (first - started_ms) as f64 / 1000.0,
    })
}

/// Creates `app`'s word-count store changelog holding `restore_keys` words, and its output
/// topic; returns the output topic and an empty state directory.
fn preload_store(s: &Settings, app: &str) -> (String, std::path::PathBuf) {
    let changelog = format!("{app}-counts-changelog");
    create_topic(
        &s.bootstrap,
        &changelog,
        s.partitions,
        &[("cleanup.policy", "compact")],
    );
    let ts = now_ms();
    produce(&s.bootstrap, &changelog, s.restore_keys, |i| {
        let mut value = ts.to_be_bytes().to_vec();
        value.extend_from_slice(&(i as i64 + 1).to_be_bytes());
        (Some(format!("word{i}").into_bytes()), Some(value))
    });
    let output = format!("out-{app}");
    create_topic(&s.bootstrap, &output, s.partitions, &[]);
    let state = s.state_root.join(app);
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    (output, state)
}

/// Starts a "restore" worker and waits for its report: seconds from start to running, and
/// records restored. Returns the running process with the report.
fn start_until_running(
    s: &Settings,
    spec: &Spec,
    input: &str,
    output: &str,
    state: &std::path::Path,
) -> Option<(Measured, f64, u64)> {
    let (program, args) = command(s, spec, input, output, &spec.name, state);
    let mut process = Measured::spawn(&program, &args, &state.join("time.txt"), Stdio::piped());
    let stdout = process.child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("restore_ms=") {
                let _ = tx.send(line);
            }
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(600)) else {
        eprintln!(
            "{}: no restore report within 10 minutes; its log: {}",
            spec.name,
            state.join("worker.log").display()
        );
        process.stop();
        return None;
    };
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    let seconds = field("restore_ms=")? as f64 / 1000.0;
    let restored = field("restored=")?;
    Some((process, seconds, restored))
}

/// Restores a preloaded `restore_keys`-record changelog.
fn run_restore(s: &Settings, imp: Impl, rep: usize, input: &str) -> Option<RestoreRun> {
    let app = format!("restore-{}-{rep}-{}", imp.short(), s.run);
    let (output, state) = preload_store(s, &app);
    let spec = Spec {
        name: app,
        baseline: None,
        imp,
        mode: "restore",
        guarantee: "at_least_once",
    };
    let started = start_until_running(s, &spec, input, &output, &state);
    let stopped = started.map(|(process, seconds, restored)| (process.stop(), seconds, restored));
    // Its changelog, repartition and output topics are not needed again.
    delete_topics(&s.bootstrap, &[&spec.name, &output]);
    let (usage, seconds, restored) = stopped?;
    keep_log(&state, &spec.name);
    let _ = std::fs::remove_dir_all(&state);
    Some(RestoreRun {
        seconds,
        restored,
        peak_rss_mib: usage.peak_rss_kb as f64 / 1024.0,
    })
}

/// How long the crash case processes input before it is killed.
const PROCESS_BEFORE_KILL: Duration = Duration::from_secs(8);

/// Restart after SIGKILL under exactly_once_v2: an instance with a preloaded `restore_keys`-key
/// word-count store restores it, counts `input` for a while, is killed with SIGKILL mid-stream
/// (mid-transaction), and starts again on the same state directory. Returns the first start
/// (a full restore) and the restart.
fn run_crash_restart(
    s: &Settings,
    imp: Impl,
    rep: usize,
    input: &str,
) -> Option<(RestoreRun, RestoreRun)> {
    let app = format!("crash-{}-{rep}-{}", imp.short(), s.run);
    let (output, state) = preload_store(s, &app);
    let spec = Spec {
        name: app,
        baseline: None,
        imp,
        mode: "restore",
        guarantee: "exactly_once_v2",
    };
    let (first, seconds, restored) = start_until_running(s, &spec, input, &output, &state)?;
    std::thread::sleep(PROCESS_BEFORE_KILL);
    let usage = first.kill();
    let full = RestoreRun {
        seconds,
        restored,
        peak_rss_mib: usage.peak_rss_kb as f64 / 1024.0,
    };
    let restarted = start_until_running(s, &spec, input, &output, &state);
    let stopped = restarted.map(|(process, seconds, restored)| (process.stop(), seconds, restored));
    delete_topics(&s.bootstrap, &[&spec.name, &output]);
    let (usage, seconds, restored) = stopped?;
    keep_log(&state, &spec.name);
    let _ = std::fs::remove_dir_all(&state);
    Some((
        full,
        RestoreRun {
            seconds,
            restored,
            peak_rss_mib: usage.peak_rss_kb as f64 / 1024.0,
        },
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        let code = match args.get(2).map(String::as_str) {
            Some("kstreams") => workers::kstreams(&args[3..]),
            Some("raw") => workers::raw(&args[3..]),
            _ => 2,
        };
        std::process::exit(code);
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("the side-by-side benchmark: run it with scripts/bench.sh");
        return;
    }
    let Some(s) = Settings::from_env() else {
        eprintln!("KSTREAMS_BENCH_BOOTSTRAP is not set: run scripts/bench.sh, which starts a broker and sets it");
        return;
    };
    harness(&s);
}

fn harness(s: &Settings) {
    if std::env::var("KSTREAMS_BENCH_SCALING").as_deref() == Ok("1") {
        return scaling(s);
    }
    let started = Instant::now();
    let stamp = s.run;
    let (lines_topic, records_topic, events_topic, empty_topic) = (
        format!("bench-lines-{stamp}"),
        format!("bench-records-{stamp}"),
        format!("bench-events-{stamp}"),
        format!("bench-empty-{stamp}"),
    );
    let table_topic = format!("{records_topic}-table");
    for t in [
        &lines_topic,
        &records_topic,
        &table_topic,
        &events_topic,
        &empty_topic,
    ] {
        create_topic(&s.bootstrap, t, s.partitions, &[]);
    }
    let t = Instant::now();
    produce(&s.bootstrap, &lines_topic, s.lines, |i| {
        (None, Some(line(i)))
    });
    let words: u64 = (0..s.lines)
        .map(|i| example::words(&String::from_utf8_lossy(&line(i))).len() as u64)
        .sum();
    // The join's table first (earlier timestamps), one row per record key.
    produce(&s.bootstrap, &table_topic, TABLE_ROWS, |i| {
        let key = format!("key-{i:012}").into_bytes();
        (Some(key), Some(format!("customer-{i}").into_bytes()))
    });
    produce(&s.bootstrap, &records_topic, s.records, |i| {
        let (k, v) = record(i);
        (Some(k), Some(v))
    });
    // Event time starts a day ago, at a minute boundary.
    let events_start = (now_ms() - 86_400_000) / 60_000 * 60_000;
    produce_at(&s.bootstrap, &events_topic, s.events, |i| {
        let (k, v, t) = event(i, events_start);
        (Some(k), Some(v), Some(t))
    });
    eprintln!(
        "preloaded {} lines ({words} words), {} records and {} events in {:.1} s",
        s.lines,
        s.records,
        s.events,
        t.elapsed().as_secs_f64()
    );

    let mut cases = Vec::new();
    for spec in specs() {
        if s.only
            .as_ref()
            .is_some_and(|o| !spec.name.contains(o.as_str()))
        {
            continue;
        }
        if spec.imp == Impl::Java && s.java_cp.is_empty() {
            eprintln!("skipping {}: KSTREAMS_BENCH_JAVA_CP is not set", spec.name);
            continue;
        }
        let (input, inputs) = match spec.mode {
            "wordcount" => (&lines_topic, s.lines),
            m if m.starts_with("windowed") => (&events_topic, s.events),
            _ => (&records_topic, s.records),
        };
        let mut runs = Vec::new();
        for rep in 0..s.reps {
            if let Some(run) = run_case(s, &spec, rep, input, inputs) {
                eprintln!(
                    "{} run {rep}: {:.0} records/s, {:.2} CPU s/M, {:.1} MiB, first output after {:.2} s",
                    spec.name, run.records_per_sec, run.cpu_per_million, run.peak_rss_mib, run.first_output_s
                );
                runs.push(run);
            }
        }
        cases.push(Case {
            name: spec.name,
            baseline: spec.baseline,
            runs,
        });
    }

    let mut restores = Vec::new();
    if s.only
        .as_ref()
        .is_none_or(|o| "restore".contains(o.as_str()))
    {
        for (imp, name) in [(Impl::Kstreams, "kstreams"), (Impl::Java, "Kafka Streams")] {
            if imp == Impl::Java && s.java_cp.is_empty() {
                continue;
            }
            let mut runs = Vec::new();
            for rep in 0..s.reps {
                if let Some(r) = run_restore(s, imp, rep, &empty_topic) {
                    eprintln!(
                        "{name} restore run {rep}: {:.2} s, {} records, {:.1} MiB",
                        r.seconds, r.restored, r.peak_rss_mib
                    );
                    runs.push(r);
                }
            }
            restores.push((
                format!("{name}: restore a {}-key store", s.restore_keys),
                runs,
            ));
        }
    }

    if s.only
        .as_ref()
        .is_none_or(|o| "crash restart".contains(o.as_str()))
    {
        for (imp, name) in [(Impl::Kstreams, "kstreams"), (Impl::Java, "Kafka Streams")] {
            if imp == Impl::Java && s.java_cp.is_empty() {
                continue;
            }
            let (mut firsts, mut restarts) = (Vec::new(), Vec::new());
            for rep in 0..s.reps {
                if let Some((first, restart)) = run_crash_restart(s, imp, rep, &lines_topic) {
                    eprintln!(
                        "{name} crash run {rep}: first start {:.2} s ({} records restored); after SIGKILL {:.2} s ({} records restored)",
                        first.seconds, first.restored, restart.seconds, restart.restored
                    );
                    firsts.push(first);
                    restarts.push(restart);
                }
            }
            restores.push((
                format!(
                    "{name}, exactly_once_v2: first start, {}-key store restored",
                    s.restore_keys
                ),
                firsts,
            ));
            restores.push((
                format!(
                    "{name}, exactly_once_v2: restart after SIGKILL mid-stream ({} s of counting)",
                    PROCESS_BEFORE_KILL.as_secs()
                ),
                restarts,
            ));
        }
    }

    let results = format!(
        "{}\n## Throughput, CPU, memory and start-up\n\n{}\nRatios: throughput as a factor (higher is better); CPU, RSS and start-up as a fraction of Kafka Streams' (lower is better). Medians, with min–max of {} runs in parentheses.\n\n## Restoration\n\n{}\n",
        header(s, words),
        report::table(&cases),
        s.reps,
        report::restore_table(&restores)
    );
    println!("{results}");
    // The preloaded inputs, so a broker kept between runs does not fill the disk.
    delete_topics(
        &s.bootstrap,
        &[&lines_topic, &records_topic, &events_topic, &empty_topic],
    );
    let date = chrono_date();
    std::fs::create_dir_all(&s.results_dir).expect("results dir");
    let path = s.results_dir.join(format!("{date}-compare.md"));
    std::fs::write(&path, &results).expect("write results");
    eprintln!(
        "results written to {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// The scaling study (`KSTREAMS_BENCH_SCALING=1 scripts/bench.sh`): word count throughput and
/// peak RSS against stream threads (1 and 2, over the word-count lines) and against distinct keys
/// (one key per input record, `KSTREAMS_BENCH_SCALING_KEYS`, by default 10 000, 1 000 000 and
/// 10 000 000 keys over at least 2 000 000 records, so that the largest state outgrows both the
/// record cache and RocksDB's memory budget), kstreams beside Kafka Streams, at_least_once,
/// `KSTREAMS_BENCH_SCALING_REPS` runs each (1). Written to `<date>-scaling.md`.
fn scaling(s: &Settings) {
    let started = Instant::now();
    let reps: usize = env_or("KSTREAMS_BENCH_SCALING_REPS", 1);
    let min_records: u64 = env_or("KSTREAMS_BENCH_SCALING_RECORDS", 2_000_000);
    let keys: Vec<u64> = std::env::var("KSTREAMS_BENCH_SCALING_KEYS")
        .unwrap_or_else(|_| "10000,1000000,10000000".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    let spec = |imp: Impl, name: String| Spec {
        name,
        baseline: None,
        imp,
        mode: "wordcount",
        guarantee: "at_least_once",
    };
    let both = |s: &Settings, label: &str, input: &str, inputs: u64| {
        let mut pair = Vec::new();
        for (imp, who) in [(Impl::Kstreams, "kstreams"), (Impl::Java, "Kafka Streams")] {
            let spec = spec(imp, format!("{who} scaling {label}"));
            let runs: Vec<Run> = (0..reps)
                .filter_map(|rep| run_case(s, &spec, rep, input, inputs))
                .inspect(|r| {
                    eprintln!(
                        "{}: {:.0} records/s, {:.1} MiB",
                        spec.name, r.records_per_sec, r.peak_rss_mib
                    )
                })
                .collect();
            pair.push(runs);
        }
        let java = pair.pop().unwrap_or_default();
        let ours = pair.pop().unwrap_or_default();
        (label.to_owned(), ours, java)
    };
    let mut rows = Vec::new();
    let lines_topic = format!("bench-lines-{}", s.run);
    create_topic(&s.bootstrap, &lines_topic, s.partitions, &[]);
    produce(&s.bootstrap, &lines_topic, s.lines, |i| {
        (None, Some(line(i)))
    });
    for threads in [1, 2] {
        let s = Settings {
            threads,
            ..s.clone()
        };
        let label = format!(
            "{} lines (20 000 words), {threads} stream thread{}",
            s.lines,
            if threads == 1 { "" } else { "s" }
        );
        rows.push(both(&s, &label, &lines_topic, s.lines));
    }
    for &k in &keys {
        let records = k.max(min_records);
        let topic = format!("bench-keys-{k}-{}", s.run);
        create_topic(&s.bootstrap, &topic, s.partitions, &[]);
        produce(&s.bootstrap, &topic, records, |i| {
            (None, Some(format!("key{}", i % k).into_bytes()))
        });
        let label = format!(
            "{k} distinct keys ({records} records, one key each), {} stream threads",
            s.threads
        );
        rows.push(both(s, &label, &topic, records));
        delete_topics(&s.bootstrap, &[&topic]);
    }
    let results = format!(
        "{}\n\n## Scaling: word count, at_least_once\n\n{}\nThroughput ratio: kstreams' records/s over Kafka Streams'; RSS ratio: kstreams' peak RSS as a fraction of Kafka Streams'. Medians of {reps} run(s).\n",
        header(s, 0)
            .lines()
            .filter(|l| !l.starts_with("- input") && !l.starts_with("- repetitions"))
            .collect::<Vec<_>>()
            .join("\n"),
        report::scaling_table(&rows),
    );
    println!("{results}");
    std::fs::create_dir_all(&s.results_dir).expect("results dir");
    let path = s.results_dir.join(format!("{}-scaling.md", chrono_date()));
    std::fs::write(&path, &results).expect("write results");
    eprintln!(
        "results written to {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

fn chrono_date() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn lock_version(package: &str) -> String {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
    )
    .unwrap_or_default();
    let needle = format!("name = \"{package}\"\nversion = \"");
    lock.find(&needle)
        .and_then(|i| {
            lock[i + needle.len()..]
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

fn header(s: &Settings, words: u64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    format!(
        "# kstreams vs Kafka Streams, side by side\n\n\
         - date: {date}\n\
         - machine: {model}, {cores} cores, {mem:.1} GiB RAM, Linux {kernel}; broker and application share it\n\
         - broker: Apache Kafka {kafka} (single node, KRaft), from scripts/kafka.sh\n\
         - kstreams {version}: {rustc}; rdkafka-sys {rdkafka} (bundled librdkafka), librocksdb-sys {rocksdb}\n\
         - Kafka Streams {streams}: {java}; JVM defaults (no heap flags)\n\
         - settings for both: {partitions} partitions, {threads} stream threads, commit.interval.ms {commit} ({eos} under exactly_once_v2), statestore.cache.max.bytes {cache}, empty state, fresh group\n\
         - input: word count {lines} lines ({words} words); map/filter {records} records (16-byte keys, 100-byte values, 5% filtered); windowed counts {events} events (10 000 keys, 1 ms of event time apart; 60 s windows, hopping by 10 s; every update through the cache); restore {keys} keys\n\
         - repetitions: {reps} per case\n",
        date = chrono_date(),
        mem = mem_kb as f64 / (1024.0 * 1024.0),
        kernel = command_output("uname", &["-r"]),
        kafka = s.kafka_version,
        streams = s.streams_version,
        version = env!("CARGO_PKG_VERSION"),
        rustc = command_output("rustc", &["-V"]),
        rdkafka = lock_version("rdkafka-sys"),
        rocksdb = lock_version("librocksdb-sys"),
        java = command_output("java", &["-version"]),
        partitions = s.partitions,
        threads = s.threads,
        commit = s.commit_ms,
        eos = s.eos_commit_ms,
        cache = s.cache_bytes,
        lines = s.lines,
        records = s.records,
        events = s.events,
        keys = s.restore_keys,
        reps = s.reps,
    )
}
