"""End-to-end tests: the real state machine of a job, run by moto's Step Functions interpreter,
calling the real Rust Lambda binaries (target/debug), which drive moto's EC2 and S3 and the
SSM agent emulation that really runs each step's script (local/spotstep_local).

ONE local stack and harness serve each pytest session, and with pytest-xdist each worker is a
session of its own: every worker starts its own moto and five function processes on ports of
its own, with its own root folder (the instances' sandboxes and the jobs' home folders), so
tests on different workers share nothing. Between tests the injected faults and the jobs' state folders on the
"instance" (SPOTSTEP_WORKDIR/state) are reset, and anything a failed test left running is
stopped and cleaned up, so one failure cannot cascade into the next test.

Nothing is built here: build first with `cargo build -j2 --workspace --bins`.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "local"))

from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import FUNCTIONS, LocalStack  # noqa: E402

# The binaries under test (built beforehand; SPOTSTEP_TARGET_DIR points elsewhere).
TARGET = Path(os.environ.get("SPOTSTEP_TARGET_DIR") or REPO / "target" / "debug")
JOBS = [REPO / "jobs", HERE / "jobs"]
# The jobs the tests run; each one's config_source object is uploaded once.
USED_JOBS = ("demo", "bigfail", "train", "train-ondemand", "backtest")



def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """The first truthy value of `predicate()`, polled every `interval` s for `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

def _binaries() -> dict:
    paths = {name: TARGET / name for name in FUNCTIONS}
    paths["spotstep"] = TARGET / "spotstep"
    return paths


def _stale_binaries() -> list:
    """Binaries older than the newest Rust source (a hint, not a failure)."""
    sources = [p for d in ("src", "functions") for p in (REPO / d).rglob("*.rs")]
    newest = max((p.stat().st_mtime for p in sources), default=0)
    return sorted(name for name, p in _binaries().items() if p.exists() and p.stat().st_mtime < newest)


def pytest_report_header(config):
    stale = _stale_binaries()
    if stale:
        return f"e2e: WARNING: binaries in {TARGET} older than the Rust sources: {', '.join(stale)} (run cargo build)"
    return f"e2e: binaries in {TARGET} are newer than the Rust sources"


class E2E:
    """The stack, the harness and the helpers every test uses."""

    def __init__(self, stack: LocalStack, harness: Harness):
        self.stack = stack
        self.harness = harness
        self.s3 = stack.client("s3")
        # SSM as the functions see it: through the front door, answered by the agent emulation.
        import boto3

        self.ssm = boto3.client(
            "ssm",
            region_name="us-east-1",
            endpoint_url=stack.endpoint,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def front_door(self, service: str, attempts: int = None):
        """A client of the stack as the Rust code sees it (through the front door); with
        `attempts`, botocore's retries limited to that many."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=self.stack.endpoint,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": attempts}) if attempts else None,
        )

    # ---------------------------------------------------------------- jobs

    def job(self, job: str = "demo") -> dict:
        """The job record the state machine carries (`Name the run`)."""
        self.harness.deploy(job)
        return self.harness.definitions[job]["States"]["Name the run"]["Parameters"]["job"]

    def workdir(self, job: str = "demo") -> Path:
        spec = self.job(job)
        return Path(spec["home"]) / "spotstep" / spec["name"]

    def state_dir(self, job: str = "demo") -> Path:
        return self.workdir(job) / "state"

    def ran_log(self, job: str = "demo") -> list:
        """The `<step> ran` lines the workload steps appended on the instance."""
        path = self.state_dir(job) / "ran.log"
        return path.read_text().splitlines() if path.exists() else []

    # ---------------------------------------------------------------- executions

    @staticmethod
    def unique_name(tag: str) -> str:
        return f"e2e-{tag}-{uuid.uuid4().hex[:12]}"

    def start(self, tag: str, payload: dict = None, job: str = "demo", name: str = None):
        name = name or self.unique_name(tag)
        arn = self.harness.start(job, name, payload or {})
        return arn, name

    def run(self, tag: str, payload: dict = None, job: str = "demo", timeout: float = 180, rule: bool = True):
        arn, _ = self.start(tag, payload, job)
        return self.wait(arn, timeout=timeout, rule=rule)

    def wait(self, arn: str, timeout: float = 180, rule: bool = True):
        """Follows the execution to its end; with `rule`, then runs the status-change rule's
        cleanup as EventBridge would for FAILED/TIMED_OUT/ABORTED (`outcome.rule_report`)."""
        outcome = self.harness.wait(arn, timeout=timeout, rule=rule)
        outcome.name = arn.rsplit(":", 1)[-1]
        return outcome

    def rule(self, outcome) -> dict:
        """The status-change rule, run now for an execution waited for with `rule=False`."""
        outcome.rule_report = self.harness.status_change_rule(self.harness.logical_arn(outcome.arn), outcome.status)
        return outcome.rule_report

    # ---------------------------------------------------------------- what happened

    def commands(self, run_id: str, step: str = None) -> list:
        return self.stack.agent.runs(run_id=run_id, step=step)

    def steps_ran(self, run_id: str) -> list:
        """The steps sent to an instance for this run, in order."""
        return [c.step for c in self.commands(run_id)]

    @staticmethod
    def exited(outcome, state: str) -> list:
        """The parsed output of every exit of `state`, in order."""
        return [
            json.loads(e["stateExitedEventDetails"].get("output") or "null")
            for e in outcome.events
            if "stateExitedEventDetails" in e and e["stateExitedEventDetails"]["name"] == state
        ]

    @staticmethod
    def function_errors(outcome) -> list:
        """(error, message) of every failed Lambda call or task in the history, in order: a
        function's error, or the failure poll-result answered a waiting step's token with."""
        found = []
        for e in outcome.events:
            details = e.get("lambdaFunctionFailedEventDetails") or e.get("taskFailedEventDetails")
            if details:
                cause = details.get("cause", "")
                try:
                    cause = json.loads(cause)["errorMessage"]
                except (TypeError, ValueError, KeyError):
                    pass
                found.append((details.get("error"), cause))
        return found

    def staging_keys(self) -> list:
        return self.stack.keys("tmp/")

    def staged(self, job: str, run_id: str) -> list:
        """What a run stages: its config, and one send marker per (step, redrive round) it
        sent (a resend in the same round, to a relaunched instance, rewrites the same one)."""
        markers = {
            contract.fmt("send_marker_key").make(job=job, run_id=run_id, step=c.step, round=c.round)
            for c in self.commands(run_id)
        }
        return sorted(markers | {contract.fmt("staging_config_key").make(job=job, run_id=run_id)})

    def log_keys(self, job: str, run_id: str, step: str) -> list:
        return self.stack.keys(f"logs/{job}/{run_id}/{step}/")

    def assert_nothing_left(self, run_id: str = None):
        """No instance in a live state (any run) and no staging object (any run)."""
        live = [(i.id, i.state) for i in self.stack.live_instances()]
        assert live == [], f"instances left running: {live}"
        if run_id is not None:
            for instance in self.stack.instances(run_id=run_id):
                assert instance.state == "terminated", (instance.id, instance.state)
        staged = self.staging_keys()
        assert staged == [], f"staging objects left: {staged}"

    def health_logs(self, step: str, run_date: str) -> dict:
        """The health logs of a workload step on a date: {key: text}."""
        return {k: self.stack.read(k) for k in self.stack.keys(f"health/{step}_log/{run_date}/")}

    # ---------------------------------------------------------------- hygiene

    def reset(self):
        self.stack.faults.reset()
        for job in USED_JOBS:
            shutil.rmtree(self.state_dir(job), ignore_errors=True)

    def stop_leftovers(self):
        """Stops executions a failed test left running, and cleans up after them."""
        sfn = self.harness.sfn
        for machine in sfn.list_state_machines()["stateMachines"]:
            running = sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")
            for execution in running["executions"]:
                arn = execution["executionArn"]
                try:
                    self.harness.stop(arn)
                    self.harness.wait(arn, timeout=30)
                except Exception as e:  # best effort: report, go on
                    print(f"e2e teardown: could not stop {arn}: {e}", file=sys.stderr)
        for run in self.stack.agent.runs():
            if run.status in ("Pending", "InProgress"):
                self.stack.agent.CancelCommand({"CommandId": run.command_id})
        live = [i.id for i in self.stack.live_instances()]
        if live:
            self.stack.client("ec2").terminate_instances(InstanceIds=live)
        staged = self.staging_keys()
        if staged:
            self.s3.delete_objects(Bucket=self.stack.bucket, Delete={"Objects": [{"Key": k} for k in staged]})
        self.drop_made_up_locks()

    def drop_made_up_locks(self):
        """Deletes the run locks whose holder is no execution of this stack: a test that
        invokes Launch by hand (e.g. with its sample event) takes the job's lock for a made-up
        execution, which would hold the job for `UNKNOWN_HOLDER_SECONDS`. Locks of real
        executions are left for the tests to see."""
        sfn = self.harness.sfn
        for job in USED_JOBS:
            key = contract.fmt("run_lock_key").make(job=job)
            if key not in self.stack.keys(key):
                continue
            holder = json.loads(self.stack.read(key))["execution"]
            try:
                sfn.describe_execution(executionArn=holder)
            except sfn.exceptions.ExecutionDoesNotExist:
                self.s3.delete_object(Bucket=self.stack.bucket, Key=key)


@pytest.fixture(scope="session")
def e2e(request):
    missing = [f"{name} ({path})" for name, path in _binaries().items() if not path.is_file()]
    if missing:
        pytest.fail(
            f"e2e: the spotstep binaries are missing from {TARGET}: "
            + ", ".join(missing)
            + ". Build them first: `cargo build -j2 --workspace --bins` (the e2e tests build nothing).",
            pytrace=False,
        )
    root = tempfile.mkdtemp(prefix="spotstep-e2e-")
    stack = LocalStack(root, Harness.binaries(str(REPO), str(TARGET)))
    try:
        harness = Harness(stack, str(REPO), target_dir=str(TARGET), jobs_dirs=[str(p) for p in JOBS])
        env = E2E(stack, harness)
        for job in USED_JOBS:
            stack.put_config(harness.config_source(job), f"# {job} config for the e2e tests\n")
        yield env
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(f"\ne2e: function logs and instance sandboxes kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean(e2e):
    e2e.reset()
    yield e2e
    e2e.stop_leftovers()
    e2e.reset()
