"""Hardening, round 3: what a review of the event design against AWS's documented behaviour
found, each on the local stage, with the stage's switch for the AWS timing it depends on.

1. The hourly sweep spares the instance a redriven run resumed on, and its staging.
2. Events about other things (AWS's own sample events, a hybrid node, a late failure event
   after the redrive succeeded) end quietly.
3. A loss EC2 does not show yet (`ec2_running_after_gone`) is left to the reconciler.
4. Two starts in the same second (`list_executions_lag`): the run lock lets one launch.
5. A send marker without its command (`marker_completion_lost`) is found by the reconciler.
"""

import json
from pathlib import Path

import pytest
from conftest import wait_until
from spotstep_local import contract
from spotstep_local.events import matches
from test_told import answers, reconciled

SETUP = "prepare"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "aws-samples"


def marker(e2e, run_id: str, step: str, round_: int, job: str = "demo"):
    """The send marker of `step` in `round_` (parsed), or None."""
    key = contract.fmt("send_marker_key").make(job=job, run_id=run_id, step=step, round=round_)
    return json.loads(e2e.stack.read(key)) if key in e2e.stack.keys(key) else None


def sent(e2e, run_id: str, step: str, round_: int) -> bool:
    found = marker(e2e, run_id, step, round_)
    return bool(found and found.get("command"))


def lock_key(job: str = "demo") -> str:
    return contract.fmt("run_lock_key").make(job=job)


def lock(e2e, job: str = "demo"):
    key = lock_key(job)
    return json.loads(e2e.stack.read(key)) if key in e2e.stack.keys(key) else None


# ------------------------------------------------ 1. the sweep and a redriven run


def test_the_sweep_spares_the_instance_a_redriven_run_resumed_on(e2e):
    arn, run_id = e2e.start("sweep-redriven", {"mode": "all"})
    wait_until(lambda: sent(e2e, run_id, "slow", 0), 60, "slow sent in round 0")
    e2e.harness.stop(arn)
    # Its status-change cleanup is late (EventBridge retries it): not delivered here.
    stopped = e2e.wait(arn, rule=False)
    assert stopped.status == "ABORTED"

    # Redriven at once: it resumes at `slow: send` on the same, still live, round-0 instance.
    redriven = e2e.harness.redrive(arn)
    wait_until(lambda: sent(e2e, run_id, "slow", 1), 60, "slow sent again in round 1")
    [instance] = e2e.stack.instances(run_id=run_id)
    staged = e2e.staging_keys()

    report = e2e.harness.invoke("cleanup", {"action": "sweep"})
    assert instance.id not in report["terminated"], report
    assert instance.state == "running"
    assert report["deleted_objects"] == 0 and e2e.staging_keys() == staged, report

    outcome = e2e.wait(redriven, timeout=90)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert [(c.step, c.round) for c in e2e.commands(run_id)][-2:] == [("slow", 1), ("big-output", 1)]
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------ 2. events about other things


def invoke(e2e, function: str, event: dict):
    """(answer, error type or None) of `function` for `event`, as EventBridge invokes it."""
    _, body, error = e2e.stack.lambdas.invoke(function, json.dumps(event).encode())
    return json.loads(body or b"null"), error


@pytest.mark.parametrize(
    "sample, function",
    [
        ("ssm-command-invocation-status-change.json", "poll-result"),
        ("ec2-spot-instance-interruption-warning.json", "poll-result"),
        ("ec2-instance-state-change.json", "poll-result"),
        ("states-execution-status-change-failed.json", "cleanup"),
    ],
)
def test_aws_sample_events_end_quietly(e2e, sample, function):
    event = json.loads((SAMPLES / sample).read_text())
    told_before = len(e2e.stack.notifications())
    answer, error = invoke(e2e, function, event)
    assert error is None, answer
    if function == "poll-result":
        assert answer == {"answered": []}, answer
    else:
        assert (answer["terminated"], answer["deleted_objects"], answer.get("notified", False)) == ([], 0, False), answer
        assert e2e.stack.notifications()[told_before:] == []


def test_other_teams_commands_never_reach_poll_result_and_a_hybrid_node_is_not_an_error(e2e):
    sample = json.loads((SAMPLES / "ssm-command-invocation-status-change.json").read_text())
    [command_rule] = [r["pattern"] for r in contract.event_rules() if r["pattern"]["source"] == ["aws.ssm"]]
    # Another document's command (the sample ran AWS-RunPowerShellScript) matches no rule.
    assert not matches(command_rule, sample)
    # A spotstep-document command on a hybrid node (`mi-`: a valid SSM InstanceId) does.
    hybrid = json.loads(json.dumps(sample))
    hybrid["detail"].update({"document-name": "AWS-RunShellScript", "instance-id": "mi-0123456789abcdef0"})
    assert matches(command_rule, hybrid)
    answer, error = invoke(e2e, "poll-result", hybrid)
    assert (answer, error) == ({"answered": []}, None)


