"""What the memory and latency sections hand the functions themselves, outside Step Functions:
a history's input moved to another run, a task token no execution waits on, SSM's command-end
event, the fallback poll state's input; and waiting for a sent command, with the stage's own
deliveries and reconciler kept quiet meanwhile (`QuietStage`).
"""

import datetime
import json
import random
import time

from spotstep_local import contract
from spotstep_local.stack import LocalStack


def with_run(template: dict, run: dict) -> dict:
    out = json.loads(json.dumps(template))
    out["run"] = run
    return out


def wait_command(stack: LocalStack, command_id: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = stack.agent.commands.get(command_id)
        if run is not None and run.status in ("Success", "Failed", "TimedOut", "Cancelled"):
            time.sleep(0.05)
            return run
        time.sleep(0.1)
    raise TimeoutError(f"command {command_id} did not finish")


def bench_token(tag: str) -> str:
    """A task token no execution waits on: poll-result's SendTaskSuccess/Failure with it is
    answered `InvalidToken`, which it treats as a token already answered (nothing recorded)."""
    return f"bench-token-{tag}-{random.randrange(10**9):09d}"


def command_ended_event(command: dict, status: str) -> dict:
    """SSM's `EC2 Command Invocation Status-change Notification` for a command of ours, as
    EventBridge delivers it to poll-result (the stage's EventBus makes the same shape)."""
    instance_id = command["instance_id"]
    return {
        "version": "0",
        "id": f"bench-{random.randrange(10**12):012d}",
        "detail-type": contract.detail_type("command_invocation"),
        "source": "aws.ssm",
        "account": "123456789012",
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
        "detail": {
            "command-id": command["command_id"],
            "document-name": "AWS-RunShellScript",
            "instance-id": instance_id,
            "requested-date-time": command["sent_at"],
            "status": status,
        },
    }


class QuietStage:
    """While the benchmark replays the functions by itself: the stage's own EventBridge
    deliveries and reconciler off, so that the stack's poll-result does not answer the
    benchmark's send markers beside it (it could only get `InvalidToken`, but its calls would
    load the emulator under the measurement)."""

    def __init__(self, stack: LocalStack):
        self.faults = stack.faults

    def __enter__(self):
        self.faults.drop_events = {k: None for k in ("command_invocation", "spot_warning", "instance_state")}
        self.faults.reconcile = False
        return self

    def __exit__(self, *exc):
        self.faults.drop_events = {}
        self.faults.reconcile = True


def poll_state_input(send: dict) -> dict:
    """The `<step>: poll` state's input for a send-step input: {run, job, instance, step}, the
    step without its script."""
    return {"run": send["run"], "job": send["job"], "instance": send["instance"],
            "step": {k: v for k, v in send["step"].items() if k != "script"}}
