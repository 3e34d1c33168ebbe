//! The service example's interface on the real broker: instances answer every word's count over
//! HTTP, forwarding to the owner, while a third instance joins and one leaves.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::wordcount::{oracle, produce_lines};
use support::{real_kafka, unique, Cluster};

/// `target/<profile>/examples/service`, which `cargo test --features http` builds.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("service");
    assert!(
        path.exists(),
        "{} is missing; `cargo test --features http` builds it",
        path.display()
    );
    path
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// `GET path` on `addr`: the status and body, or `None` if nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_full(addr, path).map(|(status, _, body)| (status, body))
}

/// `GET path` on `addr`: the status, the instance whose store answered, and the body.
fn get_full(addr: SocketAddr, path: &str) -> Option<(u16, Option<String>, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let served_by = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-kstreams-served-by"))
            .map(|(_, v)| v.trim().to_owned())
    });
    Some((status, served_by, body.to_owned()))
}

struct Instance {
    addr: SocketAddr,
    child: Child,
}

impl Instance {
    fn start(
        kafka: &dyn Cluster,
        input: &str,
        app: &str,
        dir: &std::path::Path,
        name: &str,
    ) -> Self {
        let addr = free_port();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(example())
            .args(["--bootstrap-servers", &kafka.bootstrap()])
            .args(["--input-topic", input])
            .args(["--application-id", app])
            .args(["--partitions", "4"])
            .arg("--state-dir")
            .arg(dir.join(name))
            .args(["--http-addr", &addr.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the service example");
        Instance { addr, child }
    }

    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the service exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the service did not stop within 60 s of SIGTERM");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks every instance for every word until all answer right; a wrong answer other than
/// "not yet" (503, or a count the input has not reached) fails. Returns, per instance asked,
/// which instances' stores answered.
fn all_answer(
    instances: &[&Instance],
    want: &HashMap<String, i64>,
    what: &str,
) -> HashMap<SocketAddr, BTreeSet<String>> {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let mut pending = Vec::new();
        let mut served: HashMap<SocketAddr, BTreeSet<String>> = HashMap::new();
        for instance in instances {
            for (word, count) in want {
                match get_full(instance.addr, &format!("/count/{word}")) {
                    Some((200, by, body)) => {
                        served
                            .entry(instance.addr)
                            .or_default()
                            .insert(by.unwrap_or_default());
                        let got: i64 = body.trim().parse().expect("a decimal count");
                        assert!(
                            got <= *count,
                            "{what}: {word} = {got} > {count} at {}",
                            instance.addr
                        );
                        if got != *count {
                            pending.push(format!("{word}={got} at {}", instance.addr));
                        }
                    }
                    other => pending.push(format!("{word}: {other:?} at {}", instance.addr)),
                }
            }
        }
        if pending.is_empty() {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} answers still wrong, e.g. {:?}",
            pending.len(),
            &pending[..pending.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Asks `addr` for the words over and over until `stop`: every answer must be the final count
/// or a 503 (retry); returns (right answers, 503s).
fn keep_asking(
    addr: SocketAddr,
    want: HashMap<String, i64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut right, mut unavailable) = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (word, count) in &want {
                match get(addr, &format!("/count/{word}")) {
                    Some((200, body)) => {
                        assert_eq!(
                            body.trim(),
                            count.to_string(),
                            "{word} at {addr} while instances come and go"
                        );
                        right += 1;
                    }
                    Some((503, _)) => unavailable += 1,
                    other => panic!("{word} at {addr} while instances come and go: {other:?}"),
                }
            }
        }
        (right, unavailable)
    })
}

fn wait_healthy(instance: &Instance) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(instance.addr, "/health").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "{} not healthy after 60 s",
            instance.addr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn instances_answer_for_each_other_while_one_joins_and_one_leaves() {
    let kafka = real_kafka();
    let input = unique("service-in");
    let app = unique("service");
    kafka.create_topic(&input, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    produce_lines(&kafka, &input, 0..1500);
    let mut counts = HashMap::new();
    oracle(0..1500, &mut counts);
    let mut sample: Vec<(String, i64)> = counts.into_iter().collect();
    sample.sort();
    let want: HashMap<String, i64> = sample.into_iter().step_by(7).take(60).collect();

    let a = Instance::start(&kafka, &input, &app, dir.path(), "a");
    let b = Instance::start(&kafka, &input, &app, dir.path(), "b");
    wait_healthy(&a);
    wait_healthy(&b);
    let served = all_answer(&[&a, &b], &want, "two instances");
    // Each asked the other for some words: both stores answered through each instance.
    let both: BTreeSet<String> = [a.addr.to_string(), b.addr.to_string()].into();
    assert_eq!(served[&a.addr], both, "answers through {}", a.addr);
    assert_eq!(served[&b.addr], both, "answers through {}", b.addr);
    assert_eq!(
        get(a.addr, "/count/never0seen0word").map(|r| r.0),
        Some(404)
    );
    assert_eq!(
        get(b.addr, "/count/never0seen0word").map(|r| r.0),
        Some(404)
    );

    let (status, metrics) = get(a.addr, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "kafka_streams_stream_thread_process_total"));
    let (status, mermaid) = get(a.addr, "/topology").expect("topology");
    assert_eq!(status, 200);
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");

    // From here on the counts are final: an instance that stays answers each word with it, or
    // with 503 while its owner moves, never with anything else.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = keep_asking(b.addr, want.clone(), stop.clone());

    // A third joins: partitions move; every instance still answers every word.
    let c = Instance::start(&kafka, &input, &app, dir.path(), "c");
    wait_healthy(&c);
    let served = all_answer(&[&a, &b, &c], &want, "after a third joined");
    assert!(
        served[&a.addr].contains(&c.addr.to_string()),
        "the third instance owns some words: {served:?}"
    );

    // One leaves: the other two take its partitions over, restoring them from the changelog.
    let a_addr = a.addr.to_string();
    a.terminate();
    let served = all_answer(&[&b, &c], &want, "after one left");
    assert!(
        served.values().all(|by| !by.contains(&a_addr)),
        "nothing is served by the instance that left: {served:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (right, unavailable) = checker
        .join()
        .expect("answers while instances came and went");
    eprintln!("while one joined and one left: {right} right answers, {unavailable} 503s");
    assert!(right > 0);
    b.terminate();
    c.terminate();
}