def test_a_late_failure_event_after_the_redrive_succeeded_tells_nobody(e2e):
    arn, run_id = e2e.start("late-failed", {"mode": "failing"})
    failed = e2e.wait(arn, rule=False)
    assert (failed.status, failed.failed_state()) == ("FAILED", "fail: failed")
    (e2e.state_dir() / "fail.ok").write_text("fixed by the e2e test\n")
    outcome = e2e.wait(e2e.harness.redrive(arn))
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())

    told_before = len(e2e.stack.notifications())
    report = e2e.harness.deliver(failed.event)
    assert (report["terminated"], report["deleted_objects"], report.get("notified", False)) == ([], 0, False), report
    assert e2e.stack.notifications()[told_before:] == []
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------ 3. a loss EC2 does not show yet


def test_a_reclaim_whose_warning_was_lost_and_that_ec2_still_shows_running_relaunches(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    faults.reclaim_lead = 0.5
    faults.drop_events = {"spot_warning": None}
    # EC2 shows the reclaimed instance running for longer than poll-result's confirmation
    # pauses (1 + 2 + 4 s).
    faults.ec2_running_after_gone = 10
    outcome = e2e.run("unconfirmed", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    old = e2e.commands(run_id, "slow")[0].instance_id
    assert old in faults.shown_running
    # The state change told, EC2 did not confirm it at first: never answered as a loss, but
    # as a reclaim once EC2 showed its state reason (to the reconciler, or to a later copy).
    told = [a for a in answers(e2e, run_id) + reconciled(e2e, run_id) if a[0] == "slow" and a[1] == 0]
    assert sorted(a[2] for a in told if a[3]) == ["InstanceReclaimed", "Succeeded"], told
    assert {a[2] for a in told} == {"InstanceReclaimed", "Succeeded"}, told
    assert "InstanceLost" not in [err for err, _ in e2e.function_errors(outcome)]
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------ 4. two starts at once


def test_two_starts_in_the_same_second_run_the_job_once(e2e):
    # ListExecutions shows neither execution to the other's Launch.
    e2e.stack.faults.list_executions_lag = 60
    starts = [e2e.start(tag, {"mode": "quick"}) for tag in ("twin-a", "twin-b")]
    outcomes = {name: e2e.wait(arn) for arn, name in starts}

    statuses = sorted((o.status, name) for name, o in outcomes.items())
    assert [s for s, _ in statuses] == ["FAILED", "SUCCEEDED"], statuses
    [(_, loser), (_, winner)] = statuses
    failed = outcomes[loser]
    assert (failed.failed_state(), failed.error) == ("Launch", "ConcurrentRun")
    assert f"already running as execution `{winner}`" in failed.cause_message(), failed.cause_message()
    assert e2e.stack.instances(run_id=loser) == []
    assert len(e2e.stack.instances(run_id=winner)) == 1
    assert lock(e2e) is None, "the winner's end released the run lock"
    e2e.assert_nothing_left()


def test_a_redrive_is_not_refused_by_its_own_lock(e2e):
    e2e.stack.faults.terminate_during = {"slow": {"after": 2, "times": 1}}
    arn, run_id = e2e.start("own-lock", {"mode": "all"})
    # No status-change cleanup yet: the failed run still holds its lock.
    failed = e2e.wait(arn, rule=False)
    assert (failed.status, failed.failed_state()) == ("FAILED", "Relaunch: clean up")
    assert lock(e2e)["run_id"] == run_id

    outcome = e2e.wait(e2e.harness.redrive(arn))
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert "Launch" in outcome.entered()
    assert lock(e2e) is None
    e2e.assert_nothing_left(run_id)


# ------------------------------------------------ 5. a marker without its command


def test_a_marker_without_its_command_is_answered_by_the_reconciler(e2e):
    faults = e2e.stack.faults
    # The setup step's marker keeps no command (send-step's completing write failed), and its
    # end is never told.
    faults.marker_completion_lost = 1
    faults.drop_events = {"command_invocation": 1}
    arn, run_id = e2e.start("unrecorded", {"mode": "quick"})
    wait_until(lambda: (SETUP, 0, "Succeeded", True) in reconciled(e2e, run_id), 30, "the reconciler to answer the setup step")
    outcome = e2e.wait(arn)

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert faults.marker_completion_lost == 0 and e2e.stack.events.dropped
    assert not [s for s in outcome.entered() if s.endswith(": poll")]
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)
