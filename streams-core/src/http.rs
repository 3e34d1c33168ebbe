//! The HTTP layer (cargo feature `http`): an instance's `/metrics`, `/health` and `/topology`,
//! and key lookups that answer from the local store or forward to the instance that owns the
//! key.
//!
//! - `GET /metrics`: [`KafkaStreams::prometheus_text`], Prometheus text format 0.0.4;
//! - `GET /health`: 200 `RUNNING` while the instance is [`State::Running`], else 503 with the
//!   state in the body;
//! - `GET /topology`: the topology as a Mermaid flowchart.
//!
//! [`router`] gives these routes; add your own (for instance with [`lookup`]) and serve it with
//! [`serve`]. A lookup forwarded to another instance carries the header [`HOPS_HEADER`]; after
//! [`MAX_HOPS`] forwards an instance answers from what it has, or 503, so a request never
//! circles while ownership moves.
//!
//! ```no_run
//! # async fn f(streams: streams_core::KafkaStreams) -> std::io::Result<()> {
//! use streams_core::http;
//! let app = http::router(streams.clone());
//! http::serve("127.0.0.1:8080".parse().unwrap(), app, std::future::pending()).await
//! # }
//! ```

pub use axum;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::StreamsError;
use crate::runtime::metadata::HostInfo;
use crate::runtime::queries::{NotQueryableReason, QueryableStoreTypes};
use crate::{KafkaStreams, State};

/// The header counting how often a lookup was forwarded.
pub const HOPS_HEADER: &str = "x-kstreams-hops";
/// The header naming the instance (`application.server`) whose store answered a lookup.
pub const SERVED_BY_HEADER: &str = "x-kstreams-served-by";
/// Forwards after which an instance no longer forwards a lookup.
pub const MAX_HOPS: u32 = 3;
/// How long a forwarded lookup may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// `/metrics`, `/health` and `/topology` of `streams`.
pub fn router(streams: KafkaStreams) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/topology", get(topology))
        .with_state(streams)
}

