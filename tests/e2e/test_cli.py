"""The operator's tool: `target/debug/spotstep run/watch/logs/runs/redrive` against the local
stack (AWS_ENDPOINT_URL), as an operator runs it.

The CLI finds a job's state machine by name, `<stack>-<job>` with the default stack
`spotstep`, which is the name the harness deploys it under. moto has no RedriveExecution:
the stack's front door answers it with the harness's emulated redrive
(`local/spotstep_local/redrive.py`), so `spotstep redrive` runs end to end here.
"""

import json
import os
import subprocess
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import TARGET, wait_until
from spotstep_local import contract

SPOTSTEP = str(TARGET / "spotstep")
# The setup step of the demo job (runs on every fresh instance).
SETUP = "prepare"


def cli_env(e2e, **overrides) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "AWS_ENDPOINT_URL": e2e.stack.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def spotstep(e2e, *args, timeout=240, **env):
    return subprocess.run(
        [SPOTSTEP, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(e2e, **env)
    )


def started_arn(done) -> str:
    assert done.returncode == 0, done.stderr
    [arn] = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("execution: ")]
    return arn


def executions(e2e) -> list:
    sfn = e2e.harness.sfn
    return [
        x["executionArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        for x in sfn.list_executions(stateMachineArn=m["stateMachineArn"])["executions"]
    ]


@pytest.mark.parametrize("command", ["run", "watch", "logs", "redrive", "runs", "cost", "graph", "asl", "asl-all", "contract"])
def test_each_command_has_help(e2e, command):
    done = spotstep(e2e, command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"spotstep {command}" in done.stdout
    assert "exit codes" in done.stdout


def test_the_help_lists_every_command_and_a_mistyped_one_gets_a_suggestion(e2e):
    listed = spotstep(e2e, "--help")
    assert listed.returncode == 0, listed.stderr
    for command in ["run", "watch", "logs", "redrive", "runs", "cost", "graph", "asl", "asl-all", "contract", "completions"]:
        assert f"  {command} " in listed.stdout, listed.stdout
    mistyped = spotstep(e2e, "wacth", "demo/r1")
    assert mistyped.returncode == 64
    assert "unknown command `wacth`" in mistyped.stderr and "did you mean `watch`?" in mistyped.stderr
    assert mistyped.stdout == ""


def test_completions_print_a_shell_script(e2e):
    done = spotstep(e2e, "completions", "bash")
    assert done.returncode == 0, done.stderr
    assert "complete -F _spotstep" in done.stdout and "redrive" in done.stdout
    unknown = spotstep(e2e, "completions", "tcsh")
    assert unknown.returncode == 64
    assert "possible values: bash" in unknown.stderr


def test_run_watch_logs_and_runs_a_successful_execution(e2e):
    e2e.harness.deploy("demo")
    done = spotstep(e2e, "run", "demo", "--mode", "quick", "--branch", "main")
    arn = started_arn(done)
    name = arn.rsplit(":", 1)[1]
    assert f"started demo/{name} with input " in done.stdout
    assert '"mode":"quick"' in done.stdout and '"branch":"main"' in done.stdout
    assert f"console: https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{arn}" in done.stdout

    watched = spotstep(e2e, "watch", arn, SPOTSTEP_BUCKET=e2e.stack.bucket)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert any(line.endswith("step prepare: started") for line in lines), watched.stdout
    assert any("step quoting: Success (exit 0) in " in line for line in lines), watched.stdout
    assert "SUCCEEDED after " in lines[-2], watched.stdout
    # Then the run's cost, from the ledger record the end-of-run cleanup wrote.
    record = json.loads(e2e.stack.read(contract.load()["ledger"]["key"].format(job="demo", run_id=name)))
    assert lines[-1].startswith(f"cost: ${record['cost']['total_usd']:.4f} (instance $"), watched.stdout
    assert any("instance i-" in line for line in lines), watched.stdout

    outcome = e2e.wait(arn)
    assert outcome.status == "SUCCEEDED"
    e2e.assert_nothing_left(name)

    logs = spotstep(e2e, "logs", f"demo/{name}", "quoting")
    assert logs.returncode == 0, logs.stderr
    [key] = [k for k in e2e.log_keys("demo", name, "quoting") if k.endswith("/stdout")]
    assert logs.stdout == e2e.stack.read(key)
    assert f"--- s3://{e2e.stack.bucket}/{key}" in logs.stderr
    # Without a step: the last step sent (quoting, in mode quick).
    assert spotstep(e2e, "logs", arn).stdout == logs.stdout

    runs = spotstep(e2e, "runs", "demo")
    assert runs.returncode == 0, runs.stderr
    [row] = [line for line in runs.stdout.splitlines() if f"demo/{name} " in line]
    assert row.split()[1] == "SUCCEEDED", runs.stdout


def test_a_failed_execution_exits_1_then_spotstep_redrive_resumes_at_the_failed_step(e2e):
    e2e.harness.deploy("demo")
    arn = started_arn(spotstep(e2e, "run", "demo", "--mode", "failing"))
    name = arn.rsplit(":", 1)[1]

    watched = spotstep(e2e, "watch", f"demo/{name}")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "  StepFailed: step `fail` failed: status Failed (Failed), exit code 3" in watched.stdout, watched.stdout
    assert "step fail: failed: cleaning up" in watched.stdout
    assert "FAILED after " in watched.stdout and "at `fail: failed`" in watched.stdout

    runs = spotstep(e2e, "runs")
    [row] = [line for line in runs.stdout.splitlines() if f"demo/{name} " in line]
    assert row.split()[1] == "FAILED" and row.endswith("fail: failed"), runs.stdout

    logs = spotstep(e2e, "logs", arn, "fail")
    assert "fail: about to exit 3" in logs.stdout, logs.stdout + logs.stderr
    # Following a step that failed: its output (from CloudWatch Logs), exit 1.
    followed = spotstep(e2e, "logs", arn, "fail", "--follow")
    assert followed.returncode == 1, followed.stdout + followed.stderr
    assert followed.stdout == logs.stdout
    assert followed.stderr.rstrip().endswith("--- step fail failed"), followed.stderr
    missing = spotstep(e2e, "logs", arn, "slow")
    assert missing.returncode == 4
    assert "step `slow` was not sent" in missing.stderr

    # Fix the cause, then redrive with the CLI (RedriveExecution, answered by the stack's
    # front door): the failed step runs again after the setup step on a fresh instance,
    # quoting is not run again, and the CLI follows the redriven run to its success.
    (e2e.state_dir() / "fail.ok").write_text("fixed by the e2e test\n")
    redrive = spotstep(e2e, "redrive", f"demo/{name}", SPOTSTEP_BUCKET=e2e.stack.bucket)
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert redrive.stdout.startswith(f"redriven: {arn}\n"), redrive.stdout
    after = redrive.stdout.split("redriven: the failed state runs again", 1)
    assert len(after) == 2, redrive.stdout
    assert "step fail: Success (exit 0)" in after[1] and "step slow: Success (exit 0)" in after[1], redrive.stdout
    assert "step quoting" not in after[1], redrive.stdout
    assert "SUCCEEDED after " in redrive.stdout.splitlines()[-2], redrive.stdout
    assert redrive.stdout.splitlines()[-1].startswith("cost: $"), redrive.stdout
    # The redrive rewrote the run's one ledger record: both rounds, the failure and the fix
    # (`fail: send` ran three times: the failure, the redriven send that found the instance
    # gone and relaunched, the fixed run).
    record = json.loads(e2e.stack.read(contract.load()["ledger"]["key"].format(job="demo", run_id=name)))
    assert (record["status"], record["redrive_count"]) == ("SUCCEEDED", 1)
    assert [(s["name"], s["status"], s["attempts"]) for s in record["steps"]] == [
        (SETUP, "Success", 2), ("quoting", "Success", 1), ("fail", "Success", 3), ("slow", "Success", 1)
    ]
    assert [i["ended_why"] for i in record["instances"]] == ["run FAILED", "end of run"]
    assert record["reclaims"] == []
    assert e2e.steps_ran(name) == [SETUP, "quoting", "fail", SETUP, "fail", "slow"]
    assert [c.round for c in e2e.commands(name)] == [0, 0, 0, 1, 1, 1]

    # The execution keeps its ARN, as on AWS: DescribeExecution and one history that goes on.
    sfn = e2e.front_door("stepfunctions")
    described = sfn.describe_execution(executionArn=arn)
    assert (described["status"], described["redriveCount"]) == ("SUCCEEDED", 1)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    kinds = [e["type"] for e in events]
    assert [k for k in kinds if k.startswith("Execution")] == [
        "ExecutionStarted",
        "ExecutionFailed",
        "ExecutionRedriven",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    redriven = kinds.index("ExecutionRedriven")
    assert events[redriven]["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert events[redriven + 1]["stateEnteredEventDetails"]["name"] == "fail: failed"
    assert e2e.wait(arn).status == "SUCCEEDED"
    e2e.assert_nothing_left(name)

    # A succeeded execution cannot be redriven: the CLI says so and nothing starts.
    before, sent = executions(e2e), len(e2e.commands(name))
    again = spotstep(e2e, "redrive", arn)
    assert again.returncode == 4, again.stdout + again.stderr
    assert "nothing was redriven" in again.stderr, again.stderr
    assert "ExecutionNotRedrivable: Execution is SUCCEEDED and cannot be redriven." in again.stderr, again.stderr
    assert again.stdout == ""
    assert executions(e2e) == before and len(e2e.commands(name)) == sent
    assert sfn.describe_execution(executionArn=arn)["redriveCount"] == 1


def test_the_stack_refuses_a_redrive_as_aws_does(e2e):
    sfn = e2e.front_door("stepfunctions")
    machine = e2e.harness.deploy("demo")
    unknown = machine.replace(":stateMachine:", ":execution:") + ":no-such-run"
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=unknown)
    assert refused.value.response["Error"]["Code"] == "ExecutionDoesNotExist"

    arn, name = e2e.start("redrive-running", {"mode": "quick"})
    before = executions(e2e)
    running = spotstep(e2e, "redrive", arn)
    assert running.returncode == 4, running.stdout + running.stderr
    assert "ExecutionNotRedrivable: Execution is RUNNING and cannot be redriven." in running.stderr, running.stderr
    assert running.stdout == ""
    assert executions(e2e) == before
    assert e2e.wait(arn).status == "SUCCEEDED"
    e2e.assert_nothing_left(name)


def test_clear_errors_and_nothing_started(e2e):
    e2e.harness.deploy("demo")
    before = executions(e2e)

    unknown = spotstep(e2e, "watch", "demo/no-such-run")
    assert unknown.returncode == 4
    assert "spotstep: no execution arn:aws:states:us-east-1:" in unknown.stderr
    assert ":execution:spotstep-demo:no-such-run" in unknown.stderr

    no_machine = spotstep(e2e, "run", "nosuchjob")
    assert no_machine.returncode == 4
    assert "job `nosuchjob` has no state machine `spotstep-nosuchjob` here" in no_machine.stderr
    assert "spotstep-demo" in no_machine.stderr

    other_stack = spotstep(e2e, "run", "demo", SPOTSTEP_STACK="prod")
    assert other_stack.returncode == 4
    assert "no state machine `prod-demo`" in other_stack.stderr

    no_credentials = spotstep(
        e2e,
        "run",
        "demo",
        AWS_ACCESS_KEY_ID=None,
        AWS_SECRET_ACCESS_KEY=None,
        AWS_CONFIG_FILE="/nonexistent/config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        timeout=60,
    )
    assert no_credentials.returncode == 4, no_credentials.stderr
    assert "spotstep: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in no_credentials.stderr

    usage = spotstep(e2e, "run", "demo", "--mode")
    assert usage.returncode == 64
    assert "--mode needs a value" in usage.stderr and "spotstep run <job>" in usage.stderr

    assert executions(e2e) == before


def test_logs_follow_prints_a_running_steps_lines_as_they_arrive_then_exits_with_its_outcome(e2e):
    e2e.harness.deploy("demo")
    arn = started_arn(spotstep(e2e, "run", "demo", "--mode", "all"))
    name = arn.rsplit(":", 1)[1]

    def slow_sent():
        status = e2e.harness.sfn.describe_execution(executionArn=arn)["status"]
        assert status == "RUNNING", f"slow was never sent ({status})"
        # Sent, and waiting on its token: its command is running on the instance.
        return any(c.status == "InProgress" for c in e2e.commands(name, "slow"))

    wait_until(slow_sent, 90, "slow's send")
    follower = subprocess.Popen(
        [SPOTSTEP, "logs", arn, "slow", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(e2e),
    )
    # A hung follower is killed (its reads below then end).
    watchdog = threading.Timer(120, follower.kill)
    watchdog.start()
    try:
        first = follower.stdout.readline()
        # The first line arrives from CloudWatch Logs while the step still runs (8 s).
        [command] = e2e.commands(name, "slow")
        assert command.status == "InProgress", (command, first)
        # Read on through the same buffered reader (communicate() would skip what it holds).
        rest = follower.stdout.read()
        notes = follower.stderr.read()
        follower.wait()
    finally:
        watchdog.cancel()
        follower.kill()
    assert follower.returncode == 0, notes
    assert first.startswith("slow: tick "), first
    [key] = [k for k in e2e.log_keys("demo", name, "slow") if k.endswith("/stdout")]
    assert first + rest == e2e.stack.read(key)
    assert rest.rstrip().endswith("slow: done after 8s"), rest
    stream = contract.fmt("ssm_log_stream").make(command_id=command.command_id, instance_id=command.instance_id, stream="stdout")
    assert f"--- CloudWatch Logs {e2e.stack.log_group} {stream}" in notes, notes
    assert notes.rstrip().endswith("--- step slow succeeded"), notes

    assert e2e.wait(arn).status == "SUCCEEDED"
    e2e.assert_nothing_left(name)
