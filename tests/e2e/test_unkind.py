"""The pipeline against a stage as unkind as AWS (see conftest.py for the stage).

Each test turns on one of the stage's fault switches (`stack.faults`, reset between tests)
for a timing or delivery behaviour AWS documents, and checks that the hardened functions
and the state machine get through it: the outcome, which steps ran on an instance and how
often (the SSM agent emulation's commands and the steps' own ran.log), the history, that the
fault really fired, and that nothing is left.
"""

import json
from pathlib import Path
import time

import pytest
from botocore.exceptions import ClientError
from conftest import wait_until


SETUP = "prepare"


def error_names(e2e, outcome) -> list:
    return [err for err, _ in e2e.function_errors(outcome)]


# ------------------------------------------------------------------- 1. EC2 eventual consistency


def test_the_ec2_switch_hides_a_new_instance_from_the_api_for_its_window(e2e):
    # The switch itself, through the front door: while the window lasts, EC2 answers
    # NotFound for the instance by id and leaves it out of a filtered describe.
    e2e.stack.faults.ec2_not_found_for = 2.5
    ec2 = e2e.front_door("ec2", attempts=1)
    world = e2e.stack.world
    instance_id = ec2.run_instances(
        ImageId=world["image_id"], InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=world["subnets"][0]
    )["Instances"][0]["InstanceId"]
    for call in (
        lambda: ec2.describe_instances(InstanceIds=[instance_id]),
        lambda: ec2.terminate_instances(InstanceIds=[instance_id]),
    ):
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    listed = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert instance_id not in listed
    assert e2e.stack._instances()[instance_id].state == "running"  # only the API hides it
    assert [a for a, i in e2e.stack.faults.not_found if i == instance_id] == [
        "DescribeInstances",
        "TerminateInstances",
        "DescribeInstances",
    ]
    time.sleep(2.6)
    assert ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert e2e.stack._instances()[instance_id].state == "terminated"


