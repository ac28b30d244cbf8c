#!/usr/bin/env bash
# Sets everything up and runs a job end to end on the local emulated AWS:
#   scripts/demo.sh [--job demo] [--mode all|quick|big|failing|fast] [--preflight]
# Installs the pinned emulator into .local/, builds the Lambda binaries, runs the job's real
# state machine and shows its progress, the result, where each step's output is, and that
# nothing is left running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh
echo "building the Lambda binaries and the spotstep CLI (first build: several minutes)"
cargo build -j2 --workspace --bins --quiet
exec .local/emu/bin/python local/demo.py "$@"
