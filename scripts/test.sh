#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): format, lints, unit and handler tests,
# generated-definition and template checks, then the Python stage's unit tests
# (tests/stage: the contract with the Rust side, no emulator) and the end-to-end tests on
# the local emulated AWS with the real Lambda binaries.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/setup-tools.sh
scripts/setup-emulator.sh

cargo fmt --all -- --check
cargo clippy -j2 --workspace --all-targets --quiet -- -D warnings
cargo test -j2 --workspace
scripts/lint-templates.sh

cargo build -j2 --workspace --bins --quiet
.local/emu/bin/python -m pytest tests/stage tests/e2e -q -p no:cacheprovider
