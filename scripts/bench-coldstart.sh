#!/usr/bin/env bash
# Cold start (issues 11, 20): each function's init against a bare lambda_runtime hello binary
# (bench/hello), in the same run, three whole measurements in a row. Builds the five
# release functions and the example, then runs bench/coldstart.py, which writes
# bench/coldstart.json and prints markdown tables.
#   scripts/bench-coldstart.sh [--runs N] [--first-runs N] [--repeat N]
# Exit status 1 when, in any of the runs, a function's median init is more than 1 ms above
# hello's, or poll-result's init + first invocation more than 6 ms above hello's init.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh >/dev/null
echo "building the functions and the hello example (release)" >&2
cargo build -j2 --release --quiet -p launch -p wait-online -p send-step -p poll-result -p cleanup -p hello
exec .local/emu/bin/python bench/coldstart.py --command "scripts/bench-coldstart.sh $*" "$@"
