"""spotstep benchmark of the event path: how soon a step's end and a spot reclaim are noticed,
and what a data-weekly run costs, with the token definitions of today, on the local stage.

    .local/emu/bin/python bench/events.py [--quick] [--profile debug|release]

(`scripts/bench-events.sh` builds and runs this.) Writes `bench/events.json`
(`bench/events-quick.json` with --quick) and, unless --no-markdown or --quick, regenerates
BENCHMARKS.md (bench/report.py, with the other sections from `bench/results.json`).

What runs, on one local stack (moto + the SSM agent emulation + the EventBridge emulation and
the reconciler of local/spotstep_local, the real Rust binaries of the chosen profile: the
production logic, the same code in debug and release):

1. step-end detection: real executions (data-weekly mode full with its step scripts replaced
   by `sleep`s scaled from the stated production durations, N times; the demo job, mode all
   and mode failing): for every command that ended, from the agent's end of the command
   (`CommandRun.ended`) to the next state the execution entered (history timestamps);
2. reclaim detection: demo runs with a spot reclaim during `slow` (`reclaim_during`, 2 s in):
   from EC2's interruption warning (`stack.events.sent`, key `spot_warning`) to the relaunch's
   first states entered, `<step>: resume here` and `Relaunch: clean up`;
3. the cost model (bench/cost.py) of a production data-weekly run, both designs, from the
   first data-weekly execution: its states entered, and the events EventBridge delivered to
   poll-result for its instances (`stack.events.delivered`).

The local stage delivers each event at once (a thread per event): what is measured is
spotstep's own path (poll-result's decision and answer, Step Functions moving on), not
EventBridge's or SSM's delivery latency, which AWS does not publish and this stage cannot show.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

import report  # noqa: E402
from cost import ASSUMPTIONS, DATA_WEEKLY_MINUTES, PRICES, check_schedule, cost_model  # noqa: E402
from executions import instance_ids, put_job_secrets, run_execution, settle_deliveries, sim_jobs_dir  # noqa: E402
from history import analyse, parse_ts  # noqa: E402
from measure import loadavg, log, sh  # noqa: E402
from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402


def percentiles(xs) -> dict:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=20, method="inclusive") if len(xs) >= 2 else [xs[0]] * 19
    return {"n": len(xs), "p50": statistics.median(xs), "p95": q[18], "max": xs[-1], "min": xs[0], "mean": statistics.fmean(xs)}


def reclaim_detection(execution: dict, stack: LocalStack, ids: set) -> list:
    """From each spot interruption warning about the run's instances to the first
    `<step>: resume here` and the first `Relaunch: clean up` entered after it."""
    entered = [(parse_ts(e["timestamp"]).timestamp(), e["stateEnteredEventDetails"]["name"])
               for e in execution["events"] if "stateEnteredEventDetails" in e]
    clean_up = contract.state("relaunch_clean_up")
    out = []
    with stack.events.lock:
        warnings = [(t, e) for t, key, e in stack.events.sent if key == "spot_warning" and e["detail"].get("instance-id") in ids]
    for t, event in warnings:
        resume = next(((ts, n) for ts, n in entered if ts >= t and contract.fmt("state_resume_here").match(n)), None)
        relaunch = next(((ts, n) for ts, n in entered if ts >= t and n == clean_up), None)
        out.append({
            "execution": execution["name"],
            "instance_id": event["detail"]["instance-id"],
            "resume_here_state": resume[1] if resume else None,
            "to_resume_here_seconds": resume[0] - t if resume else None,
            "to_relaunch_clean_up_seconds": relaunch[0] - t if relaunch else None,
        })
    return out


def measured_run(harness: Harness, stack: LocalStack, job: str, mode: str, kind: str, timeout: float) -> dict:
    ticks_before = len(stack.reconciler.runs)
    ex = run_execution(harness, stack, job, mode, timeout=timeout)
    ids = instance_ids(stack, ex["name"])
    delivered = settle_deliveries(stack, ids)
    a = analyse(ex)
    row = {
        "kind": kind,
        "job": job,
        "mode": mode,
        "name": ex["name"],
        "status": ex["status"],
        "error": ex["error"],
        "wall_seconds": ex["wall_seconds"],
        "instances": sorted(ids),
        "states_entered": a["states_entered"],
        "retries": a["retries"],
        "state_transitions": a["state_transitions"],
        "lambda_invocations_by_states": a["lambda_invocations"],
        "per_state": a["per_state"],
        "step_ends": a["detection"],
        "reclaims": reclaim_detection(ex, stack, ids),
        "told": [{"detail_type": e["detail-type"], "detail": e["detail"], "error": err,
                  "answered": (ans or {}).get("answered") if isinstance(ans, dict) else None} for _, e, ans, err in delivered],
        "reconciler_ticks_during_run_local": len(stack.reconciler.runs) - ticks_before,
    }
    log(f"  {kind}: {job} {mode} {ex['status']} in {ex['wall_seconds']:.0f}s; step ends noticed after "
        + ", ".join(f"{d['step']} {d['detection_seconds']:.2f}s" for d in row["step_ends"])
        + ("; reclaim: " + ", ".join(f"resume here {r['to_resume_here_seconds']:.2f}s, clean up {r['to_relaunch_clean_up_seconds']:.2f}s"
                                      for r in row["reclaims"] if r["to_relaunch_clean_up_seconds"] is not None) if row["reclaims"] else ""))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one run of each kind, data-weekly at 0.05 s per production minute")
    p.add_argument("--profile", default="debug", help="debug (default) or release binaries: the same production logic")
    p.add_argument("--data-weekly-runs", type=int, default=None)
    p.add_argument("--reclaim-runs", type=int, default=None)
    p.add_argument("--seconds-per-minute", type=float, default=None,
                   help="seconds of sleep per stated production minute of a data-weekly step (default 0.25)")
    p.add_argument("--out", default=None)
    p.add_argument("--no-markdown", action="store_true")
    p.add_argument("--emulator-as-is", action="store_true", help="keep the stack's front door without TCP_NODELAY")
    p.add_argument("--command", default=None, help="the command line to record (scripts/bench-events.sh passes its own)")
    args = p.parse_args()
    quick = args.quick
    dw_runs = args.data_weekly_runs or (1 if quick else 3)
    reclaim_runs = args.reclaim_runs or (1 if quick else 5)
    spm = args.seconds_per_minute or (0.05 if quick else 0.25)
    out_path = args.out or os.path.join(HERE, "events-quick.json" if quick else "events.json")
    profile_dir = os.path.join(REPO, "target", args.profile)
    os.environ["SPOTSTEP_TARGET_DIR"] = profile_dir
    cli = os.path.join(profile_dir, "spotstep")
    binaries = Harness.binaries(REPO, profile_dir) if os.path.isfile(cli) else {}
    missing = [b for b in list(binaries.values()) + [cli] if not os.path.isfile(b)]
    if missing:
        print(f"missing binaries: {missing}; build first (scripts/bench-events.sh does)", file=sys.stderr)
        return 2
    check_schedule(contract.timing("production"))

    t0 = time.time()
    results = {
        "command": args.command or " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv),
        "quick": quick,
        "profile": args.profile,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_head": sh(f"git -C {REPO} rev-parse --short HEAD"),
        "git_modified_files": len([x for x in sh(f"git -C {REPO} status --porcelain").splitlines() if x.strip()]),
        "machine": {"nproc": os.cpu_count(), "model": sh("lscpu | sed -n 's/^Model name: *//p'"), "loadavg_start": loadavg()},
        "seconds_per_production_minute": spm,
        "emulator_tcp_nodelay": not args.emulator_as_is,
        "prices": PRICES,
        "assumptions": ASSUMPTIONS,
        "data_weekly_minutes": DATA_WEEKLY_MINUTES,
    }
    work = tempfile.mkdtemp(prefix="spotstep-bench-events-")
    log(f"work folder {work}; {args.profile} binaries; machine load {results['machine']['loadavg_start']}")
    stack = LocalStack(os.path.join(work, "stack"), binaries)
    if not args.emulator_as_is:
        stack.front.RequestHandlerClass.disable_nagle_algorithm = True
    results["local_stage"] = {
        "reclaim_lead_seconds": stack.faults.reclaim_lead,
        "reconcile_every_seconds": stack.reconciler.every,
        "invocation_visible_after_seconds": stack.agent.invocation_visible_after,
    }
    put_job_secrets(stack, os.path.join(REPO, "jobs", "data-weekly", "job.toml"))
    harness = Harness(stack, REPO, target_dir=profile_dir, jobs_dirs=[sim_jobs_dir(work, spm), os.path.join(REPO, "jobs")])
    runs = []
    try:
        for i in range(dw_runs):
            log(f"data-weekly (mode full) {i + 1}/{dw_runs}, step scripts sleeping {spm}s per production minute")
            stack.faults.reset()
            runs.append(measured_run(harness, stack, "data-weekly", "full", "data-weekly", timeout=900))
        log("demo, mode all")
        stack.faults.reset()
        runs.append(measured_run(harness, stack, "demo", "all", "demo", timeout=600))
        log("demo, mode failing (a step that fails)")
        stack.faults.reset()
        runs.append(measured_run(harness, stack, "demo", "failing", "demo-failing", timeout=600))
        for i in range(reclaim_runs):
            log(f"demo, mode all, spot reclaim 2 s into `slow` {i + 1}/{reclaim_runs}")
            stack.faults.reset()
            stack.faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
            runs.append(measured_run(harness, stack, "demo", "all", "demo-reclaim", timeout=600))
        stack.faults.reset()

        expected = {"data-weekly": "SUCCEEDED", "demo": "SUCCEEDED", "demo-failing": "FAILED", "demo-reclaim": "SUCCEEDED"}
        problems = [f"{r['kind']} {r['name']}: {r['status']} ({r['error']}), expected {expected[r['kind']]}"
                    for r in runs if r["status"] != expected[r["kind"]]]
        fallback = [f"{r['name']}: {n}" for r in runs for n in r["per_state"] if contract.fmt("state_poll").match(n)]
        if fallback:
            problems.append(f"a wait timed out and reached the fallback poll: {fallback}")
        reclaims = [x for r in runs if r["kind"] == "demo-reclaim" for x in r["reclaims"]]
        if len(reclaims) < reclaim_runs or any(x["to_relaunch_clean_up_seconds"] is None for x in reclaims):
            problems.append(f"reclaim runs without a warning followed by a relaunch: {reclaims}")
        step_ends = [d for r in runs for d in r["step_ends"]]
        results["runs"] = runs
        results["step_end_detection"] = {
            "all": percentiles([d["detection_seconds"] for d in step_ends]),
            "by_kind": {k: percentiles([d["detection_seconds"] for r in runs if r["kind"] == k for d in r["step_ends"]])
                        for k in expected},
            "by_status": {s: percentiles([d["detection_seconds"] for d in step_ends if d["status"] == s])
                          for s in sorted({d["status"] for d in step_ends})},
            "short_commands": percentiles([d["detection_seconds"] for d in step_ends
                                           if d["command_seconds"] is not None and d["command_seconds"] < stack.agent.invocation_visible_after]),
            "long_commands": percentiles([d["detection_seconds"] for d in step_ends
                                          if d["command_seconds"] is not None and d["command_seconds"] >= stack.agent.invocation_visible_after]),
        }
        results["reclaim_detection"] = {
            "states": {"to_resume_here": contract.fmt("state_resume_here").template.replace("{step}", "<step>"),
                       "to_relaunch_clean_up": contract.state("relaunch_clean_up")},
            "to_resume_here": percentiles([x["to_resume_here_seconds"] for x in reclaims if x["to_resume_here_seconds"] is not None]),
            "to_relaunch_clean_up": percentiles([x["to_relaunch_clean_up_seconds"] for x in reclaims if x["to_relaunch_clean_up_seconds"] is not None]),
        }

        # The cost model, from the first data-weekly run (all of them entered the same states).
        sim = next(r for r in runs if r["kind"] == "data-weekly")
        prod_definition = json.loads(subprocess.run([cli, "asl", os.path.join(REPO, "jobs", "data-weekly")],
                                                    capture_output=True, text=True, check=True).stdout)
        init_ms, init_from = 20.0, "the init target (20 ms): no bench/results.json"
        try:
            with open(os.path.join(HERE, "results.json")) as f:
                measured = json.load(f)["init"]["functions"]
            init_ms = max(measured[n]["init_ms"]["median"] for n in contract.functions())
            init_from = "the slowest release init median of bench/results.json"
        except (OSError, KeyError, ValueError):
            pass
        told = len([t for t in sim["told"] if t["error"] is None])
        results["cost"] = cost_model({"per_state": sim["per_state"]}, prod_definition, init_ms, told)
        results["cost"]["init_ms_from"] = init_from
        results["cost"]["from_run"] = sim["name"]
        results["cost"]["same_states_in_every_data_weekly_run"] = len(
            {json.dumps({n: (s["entered"], s["retries"]) for n, s in r["per_state"].items()}, sort_keys=True)
             for r in runs if r["kind"] == "data-weekly"}) == 1
        results["cost"]["told_by_run"] = {r["name"]: len(r["told"]) for r in runs if r["kind"] == "data-weekly"}
    finally:
        stack.stop()
    results["machine"]["loadavg_end"] = loadavg()
    results["elapsed_seconds"] = time.time() - t0
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"wrote {os.path.relpath(out_path, REPO)} in {results['elapsed_seconds']:.0f}s")

    print(report.events_summary(results))
    if not args.no_markdown and not quick:
        report.regenerate(events=results)
        log("regenerated BENCHMARKS.md")
    shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\n".join(["event benchmark FAILED:"] + [f"  - {p}" for p in problems]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
