#!/usr/bin/env bash
# The release profile's choices side by side (issue 20): fat or thin LTO, 1 or 16 codegen
# units, each built on a fresh target directory (build wall and CPU time, bootstrap and zip
# sizes, init against hello). Runs bench/profiles.py, which writes bench/profiles.json;
# bench/report.py puts the table into BENCHMARKS.md. Run on an idle machine: ~1 h on 2 cores.
#   scripts/bench-profiles.sh [--configs fat-1,thin-16] [--work DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh >/dev/null
exec .local/emu/bin/python bench/profiles.py "$@"
