#!/usr/bin/env bash
# The event-path benchmark, with one command: step-end and reclaim detection on the local stage
# (production logic: the real Rust functions, the token definitions, the EventBridge emulation)
# and the cost model of a data-weekly run, token and polling designs side by side.
#   scripts/bench-events.sh            debug build, 3 data-weekly + 2 demo + 5 reclaim runs
#                                      (~5 min); writes bench/events.json and regenerates
#                                      BENCHMARKS.md (the other sections from bench/results.json)
#   scripts/bench-events.sh --quick    one run of each kind; writes bench/events-quick.json only
# Other options go to bench/events.py (--profile release, --data-weekly-runs N, --reclaim-runs N,
# --seconds-per-minute S, --no-markdown). As root with unshare(1) available, the run gets its own
# tmpfs on /tmp/spotstep (the demo job's workdir), so it cannot collide with e2e runs beside it;
# --shared-tmp keeps the machine's /tmp/spotstep.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pass=()
shared=0
profile=debug
next_is_profile=0
for arg in "$@"; do
    if [ "$next_is_profile" = 1 ]; then profile="$arg"; next_is_profile=0; fi
    case "$arg" in
        --shared-tmp) shared=1; continue ;;
        --profile) next_is_profile=1 ;;
        --profile=*) profile="${arg#--profile=}" ;;
    esac
    pass+=("$arg")
done

if [ -z "${SPOTSTEP_BENCH_ISOLATED:-}" ] && [ "$shared" = 0 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    exec env SPOTSTEP_BENCH_ISOLATED=1 unshare --mount --propagation private \
        bash -c 'mkdir -p /tmp/spotstep && mount -t tmpfs tmpfs /tmp/spotstep && exec "$0" "$@"' "$0" "$@"
fi

scripts/setup-emulator.sh >/dev/null
if [ "$profile" = release ]; then
    echo "building the functions and the spotstep CLI (release)"
    cargo build -j2 --release --workspace --bins --quiet
else
    echo "building the functions and the spotstep CLI (debug)"
    cargo build -j2 --workspace --bins --quiet
fi
exec .local/emu/bin/python bench/events.py --command "scripts/bench-events.sh${*:+ $*}" "${pass[@]}"
