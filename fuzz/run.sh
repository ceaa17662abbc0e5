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

build=(--sanitizer "$sanitizer")
# More codegen units build faster (the fuzz crate compiles the engine, for config_loader) and
# run a little slower; cargo-fuzz's default is 1.
if [ -n "${FUZZ_CODEGEN_UNITS:-}" ]; then
    build+=(--codegen-units "$FUZZ_CODEGEN_UNITS")
fi
echo "fuzz: building ${#targets[@]} targets (${build[*]})"
cargo fuzz build "${build[@]}"
bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
# As `cargo fuzz run` sets it: Rust's duplicated symbols are not ODR violations.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/target/run-$target.log"
    echo "fuzz: $target for ${seconds}s"
    status=0
    mkdir -p "fuzz/artifacts/$target"
    # What `cargo fuzz run` does, without its second look at the build.
    "$bin/$target" -artifact_prefix="fuzz/artifacts/$target/" -max_total_time="$seconds" \
        -print_final_stats=1 "fuzz/corpus/$target" "fuzz/seeds/$target" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "fuzz: $target failed (status $status); the input is in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    # libFuzzer's last status line: executions, coverage (cov, ft) and corpus size.
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s/^/fuzz: $target /"
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
