#!/usr/bin/env bash
# Cold start (issue 11): each function's init against a bare lambda_runtime hello binary
# (examples/hello.rs), in one run. Builds the release functions and the example, then runs
# bench/coldstart.py, which writes bench/coldstart.json and prints a markdown table.
#   scripts/bench-coldstart.sh [--runs N] [--first-runs N]
# Exit status 1 when a function's median init is more than 3 ms above hello's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh >/dev/null
echo "building the functions and the hello example (release)" >&2
cargo build -j2 --release --workspace --bins --examples --quiet
exec .local/emu/bin/python bench/coldstart.py --command "scripts/bench-coldstart.sh $*" "$@"
