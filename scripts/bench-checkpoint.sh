#!/usr/bin/env bash
# Work redone per reclaim (issue 18): the train job reclaimed mid-step on the local stage,
# with the spot warning and without it, beside a restart from zero. Builds the debug
# binaries, then runs bench/checkpoint.py, which writes bench/checkpoint.json and prints a
# markdown table (~3 min).
#   scripts/bench-checkpoint.sh [--points 3.5,5,6.5]
# Exit status 1 when a target is missed or a run's final result differs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh >/dev/null
cargo build -j2 --workspace --bins --quiet
exec .local/emu/bin/python bench/checkpoint.py --command "scripts/bench-checkpoint.sh $*" "$@"