/// Serves `app` on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving HTTP");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(AxumState(streams): AxumState<KafkaStreams>) -> Response {
    let text = tokio::task::spawn_blocking(move || streams.prometheus_text())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn health(AxumState(streams): AxumState<KafkaStreams>) -> Response {
    match streams.state() {
        State::Running => (StatusCode::OK, "RUNNING\n".to_owned()).into_response(),
        other => {
            let mut body = format!("{other:?}\n");
            if let Some(e) = streams.error() {
                body.push_str(&format!("{e}\n"));
            }
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

async fn topology(AxumState(streams): AxumState<KafkaStreams>) -> String {
    streams.topology().describe().to_mermaid()
}

/// The hop count of a request ([`HOPS_HEADER`]; 0 when absent).
pub fn hops(headers: &HeaderMap) -> u32 {
    headers
        .get(HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An HTTP client that forwards lookups to other instances.
#[derive(Clone, Debug)]
pub struct Forwarder {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// A client with a connection pool.
    pub fn new() -> Self {
        Forwarder {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET http://<host><path>` with the hop count `hops`; the answer, or why there is none
    /// (unreachable, timed out).
    pub async fn get(&self, host: &HostInfo, path: &str, hops: u32) -> Result<Forwarded, String> {
        let uri = format!("http://{host}{path}");
        let request = Request::get(&uri)
            .header(HOPS_HEADER, hops.to_string())
            .body(Empty::new())
            .map_err(|e| format!("{uri}: {e}"))?;
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{uri}: {e}"))?;
            let status = response.status();
            let served_by = response
                .headers()
                .get(SERVED_BY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{uri}: {e}"))?
                .to_bytes();
            Ok::<_, String>(Forwarded {
                status,
                served_by,
                body,
            })
        })
        .await
        .map_err(|_| format!("{uri}: no answer within {FORWARD_TIMEOUT:?}"))??;
        Ok(answer)
    }
}

/// Another instance's answer to a forwarded lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Its status.
    pub status: StatusCode,
    /// Whose store answered ([`SERVED_BY_HEADER`]).
    pub served_by: Option<String>,
    /// Its body.
    pub body: Bytes,
}

/// How a [`lookup`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    /// The local store has the key.
    Found(V),
    /// The local store owns the key and has never seen it.
    Missing,
    /// Another instance answered.
    Forwarded(Forwarded),
    /// Nobody can answer now (restoring, moving, unreachable); retry.
    Unavailable(String),
}

impl<V> Lookup<V> {
    /// Maps a found value (for instance `ValueAndTimestamp<V>` of a KTable's store to `V`).
    pub fn map<W>(self, f: impl FnOnce(V) -> W) -> Lookup<W> {
        match self {
            Lookup::Found(v) => Lookup::Found(f(v)),
            Lookup::Missing => Lookup::Missing,
            Lookup::Forwarded(answer) => Lookup::Forwarded(answer),
            Lookup::Unavailable(why) => Lookup::Unavailable(why),
        }
    }
}

impl<V: std::fmt::Display> Lookup<V> {
    /// As an HTTP answer: 200 with the value, 404, the forwarded answer, or 503. Answers from
    /// a store name it in [`SERVED_BY_HEADER`]: `me` for the local one.
    pub fn into_response(self, me: Option<&HostInfo>) -> Response {
        let (status, served_by, body) = match self {
            Lookup::Found(v) => (
                StatusCode::OK,
                me.map(|h| h.to_string()),
                Bytes::from(v.to_string()),
            ),
            Lookup::Missing => (
                StatusCode::NOT_FOUND,
                me.map(|h| h.to_string()),
                Bytes::from_static(b"not found\n"),
            ),
            Lookup::Forwarded(f) => (f.status, f.served_by, f.body),
            Lookup::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, None, Bytes::from(why)),
        };
        // Plain text (UTF-8), whoever answered.
        let mut response = (status, String::from_utf8_lossy(&body).into_owned()).into_response();
        if let Some(v) = served_by.and_then(|s| HeaderValue::from_str(&s).ok()) {
            response.headers_mut().insert(SERVED_BY_HEADER, v);
        }
        response
    }
}

/// Looks `key` up in key-value store `store`: in the local store when this instance owns the
/// key, else at its owner (`GET <owner><path>`, one more hop). Needs `application.server`.
pub async fn lookup<K, V>(
    streams: &KafkaStreams,
    forwarder: &Forwarder,
    store: &str,
    key: K,
    keys: &dyn state_stores::Serde<K>,
    path: &str,
    hops: u32,
) -> Lookup<V>
where
    K: Send + Sync + 'static,
    V: Send + 'static,
{
    let owner = match streams.query_metadata_for_key(store, &key, keys) {
        Ok(m) => m.active_host,
        Err(e) => return Lookup::Unavailable(format!("{e}\n")),
    };
    let me = streams.application_server();
    if let Some(owner) = owner.filter(|o| Some(o) != me) {
        if hops >= MAX_HOPS {
            return Lookup::Unavailable(format!(
                "the key's owner is moving (forwarded {hops} times already); retry\n"
            ));
        }
        return match forwarder.get(&owner, path, hops + 1).await {
            Ok(answer) => Lookup::Forwarded(answer),
            Err(e) => Lookup::Unavailable(format!("the key's owner {owner} did not answer: {e}\n")),
        };
    }
    let streams = streams.clone();
    let store = store.to_owned();
    let local = tokio::task::spawn_blocking(move || {
        streams
            .store(&store, QueryableStoreTypes::key_value::<K, V>())?
            .get(&key)
    })
    .await;
    match local {
        Ok(Ok(Some(v))) => Lookup::Found(v),
        Ok(Ok(None)) => Lookup::Missing,
        Ok(Err(StreamsError::StoreNotQueryable { store, reason })) => {
            let what = match reason {
                NotQueryableReason::Restoring => "restoring",
                _ => "not available here now",
            };
            Lookup::Unavailable(format!("store `{store}` is {what} ({reason}); retry\n"))
        }
        Ok(Err(e)) => Lookup::Unavailable(format!("{e}\n")),
        Err(e) => Lookup::Unavailable(format!("the lookup failed: {e}\n")),
    }
}
