#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x broker (KRaft: broker and controller in one JVM) on 127.0.0.1,
# built from jars that Maven fetches from Maven Central and caches.
#
#   scripts/kafka.sh start    format a fresh log directory, start the broker, wait until it accepts
#                             clients, print the bootstrap address and the log file
#   scripts/kafka.sh stop     shut the broker down cleanly (SIGTERM, then wait for the JVM to exit)
#   scripts/kafka.sh restart  stop it cleanly and start it again on the same data (fault tests)
#   scripts/kafka.sh pid      print the broker's pid (fault tests pause it with SIGSTOP/SIGCONT)
#   scripts/kafka.sh status   say whether it runs (exit 0 if it does, 3 if not)
#   scripts/kafka.sh fetch    only resolve and cache the jars (the broker's, and Kafka Streams'
#                             system-test drivers that the tests use as external oracles)
#   scripts/kafka.sh tests-classpath
#                             print the Java classpath of those drivers (fetching them if needed)
#
# Environment:
#   KAFKA_PORT             client (PLAINTEXT) port, default 9092
#   KAFKA_CONTROLLER_PORT  KRaft controller port, default KAFKA_PORT + 1
#   KAFKA_SASL_PORT        SASL_PLAINTEXT port (mechanisms PLAIN and SCRAM-SHA-512), default KAFKA_PORT + 2
#   KAFKA_SASL_SSL_PORT    SASL_SSL port (TLS, same mechanisms), default KAFKA_PORT + 3
#
# The secured listeners know one user, `kstreams` with password `kstreams-secret` (PLAIN and
# SCRAM-SHA-512). The TLS listener's certificate is signed by a CA made at each start, whose
# certificate is <KSTREAMS_KAFKA_DIR>/tls/ca.pem; it names 127.0.0.1 and localhost. `start` prints
# the secured addresses too (needs the openssl command).
#   KAFKA_VERSION          Apache Kafka version from Maven Central, default 4.2.1
#   KAFKA_HEAP_OPTS        JVM heap flags, default "-Xms512m -Xmx1g"
#   KAFKA_START_TIMEOUT    seconds to wait for readiness, default 60
#   KSTREAMS_KAFKA_DIR     where the broker's config, data, logs and pid live, default <repo>/.kafka
#   KSTREAMS_CACHE_DIR     where the jars are cached, default ~/.cache/kstreams
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
sasl_port=${KAFKA_SASL_PORT:-$((port + 2))}
sasl_ssl_port=${KAFKA_SASL_SSL_PORT:-$((port + 3))}
sasl_user=kstreams
sasl_password=kstreams-secret
version=${KAFKA_VERSION:-4.2.1}
log4j_version=${KAFKA_LOG4J_VERSION:-2.25.4}
heap=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
timeout=${KAFKA_START_TIMEOUT:-60}
home=${KSTREAMS_KAFKA_DIR:-$repo/.kafka}
cache=${KSTREAMS_CACHE_DIR:-$HOME/.cache/kstreams}
lib=$cache/kafka-$version/lib
tests_lib=$cache/kafka-streams-tests-$version/lib
pidfile=$home/broker.pid
logfile=$home/logs/server.log

say() { echo "kafka.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid that now belongs to something else.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

port_in_use() {
    # Something accepts connections on the port, or the kernel already has it bound.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if command -v ss >/dev/null 2>&1; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    return 1
}

fetch() {
    if [ -f "$lib/.complete" ]; then
        return 0
    fi
    command -v java >/dev/null || die "java not found; install a JDK 17+ (Debian: openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "mvn not found; install Maven (Debian: maven)"
    say "resolving Apache Kafka $version from Maven Central into $lib"
    rm -rf "$lib"
    mkdir -p "$lib"
    mvn -B -q -f "$repo/scripts/kafka/pom.xml" \
        -Dkafka.version="$version" -Dlog4j.version="$log4j_version" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" >&2 \
        || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)"
    ls "$lib"/kafka_2.13-"$version".jar >/dev/null 2>&1 || die "Maven finished but kafka_2.13-$version.jar is missing from $lib"
    touch "$lib/.complete"
}

fetch_tests() {
    if [ -f "$tests_lib/.complete" ]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found; install Maven (Debian: maven)"
    say "resolving Kafka Streams $version system-test drivers from Maven Central into $tests_lib"
    rm -rf "$tests_lib"
    mkdir -p "$tests_lib"
    mvn -B -q -f "$repo/scripts/kafka/streams-tests-pom.xml" \
        -Dkafka.version="$version" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tests_lib" >&2 \
        || die "Maven could not resolve org.apache.kafka:kafka-streams:$version:test (is Maven Central reachable?)"
    ls "$tests_lib"/kafka-streams-"$version"-test.jar >/dev/null 2>&1 || die "Maven finished but kafka-streams-$version-test.jar is missing from $tests_lib"
    touch "$tests_lib/.complete"
}

# A CA and a broker certificate for the TLS listener (PEM, unencrypted keys), made at each start.
write_tls() {
    local tls=$home/tls
    rm -rf "$tls"
    mkdir -p "$tls"
    chmod 700 "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
            -subj "/CN=kstreams test CA" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
            -subj "/CN=localhost" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out broker.pem -days 30 -extfile san.ext 2>/dev/null
        openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
        cat broker.pk8 broker.pem ca.pem >broker-keystore.pem
        rm -f broker.csr broker.key ca.key ca.srl san.ext
    ) || die "openssl could not make the TLS listener's certificates in $tls"
}

