#!/usr/bin/env bash
# Runs one of the examples on a machine that may have nothing but Rust: installs the build
# prerequisites first (scripts/setup.sh), then `cargo run --release --example <name> -- <args>`.
#
#   scripts/example.sh wordcount
#   scripts/example.sh windowing --processing-guarantee exactly_once_v2
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 <example> [args...]   (examples: $(cd "$repo/examples" && ls *.rs | sed 's/\.rs$//' | tr '\n' ' '))" >&2; exit 2; }
name=$1
shift
[ -f "$repo/examples/$name.rs" ] || { echo "example.sh: no example named '$name' in $repo/examples" >&2; exit 2; }
"$repo/scripts/setup.sh"
cd "$repo"
exec cargo run --release --example "$name" -- "$@"
