#!/usr/bin/env bash
# The spotstep benchmark, with one command:
#   scripts/bench.sh            full run: release build, then every measurement; writes
#                               bench/results.json and regenerates BENCHMARKS.md (~15 min)
#   scripts/bench.sh --quick    smoke version: debug build, few runs, writes
#                               bench/results-quick.json only; asserts nothing about absolute
#                               time (fails only if a measurement cannot run, or the Rust and
#                               Python poll-results answer differently)
#   scripts/bench.sh --arm64    also build arm64 with cargo-lambda (+zig, from PyPI into
#                               .local/cargo-lambda; ~11+ min) and report its sizes
# Other options go to bench/bench.py (--init-runs N, --latency-runs N, --memory-reps N,
# --spot-price USD_PER_HOUR, --no-markdown).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0
arm64=0
pass=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1; pass+=("$arg") ;;
        --arm64) arm64=1 ;;
        *) pass+=("$arg") ;;
    esac
done

scripts/setup-emulator.sh >/dev/null

if [ "$quick" = 1 ]; then
    echo "building the functions and the spotstep CLI (debug)"
    cargo build -j2 --workspace --bins --quiet
else
    echo "building the functions and the spotstep CLI (release; first build ~10 min on 2 cores)"
    cargo build -j2 --release --workspace --bins --quiet
fi

if [ "$arm64" = 1 ]; then
    [ -x .local/build-tools/bin/cargo-lambda ] || make build-tools
    echo "building the five functions for arm64 with cargo lambda (release), as sam build does"
    PATH="$root/.local/build-tools/bin:$PATH" cargo lambda build --release --arm64 -j 2 \
        -p launch -p wait-online -p send-step -p poll-result -p cleanup
fi

exec .local/emu/bin/python bench/bench.py --command "scripts/bench.sh${*:+ $*}" "${pass[@]}"