write_config() {
    mkdir -p "$home/data" "$home/logs"
    cat >"$home/server.properties" <<EOF
# Written by scripts/kafka.sh: one node that is both broker and KRaft controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SASL_SSL://127.0.0.1:$sasl_ssl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SASL_SSL://127.0.0.1:$sasl_ssl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$home/data

# Secured listeners for the security tests: SASL (PLAIN, SCRAM-SHA-512) in clear and over TLS.
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$home/tls/broker-keystore.pem

# One broker: every internal topic has one replica, or groups and transactions never work.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Deterministic partition counts: applications create their topics through the Admin API.
auto.create.topics.enable=false
num.partitions=1
group.initial.rebalance.delay.ms=0

# A killed member holds its partitions until its session expires (45 s by default); the tests
# kill members on purpose.
group.consumer.session.timeout.ms=15000
group.consumer.min.session.timeout.ms=10000
EOF
    cat >"$home/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $logfile
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
EOF
}

start() {
    if pid=$(running_pid); then
        die "a broker started from $home already runs (pid $pid); run 'scripts/kafka.sh stop' first"
    fi
    command -v openssl >/dev/null || die "openssl not found; the TLS listener needs it (Debian: openssl)"
    for p in "$port" "$cport" "$sasl_port" "$sasl_ssl_port"; do
        if port_in_use "$p"; then
            die "port $p on 127.0.0.1 is already in use; stop whatever holds it or choose another with KAFKA_PORT=<port> (controller: KAFKA_CONTROLLER_PORT)"
        fi
    done
    fetch
    began=$(date +%s%N)
    rm -rf "$home/data" "$home/logs"
    write_config
    write_tls

    # A cluster id is a base64url-encoded random 16-byte UUID (what StorageTool random-uuid prints);
    # making it here saves one JVM start. One that begins with `-` would read as an option to
    # StorageTool (about 1 start in 64 failed so), so draw again.
    local cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    java -Xmx256m -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$lib/*" \
        kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$home/server.properties" \
        --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" \
        >"$home/logs/format.log" 2>&1 || { cat "$home/logs/format.log" >&2; die "formatting $home/data failed"; }
    launch
}

# Starts the JVM on the configured, formatted log directory and waits until it serves clients.
launch() {
    # A restart appends to the same log: wait for a start line written after this point.
    local seen=0
    [ -f "$logfile" ] && seen=$(grep -c 'Kafka Server started' "$logfile" 2>/dev/null || true)

    # setsid: the broker must outlive this script and not receive the caller's terminal signals.
    # shellcheck disable=SC2086
    setsid java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$home/log4j2.properties" \
        -cp "$lib/*" kafka.Kafka "$home/server.properties" \
        >>"$home/logs/stdout.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pidfile"

    local deadline=$(( $(date +%s) + timeout ))
    until [ "$(grep -c 'Kafka Server started' "$logfile" 2>/dev/null || true)" -gt "$seen" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            say "the broker exited during start-up; last lines of its logs:"
            tail -n 20 "$home/logs/stdout.log" "$logfile" >&2 2>/dev/null || true
            if grep -qi 'Address already in use' "$home/logs/stdout.log" "$logfile" 2>/dev/null; then
                die "port $port or $cport on 127.0.0.1 is already in use; choose another with KAFKA_PORT=<port>"
            fi
            die "broker failed to start (log: $logfile)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "the broker did not become ready within ${timeout}s; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            stop >/dev/null 2>&1 || true
            die "broker start timed out (raise KAFKA_START_TIMEOUT to wait longer)"
        fi
        sleep 0.2
    done
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
    local ms=$(( ($(date +%s%N) - began) / 1000000 ))
    say "Apache Kafka $version ready in ${ms} ms (pid $pid)"
    echo "bootstrap.servers=127.0.0.1:$port"
    echo "sasl.bootstrap.servers=127.0.0.1:$sasl_port"
    echo "sasl_ssl.bootstrap.servers=127.0.0.1:$sasl_ssl_port"
    echo "ssl.ca.location=$home/tls/ca.pem"
    echo "log=$logfile"
}

restart() {
    [ -f "$home/server.properties" ] && [ -d "$home/data" ] \
        || die "no broker data in $home to restart on; use 'scripts/kafka.sh start'"
    stop
    began=$(date +%s%N)
    launch
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$pidfile"
        say "no broker runs from $home"
        return 0
    fi
    kill -TERM "$pid"
    local i
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker (pid $pid) still running 30 s after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
    say "broker stopped (pid $pid)"
}

status() {
    local pid
    if pid=$(running_pid); then
        echo "running: pid $pid, bootstrap.servers=127.0.0.1:$port, log=$logfile"
        return 0
    fi
    echo "not running"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    pid) running_pid || { say "no broker runs from $home"; exit 3; } ;;
    status) status ;;
    fetch) fetch; fetch_tests; echo "$lib" ;;
    tests-classpath) fetch_tests; echo "$tests_lib/*" ;;
    *) echo "usage: $0 start|stop|restart|pid|status|fetch|tests-classpath" >&2; exit 2 ;;
esac
