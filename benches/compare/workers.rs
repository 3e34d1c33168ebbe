//! The processes the harness measures, run as `compare worker ...`: the kstreams topologies and
//! a raw consume-and-produce pass-through on rdkafka.

use std::time::{Duration, Instant};

use kstreams::prelude::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

fn stateless(input: &str, output: &str) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(input, Consumed::with(Serdes::string(), Serdes::string()))
        .filter(|_, v| !v.starts_with('#'))
        .map_values(|v| v.to_ascii_uppercase())
        .to(output, Produced::with(Serdes::string(), Serdes::string()));
    builder.build()
}

/// Each record (key `key-<n>`) enriched with its row of the `<input>-table` table (a left join:
/// `<value>|<name>`, `<value>|?` without a row).
fn stream_table_join(input: &str, output: &str) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(Serdes::string(), Serdes::string());
    let table = builder.table::<String, String>(
        &format!("{input}-table"),
        strings(),
        Materialized::as_("customers"),
    );
    builder
        .stream::<String, String>(input, strings())
        .left_join_table(
            &table,
            |v, name| format!("{v}|{}", name.map_or("?", |n| n.as_str())),
            Joined::with(Serdes::string(), Serdes::string()),
        )
        .to(output, Produced::with(Serdes::string(), Serdes::string()));
    builder.build()
}

fn wait_for_sigterm() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}

/// `worker kstreams MODE BOOTSTRAP INPUT OUTPUT APP THREADS GUARANTEE COMMIT_MS CACHE_BYTES STATE_DIR`
pub fn kstreams(args: &[String]) -> i32 {
    let [mode, bootstrap, input, output, app, threads, guarantee, commit_ms, cache, state] = args
    else {
        eprintln!("usage: worker kstreams mode bootstrap input output app threads guarantee commit-ms cache-bytes state-dir");
        return 2;
    };
    crate::example::init_logging("warn");
    let topology = match mode.as_str() {
        "wordcount" | "restore" => crate::example::word_count_topology(input, output),
        "stateless" => stateless(input, output),
        "stream-table-join" => stream_table_join(input, output),
        // Counts per key in 60 s windows of event time (record timestamps), every update
        // through the cache, as `<key>@<window start>` -> count.
        "windowed-tumbling" => crate::example::windowed_count_topology(
            input,
            output,
            60_000,
            60_000,
            0,
            crate::example::Emit::Updates,
        ),
        "windowed-hopping" => crate::example::windowed_count_topology(
            input,
            output,
            60_000,
            10_000,
            0,
            crate::example::Emit::Updates,
        ),
        other => {
            eprintln!("unknown mode {other}");
            return 2;
        }
    };
    let topology = match topology {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut config = StreamsConfig::new(app)
        .set("bootstrap.servers", bootstrap)
        .set("num.stream.threads", threads)
        .set("processing.guarantee", guarantee)
        .set("commit.interval.ms", commit_ms)
        .set("statestore.cache.max.bytes", cache)
        .set("state.dir", state)
        .set("auto.offset.reset", "earliest");
    // For tuning studies only (results files record runs without it): `key=value;key=value`.
    for pair in std::env::var("KSTREAMS_BENCH_SET")
        .unwrap_or_default()
        .split(';')
    {
        if let Some((key, value)) = pair.split_once('=') {
            config = config.set(key.trim(), value.trim());
        }
    }
    let streams = match KafkaStreams::new(topology, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let started = Instant::now();
    if let Err(e) = streams.start() {
        eprintln!("{e}");
        return 1;
    }
    if mode == "restore" {
        while streams.state() != State::Running {
            if let Some(e) = streams.error() {
                eprintln!("{e}");
                return 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "restore_ms={} restored={}",
            started.elapsed().as_millis(),
            streams.metrics().restored()
        );
    }
    wait_for_sigterm();
    streams.close(Duration::from_secs(60));
    // For the harness's progress output: where commit time went.
    let metrics = streams.metrics();
    let (commit, wait) = metrics.threads.iter().fold((0.0, 0.0), |(c, w), t| {
        (
            c + t.commit_time.as_secs_f64(),
            w + t.commit_wait_time.as_secs_f64(),
        )
    });
    eprintln!(
        "stats: {} threads ran {:.1} s; commits={} commit_s={commit:.2} of which waiting for Kafka {wait:.2}",
        metrics.threads.len(),
        started.elapsed().as_secs_f64(),
        metrics.threads.iter().map(|t| t.commits).sum::<u64>(),
    );
    match streams.error() {
        Some(e) => {
            eprintln!("{e}");
            1
        }
        None => 0,
    }
}

/// `worker raw BOOTSTRAP INPUT OUTPUT GROUP THREADS`: consume and produce every record unchanged,
/// committing offsets every second, in `THREADS` threads (one consumer and producer each).
pub fn raw(args: &[String]) -> i32 {
    let [bootstrap, input, output, group, threads] = args else {
        eprintln!("usage: worker raw bootstrap input output group threads");
        return 2;
    };
    let threads: usize = threads.parse().unwrap_or(1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (bootstrap, input, output, group, stop) = (
                bootstrap.clone(),
                input.clone(),
                output.clone(),
                group.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || pass_through(&bootstrap, &input, &output, &group, &stop))
        })
        .collect();
    wait_for_sigterm();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut code = 0;
    for w in workers {
        if let Ok(Err(e)) | Err(e) = w.join().map_err(|_| "panicked".to_string()) {
            eprintln!("{e}");
            code = 1;
        }
    }
    code
}

fn pass_through(
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // The same fetch tuning kstreams' own consumers get, so the baseline is a fair one.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .map_err(|e| e.to_string())?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "10")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[input]).map_err(|e| e.to_string())?;
    let mut last_commit = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let m = message.map_err(|e| e.to_string())?;
            let mut record = BaseRecord::<[u8], [u8]>::to(output);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            crate::example::send_waiting(&producer, record).map_err(|e| e.to_string())?;
            consumer
                .store_offset_from_message(&m)
                .map_err(|e| e.to_string())?;
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            producer
                .flush(Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            last_commit = Instant::now();
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    Ok(())
}
