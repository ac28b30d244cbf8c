"""Work redone per reclaim: the seconds of step progress a spot reclaim makes the train job
repeat, with the spot warning and without it, beside a peer's default (a restart from zero).

    .local/emu/bin/python bench/checkpoint.py [--points 3.5,5,6.5] [--out bench/checkpoint.json]

(`scripts/bench-checkpoint.sh` builds the debug binaries, then runs this.) Each run is the
real `jobs/train` state machine on the local stage (local timing: checkpoint uploads every
2 s, grace 3 s, the metadata notice polled every 1 s), reclaimed once during `train` at each
point (seconds after its send): with the warning (`reclaim_lead` 6 s: the notice in the
instance's metadata, then the termination) and without any notice (`reclaim_notice` off).
The train step prints its progress (one line per iteration, TRAIN_ITERATION_SECONDS of work
each) and where it resumed; work redone = (the last progress before the reclaim - the
progress resumed from) x the iteration's seconds. A restart from zero (SkyPilot's default,
no checkpoint) redoes everything done before the reclaim: the same runs' last progress.
Every run must also end with the uninterrupted run's final weights.

Targets (issue 18): at most 10 s with the warning; at most every_seconds + one epoch
without it.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

from measure import log, machine_info, stats  # noqa: E402
from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402

JOB = "train"
STEP = "train"
TARGET_WARNED_S = 10.0
LEAD_S = 6.0


def result_of(stdout: str):
    found = re.findall(r"^train: result (\d+)$", stdout, re.M)
    return found[-1] if found else None


def reference(env: dict) -> str:
    """The final weights of an uninterrupted run: the step script without its pauses."""
    with tempfile.TemporaryDirectory() as ckpt:
        env = dict(env, TRAIN_ITERATION_SECONDS="0", SPOTSTEP_CHECKPOINT_DIR=ckpt, SPOTSTEP_WORKDIR=ckpt,
                   PATH=os.environ["PATH"])
        done = subprocess.run(["bash", "-eo", "pipefail", os.path.join(REPO, "jobs/train/steps/train.sh")],
                              env=env, capture_output=True, text=True, check=True)
    return result_of(done.stdout)


def one_run(stack, harness, warned: bool, after: float, iteration_s: float, iterations: int, expected: str) -> dict:
    faults = stack.faults
    faults.reset()
    faults.reclaim_during = {STEP: {"after": after, "times": 1}}
    faults.reclaim_lead = LEAD_S
    faults.reclaim_notice = warned
    name = f"bench-ckpt-{'warned' if warned else 'unwarned'}-{int(after * 10)}-{int(time.time())}"
    arn = harness.start(JOB, name, {})
    outcome = harness.wait(arn, timeout=300)
    runs = stack.agent.runs(run_id=name, step=STEP)
    if outcome.status != "SUCCEEDED" or len(runs) != 2:
        raise RuntimeError(f"{name}: {outcome.status}, {len(runs)} sends of {STEP}: {outcome.error} {outcome.cause}")
    first, second = runs
    done = [int(p) for p in re.findall(r"^train: progress (\d+)$", first.stdout, re.M)]
    [(epoch, iteration)] = re.findall(r"^train: resumed at epoch (\d+) iteration (\d+)", second.stdout, re.M)
    resumed = int(epoch) * iterations + int(iteration)
    last = done[-1] if done else 0
    return {
        "warned": warned,
        "reclaim_after_s": after,
        "progress_before": last,
        "resumed_at": resumed,
        "redone_s": round((last - resumed) * iteration_s, 2),
        "from_zero_s": round(last * iteration_s, 2),
        "same_result": result_of(second.stdout) == expected,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--points", default="3.5,5,6.5", help="seconds after the train step's send to reclaim at")
    p.add_argument("--out", default=os.path.join(HERE, "checkpoint.json"))
    p.add_argument("--command", default="bench/checkpoint.py")
    args = p.parse_args()
    points = [float(x) for x in args.points.split(",")]
    root = tempfile.mkdtemp(prefix="spotstep-bench-ckpt-")
    target = os.path.join(REPO, "target", "debug")
    stack = LocalStack(root, Harness.binaries(REPO, target))
    try:
        harness = Harness(stack, REPO, target_dir=target)
        stack.put_config(harness.config_source(JOB), "# train config for the benchmark\n")
        states = harness.definitions[JOB]["States"]
        spec = states[contract.state("name_the_run")]["Parameters"]["job"]
        env = spec["env"]
        iteration_s = float(env["TRAIN_ITERATION_SECONDS"])
        iterations = int(env["TRAIN_ITERATIONS"])
        send = states[contract.fmt("state_send").make(step=STEP)]["Parameters"]["Payload"]["step"]
        every_s = send["checkpoint"]["every_seconds"]
        epoch_s = iterations * iteration_s
        expected = reference(env)
        runs = []
        for warned in (True, False):
            for after in points:
                log(f"train reclaimed {after}s into the step, {'with' if warned else 'without'} the warning")
                runs.append(one_run(stack, harness, warned, after, iteration_s, iterations, expected))
                log(f"  redone {runs[-1]['redone_s']}s (from zero: {runs[-1]['from_zero_s']}s)")
    finally:
        stack.stop()
    warned = [r["redone_s"] for r in runs if r["warned"]]
    unwarned = [r["redone_s"] for r in runs if not r["warned"]]
    out = {
        "command": args.command,
        "machine": machine_info(),
        "job": JOB,
        "iteration_seconds": iteration_s,
        "epoch_seconds": epoch_s,
        "every_seconds": every_s,
        "reclaim_lead_seconds": LEAD_S,
        "runs": runs,
        "warned": stats(warned),
        "unwarned": stats(unwarned),
        "from_zero": stats([r["from_zero_s"] for r in runs]),
        "verdict": {
            "warned_max_s": max(warned),
            "warned_ok": max(warned) <= TARGET_WARNED_S,
            "unwarned_max_s": max(unwarned),
            "unwarned_bound_s": every_s + epoch_s,
            "unwarned_ok": max(unwarned) <= every_s + epoch_s,
            "same_result": all(r["same_result"] for r in runs),
        },
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    v = out["verdict"]
    sys.exit(0 if v["warned_ok"] and v["unwarned_ok"] and v["same_result"] else 1)


def table(c: dict) -> str:
    """The markdown table of a checkpoint.json."""
    rows = ["| reclaim | runs | work redone, median (max) | a restart from zero, median (max) |", "|---|---|---|---|"]
    for label, warned in (("with the warning (checkpoint saved on SIGTERM)", True),
                          ("without any notice (the last periodic upload)", False)):
        mine = [r for r in c["runs"] if r["warned"] == warned]
        redone = stats([r["redone_s"] for r in mine])
        zero = stats([r["from_zero_s"] for r in mine])
        rows.append(f"| {label} | {len(mine)} | {redone['median']:.1f} s ({redone['max']:.1f} s) |"
                    f" {zero['median']:.1f} s ({zero['max']:.1f} s) |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
