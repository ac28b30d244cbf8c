#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): format, lints, unit and handler tests,
# generated-definition and template checks, then the Python stage's unit tests
# (tests/stage: the contract with the Rust side, no emulator) and the end-to-end tests on
# the local emulated AWS with the real Lambda binaries, one local stack per pytest worker.
#
# The workspace is compiled once, in debug: `cargo build --all-targets` with clippy-driver
# as the workspace crates' compiler (scripts/lint-rustc) lints the workspace while it
# builds the unit tests and the binaries the end-to-end tests run, so the AWS SDK crates are
# compiled one time, not once more for `cargo clippy`'s check mode and once more for the
# binaries alone. The pinned tools install in the background meanwhile.
#
# SPOTSTEP_TEST_WORKERS: the pytest workers (default 6: the end-to-end tests mostly wait on
# emulated instances and timers, see BENCHMARKS.md's CI row).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

workers="${SPOTSTEP_TEST_WORKERS:-6}"
started=$SECONDS
phase_started=$SECONDS
phase() {
    echo "== test.sh: $1 took $((SECONDS - phase_started)) s (total $((SECONDS - started)) s)"
    phase_started=$SECONDS
}

setup_log="$(mktemp -t spotstep-setup.XXXXXX)"
# In a process group of its own (setsid): a failed check before the wait stops every install
# process with it, and leaves no log behind.
setsid bash -c 'scripts/setup-emulator.sh && scripts/setup-tools.sh' >"$setup_log" 2>&1 &
setup=$!
trap 'kill -- "-$setup" 2>/dev/null || true; rm -f "$setup_log"' EXIT

cargo fmt --all -- --check
export RUSTC_WORKSPACE_WRAPPER="$root/scripts/lint-rustc"
cargo build -j2 --workspace --all-targets --quiet
phase "format, build and clippy"
cargo test -j2 --workspace --quiet
phase "Rust tests"

if ! wait "$setup"; then
    cat "$setup_log" >&2
    echo "test.sh: installing the pinned tools failed" >&2
    exit 1
fi
cat "$setup_log"
phase "waiting for the tool setup"
scripts/lint-templates.sh
phase "template and definition lints"

.local/emu/bin/python -m pytest tests/stage tests/e2e -q -p no:cacheprovider -n "$workers" --dist worksteal
phase "pytest ($workers workers)"
