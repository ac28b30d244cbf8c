"""spotstep benchmark: init time, handler latency, peak memory, sizes, cost and detection
latency of the five Rust Lambdas, with a Python/boto3 poll-result as the baseline, all
measured in one run by one harness.

    .local/emu/bin/python bench/bench.py [--quick] [--profile release|debug]

(`scripts/bench.sh` sets everything up and runs this.) Writes `bench/results.json`
(`bench/results-quick.json` with --quick) and, unless --no-markdown, regenerates
BENCHMARKS.md from it (bench/report.py).

What runs:
1. sizes: each function's `bootstrap` and its deployment zip (`bootstrap` at the root,
   deflate -9, as `cargo lambda build --output-format zip` packs it);
2. the local emulated AWS (local/spotstep_local: moto + SSM agent emulation + the real
   binaries), then real executions: the demo job, and the data-weekly job with its step
   scripts replaced by `sleep`s scaled from the stated production durations;
   their histories give the state transitions, the Lambda invocations (plain tasks'
   `LambdaFunctionScheduled`, waiting send states' `TaskScheduled`) and the step-end
   detection (agent's command end -> the next state entered); the events delivered to
   poll-result about their instances are counted for the cost model;
3. peak memory: each function in a fresh process on the benchmark's own Runtime API
   endpoint (the stage's Runtime API server, local/spotstep_local/lambdas.py), one invocation replaying a real input from that
   history (a mini run: launch -> wait-online -> send-step with a benchmark task token ->
   poll-result told by the command's end event -> poll-result as the fallback poll state,
   Rust and Python -> cleanup), VmHWM read right after the invocation;
4. init time: process spawn -> first `GET /invocation/next`, many runs, the functions
   interleaved, with the production environment (credentials, region, endpoint, settings);
5. warm handler latency against the local stack, on a real instance and real commands:
   send-step; poll-result told by a command's end (Rust only: the Python baseline has only
   the poll entry); poll-result as the fallback `<step>: poll` state (running, succeeded,
   failed), Rust and the Python baseline on the same inputs, and a check that both answer
   alike;
6. the cost model of a data-weekly run, the token and the polling designs, priced with
   published prices (bench/cost.py); BENCHMARKS.md takes its cost and detection rows from
   `bench/events.json` (scripts/bench-events.sh) when that file is there.

This file holds the command line and the sizes (scripts/bench-sam-build.sh packs its zips
with `zip_bootstrap` too); the rest is in modules of their own: measure.py (shared measuring
helpers), functions.py (the functions' processes and Runtime API hosts), executions.py (real
executions on the stage), history.py (reading their histories), init_time.py, memory.py and
latency.py (the sections), replay.py (the inputs memory and latency hand the functions).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

import report  # noqa: E402
from cost import ASSUMPTIONS, DATA_WEEKLY_MINUTES, PRICES, check_schedule, cost_model  # noqa: E402
from executions import instance_ids, put_job_secrets, run_execution, settle_deliveries, sim_jobs_dir  # noqa: E402
from functions import PY_BASELINE, Functions  # noqa: E402
from history import analyse  # noqa: E402
from init_time import init_breakdown, measure_init, python_init_breakdown  # noqa: E402
from latency import measure_latency  # noqa: E402
from measure import loadavg, log, machine_info  # noqa: E402
from memory import replay_mini_runs, vmhwm  # noqa: E402
from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402


# ------------------------------------------------------------------------------------ sizes


def elf_arch(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return "not ELF"
    machine = int.from_bytes(head[18:20], "little")
    return {0x3E: "x86_64", 0xB7: "arm64"}.get(machine, hex(machine))


def elf_kind(path: str) -> str:
    """`position-dependent` (ET_EXEC) or `PIE` (ET_DYN): how the loader maps the binary."""
    with open(path, "rb") as f:
        head = f.read(18)
    return {2: "position-dependent", 3: "PIE"}.get(int.from_bytes(head[16:18], "little"), "other")


def zip_bootstrap(binary: str, out: str, level: int = 9) -> int:
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
        z.writestr(info, f.read(), compresslevel=level)
    return os.path.getsize(out)


def sizes(profile_dir: str, work: str, level=9) -> dict:
    """`level` None: bootstrap sizes only, no zips."""
    out = {"builds": []}
    candidates = [("cargo build --release", {n: os.path.join(profile_dir, n) for n in contract.functions()})]
    lambda_dir = os.path.join(REPO, "target", "lambda")
    if os.path.isdir(lambda_dir):
        candidates.append(
            ("cargo lambda build --release", {n: os.path.join(lambda_dir, n, "bootstrap") for n in contract.functions()})
        )
    for how, binaries in candidates:
        if not all(os.path.isfile(p) for p in binaries.values()):
            continue
        build = {"how": how, "functions": {}}
        for name, path in binaries.items():
            z = os.path.join(work, f"{name}-{elf_arch(path)}.zip")
            build["functions"][name] = {
                "arch": elf_arch(path),
                "bootstrap_bytes": os.path.getsize(path),
                "zip_bytes": zip_bootstrap(path, z, level) if level is not None else None,
                "built": datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            }
        build["arch"] = sorted({f["arch"] for f in build["functions"].values()})
        out["builds"].append(build)
    # The baseline: the two .py files (boto3 comes with Lambda's Python runtime).
    z = os.path.join(work, "python-poll-result.zip")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in ("handler.py", "bootstrap.py"):
            zf.write(os.path.join(PY_BASELINE, f), f)
    out["python_zip_bytes"] = os.path.getsize(z)
    return out


# ------------------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short smoke version (few runs, no demo run)")
    p.add_argument("--profile", default=None, help="release (default) or debug binaries")
    p.add_argument("--init-runs", type=int, default=None)
    p.add_argument("--latency-runs", type=int, default=None)
    p.add_argument("--memory-reps", type=int, default=None)
    p.add_argument("--spot-price", type=float, default=None, help=f"USD/hour of the spot instance (default {ASSUMPTIONS['spot_price_per_hour']})")
    p.add_argument("--out", default=None)
    p.add_argument("--no-markdown", action="store_true")
    p.add_argument("--emulator-as-is", action="store_true",
                   help="keep the stack's front door without TCP_NODELAY (its ~40 ms delayed-ACK stalls included)")
    p.add_argument("--command", default=None, help="the command line to record (scripts/bench.sh passes its own)")
    args = p.parse_args()
    quick = args.quick
    profile = args.profile or ("debug" if quick else "release")
    init_runs = args.init_runs or (5 if quick else 40)
    latency_runs = args.latency_runs or (5 if quick else 40)
    memory_reps = args.memory_reps or (1 if quick else 5)
    if args.spot_price:
        ASSUMPTIONS["spot_price_per_hour"] = args.spot_price
    out_path = args.out or os.path.join(HERE, "results-quick.json" if quick else "results.json")
    profile_dir = os.path.join(REPO, "target", profile)
    # The contract (names, formats, poll schedules) of the binaries under test.
    os.environ["SPOTSTEP_TARGET_DIR"] = profile_dir
    cli = os.path.join(profile_dir, "spotstep")
    binaries = Harness.binaries(REPO, profile_dir) if os.path.isfile(cli) else {}
    missing = [b for b in list(binaries.values()) + [cli] if not os.path.isfile(b)]
    if missing:
        print(f"missing binaries: {missing}; build first (scripts/bench.sh does)", file=sys.stderr)
        return 2
    for timing in ("production", "local"):
        check_schedule(contract.timing(timing))

    t_start = time.time()
    results = {
        "command": args.command or " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv),
        "quick": quick,
        "profile": profile,
        "machine": machine_info(),
        "prices": PRICES,
        "assumptions": ASSUMPTIONS,
        "data_weekly_minutes": DATA_WEEKLY_MINUTES,
    }
    work = tempfile.mkdtemp(prefix="spotstep-bench-")
    log(f"work folder {work}; {profile} binaries; machine load {results['machine']['loadavg_start']}")

    log("sizes")
    # Debug binaries are ~800 MB each: not zipped (their sizes mean nothing).
    results["sizes"] = sizes(profile_dir, work, 9 if profile == "release" else None)

    stack = LocalStack(os.path.join(work, "stack"), binaries)
    if not args.emulator_as_is:
        # The stack's front door writes a response's headers and body apart on a keep-alive
        # connection: the body then waits (Nagle) for the client's delayed ACK, ~40 ms on some
        # calls and not others. TCP_NODELAY removes that emulator artifact from the latencies.
        stack.front.RequestHandlerClass.disable_nagle_algorithm = True
    results["emulator_tcp_nodelay"] = not args.emulator_as_is
    seconds_per_minute = 0.05 if quick else 0.25
    put_job_secrets(stack, os.path.join(REPO, "jobs", "data-weekly", "job.toml"))
    harness = Harness(stack, REPO, target_dir=profile_dir, jobs_dirs=[sim_jobs_dir(work, seconds_per_minute), os.path.join(REPO, "jobs")])
    fns = Functions(binaries, stack.lambdas.functions["poll-result"].env, os.path.join(work, "logs"))
    os.makedirs(fns.logs, exist_ok=True)
    try:
        executions = {}
        if not quick:
            log("demo job, mode all, on the local stack")
            executions["demo"] = run_execution(harness, stack, "demo", "all", timeout=600)
            log(f"  {executions['demo']['status']} in {executions['demo']['wall_seconds']:.0f}s")
        log(f"data-weekly (mode full) with step scripts sleeping {seconds_per_minute}s per production minute")
        executions["data-weekly"] = run_execution(harness, stack, "data-weekly", "full", timeout=900)
        log(f"  {executions['data-weekly']['status']} in {executions['data-weekly']['wall_seconds']:.0f}s")
        for name, ex in executions.items():
            if ex["status"] != "SUCCEEDED":
                raise RuntimeError(f"{name} execution {ex['status']}: {ex['error']}")
        # The events EventBridge delivered to poll-result about each execution's instances
        # (the instance's last state changes come after the execution ended).
        told = {name: len([d for d in settle_deliveries(stack, instance_ids(stack, ex["name"])) if d[3] is None])
                for name, ex in executions.items()}
        analyses = {name: analyse(ex) for name, ex in executions.items()}
        results["executions"] = {name: {k: v for k, v in a.items() if k != "inputs"} for name, a in analyses.items()}
        for name, n in told.items():
            results["executions"][name]["told_events"] = n
        results["whole_run_vmhwm_kib"] = {name: vmhwm(f.process) for name, f in stack.lambdas.functions.items()}
        sim = analyses["data-weekly"]
        machine_arn = harness.machines["data-weekly"]

        log(f"peak memory: {memory_reps} replayed mini run(s), each function in a fresh process")
        results["memory"] = replay_mini_runs(fns, stack, sim["inputs"], machine_arn, memory_reps)

        log(f"init: {init_runs} runs of each function, interleaved")
        results["init"] = measure_init(fns, init_runs)

        log("init breakdown: the TLS root store")
        results["init_breakdown"] = init_breakdown(fns, max(init_runs // 2, 3), work)

        results["python_init_breakdown"] = python_init_breakdown(3 if quick else 10)

        log(f"warm handler latency: {latency_runs} invocations per scenario")
        results["latency"] = measure_latency(fns, stack, harness, sim["inputs"], machine_arn, latency_runs)

        log("cost model")
        prod_definition = json.loads(
            subprocess.run([os.path.join(profile_dir, "spotstep"), "asl", os.path.join(REPO, "jobs", "data-weekly")],
                           capture_output=True, text=True, check=True).stdout
        )
        rust_init = max(results["init"]["functions"][n]["init_ms"]["median"] for n in contract.functions())
        results["cost"] = cost_model(sim, prod_definition, rust_init, told["data-weekly"])
    finally:
        fns.stop()
        stack.stop()
    results["machine"]["loadavg_end"] = loadavg()
    results["elapsed_seconds"] = time.time() - t_start
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"wrote {os.path.relpath(out_path, REPO)} in {results['elapsed_seconds']:.0f}s")

    print(report.summary(results))
    problems = report.sanity(results)
    if not args.no_markdown and not quick:
        # The cost and detection rows come from the event benchmark's file when there is one
        # (scripts/bench-events.sh); else from this run's cost model, without detection rows.
        report.regenerate(results)
        log("regenerated BENCHMARKS.md")
    shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\n".join(["sanity check FAILED:"] + [f"  - {p}" for p in problems]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
