"""Launch API calls per attempt in the worst case: one instant fleet per market vs the
rotation's one RunInstances per pool.

Runs the demo job (3 instance types) on the local stage (3 subnets) with the on-demand
fallback on, so that a launch attempt asks 9 pools in 2 markets, and counts at the stage's
front door (`Faults.launch_calls`) the CreateFleet requests each Launch invocation makes:
- no capacity anywhere: every Launch invocation fails `NoCapacity` (the state machine retries
  it on the stage's short schedule, then the execution fails);
- throttled: every CreateFleet answers `RequestLimitExceeded` in `Errors`, so each request is
  sent again after each of the launch's pauses (src/fleet.rs THROTTLE_PAUSES_SECONDS).
The rotation (before this change) made one RunInstances call per pool it tried, in plan order
(src/capacity.rs `plan`): in the no-capacity worst case every pool of both markets, types x
subnets x 2; that figure is the plan's length, not counted here (the rotation is gone).

Rerun: `cargo build -j2 --workspace --all-targets`, then
`.local/emu/bin/python bench/fleet.py` (writes bench/fleet.json), then `python bench/report.py`.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "local"))


def fallback_jobs(work: str) -> str:
    """A jobs folder holding the demo job with `on_demand_fallback = true`."""
    jobs = os.path.join(work, "jobs")
    shutil.copytree(os.path.join(REPO, "jobs", "demo"), os.path.join(jobs, "demo"))
    path = os.path.join(jobs, "demo", "job.toml")
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^on_demand_fallback = false$", "on_demand_fallback = true", text)
    assert n == 1, "jobs/demo/job.toml no longer sets on_demand_fallback = false"
    with open(path, "w") as f:
        f.write(text)
    return jobs


def launch_failures(outcome, error: str) -> int:
    return sum(
        1
        for e in outcome.events
        if (e.get("lambdaFunctionFailedEventDetails") or {}).get("error") == error
    )


def scenario(harness, stack, name: str, error: str, rotation) -> dict:
    from spotstep_local import contract
    definition = json.loads(harness.definition("demo"))
    stack.put_config(definition["States"][contract.state("name_the_run")]["Parameters"]["job"]["config_source"], "# bench\n")
    arn = harness.start("demo", f"bench-fleet-{name.replace(' ', '-')}-{datetime.datetime.now():%H%M%S}", {"mode": "quick"})
    outcome = harness.wait(arn, timeout=600)
    invocations = launch_failures(outcome, error)
    calls = list(stack.faults.launch_calls)
    assert outcome.status == "FAILED" and outcome.error == error, (outcome.status, outcome.error, outcome.cause_message())
    assert invocations > 0 and len(calls) % invocations == 0, (invocations, calls)
    per = len(calls) // invocations
    return {
        "scenario": name,
        "launch_invocations": invocations,
        "create_fleet_requests": len(calls),
        "per_launch": per,
        "markets": sorted({m for _, m in calls}),
        "rotation_per_launch": rotation,
    }


def main():
    # Here, not at the top: report.py imports this module's `table` without the stage's needs.
    from spotstep_local.harness import Harness
    from spotstep_local.stack import FUNCTIONS, LocalStack

    target = os.environ.get("SPOTSTEP_TARGET_DIR") or os.path.join(REPO, "target", "debug")
    binaries = {name: os.path.join(target, name) for name in FUNCTIONS}
    work = tempfile.mkdtemp(prefix="spotstep-bench-fleet-")
    stack = LocalStack(os.path.join(work, "stack"), binaries)
    harness = Harness(stack, REPO, target_dir=target, jobs_dirs=[fallback_jobs(work), os.path.join(REPO, "jobs")])
    types = 3
    subnets = len(stack.world["subnets"])
    pools = types * subnets
    rows = []
    try:
        stack.faults.reset()
        stack.faults.no_capacity = {("*", "*")}
        rows.append(scenario(harness, stack, "no capacity anywhere", "NoCapacity", 2 * pools))
        stack.faults.reset()
        stack.faults.fleet_throttled = 10**6
        # The rotation failed `Throttled` on its first throttled call (after the SDK's own
        # retries, which CreateFleet's in-answer RequestLimitExceeded does not get).
        rows.append(scenario(harness, stack, "throttled every time", "Throttled", None))
    finally:
        stack.faults.reset()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": ".local/emu/bin/python bench/fleet.py",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_head": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "types": types,
        "subnets": subnets,
        "on_demand_fallback": True,
        "rows": rows,
    }
    with open(os.path.join(HERE, "fleet.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(rows))


def table(r: dict) -> list:
    """The BENCHMARKS.md rows."""
    out = [
        "| worst case | Launch invocations | CreateFleet requests (counted) | per launch: fleet | per launch: rotation (RunInstances, from the plan) |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        rotation = row["rotation_per_launch"]
        rotation = "the first throttled call failed the launch (SDK retries only)" if rotation is None else rotation
        out.append(
            f"| {row['scenario']} | {row['launch_invocations']} | {row['create_fleet_requests']} | {row['per_launch']} |"
            f" {rotation} |"
        )
    out.append("")
    return out


if __name__ == "__main__":
    main()
