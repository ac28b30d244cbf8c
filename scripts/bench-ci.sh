#!/usr/bin/env bash
# Times `.ci/run` as CI runs it: on a fresh clone of this repository's HEAD (no target/, no
# .local/ tools), phase by phase (test.sh prints each phase's time). The README's "CI time"
# table holds its results. Writes the whole log to bench/ci-<commit>.log (gitignored) and
# prints the phases and the total.
#
#   scripts/bench-ci.sh [--keep]    --keep: leave the clone (its path is printed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

commit="$(git -C "$root" rev-parse --short HEAD)"
if [ -n "$(git -C "$root" status --porcelain)" ]; then
    echo "bench-ci: note: the work tree has uncommitted changes; the clone holds HEAD ($commit) only" >&2
fi
clone="$(mktemp -d -t spotstep-ci.XXXXXX)"
log="$root/bench/ci-$commit.log"
git clone --quiet "$root" "$clone"
echo "bench-ci: .ci/run on a fresh clone of $commit in $clone (log: $log)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
set +e
(cd "$clone" && .ci/run) >"$log" 2>&1
rc=$?
set -e
took=$(($(date +%s) - start))
grep '^== test.sh:' "$log" || true
grep -E '^[0-9]+ passed|failed' "$log" | tail -n 3 || true
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-ci: .ci/run exited $rc after $took s ($((took / 60)) min $((took % 60)) s)"
if [ "$keep" -eq 0 ]; then
    rm -rf "$clone"
else
    echo "bench-ci: clone kept in $clone"
fi
exit "$rc"
