#!/usr/bin/env bash
# The project's one test command (README, .ci/run).
#
# On a fresh machine it installs what is missing (Debian packages, the Kafka jars from Maven
# Central), checks formatting, clippy (-D warnings) and rustdoc, builds everything, starts a real
# Apache Kafka broker (scripts/kafka.sh), runs every test (unit, doc, integration, including the
# broker tests that a plain `cargo test` leaves ignored), and stops the broker even when tests fail.
# Exits non-zero on any failure.
#
# Environment:
#   KAFKA_PORT           broker port for the run (default: 39092, away from a developer's 9092)
#   KSTREAMS_TEST_SKIP   space-separated steps to skip: fmt clippy doc (for quick local loops only)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$(date +%s)
skip=" ${KSTREAMS_TEST_SKIP:-} "

step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# --- 1. System prerequisites -------------------------------------------------------------------
step "prerequisites"
scripts/setup.sh --for-tests
cargo --version
cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing (rustup component add rustfmt)"; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing (rustup component add clippy)"; exit 1; }
scripts/kafka.sh fetch >/dev/null

# --- 2. Build ----------------------------------------------------------------------------------
if [[ $skip != *" fmt "* ]]; then
    step "cargo fmt --check"
    cargo fmt --all -- --check
fi

# RocksDB's C++ takes ~12 minutes on two cores, and cargo runs the build script again for clippy
# and rustdoc (check mode). So the first build compiles it, a stripped copy is kept (keyed by the
# librocksdb-sys version), and every later cargo invocation links that copy instead.
rocksdb_version=$(grep -A1 '^name = "librocksdb-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
prebuilt="$repo/target/rocksdb-prebuilt/$rocksdb_version"
if [ ! -f "$prebuilt/librocksdb.a" ]; then
    step "cargo build (compiles RocksDB $rocksdb_version once)"
    cargo build --workspace --all-targets --all-features --locked
    built=$(ls -t target/debug/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)
    mkdir -p "$prebuilt"
    cp "$built" "$prebuilt/librocksdb.a.tmp"
    strip --strip-debug "$prebuilt/librocksdb.a.tmp" 2>/dev/null || true
    mv "$prebuilt/librocksdb.a.tmp" "$prebuilt/librocksdb.a"
fi
export ROCKSDB_LIB_DIR="$prebuilt" ROCKSDB_STATIC=1

step "cargo build"
cargo build --workspace --all-targets --all-features --locked

# --- 3. Static checks --------------------------------------------------------------------------
if [[ $skip != *" clippy "* ]]; then
    step "cargo clippy --all-targets --all-features -- -D warnings"
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
fi
if [[ $skip != *" doc "* ]]; then
    step "cargo doc"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked
fi

# --- 4. Broker ---------------------------------------------------------------------------------
export KAFKA_PORT=${KAFKA_PORT:-39092}
export KSTREAMS_KAFKA_DIR=${KSTREAMS_KAFKA_DIR:-$repo/target/kafka-test}
step "start Apache Kafka on 127.0.0.1:$KAFKA_PORT"
stop_broker() { scripts/kafka.sh stop || true; }
trap stop_broker EXIT
trap 'exit 130' INT TERM
scripts/kafka.sh start
export KSTREAMS_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
# The secured listeners (tests/security.rs): SASL in clear, SASL over TLS, and the TLS CA.
export KSTREAMS_SASL_BOOTSTRAP_SERVERS="127.0.0.1:$((KAFKA_PORT + 2))"
export KSTREAMS_SASL_SSL_BOOTSTRAP_SERVERS="127.0.0.1:$((KAFKA_PORT + 3))"
export KSTREAMS_SSL_CA_LOCATION="$KSTREAMS_KAFKA_DIR/tls/ca.pem"

# --- 5. Tests ----------------------------------------------------------------------------------
# --include-ignored runs the broker tests, which are ignored in a plain `cargo test`.
step "cargo test (unit, doc, integration; broker at $KSTREAMS_BOOTSTRAP_SERVERS)"
# --all-features: the HTTP layer (feature `http`) and the service example's tests.
cargo test --workspace --all-features --locked -- --include-ignored

step "all checks passed in $(( $(date +%s) - started ))s"
