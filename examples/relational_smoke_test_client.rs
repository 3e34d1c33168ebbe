//! Kafka Streams' relational smoke system-test application, ported: the topology of the `App` in
//! Kafka's `RelationalSmokeTest`, with its binary formats, so that the same class's own driver
//! (`RelationalSmokeTest driver <bootstrap>`: 1000 articles and 10 000 comments produced over a
//! minute, then the outputs verified against the inputs) checks kstreams as it checks Kafka
//! Streams.
//!
//! Articles (`in-article`) and comments (`in-comment`, each naming its article) are tables keyed
//! by a 4-byte big-endian Integer id. The application
//! - counts the comments per article (`group_by` the comment's article id, `count`) and
//!   left-joins the articles with those counts (0 without comments): `out-augmented-article`;
//! - joins each comment to its article by the foreign key `article_id` and embeds the first ten
//!   characters of the article's text: `out-augmented-comment`.
//!
//! Value formats, all big-endian, strings UTF-8 with an Integer length before them, as Kafka's
//! serializers write them: Article `key:i32 timestamp:i64 len:i32 text`; Comment `key:i32
//! timestamp:i64 len:i32 text article_id:i32`; AugmentedArticle an Article then `count:i64`;
//! AugmentedComment a Comment then `len:i32 article_prefix`.
//!
//! Upstream gives every instance a random application id (each one processes everything); here
//! they share one (`RelationalSmokeTest` by default) so that instances split the tasks and a
//! killed instance's tasks move, as in Kafka's other system tests. Like `smoke_test_client`, it
//! prints `<name>: SMOKE-TEST-CLIENT-STARTED`, `<name>: Streams has started.` (what upstream's
//! script waits for), state changes, and `SMOKE-TEST-CLIENT-CLOSED` or
//! `SMOKE-TEST-CLIENT-EXCEPTION`, and runs until SIGINT or SIGTERM.
//!
//! ```sh
//! cargo run --example relational_smoke_test_client -- --bootstrap-servers 127.0.0.1:9092 \
//!     --processing-guarantee exactly_once_v2
//! ```

// A system-test client reports on stdout; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use kstreams::prelude::*;
use kstreams::serdes::SerdeError;
use kstreams::{KafkaStreams, State};