def test_an_instance_ec2_does_not_show_yet_is_waited_for_not_relaunched(e2e):
    e2e.stack.faults.ec2_not_found_for = 5
    outcome = e2e.run("ec2-lag", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    [instance] = e2e.stack.instances(run_id=run_id)
    # wait-online asked EC2 about the instance and got NotFound ...
    assert ("DescribeInstances", instance.id) in e2e.stack.faults.not_found
    # ... took it for "not visible yet", and Wait for agent retried through the window.
    errors = e2e.function_errors(outcome)
    not_online = [message for error, message in errors if error == "AgentNotOnline"]
    assert len(not_online) >= 2, errors
    assert all(f"the SSM agent of instance {instance.id} is not online yet" in m for m in not_online), not_online
    assert not {"InstanceLost", "InstanceReclaimed"} & set(error_names(e2e, outcome)), errors
    entered = outcome.entered()
    assert entered.count("Launch") == 1 and "Relaunch: clean up" not in entered
    assert entered.count("Wait for agent") == 1
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    assert e2e.ran_log() == ["quoting ran"]
    assert json.loads(outcome.output)["cleanup"]["terminated"] == [instance.id]
    e2e.assert_nothing_left(run_id)


# ------------------------------------------- 2. ListCommands lags, a Lambda answer is lost


def test_a_lost_send_step_answer_is_retried_without_sending_the_step_twice(e2e):
    faults = e2e.stack.faults
    faults.list_commands_lag = 120
    faults.lose_answer = {("send-step", "quoting"): 1}
    outcome = e2e.run("lost-answer", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    [quoting] = e2e.commands(run_id, "quoting")
    # send-step sent the command and returned it; that answer was lost ...
    [(function, step, body)] = faults.lost_answers
    assert (function, step) == ("send-step", "quoting")
    lost = json.loads(body)
    assert (lost["command_id"], lost["reused"]) == (quoting.command_id, False)
    # ... Step Functions saw Lambda.ServiceException, which its transient Retry matches ...
    errors = e2e.function_errors(outcome)
    assert [e for e in error_names(e2e, outcome) if e.startswith("Lambda.")] == ["Lambda.ServiceException"], errors
    # ... and the retry found the command through its S3 marker, not by sending again (the
    # retry's own token is what the step's end answered; send-step's log says so).
    log = (Path(e2e.stack.root) / "logs" / "send-step.log").read_text().splitlines()
    reused = [line for line in log if quoting.command_id in line and "command already sent (S3 marker)" in line]
    assert len(reused) == 1, [line for line in log if quoting.command_id in line]
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    assert e2e.ran_log() == ["quoting ran"]
    assert e2e.exited(outcome, "quoting: send")[0]["result"]["command_id"] == quoting.command_id
    # ListCommands could not have found it: it still does not list it.
    assert time.time() - quoting.requested < faults.list_commands_lag
    assert e2e.ssm.list_commands(CommandId=quoting.command_id)["Commands"] == []
    assert e2e.ssm.list_commands(InstanceId=quoting.instance_id)["Commands"] == []
    e2e.assert_nothing_left(run_id)


# ------------------------------------------ 3. the status-change event, late and twice


def test_a_late_aborted_event_leaves_the_redriven_run_and_its_new_instance_alone(e2e):
    faults = e2e.stack.faults
    # A spot reclaim during slow; the relaunch's clean-up is held so that the operator's stop
    # lands there, before the relaunch.
    faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    # The warning and the reclaim at once: the old instance is reclaimed before the
    # relaunch's clean-up could terminate it.
    faults.reclaim_lead = 0
    hold = faults.hold(lambda function, event: function == "cleanup" and isinstance(event, dict) and event.get("action") == "relaunch")
    arn, run_id = e2e.start("late-event", {"mode": "all"})
    status = lambda: e2e.harness.sfn.describe_execution(executionArn=arn)["status"]  # noqa: E731
    wait_until(lambda: hold.reached.is_set() or status() != "RUNNING", 120, "the relaunch clean-up")
    assert hold.reached.is_set(), f"the execution ended {status()} before its relaunch clean-up"
    [old] = e2e.stack.instances(run_id=run_id)
    e2e.harness.stop(arn)

    def new_instance_running():
        instances = e2e.stack.instances(run_id=run_id)
        return len(instances) == 2 and instances[1].state == "running"

    # EventBridge delivers the ABORTED event only once the redriven run has launched its new
    # instance, and twice.
    faults.rule_delivery = {"when": new_instance_running, "copies": 2}
    hold.release()
    aborted = e2e.wait(arn)
    assert aborted.status == "ABORTED"
    assert aborted.failed_state() == "Relaunch: clean up"
    assert aborted.rule_report is None and aborted.rule_delivery is not None
    assert old.state_reason.code == "Server.SpotInstanceTermination"

    redriven = e2e.harness.redrive(arn)
    reports = aborted.rule_delivery.join(120)
    [_, new] = e2e.stack.instances(run_id=run_id)
    assert len(reports) == 2
    for report in reports:
        assert "running again" in report["action"], report
        assert (report["terminated"], report["cancelled_commands"], report["deleted_objects"]) == ([], [], 0), report
    assert new.state == "running"

    outcome = e2e.wait(redriven)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert e2e.harness.sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    assert e2e.ran_log() == ["quoting ran", "slow ran", "slow ran", "big-output ran"]
    commands = e2e.commands(run_id)
    assert [c.round for c in commands] == [0, 0, 0, 1, 1, 1]
    assert {c.instance_id for c in commands[3:]} == {new.id}
    assert [c.status for c in commands[3:]] == ["Success"] * 3
    assert json.loads(outcome.output)["cleanup"]["terminated"] == [new.id]
    e2e.assert_nothing_left(run_id)

    # One more copy, after the redriven run ended: nothing left to touch, nothing touched.
    report = e2e.harness.deliver(aborted.event)
    assert (report["terminated"], report["cancelled_commands"], report["deleted_objects"]) == ([], [], 0), report
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------ 4. StatusDetails without spaces


def test_a_step_past_its_timeout_reported_as_ExecutionTimedOut_fails_saying_it_timed_out(e2e):
    job = "overrun"
    e2e.stack.put_config(e2e.harness.config_source(job), f"# {job} config for the e2e tests\n")
    e2e.stack.faults.execution_timed_out = ("ExecutionTimedOut", -1)
    outcome = e2e.run("overrun", job=job, timeout=240)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "nap: failed"
    assert outcome.error == "StepFailed"
    [command] = e2e.commands(run_id)
    assert (command.step, command.status, command.details, command.response_code) == ("nap", "TimedOut", "ExecutionTimedOut", -1)
    assert command.execution_timeout == 30
    cause = outcome.cause_message()
    assert cause.startswith("step `nap` failed: status TimedOut (ExecutionTimedOut), exit code -1: "), cause[:300]
    assert "the step ran longer than its timeout_seconds and was stopped" in cause, cause[:400]
    assert "agent was lost" not in cause
    assert "nap: started, sleeping 300 s" in cause and "woke up" not in cause
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------- 5. a loss that is no reclaim


def test_an_operator_terminate_fails_at_relaunch_and_a_redrive_resumes_at_the_step(e2e):
    e2e.stack.faults.terminate_during = {"slow": {"after": 2, "times": 1}}
    arn, run_id = e2e.start("operator", {"mode": "all"})
    outcome = e2e.wait(arn, rule=False)

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Relaunch: clean up"
    assert outcome.error == "InstanceLost"
    [old] = e2e.stack.instances(run_id=run_id)
    assert old.state == "terminated"
    assert old.state_reason.code == "Client.UserInitiatedShutdown"
    message = outcome.cause_message()
    assert f"instance {old.id} is gone" in message, message
    assert "Only a spot reclaim relaunches by itself" in message
    assert "resumes at step `slow`" in message
    # The loss did not re-run the step by itself.
    assert "InstanceLost" in error_names(e2e, outcome)
    assert outcome.entered().count("Launch") == 1
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow"]
    assert e2e.ran_log() == ["quoting ran", "slow ran"]
    report = e2e.rule(outcome)
    assert report["terminated"] == [], report
    e2e.assert_nothing_left(run_id)

    redriven = e2e.harness.redrive(arn)
    outcome = e2e.wait(redriven)

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == 2
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    assert e2e.ran_log() == ["quoting ran", "slow ran", "slow ran", "big-output ran"]
    commands = e2e.commands(run_id)
    assert [c.round for c in commands] == [0, 0, 0, 1, 1, 1]
    assert {c.instance_id for c in commands[3:]} == {instances[1].id}
    assert [c.status for c in commands[3:]] == ["Success"] * 3
    entered = outcome.entered()
    assert "quoting: send" not in entered
    assert entered.count("slow: send") == 1 and entered.count("Launch") == 1
    launch = e2e.exited(outcome, "Launch")[0]["launch"]
    assert (launch["round"], launch["instance_id"]) == (1, instances[1].id)
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------------------ 6. no capacity, then capacity


def test_no_capacity_anywhere_for_a_while_is_retried_at_launch(e2e):
    subnets = e2e.stack.world["subnets"]
    types = e2e.job("demo")["instance_types"]
    pools = len(types) * len(subnets)
    # Every pool refuses on the first two Launch tries (one fleet request each); the third
    # gets capacity.
    e2e.stack.faults.no_capacity_runs = 2
    outcome = e2e.run("capacity-returns", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert e2e.stack.faults.no_capacity_runs == 0
    failures = [(e, m) for e, m in e2e.function_errors(outcome) if e == "NoCapacity"]
    assert len(failures) == 2, e2e.function_errors(outcome)
    for _, message in failures:
        assert message.startswith(f"no capacity in any of the {pools} pool(s) tried"), message
    assert outcome.entered().count("Launch") == 1
    launch = e2e.exited(outcome, "Launch")[0]["launch"]
    assert [(p["instance_type"], p["subnet_id"], p["error"]) for p in launch["pools_tried"]] == [
        (t, s, "") for t in types for s in subnets
    ]
    assert e2e.stack.faults.launch_calls == [("CreateFleet", "spot")] * 3
    assert launch["attempt"] == 1
    [instance] = e2e.stack.instances(run_id=run_id)
    assert launch["instance_id"] == instance.id
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)


# ----------------------------- 1b. terminating an instance EC2 does not show yet (Launch)


def test_launch_terminates_its_instance_even_while_ec2_does_not_show_it(e2e):
    # Staging the config fails right after RunInstances, while EC2 still answers NotFound for
    # the new instance: Launch's own terminate retries until EC2 takes it, never leaving the
    # instance running.
    faults = e2e.stack.faults
    faults.ec2_not_found_for = 2.5
    faults.s3_copy_denied = 1
    outcome = e2e.run("stage-fails", {"mode": "quick"}, rule=False)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Launch"
    assert faults.s3_copy_denied == 0
    assert outcome.error == "AwsError"
    assert "AccessDenied" in outcome.cause_message(), outcome.cause_message()
    [instance] = e2e.stack.instances(run_id=run_id)
    tries = [a for a, i in faults.not_found if i == instance.id]
    assert tries.count("TerminateInstances") >= 1, faults.not_found
    assert instance.state == "terminated"
    assert instance.state_reason.code == "Client.UserInitiatedShutdown"
    assert e2e.commands(run_id) == []
    e2e.assert_nothing_left(run_id)
