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

from conftest import wait_until
from spotstep_local import contract

SETUP = "prepare"


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
