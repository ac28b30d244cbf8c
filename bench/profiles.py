"""The release profile's choices side by side (issue 20): fat or thin LTO, 1 or 16 codegen units.

    .local/emu/bin/python bench/profiles.py [--configs fat-1,thin-1,fat-16,thin-16] [--work DIR]

(`scripts/bench-profiles.sh` runs this.) For each choice, on a fresh target directory of its
own: the wall and CPU time of building the five deployed functions in release (what
`sam build` compiles, see the Makefile; native x86_64 here: the arm64 cross build runs the same
rustc work and links with zig), each bootstrap's size and its zip's size (deflate level 9, as
bench/bench.py zips), and the init of the functions against the bare hello in the same run
(bench/coldstart.py, one repetition). The profile is changed through cargo's
`CARGO_PROFILE_RELEASE_*` variables, never by editing Cargo.toml: the choice applies to the
workspace and every dependency but the AWS SDK service crates, which keep Cargo.toml's own
settings (opt-level 0, 16 units). The functions link position-dependent, as deployed
(functions/build.rs). The load average before and
after each build is recorded: a build sharing the 2 cores with other work is slower, and says so.

Writes `bench/profiles.json`, which bench/report.py puts into BENCHMARKS.md.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

from bench import zip_bootstrap  # noqa: E402
from measure import loadavg, log, machine_info  # noqa: E402
from spotstep_local import contract  # noqa: E402

CONFIGS = {
    "fat-1": {"lto": "fat", "codegen_units": 1},
    "thin-1": {"lto": "thin", "codegen_units": 1},
    "fat-16": {"lto": "fat", "codegen_units": 16},
    "thin-16": {"lto": "thin", "codegen_units": 16},
}


def children_cpu_seconds() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def cargo(args: list, target: str, config: dict) -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=target,
               CARGO_PROFILE_RELEASE_LTO=config["lto"],
               CARGO_PROFILE_RELEASE_CODEGEN_UNITS=str(config["codegen_units"]))
    env.pop("RUSTC_WORKSPACE_WRAPPER", None)
    subprocess.run(["cargo", "build", "-j2", "--release", "--quiet"] + args, cwd=REPO, env=env, check=True)


def build(name: str, config: dict, work: str) -> dict:
    """The five functions on a fresh target directory: time, CPU and sizes."""
    target = os.path.join(work, name)
    shutil.rmtree(target, ignore_errors=True)
    row = {"config": name, **config, "target": target, "loadavg_before": loadavg()}
    packages = [a for f in contract.functions() for a in ("-p", f)]
    cpu, t0 = children_cpu_seconds(), time.time()
    cargo(packages, target, config)
    row["build_wall_seconds"] = round(time.time() - t0, 1)
    row["build_cpu_seconds"] = round(children_cpu_seconds() - cpu, 1)
    row["loadavg_after"] = loadavg()
    release = os.path.join(target, "release")
    row["functions"] = {}
    for f in contract.functions():
        binary = os.path.join(release, f)
        row["functions"][f] = {
            "bootstrap_bytes": os.path.getsize(binary),
            "zip_bytes": zip_bootstrap(binary, os.path.join(work, f"{name}-{f}.zip")),
        }
    return row


def init(row: dict, work: str, runs: int, first_runs: int, keep: bool) -> None:
    """The built functions' init against hello built with the same profile, one run; the
    target directory is removed after unless `keep`."""
    cargo(["-p", "hello"], row["target"], row)
    out = os.path.join(work, f"{row['config']}-coldstart.json")
    release = os.path.join(row["target"], "release")
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "coldstart.py"), "--bin-dir", release, "--repeat", "1",
         "--runs", str(runs), "--first-runs", str(first_runs), "--out", out],
        cwd=REPO)
    with open(out) as f:
        cold = json.load(f)["repeats"][0]
    row["coldstart_exit"] = done.returncode
    row["init_gap_ms"] = cold["verdict"]["max_gap_ms"]
    row["init_plus_first_gap_ms"] = cold["verdict"]["first_gap_ms"]
    row["loadavg_init_end"] = cold["loadavg_end"]
    target = row.pop("target")
    if not keep:
        shutil.rmtree(target, ignore_errors=True)


def save(result: dict, out: str) -> None:
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of " + ", ".join(CONFIGS))
    p.add_argument("--work", default=None, help="where the fresh target directories go (default: a temporary directory)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--first-runs", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "profiles.json"))
    p.add_argument("--keep", action="store_true", help="keep each target directory (its binaries) after measuring")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="spotstep-profiles-")
    os.makedirs(work, exist_ok=True)
    result = {"command": "scripts/bench-profiles.sh", "machine": machine_info(), "rows": []}
    for name in args.configs.split(","):
        log(f"{name}: fresh target in {work}")
        row = build(name, CONFIGS[name], work)
        result["rows"].append(row)
        log(f"{name}: {row['build_wall_seconds']} s wall, {row['build_cpu_seconds']} s CPU")
        save(result, args.out)
        init(row, work, args.runs, args.first_runs, args.keep)
        save(result, args.out)
    log(f"wrote {os.path.relpath(args.out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
