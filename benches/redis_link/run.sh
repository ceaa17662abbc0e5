#!/usr/bin/env bash
# Builds and runs the whole measurement (about 5 minutes with the defaults). Everything printed
# is also kept in results/run-<UTC time>.log. Arguments are passed to the binary.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
mkdir -p results
log="results/run-$(date -u +%Y%m%dT%H%M%SZ).log"
{
    echo "\$ lscpu | grep -E 'Model name|^CPU\\(s\\)'"
    lscpu | grep -E 'Model name|^CPU\(s\)'
    echo "\$ uname -r"
    uname -r
    echo "\$ target/release/redis-link-measure $*"
} | tee "$log"
./target/release/redis-link-measure "$@" 2>&1 | tee -a "$log"
