"""Real executions on the local stage: the data-weekly job with its step scripts replaced by
`sleep`s, stand-ins for its secrets, one execution run to its end with its history and
commands, and the events EventBridge delivered to poll-result about a run's instances.
"""

import json
import os
import random
import shutil
import time
import tomllib

from cost import DATA_WEEKLY_MINUTES
from measure import REPO
from spotstep_local import contract
from spotstep_local.events import matches
from spotstep_local.harness import Harness
from spotstep_local.stack import LocalStack


def put_job_secrets(stack, manifest_path: str):
    """Puts a stand-in value for each of the job's `[secrets]` parameters into the local stack:
    the runner reads them on the instance before the step starts, as in a deployment."""
    with open(manifest_path, "rb") as f:
        secrets = tomllib.load(f).get("secrets", {})
    ssm = stack.client("ssm")
    for name, parameter in secrets.items():
        ssm.put_parameter(Name=parameter, Value=f"bench-stand-in-{name.lower()}", Type="SecureString", Overwrite=True)


def sim_jobs_dir(work: str, seconds_per_minute: float) -> str:
    """jobs/data-weekly with every step script replaced by a `sleep` of the step's stated
    production duration, scaled to `seconds_per_minute` seconds per minute."""
    root = os.path.join(work, "sim-jobs")
    src = os.path.join(REPO, "jobs", "data-weekly")
    dst = os.path.join(root, "data-weekly")
    os.makedirs(os.path.join(dst, "steps"), exist_ok=True)
    shutil.copy(os.path.join(src, "job.toml"), os.path.join(dst, "job.toml"))
    with open(os.path.join(src, "job.toml"), "rb") as f:
        manifest = tomllib.load(f)
    for step in manifest["steps"]:
        minutes = DATA_WEEKLY_MINUTES.get(step["name"], 1)
        secs = round(minutes * seconds_per_minute, 3)
        with open(os.path.join(dst, step["script"]), "w") as f:
            f.write(
                f'echo "sim {step["name"]}: {minutes} min of production work, {secs}s here"\n'
                f"sleep {secs}\n"
                f'echo "sim {step["name"]}: done"\n'
            )
    return root


def run_execution(harness: Harness, stack: LocalStack, job: str, mode: str, timeout: float) -> dict:
    name = f"bench-{job}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{random.randrange(1000):03d}"
    definition = json.loads(harness.definition(job))
    stack.put_config(definition["States"][contract.state("name_the_run")]["Parameters"]["job"]["config_source"], "# bench\n")
    started = time.time()
    arn = harness.start(job, name, {"mode": mode} if mode else {})
    outcome = harness.wait(arn, timeout=timeout)
    wall = time.time() - started
    runs = stack.agent.runs(run_id=name)
    return {
        "job": job,
        "mode": mode,
        "name": name,
        "arn": arn,
        "status": outcome.status,
        "error": outcome.error,
        "wall_seconds": wall,
        "events": outcome.events,
        "runs": runs,
        "definition": definition,
    }


def instance_ids(stack: LocalStack, run_id: str) -> set:
    return {i.id for i in stack.instances(run_id=run_id)}


def matched(event: dict) -> bool:
    return any(matches(rule["pattern"], event) for rule in contract.event_rules())


def settle_deliveries(stack: LocalStack, ids: set, timeout: float = 15.0) -> list:
    """The deliveries to poll-result of events about `ids`, once every matched event sent about
    them was delivered (they run on threads, and the instance's last state changes come after
    the execution ended)."""
    def about(event):
        return event.get("detail", {}).get("instance-id") in ids

    deadline = time.time() + timeout
    while True:
        with stack.events.lock:
            sent = [e for _, _, e in stack.events.sent if about(e) and matched(e)]
            delivered = [d for d in stack.events.delivered if about(d[1])]
            dropped = [e for e in stack.events.dropped if about(e)]
        if len(delivered) >= len(sent) - len(dropped) or time.time() > deadline:
            return delivered
        time.sleep(0.1)
