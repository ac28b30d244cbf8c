"""The fan-out benchmark: the backtest job's sweep on the local stage (the real functions, its
Inline Map of lanes, the EventBridge emulation), with shards of uneven length.

    .local/emu/bin/python bench/fanout.py [--shards 48] [--instances 4] [--seconds-scale 2] [--no-markdown]

Measures, from one execution: the sweep's wall time (its Map state, entered to exited) against
the ideal (the sum of the shards' command times / lanes + one lane's boot and setup: the
median lane's time from the Map's start to its first shard's send); the transitions and Lambda
invocations per shard and per lane, read from the history by state; the launches of the whole
run (lane 0 adopts the run's instance: min(instances, shards) without reclaims); and prices
a 200-shard sweep on 8 instances with bench/cost.py's prices from those per-shard and
per-lane counts. Writes bench/fanout.json and regenerates BENCHMARKS.md (bench/report.py).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

import report  # noqa: E402
from cost import PRICES, _lambda_usd  # noqa: E402
from executions import run_execution  # noqa: E402
from history import parse_ts, scheduled_invocation  # noqa: E402
from measure import loadavg, log, machine_info  # noqa: E402
from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402

JOB = "backtest"
STEP = "sweep"
# The sweep the cost section prices.
PRICED_SHARDS, PRICED_INSTANCES = 200, 8
# The Lambda init priced per cold start (ms; bench/coldstart.json measures the real one).
INIT_MS = 20.0


def bench_job(work: str, shards: int, instances: int, scale: int) -> str:
    """jobs/backtest with `shards` shards, `instances` lanes and shard lengths times `scale`."""
    root = os.path.join(work, "jobs")
    shutil.copytree(os.path.join(REPO, "jobs", JOB), os.path.join(root, JOB))
    path = os.path.join(root, JOB, "job.toml")
    with open(path) as f:
        text = f.read()
    if "instances = 3\n" not in text:
        raise ValueError("jobs/backtest/job.toml no longer says `instances = 3`")
    text = text.replace("instances = 3\n", f"instances = {instances}\n")
    text += f'\n[env]\nBACKTEST_SHARDS = "{shards}"\nBACKTEST_SECONDS_SCALE = "{scale}"\n'
    with open(path, "w") as f:
        f.write(text)
    return root


# The states of a lane each shard passes through (`asl::fanout`): the rest of a lane's are
# per lane.
PER_SHARD = ("next shard", "shard left?", "send shard")


def lane_state(name: str) -> str:
    """`per-shard`, `per-lane` or `fixed` for a state entered in the history."""
    fields = contract.fmt("state_lane").match(name)
    if fields is None or fields["step"] != STEP:
        return "fixed"
    return "per-shard" if fields["lane_state"] in PER_SHARD else "per-lane"


def analyse(run: dict, stack) -> dict:
    events = run["events"]
    at = lambda e: parse_ts(e["timestamp"]).timestamp()  # noqa: E731
    map_in = next(at(e) for e in events if e["type"] == "MapStateEntered")
    map_out = next(at(e) for e in events if e["type"] == "MapStateExited")
    shards = [r for r in run["runs"] if r.step == STEP]
    shard_seconds = [parse_ts(r.ended).timestamp() - parse_ts(r.started).timestamp() for r in shards]
    # A lane's instance runs its shards (lane 0's is the run's own instance; no reclaim here).
    by_lane: dict = {}
    for r in shards:
        by_lane.setdefault(r.instance_id, []).append(r)
    lanes = len(by_lane)
    # Every instance the run launched: the run's (lane 0's) and the other lanes'.
    launches = len(stack.instances(run_id=run["name"]))
    wall = map_out - map_in
    ideal_of = lambda boot: sum(shard_seconds) / lanes + boot  # noqa: E731
    # Where the time between the ideal and the wall goes: per lane, the gaps between one
    # shard's end and its next shard's send, its first shard's send after the Map's start, and
    # the Map's end after its last shard.
    gaps, firsts, tails = [], [], []
    for rs in by_lane.values():
        rs.sort(key=lambda r: r.requested)
        gaps += [b.requested - parse_ts(a.ended).timestamp() for a, b in zip(rs, rs[1:])]
        firsts.append(rs[0].requested - map_in)
        tails.append(map_out - parse_ts(rs[-1].ended).timestamp())
    # One boot and the setup steps: the median lane's time from the Map's start to its first
    # shard's send (its launch, its agent online, its setup steps sent and answered; lane 0
    # adopts the run's instance and sends at once).
    boot_setup = statistics.median(firsts)
    transitions = {"per-shard": 0, "per-lane": 0, "fixed": 0}
    invocations = {"per-shard": 0, "per-lane": 0, "fixed": 0}
    last = None
    for e in events:
        entered = e.get("stateEnteredEventDetails")
        if entered:
            last = lane_state(entered["name"])
            transitions[last] += 1
        elif scheduled_invocation(e) is not None:
            invocations[last] += 1
    ideal = ideal_of(boot_setup)
    n = len(set(r.shard for r in shards))
    per_shard_t = transitions["per-shard"] / n
    per_lane_t = transitions["per-lane"] / lanes
    per_shard_i = invocations["per-shard"] / n
    per_lane_i = invocations["per-lane"] / lanes
    priced_t = round(transitions["fixed"] + PRICED_SHARDS * per_shard_t + PRICED_INSTANCES * per_lane_t)
    priced_i = round(invocations["fixed"] + PRICED_SHARDS * per_shard_i + PRICED_INSTANCES * per_lane_i)
    requests, duration = _lambda_usd(priced_i, INIT_MS)
    sfn = priced_t * PRICES["sfn_standard_per_transition"]
    return {
        "status": run["status"],
        "shards": n,
        "commands": len(shards),
        "lanes": lanes,
        "launches": launches,
        "wall_seconds": wall,
        "ideal_seconds": ideal,
        "ratio": wall / ideal,
        "shard_seconds_sum": sum(shard_seconds),
        "shard_seconds_min": min(shard_seconds),
        "shard_seconds_max": max(shard_seconds),
        "boot_setup_seconds": boot_setup,
        "gap_seconds_mean": statistics.mean(gaps) if gaps else 0.0,
        "gap_seconds_max": max(gaps, default=0.0),
        "first_send_seconds": [round(x, 2) for x in sorted(firsts)],
        "tail_seconds": [round(x, 2) for x in sorted(tails)],
        "history_events": len(events),
        "events_per_shard": len(events) / n,
        "transitions": transitions,
        "invocations": invocations,
        "transitions_per_shard": per_shard_t,
        "transitions_per_lane": per_lane_t,
        "invocations_per_shard": per_shard_i,
        "invocations_per_lane": per_lane_i,
        "priced": {
            "shards": PRICED_SHARDS,
            "instances": PRICED_INSTANCES,
            "transitions": priced_t,
            "invocations": priced_i,
            "sfn_usd": sfn,
            "lambda_usd": requests + duration,
            "usd": sfn + requests + duration,
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=48)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--seconds-scale", type=int, default=2, help="shard lengths: (1, 2 or 3 s) times this")
    p.add_argument("--no-markdown", action="store_true")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="spotstep-bench-fanout-")
    target = os.path.join(REPO, "target", "debug")
    stack = LocalStack(os.path.join(work, "stack"), Harness.binaries(REPO, target))
    started = time.time()
    try:
        harness = Harness(stack, REPO, target_dir=target, jobs_dirs=[bench_job(work, args.shards, args.instances, args.seconds_scale)])
        log(f"fanout: {args.shards} shards on {args.instances} instances, lengths x{args.seconds_scale}")
        run = run_execution(harness, stack, JOB, None, timeout=900)
        if run["status"] != "SUCCEEDED":
            raise RuntimeError(f"the sweep ended {run['status']}: {run['error']}")
        result = analyse(run, stack)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    result.update(
        {
            "settings": {"shards": args.shards, "instances": args.instances, "seconds_scale": args.seconds_scale},
            "machine": dict(machine_info(), loadavg_end=loadavg()),
            "elapsed_seconds": time.time() - started,
        }
    )
    with open(os.path.join(HERE, "fanout.json"), "w") as f:
        json.dump(result, f, indent=1)
    log(report.fanout_summary(result))
    if not args.no_markdown:
        report.regenerate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
