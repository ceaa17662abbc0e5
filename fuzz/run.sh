#!/usr/bin/env bash
# Builds every fuzz target and runs each in turn for SECONDS seconds (default 15) on its
# committed seeds plus the working corpus; stops with a non-zero status at the first crash,
# whose input libFuzzer saves under fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# The pinned toolchain is stable. AddressSanitizer needs `-Zsanitizer=address`, which
# RUSTC_BOOTSTRAP=1 lets a stable rustc accept; FUZZ_SANITIZER=none builds without a
# sanitizer and without that switch (coverage, debug assertions and overflow checks stay).
# docs/FUZZING.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-15}"
shift || true
sanitizer="${FUZZ_SANITIZER:-address}"
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
# Cargo caches rustc's answers in .rustc_info.json without noting RUSTC_BOOTSTRAP, so a
# `-Zsanitizer` probe that once failed without it would keep failing: start from no cache.
rm -f fuzz/target/.rustc_info.json

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz: building ${#targets[@]} targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/target/run-$target.log"
    echo "fuzz: $target for ${seconds}s"
    status=0
    cargo fuzz run --sanitizer "$sanitizer" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "fuzz: $target failed (status $status); the input is in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    # libFuzzer's last status line: executions, coverage (cov, ft) and corpus size.
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s/^/fuzz: $target /"
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
