"""Drive a job's real state machine on the local stack: deploy, start, follow, and the two
things no emulator here does: the execution-status-change rule (cleanup after FAILED,
TIMED_OUT, ABORTED) and console redrive.

Redrive is emulated by its documented semantics: the state that failed runs again with its
original input, the execution goes on from there, and `$$.Execution.RedriveCount` is one
higher. moto cannot restart an execution, so the harness starts the same definition at the
failed state (a copy whose `StartAt` is that state) with that state's original input, and
gives it the original execution's context object (`Id`, `Name`, `StartTime`) plus the higher
`RedriveCount`.
"""

import datetime
import json
import os
import subprocess
import time

from .stack import ACCOUNT, REGION, FUNCTIONS

_CONTEXT_OVERRIDES: dict = {}


def _patch_moto_context():
    """Adds `RedriveCount` (0, or the emulated redrive's) to every execution's context."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if getattr(ExecutionWorker, "_spotstep_patched", False):
        return
    original = ExecutionWorker._get_evaluation_environment

    def patched(self):
        env = original(self)
        data = env.states.context_object.context_object_data["Execution"]
        start = data.get("StartTime")
        if isinstance(start, datetime.datetime):
            # AWS gives an ISO 8601 string here; moto passes its datetime through.
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.timezone.utc)
            data["StartTime"] = start.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data["RedriveCount"] = 0
        data.update(_CONTEXT_OVERRIDES.get(data["Id"], {}))
        return env

    ExecutionWorker._get_evaluation_environment = patched
    ExecutionWorker._spotstep_patched = True


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


SUBSTITUTIONS = {
    "${LaunchFunctionArn}": function_arn("launch"),
    "${WaitOnlineFunctionArn}": function_arn("wait-online"),
    "${SendStepFunctionArn}": function_arn("send-step"),
    "${PollResultFunctionArn}": function_arn("poll-result"),
    "${CleanupFunctionArn}": function_arn("cleanup"),
}

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class Outcome:
    """What an execution (and its emulated redrives) did."""

    def __init__(self, arn, status, error, cause, output, events):
        self.arn = arn
        self.status = status
        self.error = error
        self.cause = cause
        self.output = output
        self.events = events

    def entered(self):
        return [e["stateEnteredEventDetails"]["name"] for e in self.events if "stateEnteredEventDetails" in e]

    def failed_state(self):
        names = self.entered()
        return names[-1] if names else None

    def cause_message(self) -> str:
        try:
            return json.loads(self.cause)["errorMessage"]
        except (TypeError, ValueError, KeyError):
            return self.cause or ""


class Harness:
    def __init__(self, stack, repo: str, target_dir: str = None):
        _patch_moto_context()
        self.stack = stack
        self.repo = repo
        self.target = target_dir or os.path.join(repo, "target", "debug")
        self.sfn = stack.client("stepfunctions")
        self.machines = {}
        self.definitions = {}
        self.redrives = {}

    @staticmethod
    def binaries(repo: str, target_dir: str = None) -> dict:
        target = target_dir or os.path.join(repo, "target", "debug")
        return {name: os.path.join(target, name) for name in FUNCTIONS}

    def definition(self, job: str) -> str:
        text = subprocess.run(
            [os.path.join(self.target, "spotstep"), "asl", os.path.join(self.repo, "jobs", job), "--local"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for placeholder, arn in SUBSTITUTIONS.items():
            text = text.replace(placeholder, arn)
        return text

    def deploy(self, job: str) -> str:
        if job in self.machines:
            return self.machines[job]
        definition = self.definition(job)
        arn = self.sfn.create_state_machine(
            name=f"spotstep-{job}", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/spotstep-states"
        )["stateMachineArn"]
        self.machines[job] = arn
        self.definitions[job] = json.loads(definition)
        return arn

    def start(self, job: str, name: str, payload: dict = None) -> str:
        machine = self.deploy(job)
        return self.sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload or {}))[
            "executionArn"
        ]

    def history(self, arn: str) -> list:
        events, token = [], None
        while True:
            kwargs = {"executionArn": arn, "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                return events

    def wait(self, arn: str, timeout: float = 300, on_event=None, rule: bool = True) -> Outcome:
        """Follows an execution to its end; then, like the EventBridge rule, runs cleanup for a
        FAILED, TIMED_OUT or ABORTED one."""
        seen = 0
        deadline = time.time() + timeout
        while True:
            desc = self.sfn.describe_execution(executionArn=arn)
            events = self.history(arn)
            if on_event:
                for e in events[seen:]:
                    on_event(e)
            seen = len(events)
            if desc["status"] in TERMINAL:
                break
            if time.time() > deadline:
                raise TimeoutError(f"execution {arn} still {desc['status']} after {timeout}s")
            time.sleep(0.3)
        outcome = Outcome(arn, desc["status"], desc.get("error"), desc.get("cause"), desc.get("output"), events)
        if rule and outcome.status in ("FAILED", "TIMED_OUT", "ABORTED"):
            self.status_change_rule(self.logical_arn(arn), outcome.status)
        return outcome

    def logical_arn(self, arn: str) -> str:
        return self.redrives.get(arn, arn)

    def status_change_rule(self, execution_arn: str, status: str):
        event = {
            "version": "0",
            "id": "local",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "region": REGION,
            "resources": [execution_arn],
            "detail": {"executionArn": execution_arn, "status": status},
        }
        self.invoke("cleanup", event)

    def invoke(self, function: str, payload: dict):
        status, body, error = self.stack.lambdas.invoke(function, json.dumps(payload).encode())
        result = json.loads(body or b"null")
        if error:
            raise RuntimeError(f"{function} failed: {result}")
        return result

    def stop(self, arn: str):
        self.sfn.stop_execution(executionArn=arn, error="Operator.Stop", cause="stopped by the operator")

    def redrive(self, arn: str) -> str:
        """Emulated console redrive of a failed execution; returns the execution that carries on."""
        events = self.history(arn)
        entered = [e for e in events if "stateEnteredEventDetails" in e]
        if not entered:
            raise RuntimeError("nothing to redrive: no state was entered")
        failed = entered[-1]["stateEnteredEventDetails"]
        logical = self.logical_arn(arn)
        original = self.sfn.describe_execution(executionArn=logical)
        count = sum(1 for v in self.redrives.values() if v == logical) + 1
        machine_name = logical.split(":")[6]
        job = machine_name[len("spotstep-"):]
        definition = dict(self.definitions[job])
        definition["StartAt"] = failed["name"]
        derived = self.sfn.create_state_machine(
            name=f"{machine_name}-redrive-{count}",
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/spotstep-states",
        )["stateMachineArn"]
        name = original["name"]
        new_arn = derived.replace(":stateMachine:", ":execution:") + f":{name}"
        _CONTEXT_OVERRIDES[new_arn] = {
            "Id": logical,
            "Name": name,
            "StartTime": original["startDate"].astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "RedriveCount": count,
        }
        self.redrives[new_arn] = logical
        started = self.sfn.start_execution(stateMachineArn=derived, name=name, input=failed["input"])
        return started["executionArn"]
