#!/usr/bin/env bash
# Installs what building kstreams needs beyond Rust, or says what is missing.
#
#   scripts/setup.sh              build prerequisites: a C/C++ toolchain, CMake and pkg-config
#                                 (librdkafka), libclang (bindgen, for the rocksdb crate), OpenSSL
#                                 and zlib headers (TLS/SASL and compression in librdkafka)
#   scripts/setup.sh --for-tests  also a JDK 17+, Maven (the real Kafka broker and Kafka's
#                                 system-test drivers come from Maven Central) and openssl
#
# On Debian and Ubuntu it installs the missing packages with apt-get (through sudo unless run as
# root). Elsewhere it lists what to install and exits non-zero if something is missing.
set -euo pipefail

for_tests=false
case "${1:-}" in
    --for-tests) for_tests=true ;;
    "") ;;
    *) echo "usage: $0 [--for-tests]" >&2; exit 2 ;;
esac

command -v cargo >/dev/null 2>&1 || {
    echo "setup.sh: cargo not found; install Rust first: https://rustup.rs" >&2
    exit 1
}

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || missing+=("$1"); }
    need_pkg build-essential   # C/C++ toolchain for librdkafka and RocksDB
    need_pkg cmake             # librdkafka's build
    need_pkg pkg-config
    need_pkg libclang-dev      # bindgen for the rocksdb crate
    need_pkg clang
    need_pkg libssl-dev        # TLS and SASL SCRAM in librdkafka
    need_pkg zlib1g-dev
    if $for_tests; then
        need_pkg openssl       # certificates of the test broker's TLS listener
        command -v java >/dev/null 2>&1 || need_pkg openjdk-17-jre-headless
        command -v mvn >/dev/null 2>&1 || need_pkg maven
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup.sh: installing Debian packages: ${missing[*]}" >&2
        sudo_cmd=""
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null 2>&1 || {
                echo "setup.sh: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
                exit 1
            }
            sudo_cmd="sudo"
        fi
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
else
    absent=()
    for tool in cc c++ cmake pkg-config; do
        command -v "$tool" >/dev/null 2>&1 || absent+=("$tool")
    done
    pkg-config --exists openssl 2>/dev/null || absent+=("OpenSSL headers (pkg-config openssl)")
    if $for_tests; then
        for tool in java mvn openssl; do
            command -v "$tool" >/dev/null 2>&1 || absent+=("$tool")
        done
    fi
    also=""
    $for_tests && also=", and for the tests a JDK 17+, Maven and openssl"
    echo "setup.sh: not a Debian system; kstreams needs a C/C++ toolchain, cmake, pkg-config, libclang (for bindgen), OpenSSL and zlib headers$also" >&2
    if [ ${#absent[@]} -gt 0 ]; then
        echo "setup.sh: missing: ${absent[*]}" >&2
        exit 1
    fi
fi
