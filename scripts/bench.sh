#!/usr/bin/env bash
# The side-by-side benchmark, in one command: builds kstreams (release) and the Kafka Streams
# (Java) cases (benches/java, with Maven), starts a real broker, preloads the inputs, runs every
# case several times, prints the table and writes it with the date, machine and versions to
# benches/results/<date>-compare.md. Stops the broker on any exit.
#
# Environment (all optional): KSTREAMS_BENCH_LINES (word-count input lines, 1000000),
# KSTREAMS_BENCH_RECORDS (map/filter input records, 4000000), KSTREAMS_BENCH_RESTORE_KEYS
# (1000000), KSTREAMS_BENCH_REPS (3), KSTREAMS_BENCH_THREADS (2), KSTREAMS_BENCH_PARTITIONS (4),
# KSTREAMS_BENCH_ONLY (run only cases whose name contains this), KAFKA_PORT (39392),
# KAFKA_STREAMS_VERSION (the Java peer, 4.4.0), KAFKA_VERSION (the broker, 4.2.1),
# KSTREAMS_BENCH_SET (extra kstreams settings, `key=value;key=value`, for tuning studies only).
# KSTREAMS_BENCH_LOGS=<dir> keeps each kstreams run's worker log there (choose its content with
# RUST_LOG, e.g. `info,librdkafka=debug` with KSTREAMS_BENCH_SET=consumer.debug=cgrp,fetch).
# KSTREAMS_BENCH_SCALING=1 runs the scaling study instead: word count against stream threads (1, 2)
# and distinct keys (KSTREAMS_BENCH_SCALING_KEYS, 10000,1000000,10000000), written to
# benches/results/<date>-scaling.md (KSTREAMS_BENCH_SCALING_REPS, 1; _RECORDS, 2000000 at least).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need=()
[ -x /usr/bin/time ] || need+=(time)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v pkill >/dev/null 2>&1 || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

kafka_version=${KAFKA_VERSION:-4.2.1}
# The peer is the newest Kafka Streams on Maven Central; the broker stays at the version whose
# system-test jar is served (scripts/kafka.sh), which a 4.x client talks to unchanged.
streams_version=${KAFKA_STREAMS_VERSION:-4.4.0}
echo "== building the Kafka Streams $streams_version cases (Maven)"
mvn -B -q -f benches/java/pom.xml -Dkafka.version="$streams_version" package -DskipTests
java_cp="$repo/benches/java/target/classes:$repo/benches/java/target/lib/*"

echo "== building kstreams (release)"
# A release build compiles RocksDB with optimizations: never link the test profile's copy.
unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
cargo bench --bench compare --no-run

export KAFKA_PORT=${KAFKA_PORT:-39392}
export KSTREAMS_KAFKA_DIR=${KSTREAMS_KAFKA_DIR:-$repo/target/kafka-bench}
scripts/kafka.sh fetch >/dev/null
trap 'scripts/kafka.sh stop || true' EXIT
trap 'exit 130' INT TERM
echo "== starting Apache Kafka $kafka_version"
scripts/kafka.sh start

echo "== running"
KSTREAMS_BENCH_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" \
KSTREAMS_BENCH_JAVA_CP="$java_cp" \
KSTREAMS_BENCH_KAFKA_VERSION="$kafka_version" \
KSTREAMS_BENCH_STREAMS_VERSION="$streams_version" \
    cargo bench --bench compare