/// Kafka Streams' relational smoke system-test application on kstreams.
#[derive(Debug, Parser)]
#[command(name = "relational_smoke_test_client", version)]
struct Args {
    #[arg(long)]
    bootstrap_servers: String,
    /// This instance's name (Kafka's `nodeId`): in what it prints and in its client id.
    #[arg(long, default_value = "kstreams-relational")]
    name: String,
    #[arg(long, default_value = "RelationalSmokeTest")]
    application_id: String,
    #[arg(long, default_value = "at_least_once")]
    processing_guarantee: String,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// commit.interval.ms; upstream's application sets 1000.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging("warn");
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("{}: SMOKE-TEST-CLIENT-EXCEPTION: {e}", args.name);
            eprintln!("relational_smoke_test_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

const ARTICLE_SOURCE: &str = "in-article";
const COMMENT_SOURCE: &str = "in-comment";
const ARTICLE_RESULT_SINK: &str = "out-augmented-article";
const COMMENT_RESULT_SINK: &str = "out-augmented-comment";

/// How many characters of its article's text an augmented comment carries.
const PREFIX_CHARS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
struct Article {
    key: i32,
    timestamp: i64,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Comment {
    key: i32,
    timestamp: i64,
    text: String,
    article_id: i32,
}

#[derive(Debug, Clone, PartialEq)]
struct AugmentedArticle {
    article: Article,
    comment_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct AugmentedComment {
    comment: Comment,
    article_prefix: String,
}

/// Reads Java `ByteBuffer` fields front to back.
struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader { what, bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SerdeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            SerdeError::Custom(format!(
                "a {} of {} bytes ends before byte {}",
                self.what,
                self.bytes.len(),
                self.at.saturating_add(n)
            ))
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, SerdeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, SerdeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }

    /// An Integer length, then that many bytes of UTF-8.
    fn string(&mut self) -> Result<String, SerdeError> {
        let len = self.i32()?;
        let len = usize::try_from(len).map_err(|_| {
            SerdeError::Custom(format!("a {} with a text of length {len}", self.what))
        })?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            SerdeError::Custom(format!(
                "a {} with a text that is not UTF-8: {e}",
                self.what
            ))
        })
    }

    /// Fails if bytes are left over.
    fn end(&self) -> Result<(), SerdeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(SerdeError::Custom(format!(
                "a {} with {} bytes left over",
                self.what,
                self.bytes.len() - self.at
            )))
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) -> Result<(), SerdeError> {
    let len = i32::try_from(text.len())
        .map_err(|_| SerdeError::Custom(format!("a text of {} bytes", text.len())))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_article(a: &Article, out: &mut Vec<u8>) -> Result<(), SerdeError> {
    out.extend_from_slice(&a.key.to_be_bytes());
    out.extend_from_slice(&a.timestamp.to_be_bytes());
    write_string(&a.text, out)
}

fn read_article(r: &mut Reader<'_>) -> Result<Article, SerdeError> {
    Ok(Article {
        key: r.i32()?,
        timestamp: r.i64()?,
        text: r.string()?,
    })
}

fn write_comment(c: &Comment, out: &mut Vec<u8>) -> Result<(), SerdeError> {
    out.extend_from_slice(&c.key.to_be_bytes());
    out.extend_from_slice(&c.timestamp.to_be_bytes());
    write_string(&c.text, out)?;
    out.extend_from_slice(&c.article_id.to_be_bytes());
    Ok(())
}

fn read_comment(r: &mut Reader<'_>) -> Result<Comment, SerdeError> {
    Ok(Comment {
        key: r.i32()?,
        timestamp: r.i64()?,
        text: r.string()?,
        article_id: r.i32()?,
    })
}

/// Kafka's `ArticleSerde`.
struct ArticleSerde;

impl Serde<Article> for ArticleSerde {
    fn serialize_into(&self, a: &Article, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        write_article(a, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Article, SerdeError> {
        let mut r = Reader::new("Article", bytes);
        let a = read_article(&mut r)?;
        r.end()?;
        Ok(a)
    }
}

/// Kafka's `CommentSerde`.
struct CommentSerde;

impl Serde<Comment> for CommentSerde {
    fn serialize_into(&self, c: &Comment, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        write_comment(c, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Comment, SerdeError> {
        let mut r = Reader::new("Comment", bytes);
        let c = read_comment(&mut r)?;
        r.end()?;
        Ok(c)
    }
}

/// Kafka's `AugmentedArticleSerde`.
struct AugmentedArticleSerde;

impl Serde<AugmentedArticle> for AugmentedArticleSerde {
    fn serialize_into(&self, a: &AugmentedArticle, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        write_article(&a.article, out)?;
        out.extend_from_slice(&a.comment_count.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<AugmentedArticle, SerdeError> {
        let mut r = Reader::new("AugmentedArticle", bytes);
        let a = AugmentedArticle {
            article: read_article(&mut r)?,
            comment_count: r.i64()?,
        };
        r.end()?;
        Ok(a)
    }
}

/// Kafka's `AugmentedCommentSerde`.
struct AugmentedCommentSerde;

impl Serde<AugmentedComment> for AugmentedCommentSerde {
    fn serialize_into(&self, c: &AugmentedComment, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        write_comment(&c.comment, out)?;
        write_string(&c.article_prefix, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<AugmentedComment, SerdeError> {
        let mut r = Reader::new("AugmentedComment", bytes);
        let c = AugmentedComment {
            comment: read_comment(&mut r)?,
            article_prefix: r.string()?,
        };
        r.end()?;
        Ok(c)
    }
}

/// Java's `Serdes.Short()`: 2 bytes big-endian (the value the comments are grouped with).
struct ShortSerde;

impl Serde<i16> for ShortSerde {
    fn serialize_into(&self, v: &i16, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<i16, SerdeError> {
        let b: [u8; 2] = bytes.try_into().map_err(|_| SerdeError::Length {
            type_name: "i16",
            expected: 2,
            actual: bytes.len(),
        })?;
        Ok(i16::from_be_bytes(b))
    }
}

/// The first `PREFIX_CHARS` characters of `text` (Java's `substring` counts UTF-16 units; the
/// driver's texts are ASCII letters, where the two agree).
fn prefix(text: &str) -> String {
    text.chars().take(PREFIX_CHARS).collect()
}

fn topology() -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    let articles = builder.table::<i32, Article>(
        ARTICLE_SOURCE,
        Consumed::with(Serdes::i32(), ArticleSerde),
        Materialized::default(),
    );
    let comments = builder.table::<i32, Comment>(
        COMMENT_SOURCE,
        Consumed::with(Serdes::i32(), CommentSerde),
        Materialized::default(),
    );

    let comment_counts = comments
        .group_by(
            |_, comment| (comment.article_id, 1i16),
            Grouped::with(Serdes::i32(), ShortSerde),
        )
        .count(Materialized::default());

    articles
        .left_join(
            &comment_counts,
            |article, count| AugmentedArticle {
                article: article.clone(),
                comment_count: count.copied().unwrap_or(0),
            },
            Materialized::with(Serdes::i32(), AugmentedArticleSerde),
        )
        .to_stream()
        .to(
            ARTICLE_RESULT_SINK,
            Produced::with(Serdes::i32(), Serdes::option(AugmentedArticleSerde)),
        );

    comments
        .join_on_foreign_key(
            &articles,
            |comment| comment.article_id,
            |comment, article| AugmentedComment {
                comment: comment.clone(),
                article_prefix: prefix(&article.text),
            },
            TableJoined::default(),
            Materialized::with(Serdes::i32(), AugmentedCommentSerde),
        )
        .to_stream()
        .to(
            COMMENT_RESULT_SINK,
            Produced::with(Serdes::i32(), Serdes::option(AugmentedCommentSerde)),
        );

    builder.build()
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kstreams-relational-{}", args.name)));
    let config = StreamsConfig::new(&args.application_id)
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("client.id", &args.name)
        .set("processing.guarantee", &args.processing_guarantee)
        .set("commit.interval.ms", args.commit_interval_ms)
        .set("auto.offset.reset", "earliest")
        .set("num.stream.threads", args.threads)
        .set("state.dir", state_dir.display());
    let streams = KafkaStreams::new(topology()?, config)?;
    let name = args.name.clone();
    let started = Arc::new(AtomicBool::new(false));
    streams.set_state_listener(move |new, old| {
        println!(
            "{name} {}: {} -> {}",
            chrono::Utc::now().to_rfc3339(),
            support::java_state_name(old),
            support::java_state_name(new)
        );
        if old == State::Rebalancing
            && new == State::Running
            && !started.swap(true, Ordering::Relaxed)
        {
            println!("{name}: Streams has started.");
        }
        let _ = std::io::stdout().flush();
    });
    support::run_as_smoke_client(&streams, &args.name)
}
