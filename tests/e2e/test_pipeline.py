"""The whole pipeline, end to end, on the local emulated AWS (see conftest.py).

Every test checks the execution's outcome, which steps ran on an instance and how often
(the SSM agent emulation's commands, the steps' own ran.log and the history), the error
name and message where it fails, and that nothing is left: no instance in a live state and
no staging object under tmp/.
"""

import json
import time

import pytest

from conftest import wait_until

# The demo job's modes (jobs/demo/job.toml), in workload order.
DEMO_MODES = {
    "all": ["quoting", "slow", "big-output"],
    "quick": ["quoting"],
    "big": ["big-output"],
    "fast": ["quoting", "big-output"],
    "failing": ["quoting", "fail", "slow"],
}
SETUP = "prepare"


def test_the_demo_modes_are_the_ones_tested(e2e):
    assert e2e.job("demo")["modes"] == {m: {"steps": s} for m, s in DEMO_MODES.items()}


# ------------------------------------------------------------------------------------ 1


@pytest.mark.parametrize("mode", ["all", "quick", "big", "fast"])
def test_happy_path_runs_each_step_of_the_mode_once(e2e, mode):
    outcome = e2e.run(f"ok-{mode}", {"mode": mode})
    run_id = outcome.name
    steps = DEMO_MODES[mode]

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    # One instance, the setup step once, then exactly the mode's workload steps, once each.
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 1
    commands = e2e.commands(run_id)
    assert [c.step for c in commands] == [SETUP] + steps
    assert {c.instance_id for c in commands} == {instances[0].id}
    assert [(c.status, c.response_code) for c in commands] == [("Success", 0)] * len(commands)
    assert e2e.ran_log() == [f"{s} ran" for s in steps]
    entered = outcome.entered()
    for step in e2e.job("demo")["workload_steps"]:
        assert entered.count(f"{step}: send") == (1 if step in steps else 0), step
    assert entered.count("Launch") == 1 and "Relaunch: clean up" not in entered

    # The full output of every step is kept under logs/demo/<run_id>/<step>/ and is what
    # the step printed, all of it; each send state's result (its token's answer) points at it.
    for command in commands:
        keys = e2e.log_keys("demo", run_id, command.step)
        stdout = [k for k in keys if k.endswith("/stdout")]
        assert len(stdout) == 1, keys
        assert e2e.stack.read(stdout[0]) == command.stdout
        result = e2e.exited(outcome, f"{command.step}: send")[0]["result"]
        assert result["output"] == f"s3://{e2e.stack.bucket}/{stdout[0]}"
        assert (result["status"], result["exit_code"], result["command_id"]) == ("Success", 0, command.command_id)
    full = {c.step: c.stdout for c in commands}
    assert "prepare: done" in full[SETUP]
    if "quoting" in steps:
        assert "quoting: all 11 checks passed" in full["quoting"], full["quoting"]
    if "slow" in steps:
        assert full["slow"].rstrip().endswith("slow: done after 8s")
    if "big-output" in steps:
        big = full["big-output"]
        assert len(big) > 24_000 and big.count("\n") == 1501
        assert big.endswith("big-output: line 1500 of 1500\nbig-output: last line\n")

    # Each workload step's runner shipped a health log (the instance's aws CLI reaches the
    # local S3): health/<step>_log/<run_date>/<ts>-exit0.log with the step's output.
    run_date = e2e.exited(outcome, "Name the run")[0]["run"]["run_date"]
    for command in commands[1:]:
        logs = e2e.health_logs(command.step, run_date)
        assert any(k.endswith("-exit0.log") and text == command.stdout for k, text in logs.items()), (
            command.step,
            sorted(logs),
        )
    assert e2e.health_logs(SETUP, run_date) == {}

    output = json.loads(outcome.output)
    assert output["cleanup"]["action"] == "end-of-run"
    assert output["cleanup"]["terminated"] == [instances[0].id]
    assert output["cleanup"]["deleted_objects"] == len(e2e.staged("demo", run_id))
    e2e.assert_nothing_left(run_id)
    # logs/ is never deleted by cleanup
    assert e2e.log_keys("demo", run_id, SETUP)


