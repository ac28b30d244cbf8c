"""Drive a job's real state machine on the local stack: deploy, start, follow, and the two
things no emulator here does: the execution-status-change rule (cleanup after FAILED,
TIMED_OUT, ABORTED) and console redrive.

Redrive is emulated by its documented semantics: the state that failed runs again with its
original input, the execution goes on from there, and `$$.Execution.RedriveCount` is one
higher. moto cannot restart an execution, so the harness starts the same definition at the
failed state (a copy whose `StartAt` is that state) with that state's original input, and
gives it the original execution's context object (`Id`, `Name`, `StartTime`) plus the higher
`RedriveCount`. While the redrive runs, the original execution reads `RUNNING` again (as it
does on AWS: for ListExecutions, DescribeExecution, the concurrency check and the sweep), and
it takes the redrive's final status, error, cause and output when the redrive ends.
"""

import datetime
import json
import os
import subprocess
import threading
import time

from . import contract
from .lambdas import function_arn
from .stack import ACCOUNT, REGION

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


def _moto_execution(arn: str):
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    return stepfunctions_parser_backends[ACCOUNT][REGION].describe_execution(arn)


def _mirror_redrive(logical: str, derived: str) -> bool:
    """Gives the logical execution the derived one's status (and, once it ended, its end).
    Returns True once the derived execution has ended."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    source, target = _moto_execution(derived), _moto_execution(logical)
    ended = source.exec_status != ExecutionStatus.RUNNING
    target.exec_status = source.exec_status
    target.stop_date = source.stop_date if ended else None
    target.error, target.cause = (source.error, source.cause) if ended else (None, None)
    target.output = source.output if ended else None
    return ended


def substitutions() -> dict:
    """{ARN placeholder of the generated definitions: the local function's ARN}, what
    `DefinitionSubstitutions` in template.yaml does on a deployment."""
    return {placeholder: function_arn(name) for placeholder, name in contract.arn_placeholders().items()}


def substitute(text: str) -> str:
    """The definition `text` with every function ARN placeholder replaced; raises
    `contract.ContractError` naming the state when a Task's resource is left unresolved."""
    arns = substitutions()
    for placeholder, arn in arns.items():
        text = text.replace(placeholder, arn)
    for name, state in json.loads(text)["States"].items():
        if state.get("Resource") == contract.callback_resource():
            state = {"Resource": state.get("Parameters", {}).get("FunctionName")}
        if "Resource" in state and state["Resource"] not in arns.values():
            raise contract.ContractError(
                f"state {name!r}: resource {state['Resource']!r} is none of the contract's function ARN placeholders"
            )
    return text


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
        # What the status-change rule's cleanup reported (None when it did not run, or runs
        # late: then `rule_delivery` follows it).
        self.rule_report = None
        self.rule_delivery = None
        # The status-change event EventBridge sends for this end (None for SUCCEEDED): it
        # can be delivered again (`Harness.deliver`).
        self.event = None

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
    def __init__(self, stack, repo: str, target_dir: str = None, jobs_dirs: list = None):
        """`jobs_dirs`: the folders holding job folders, searched in order for `<job>/job.toml`
        (default: `<repo>/jobs`)."""
        _patch_moto_context()
        self.stack = stack
        self.repo = repo
        self.target = target_dir or os.path.join(repo, "target", "debug")
        self.jobs_dirs = list(jobs_dirs or [os.path.join(repo, "jobs")])
        self.sfn = stack.client("stepfunctions")
        # The emulated instances' file system root for the jobs' `home` folders (their work
        # folders are `<home>/spotstep/<job>`): the stack's own, never the host's.
        self.home = os.path.join(stack.root, "fs")
        self.machines = {}
        self.definitions = {}
        self.redrives = {}
        # The stack's front door answers RedriveExecution with `redrive` (stack.py).
        stack.harness = self

    @staticmethod
    def binaries(repo: str, target_dir: str = None) -> dict:
        target = target_dir or os.path.join(repo, "target", "debug")
        return {name: os.path.join(target, name) for name in contract.functions()}

    def job_dir(self, job: str) -> str:
        for folder in self.jobs_dirs:
            candidate = os.path.join(folder, job)
            if os.path.isfile(os.path.join(candidate, "job.toml")):
                return candidate
        raise FileNotFoundError(f"no job `{job}` in {', '.join(self.jobs_dirs)}")

    def definition(self, job: str) -> str:
        """The job's local definition as this stack deploys it: the function ARNs resolved, and
        the job's `home` moved into the stack's own folder (`home`), so that stacks side by
        side on one machine never share a work folder."""
        done = subprocess.run(
            [os.path.join(self.target, "spotstep"), "asl", self.job_dir(job), "--local"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"spotstep asl {self.job_dir(job)} failed: {done.stderr.strip()}")
        definition = json.loads(substitute(done.stdout))
        record = definition["States"][contract.state("name_the_run")]["Parameters"]["job"]
        record["home"] = self.home + record["home"]
        return json.dumps(definition, indent=2)

    def config_source(self, job: str) -> str:
        """The job's `config_source`, as its state machine carries it."""
        self.deploy(job)
        return self.definitions[job]["States"][contract.state("name_the_run")]["Parameters"]["job"]["config_source"]

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
            if on_event:
                # The history carries every state's input (the job record with its scripts):
                # fetch it while running only when someone follows the events.
                events = self.history(arn)
                for e in events[seen:]:
                    on_event(e)
                seen = len(events)
            if desc["status"] in TERMINAL:
                break
            if time.time() > deadline:
                raise TimeoutError(f"execution {arn} still {desc['status']} after {timeout}s")
            time.sleep(0.3 if on_event else 0.2)
        events = self.history(arn)
        if on_event:
            for e in events[seen:]:
                on_event(e)
        if arn in self.redrives:
            _mirror_redrive(self.redrives[arn], arn)
        outcome = Outcome(arn, desc["status"], desc.get("error"), desc.get("cause"), desc.get("output"), events)
        if outcome.status in ("FAILED", "TIMED_OUT", "ABORTED"):
            outcome.event = self.status_change_event(self.logical_arn(arn), outcome.status, desc)
            plan = self.stack.faults.rule_delivery
            if rule and plan:
                outcome.rule_delivery = self.deliver_later(outcome.event, plan.get("when", 0), plan.get("copies", 1))
            elif rule:
                outcome.rule_report = self.deliver(outcome.event)
        return outcome

    def logical_arn(self, arn: str) -> str:
        return self.redrives.get(arn, arn)

    def status_change_rule(self, execution_arn: str, status: str, desc: dict = None):
        """The EventBridge rule's cleanup target, with the event EventBridge delivers: `desc` is
        the DescribeExecution answer of the execution that ended (for an emulated redrive,
        the derived execution's; the event names the logical execution)."""
        return self.deliver(self.status_change_event(execution_arn, status, desc))

    def deliver(self, event: dict):
        """Delivers a status-change event to the rule's target (cleanup); its report."""
        return self.invoke("cleanup", event)

    def deliver_later(self, event: dict, when=0, copies: int = 1) -> "Delivery":
        """Delivers `event` from another thread once `when` is due (seconds from now, or a
        predicate polled until true), `copies` times (EventBridge delivers at least once)."""
        return Delivery(self, event, when, copies)

    def status_change_event(self, execution_arn: str, status: str, desc: dict = None) -> dict:
        """The event EventBridge sends when the execution ended (see `status_change_rule`)."""
        desc = desc or self.sfn.describe_execution(executionArn=execution_arn)

        def millis(value):
            return int(value.timestamp() * 1000) if isinstance(value, datetime.datetime) else None

        logical = execution_arn
        machine = logical.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
        redrive_count = _CONTEXT_OVERRIDES.get(desc.get("executionArn", ""), {}).get("RedriveCount", 0)
        event = {
            "version": "0",
            "id": "local",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [logical],
            "detail": {
                "executionArn": logical,
                "stateMachineArn": machine,
                "name": logical.rsplit(":", 1)[1],
                "status": status,
                "startDate": millis(desc.get("startDate")),
                "stopDate": millis(desc.get("stopDate")),
                "input": desc.get("input"),
                "output": desc.get("output"),
                "inputDetails": {"included": True},
                "outputDetails": {"included": True} if desc.get("output") is not None else None,
                "error": desc.get("error"),
                "cause": desc.get("cause"),
                "redriveCount": redrive_count,
            },
        }
        return event

    def invoke(self, function: str, payload: dict):
        status, body, error = self.stack.lambdas.invoke(function, json.dumps(payload).encode())
        result = json.loads(body or b"null")
        if error:
            raise RuntimeError(f"{function} failed: {result}")
        return result

    def stop(self, arn: str):
        """StopExecution; stopping a redriven execution stops the redrive that carries it on."""
        running = [d for d, l in self.redrives.items() if l == arn and self.sfn.describe_execution(executionArn=d)["status"] == "RUNNING"]
        for target in running or [arn]:
            self.sfn.stop_execution(executionArn=target, error="Operator.Stop", cause="stopped by the operator")

    def redrive(self, arn: str) -> str:
        """Emulated console redrive of a failed execution; returns the execution that carries on."""
        events = self.history(arn)
        entered = [e for e in events if "stateEnteredEventDetails" in e]
        if not entered:
            raise RuntimeError("nothing to redrive: no state was entered")
        logical = self.logical_arn(arn)
        original = self.sfn.describe_execution(executionArn=logical)
        count = sum(1 for v in self.redrives.values() if v == logical) + 1
        machine_name = logical.split(":")[6]
        job = machine_name[len("spotstep-"):]
        definition = dict(self.definitions[job])
        # A state inside a Map's iteration (a sweep lane's) is not a top-level state: the
        # Map itself runs again with its original input. AWS reruns only the failed
        # iterations; the lanes here all start again, and the shards recorded as succeeded
        # are skipped by the lanes themselves (spotstep does not rely on the engine for it).
        failed = next(
            e["stateEnteredEventDetails"]
            for e in reversed(entered)
            if e["stateEnteredEventDetails"]["name"] in definition["States"]
        )
        definition["StartAt"] = failed["name"]
        # One derived machine per redrive: moto's CreateStateMachine returns an existing machine
        # of the same name whatever its definition.
        self._derived = getattr(self, "_derived", 0) + 1
        derived = self.sfn.create_state_machine(
            name=f"{machine_name}-redrive-{self._derived}",
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
        _mirror_redrive(logical, new_arn)
        threading.Thread(target=self._follow_redrive, args=(logical, new_arn), daemon=True).start()
        return started["executionArn"]

    @staticmethod
    def _follow_redrive(logical: str, derived: str):
        while not _mirror_redrive(logical, derived):
            time.sleep(0.2)


class Delivery:
    """A status-change event delivered late, from its own thread (`Harness.deliver_later`)."""

    def __init__(self, harness: Harness, event: dict, when, copies: int):
        self.event = event
        self.reports = []
        self.errors = []
        self.delivered_at = []
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(harness, when, copies), daemon=True).start()

    def _run(self, harness, when, copies):
        try:
            deadline = time.time() + 600
            if callable(when):
                while not when():
                    if time.time() > deadline:
                        raise TimeoutError("the delivery condition never held")
                    time.sleep(0.1)
            else:
                time.sleep(when)
            for _ in range(copies):
                self.delivered_at.append(time.time())
                self.reports.append(harness.deliver(self.event))
        except Exception as e:  # reported by `join`
            self.errors.append(e)
        finally:
            self.done.set()

    def join(self, timeout: float = 120) -> list:
        """Waits for every copy; returns their reports (raises what a delivery raised)."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"the status-change event was not delivered within {timeout}s")
        if self.errors:
            raise self.errors[0]
        return self.reports
