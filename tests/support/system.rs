//! Running applications the way Kafka's system tests do: example binaries as processes that a
//! test starts, stops, kills with SIGKILL (some losing their state directory) on a schedule;
//! Kafka's own system-test drivers (`StreamsEosTest`, `StreamsSmokeTest`, ... from the
//! `kafka-streams` test jar) as Java processes; and clearing what an earlier run of a driver with
//! fixed topic names left on the broker.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Cluster, RealKafka};

/// `target/<profile>/examples/<name>`, which `cargo test` builds with the tests.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing; `cargo test` builds it",
        path.display()
    );
    path
}

/// One example process and its state directory.
pub struct Instance {
    pub name: String,
    binary: PathBuf,
    pub state_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Lines it printed, for diagnosis and for waiting on them.
    pub output: Arc<Mutex<Vec<String>>>,
    pub starts: u32,
}

impl Instance {
    /// An `eos_test_client` instance.
    pub fn new(name: &str, state_root: &Path, args: Vec<String>) -> Instance {
        Instance::of("eos_test_client", name, state_root, args)
    }

    /// An instance of example `example`, run with `args` and `--state-dir <state_root>/<name>`.
    pub fn of(example: &str, name: &str, state_root: &Path, args: Vec<String>) -> Instance {
        Instance {
            name: name.to_owned(),
            binary: example_binary(example),
            state_dir: state_root.join(name),
            args,
            child: None,
            output: Arc::default(),
            starts: 0,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let mut child = Command::new(&self.binary)
            .args(&self.args)
            .args(["--state-dir", self.state_dir.to_str().expect("utf-8 path")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the example");
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (out, name, run) = (self.output.clone(), self.name.clone(), self.starts);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock()
                        .expect("output")
                        .push(format!("[{name}#{run}] {line}"));
                }
            });
        }
        self.starts += 1;
        self.child = Some(child);
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a graceful exit; panics if it fails or takes too long.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not stop within 120 s:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{} exited with {status:?}:\n{}",
            self.name,
            self.tail(40)
        );
    }

    /// The last `n` lines it printed.
    pub fn tail(&self, n: usize) -> String {
        let out = self.output.lock().expect("output");
        out[out.len().saturating_sub(n)..].join("\n")
    }

    /// Lines printed so far that contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.output
            .lock()
            .expect("output")
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a chaos schedule did.
#[derive(Debug, Default)]
pub struct Chaos {
    pub kills: u32,
    pub wipes: u32,
    pub graceful: u32,
}

/// Runs `instances` while input flows for `seconds`: every `every`, one instance (in turn) is
/// killed with SIGKILL (every third time its state directory is deleted too) and started again
/// a moment later; every fourth time it is stopped gracefully instead.
pub fn chaos(instances: &mut [Instance], seconds: u64, every: Duration) -> Chaos {
    let until = Instant::now() + Duration::from_secs(seconds);
    chaos_while(instances, every, || Instant::now() + every < until)
}

/// [`chaos`]'s schedule for as long as `keep_going()` says so (asked before each bounce), for
/// a test that bounces until a driver reports it is done rather than for a fixed time.
pub fn chaos_while(
    instances: &mut [Instance],
    every: Duration,
    mut keep_going: impl FnMut() -> bool,
) -> Chaos {
    let mut done = Chaos::default();
    let mut turn = 0usize;
    while keep_going() {
        std::thread::sleep(every);
        let victim = &mut instances[turn % instances.len()];
        turn += 1;
        if turn.is_multiple_of(4) {
            victim.stop();
            done.graceful += 1;
        } else {
            victim.kill();
            done.kills += 1;
            if turn.is_multiple_of(3) {
                let _ = std::fs::remove_dir_all(&victim.state_dir);
                done.wipes += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        victim.start();
    }
    done
}

pub fn dump(instances: &[Instance]) -> String {
    instances
        .iter()
        .map(|i| i.tail(30))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Java classpath of Kafka Streams' system-test drivers.
pub fn kafka_tests_classpath() -> String {
    if let Ok(cp) = std::env::var("KSTREAMS_KAFKA_TESTS_CP") {
        return cp;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let out = Command::new(script)
        .arg("tests-classpath")
        .output()
        .expect("scripts/kafka.sh tests-classpath");
    assert!(out.status.success(), "fetching Kafka's test jars failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `java -cp <classpath> org.apache.kafka.streams.tests.<class> <props> <command>`.
pub fn kafka_driver(classpath: &str, class: &str, props: &Path, command: &str) -> Command {
    let mut c = Command::new("java");
    c.args(["-Xmx256m", "-cp", classpath])
        .arg(format!("org.apache.kafka.streams.tests.{class}"))
        .arg(props)
        .arg(command);
    c
}

/// Deletes what an earlier run against the same broker left: Kafka's driver has fixed names,
/// so its topics, the application's internal topics and its group go.
pub fn delete_leftovers(kafka: &RealKafka, topics: &[String], app: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::Consumer;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("admin");
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("metadata");
    let internal = format!("{app}-");
    let ours = |name: &str| topics.iter().any(|n| n == name) || name.starts_with(&internal);
    let existing: Vec<String> = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| ours(n))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().map(String::as_str).collect();
        let _ = futures::executor::block_on(admin.delete_topics(&names, &opts));
    }
    let _ = futures::executor::block_on(admin.delete_groups(&[app], &opts));
    // Deletion is asynchronous: wait until the names are free.
    super::eventually(Duration::from_secs(60), "leftover topics to go", || {
        std::thread::sleep(Duration::from_millis(200));
        consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|md| !md.topics().iter().any(|t| ours(t.name())))
            .unwrap_or(false)
    });
}

pub fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `java -cp <classpath> org.apache.kafka.streams.tests.<class> <args...>`: for drivers whose
/// `main` takes its own arguments rather than a properties file and a command (such as
/// `RelationalSmokeTest driver <bootstrap>`).
pub fn kafka_main(classpath: &str, class: &str, args: &[&str]) -> Command {
    let mut c = Command::new("java");
    c.args(["-Xmx256m", "-cp", classpath])
        .arg(format!("org.apache.kafka.streams.tests.{class}"))
        .args(args);
    c
}

/// Waits until `instance` has printed a line containing `text`; panics with its output after
/// `within`.
pub fn wait_for_line(instance: &Instance, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while instance.count(text) == 0 {
        assert!(
            Instant::now() < deadline,
            "{} did not print {text:?} within {within:?}:\n{}",
            instance.name,
            instance.tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