# ------------------------------------------------------------------------------------ 2


def test_failing_step_fails_the_execution_then_a_redrive_resumes_at_it(e2e):
    arn, run_id = e2e.start("failing", {"mode": "failing"})
    outcome = e2e.wait(arn, rule=False)

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "fail: failed"
    assert outcome.error == "StepFailed"
    cause = outcome.cause_message()
    fail_cmd = e2e.commands(run_id, "fail")[0]
    assert cause.startswith("step `fail` failed: status Failed (Failed), exit code 3"), cause
    [stdout_key] = [k for k in e2e.log_keys("demo", run_id, "fail") if k.endswith("/stdout")]
    assert f"Full output: s3://{e2e.stack.bucket}/{stdout_key}." in cause
    assert fail_cmd.command_id in stdout_key
    assert cause.rstrip().endswith("fail: about to exit 3"), cause
    assert "--- last 40 lines of output ---\n" in cause
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "fail"]
    assert e2e.ran_log() == ["quoting ran", "fail ran"]
    run_date = e2e.exited(outcome, "Name the run")[0]["run"]["run_date"]
    assert fail_cmd.stdout in e2e.health_logs("fail", run_date).values()
    assert any(k.endswith("-exit3.log") for k in e2e.health_logs("fail", run_date))
    # The failed step's state itself terminated the instance and removed the staging; the
    # status-change rule that follows finds nothing left to do.
    e2e.assert_nothing_left(run_id)
    report = e2e.rule(outcome)
    assert (report["terminated"], report["cancelled_commands"], report["deleted_objects"]) == ([], [], 0), report

    # Fix the cause, redrive: the failed step runs again on a fresh instance after the setup
    # step; quoting, which had finished, is not run again.
    (e2e.state_dir() / "fail.ok").write_text("fixed by the e2e test\n")
    redriven = e2e.harness.redrive(arn)
    outcome = e2e.wait(redriven)

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    steps = e2e.steps_ran(run_id)
    assert steps == [SETUP, "quoting", "fail", SETUP, "fail", "slow"]
    assert (steps.count(SETUP), steps.count("quoting"), steps.count("fail"), steps.count("slow")) == (2, 1, 2, 1)
    assert e2e.ran_log() == ["quoting ran", "fail ran", "fail ran", "slow ran"]
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 2
    commands = e2e.commands(run_id)
    assert {c.instance_id for c in commands[3:]} == {instances[1].id}
    assert [c.round for c in commands] == [0, 0, 0, 1, 1, 1]
    assert commands[4].status == "Success"
    # the redrive resumed at the failed step: it never went through quoting's states again
    assert "quoting: send" not in outcome.entered()
    assert e2e.exited(outcome, "fail: failed")[0]["gate"]["resumed"] is True
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------------------------------ 3


