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
# As deployed (.cargo/config.toml): position-dependent, for this machine's own target; with
# --target, the flag reaches only the target's crates, not build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
export "CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C link-arg=-no-pie"
echo "building the functions and the hello example (release, $host)" >&2
cargo build -j2 --release --quiet --target "$host" -p launch -p wait-online -p send-step -p poll-result -p cleanup -p hello
exec .local/emu/bin/python bench/coldstart.py --command "scripts/bench-coldstart.sh $*" --bin-dir "target/$host/release" "$@"
