#!/usr/bin/env bash
# Measures what a new user's `sam build` costs, from a fresh clone of this repository:
# the wall time of one `sam build` (one arm64 compile of the five functions, see
# the Makefile), and for each function's artifact its architecture (ELF machine), the size
# of its `bootstrap` and of its deployment zip. Writes bench/sam-build.json, which
# bench/report.py puts into BENCHMARKS.md.
#   scripts/bench-sam-build.sh       (needs `make build-tools` and scripts/setup-tools.sh first;
#                                     ~15-25 min on 2 cores: the AWS SDK for arm64, release, LTO)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clone="$work/spotstep"
git clone --quiet "$root" "$clone"
# The pinned tools are the user's one-time setup, not part of the build being measured.
mkdir -p "$clone/.local"
for tool in venv build-tools; do
    ln -s "$root/.local/$tool" "$clone/.local/$tool"
done
cd "$clone"
export SAM_CLI_TELEMETRY=0 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export PATH="$root/.local/build-tools/bin:$PATH"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
"$root/.local/venv/bin/sam" build
end=$(date +%s.%N)
echo "sam build: $(echo "$end - $start" | bc) s" >&2
# The sizes below are read with bench/bench.py's helpers, which read the contract from this
# repository's own debug CLI (the clone has no target/debug).
export SPOTSTEP_TARGET_DIR="$root/target/debug"
"$root/.local/emu/bin/python" - "$clone" "$start" "$end" "$root/bench/sam-build.json" "$load_start" <<'PY'
import json, os, platform, subprocess, sys, tempfile
sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
from bench import elf_arch, elf_kind, zip_bootstrap

clone, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
load_start = [float(x) for x in sys.argv[5].split()]
built = os.path.join(clone, ".aws-sam", "build")
functions = {}
with tempfile.TemporaryDirectory() as work:
    for logical in sorted(os.listdir(built)):
        binary = os.path.join(built, logical, "bootstrap")
        if not os.path.isfile(binary):
            continue
        functions[logical] = {
            "arch": elf_arch(binary),
            "kind": elf_kind(binary),
            "bootstrap_bytes": os.path.getsize(binary),
            "zip_bytes": zip_bootstrap(binary, os.path.join(work, logical + ".zip")),
        }
commit = subprocess.run(["git", "-C", clone, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
result = {
    "wall_seconds": round(end - start, 1),
    "commit": commit,
    "build": "one `cargo lambda build --release --arm64` of the five function packages",
    "machine": {"arch": platform.machine(), "cpus": os.cpu_count()},
    "loadavg": {"start": load_start, "end": list(os.getloadavg())},
    "functions": functions,
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(json.dumps(result, indent=2))
PY