def test_spot_reclaim_mid_step_relaunches_and_resumes_at_that_step(e2e):
    e2e.stack.faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    outcome = e2e.run("reclaim", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 2
    assert instances[0].state_reason.code == "Server.SpotInstanceTermination"
    steps = e2e.steps_ran(run_id)
    assert steps == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    assert e2e.ran_log() == ["quoting ran", "slow ran", "slow ran", "big-output ran"]
    slow = e2e.commands(run_id, "slow")
    assert [c.instance_id for c in slow] == [instances[0].id, instances[1].id]
    assert slow[1].status == "Success"
    assert ("InstanceReclaimed" in [err for err, _ in e2e.function_errors(outcome)])
    launches = [o["launch"] for o in e2e.exited(outcome, "Launch")]
    assert [(l["attempt"], l["round_attempts"], l["instance_id"]) for l in launches] == [
        (1, 1, instances[0].id),
        (2, 2, instances[1].id),
    ]
    assert outcome.entered().count("Relaunch: clean up") == 1
    e2e.assert_nothing_left(run_id)


def test_reclaim_on_every_attempt_ends_at_the_relaunch_limit(e2e):
    e2e.stack.faults.reclaim_during = {"slow": {"after": 2, "times": None}}
    outcome = e2e.run("reclaim-always", {"mode": "all"}, rule=False)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Launch"
    assert outcome.error == "RelaunchLimit"
    assert "used its 2 launch(es)" in outcome.cause_message()
    assert "redrive" in outcome.cause_message()
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow"]
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 2
    # Each got EC2's interruption warning; the relaunch's clean-up may terminate it before
    # the reclaim itself does.
    warned = {e["detail"]["instance-id"] for _, key, e in e2e.stack.events.sent if key == "spot_warning"}
    assert {i.id for i in instances} <= warned
    # Relaunch: clean up already terminated what was left; the staging stays for the relaunch
    # that never came: the status-change rule deletes it (found through the terminated
    # instances' tags; fixed in 91711a0, it used to look at live instances only).
    assert e2e.stack.live_instances() == []
    assert e2e.staging_keys() == e2e.staged("demo", run_id)
    report = e2e.rule(outcome)
    assert (report["terminated"], report["deleted_objects"]) == ([], len(e2e.staged("demo", run_id))), report
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------------------------------ 4


def test_no_capacity_in_the_first_pools_launches_the_next_type(e2e):
    e2e.stack.faults.no_capacity = {("t3.micro", "*")}
    outcome = e2e.run("capacity", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    subnets = e2e.stack.world["subnets"]
    launch = e2e.exited(outcome, "Launch")[0]["launch"]
    assert launch["instance_type"] == "t3.small"
    assert launch["market"] == "spot"
    # One fleet request over every pool: the t3.micro pools answered in its Errors, the
    # instance came from another pool in the same answer.
    types = e2e.job("demo")["instance_types"]
    assert [(p["instance_type"], p["subnet_id"], p["error"]) for p in launch["pools_tried"]] == [
        (t, s, "InsufficientInstanceCapacity" if t == "t3.micro" else "") for t in types for s in subnets
    ]
    assert e2e.stack.faults.launch_calls == [("CreateFleet", "spot")]
    instances = e2e.stack.instances(run_id=run_id)
    assert [i.instance_type for i in instances] == ["t3.small"]
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)


def test_no_capacity_anywhere_fails_at_launch_with_nothing_created(e2e):
    e2e.stack.faults.no_capacity = {("*", "*")}
    outcome = e2e.run("no-capacity", {"mode": "quick"}, rule=False)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Launch"
    assert outcome.error == "NoCapacity"
    message = outcome.cause_message()
    assert message.startswith("no capacity in any of the 9 pool(s) tried"), message
    for t in ("t3.micro", "t3.small", "t3a.micro"):
        assert f"{t}@" in message
    assert "nothing is running" in message
    assert e2e.stack.instances(run_id=run_id) == []
    assert e2e.commands(run_id) == []
    e2e.assert_nothing_left(run_id)  # before the status-change rule: nothing was ever there
    assert e2e.rule(outcome)["terminated"] == []


# ------------------------------------------------------------------------------------ 5


def test_agent_never_online_fails_at_wait_for_agent_and_the_instance_is_terminated(e2e):
    e2e.stack.faults.never_online = True
    outcome = e2e.run("offline", {"mode": "quick"}, rule=False)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Wait for agent"
    assert outcome.error == "AgentNotOnline"
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 1
    assert f"the SSM agent of instance {instances[0].id} is not online" in outcome.cause_message()
    # 1 try + 10 retries (local timing)
    assert [err for err, _ in e2e.function_errors(outcome)].count("AgentNotOnline") == 11
    assert e2e.commands(run_id) == []
    # No Catch runs: the instance is still there until the status-change rule cleans up.
    assert instances[0].state == "running"
    assert e2e.staging_keys() == e2e.staged("demo", run_id)
    report = e2e.rule(outcome)
    assert report["terminated"] == [instances[0].id] and report["deleted_objects"] == 1, report
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------------------------------ 6


def test_aborted_execution_is_cleaned_up_by_the_status_change_rule(e2e):
    arn, run_id = e2e.start("abort", {"mode": "all"})
    slow = wait_until(
        lambda: [c for c in e2e.commands(run_id, "slow") if c.status == "InProgress"], 90, "slow to be running"
    )[0]
    time.sleep(0.5)
    e2e.harness.stop(arn)
    outcome = e2e.wait(arn, rule=False)

    assert outcome.status == "ABORTED"
    # An aborted execution runs no Catch: the instance and its command are still going ...
    [instance] = e2e.stack.instances(run_id=run_id)
    assert instance.state == "running" and slow.status == "InProgress"
    # ... until the status-change rule cancels the command and terminates the instance.
    report = e2e.rule(outcome)
    assert report["cancelled_commands"] == [slow.command_id], report
    assert report["terminated"] == [instance.id] and report["deleted_objects"] == len(e2e.staged("demo", run_id)), report
    assert slow.status == "Cancelled"
    assert e2e.ran_log() == ["quoting ran", "slow ran"]
    assert "slow: done" not in slow.stdout
    e2e.assert_nothing_left(run_id)
    # The aborted execution does not go on: nothing more is sent for it.
    time.sleep(1.5)
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow"]


# ------------------------------------------------------------------------------------ 7


def test_failure_tail_comes_from_the_full_output_not_the_truncated_inline_output(e2e):
    last_line = "shout: THE REAL LAST LINE (exit 1 follows)"
    outcome = e2e.run("bigfail", job="bigfail")
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "shout: failed"
    assert outcome.error == "StepFailed"
    [command] = e2e.commands(run_id)
    assert (command.step, command.status, command.response_code) == ("shout", "Failed", 1)

    # S3 has all of it ...
    [key] = [k for k in e2e.log_keys("bigfail", run_id, "shout") if k.endswith("/stdout")]
    full = e2e.stack.read(key)
    assert len(full) == 1000 * 40 + len(last_line) + 1
    assert full == command.stdout
    assert full.rstrip("\n").endswith(last_line)
    # ... SSM's inline output stops at 24,000 characters, before the last line ...
    invocation = e2e.ssm.get_command_invocation(CommandId=command.command_id, InstanceId=command.instance_id)
    inline = invocation["StandardOutputContent"]
    assert len(inline) == 24_000 and full.startswith(inline)
    assert last_line not in inline
    # ... and the failure message ends with the real last line.
    cause = outcome.cause_message()
    assert cause.startswith("step `shout` failed: status Failed (Failed), exit code 1"), cause[:300]
    assert "could not be read from S3" not in cause
    assert cause.rstrip().endswith(last_line), cause[-300:]
    tail = cause.split("--- last 40 lines of output ---\n", 1)[1].rstrip("\n").splitlines()
    assert tail == full.rstrip("\n").splitlines()[-40:]
    assert e2e.ran_log("bigfail") == ["shout ran"]
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------------------------------ 8


@pytest.mark.parametrize(
    "case, payload, name_tag, expected",
    [
        pytest.param(
            "unknown-mode",
            {"mode": "nope"},
            None,
            "unknown mode `nope` for job `demo`: use one of all, big, failing, fast, quick",
            id="unknown-mode",
        ),
        pytest.param(
            "unknown-job",
            {"job": "other"},
            None,
            "unknown job `other`: this state machine runs job `demo`",
            id="unknown-job",
        ),
        # '.' is allowed in a Step Functions execution name, not in a run id.
        pytest.param(
            "unsafe-run-id",
            {"mode": "quick"},
            "e2e.unsafe.run",
            "is unsafe: it must be 1-80 characters of letters, digits",
            id="unsafe-run-id",
        ),
    ],
)
def test_bad_input_fails_at_launch_with_nothing_launched(e2e, case, payload, name_tag, expected):
    name = f"{name_tag}.{e2e.unique_name(case)}" if name_tag else None
    arn, run_id = e2e.start(case, payload, name=name)
    outcome = e2e.wait(arn, rule=False)

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Launch"
    assert outcome.error == "InvalidInput"
    assert expected in outcome.cause_message(), outcome.cause_message()
    if case == "unsafe-run-id":
        assert f"run id `{run_id}`" in outcome.cause_message()
    assert e2e.stack.instances(run_id=run_id) == []
    assert e2e.commands(run_id) == []
    e2e.assert_nothing_left()  # before the status-change rule: nothing was ever there
    assert e2e.rule(outcome)["terminated"] == []


def test_a_second_concurrent_run_of_the_job_is_refused(e2e):
    first_arn, first = e2e.start("first", {"mode": "quick"})
    wait_until(lambda: e2e.stack.instances(run_id=first), 60, "the first run's instance")
    second_arn, second = e2e.start("second", {"mode": "quick"})
    refused = e2e.wait(second_arn)

    assert refused.status == "FAILED"
    assert refused.failed_state() == "Launch"
    assert refused.error == "ConcurrentRun"
    assert f"already running as execution `{first}`" in refused.cause_message()
    assert "nothing was launched" in refused.cause_message()
    assert e2e.stack.instances(run_id=second) == []
    assert e2e.commands(second) == []
    # The rule that cleaned up after the refused run left the first one's instance alone.
    if e2e.harness.sfn.describe_execution(executionArn=first_arn)["status"] == "RUNNING":
        assert [i.state for i in e2e.stack.instances(run_id=first)] == ["running"]

    outcome = e2e.wait(first_arn)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert e2e.steps_ran(first) == [SETUP, "quoting"]
    e2e.assert_nothing_left(first)


def test_a_redrive_while_another_run_is_running_is_refused_and_a_run_during_a_redrive_too(e2e):
    # (Fixed in 91711a0: the redrive was compared by its original start time and let through.)
    # A fails at Launch (no capacity anywhere), then B starts and runs; the operator then
    # redrives A: A is now the second concurrent run and must be refused.
    e2e.stack.faults.no_capacity = {("*", "*")}
    a_arn, a = e2e.start("redrive-a", {"mode": "quick"})
    assert e2e.wait(a_arn).error == "NoCapacity"
    e2e.stack.faults.reset()
    b_arn, b = e2e.start("running-b", {"mode": "quick"})
    wait_until(lambda: e2e.stack.instances(run_id=b), 60, "B's instance")

    first_redrive = e2e.harness.redrive(a_arn)
    refused = e2e.wait(first_redrive)
    assert e2e.stack.instances(run_id=a) == [], f"the redrive of {a} ran alongside {b}"
    assert (refused.status, refused.error) == ("FAILED", "ConcurrentRun"), refused.cause_message()
    assert refused.failed_state() == "Launch"
    assert f"already running as execution `{b}`" in refused.cause_message()
    assert e2e.harness.sfn.describe_execution(executionArn=a_arn)["status"] == "FAILED"
    b_outcome = e2e.wait(b_arn)
    assert b_outcome.status == "SUCCEEDED", (b_outcome.error, b_outcome.cause_message())
    assert e2e.steps_ran(b) == [SETUP, "quoting"]
    e2e.assert_nothing_left(b)

    # B is done: a second redrive of A runs, and A (RUNNING again, as a redriven execution
    # is) refuses a new run C started meanwhile.
    second_redrive = e2e.harness.redrive(first_redrive)
    wait_until(lambda: e2e.stack.instances(run_id=a), 60, "A's instance")
    assert e2e.harness.sfn.describe_execution(executionArn=a_arn)["status"] == "RUNNING"
    c_arn, c = e2e.start("new-c", {"mode": "quick"})
    c_outcome = e2e.wait(c_arn)
    assert (c_outcome.status, c_outcome.error) == ("FAILED", "ConcurrentRun"), c_outcome.cause_message()
    assert f"already running as execution `{a}`" in c_outcome.cause_message()
    assert e2e.stack.instances(run_id=c) == []

    a_outcome = e2e.wait(second_redrive)
    assert a_outcome.status == "SUCCEEDED", (a_outcome.error, a_outcome.cause_message())
    assert e2e.harness.sfn.describe_execution(executionArn=a_arn)["status"] == "SUCCEEDED"
    assert e2e.steps_ran(a) == [SETUP, "quoting"]
    assert [c.round for c in e2e.commands(a)] == [2, 2]
    assert e2e.exited(a_outcome, "Launch")[0]["launch"]["round"] == 2
    e2e.assert_nothing_left(a)
