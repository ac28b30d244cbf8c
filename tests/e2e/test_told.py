"""Steps end by event: each step's send state waits on its task token, and poll-result answers
it when the stage tells it what SSM and EC2 tell on AWS (a command's invocation ended, a spot
interruption warning, an instance stopping or terminating), delivered the way EventBridge
delivers (events.py). Then the unkind versions, each on a fault switch that the test checks
fired: events dropped, duplicated, delayed and reordered; the 5-minute reconciler and the
waiting state's timeout (with its fallback poll) as the safety nets; and redrive, which gives
a waiting state a new token.
"""

from conftest import wait_until

SETUP = "prepare"


def answers(e2e, run_id: str, via: str = None) -> list:
    """(step, round, answer, taken) poll-result gave for this run: for deliveries of detail-type
    key `via` (`command_invocation`, `spot_warning`, `instance_state`), or all of them."""
    return [
        (a["step"], a["round"], a["answer"], a["taken"])
        for a in e2e.stack.events.answered(via)
        if a["run_id"] == run_id
    ]


def reconciled(e2e, run_id: str) -> list:
    return [(a["step"], a["round"], a["answer"], a["taken"]) for a in e2e.stack.reconciler.answered() if a["run_id"] == run_id]


def entered_at(outcome, state: str) -> list:
    """When `state` was entered (seconds since the epoch), in order."""
    return [
        e["timestamp"].timestamp()
        for e in outcome.events
        if e.get("stateEnteredEventDetails", {}).get("name") == state
    ]


def test_each_step_ends_by_its_event_without_a_poll(e2e):
    outcome = e2e.run("told", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    steps = e2e.steps_ran(run_id)
    assert steps == [SETUP, "quoting"]
    # Each step's end was told (SSM's event) and answered its token once; nothing polled.
    assert answers(e2e, run_id, "command_invocation") == [(s, 0, "Succeeded", True) for s in steps]
    assert not [s for s in outcome.entered() if s.endswith(": poll")]
    scheduled = [e for e in outcome.events if e["type"] == "LambdaFunctionScheduled"]
    assert all("poll-result" not in e["lambdaFunctionScheduledEventDetails"]["resource"] for e in scheduled)
    e2e.assert_nothing_left(run_id)


def test_a_dropped_completion_event_is_completed_by_the_reconciler(e2e):
    e2e.stack.faults.drop_events = {"command_invocation": 1}
    outcome = e2e.run("dropped", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert len(e2e.stack.events.dropped) >= 1
    # The setup step's end was never told; the reconciler found its command ended.
    assert reconciled(e2e, run_id)[:1] == [(SETUP, 0, "Succeeded", True)]
    assert answers(e2e, run_id, "command_invocation") == [("quoting", 0, "Succeeded", True)]
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)


def test_duplicated_delayed_and_reordered_events_change_nothing(e2e):
    faults = e2e.stack.faults
    faults.duplicate_events = {"command_invocation": 3, "instance_state": 2}
    faults.reorder_events = 1.5
    delivered_before = len(e2e.stack.events.delivered)
    outcome = e2e.run("duplicated", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    steps = e2e.steps_ran(run_id)
    assert steps == [SETUP, "quoting", "slow", "big-output"]
    assert e2e.ran_log() == ["quoting ran", "slow ran", "big-output ran"]
    # Three copies of each end were delivered, in reverse order within each window: one
    # answered each step's token, the others found it answered (or its token used).
    wait_until(lambda: len(e2e.stack.events.delivered) - delivered_before >= 3 * len(steps), 30, "every copy")
    # (The reconciler, every 5 s here, may answer a step first while its events are held.)
    taken = [(s, r, a) for s, r, a, t in answers(e2e, run_id) + reconciled(e2e, run_id) if t]
    assert sorted(taken) == sorted((s, 0, "Succeeded") for s in steps)
    assert "Relaunch: clean up" not in outcome.entered()
    e2e.assert_nothing_left(run_id)


def test_a_late_event_of_an_earlier_step_does_not_end_the_next_one(e2e):
    # Each end is told again 4 s later: by then the next step waits; the late copy names the
    # earlier command, not the one this token waits for.
    e2e.stack.faults.duplicate_events = {"command_invocation": 2}
    e2e.stack.faults.duplicate_after = 4.0
    delivered_before = len(e2e.stack.events.delivered)
    outcome = e2e.run("late", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    [slow] = e2e.commands(run_id, "slow")
    results = {s: r["result"] for s in ("slow", "big-output") for r in e2e.exited(outcome, f"{s}: send")}
    assert results["slow"]["command_id"] == slow.command_id
    assert results["big-output"]["command_id"] == e2e.commands(run_id, "big-output")[0].command_id
    wait_until(lambda: len(e2e.stack.events.delivered) - delivered_before >= 2 * len(e2e.commands(run_id)), 30, "the late copies")
    assert [a for a in answers(e2e, run_id) if a[3]] == [(c.step, 0, "Succeeded", True) for c in e2e.commands(run_id)]
    e2e.assert_nothing_left(run_id)


def test_a_reclaim_is_caught_by_the_warning_and_resumes_at_the_step(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    # The instance dies 6 s after its warning: the relaunch starts while it is still dying.
    faults.reclaim_lead = 6
    outcome = e2e.run("warned", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert answers(e2e, run_id, "spot_warning") == [("slow", 0, "InstanceReclaimed", True)]
    [warned_at] = [t for t, key, e in e2e.stack.events.sent if key == "spot_warning" and e["detail"]["instance-id"] == e2e.commands(run_id, "slow")[0].instance_id]
    [cleanup_at] = entered_at(outcome, "Relaunch: clean up")
    assert cleanup_at - warned_at < faults.reclaim_lead, "the relaunch began before the reclaim"
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    assert [r["result"]["step"] for r in e2e.exited(outcome, "slow: send") if r.get("result", {}).get("step") == "slow"] == ["slow"]
    e2e.assert_nothing_left(run_id)


def test_a_lost_warning_is_caught_by_the_state_change(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    faults.reclaim_lead = 0.5
    faults.drop_events = {"spot_warning": None}
    outcome = e2e.run("no-warning", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert len(e2e.stack.events.dropped) >= 1
    assert answers(e2e, run_id, "spot_warning") == []
    assert ("slow", 0, "InstanceReclaimed", True) in answers(e2e, run_id, "instance_state")
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    e2e.assert_nothing_left(run_id)


def test_a_lost_warning_and_state_change_are_caught_by_the_reconciler(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    faults.reclaim_lead = 0.5
    faults.drop_events = {"spot_warning": None, "instance_state": None}
    outcome = e2e.run("no-ec2-events", {"mode": "all"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert [a for a in answers(e2e, run_id) if a[2] != "Succeeded"] == []
    assert ("slow", 0, "InstanceReclaimed", True) in reconciled(e2e, run_id)
    assert e2e.steps_ran(run_id) == [SETUP, "quoting", "slow", SETUP, "slow", "big-output"]
    e2e.assert_nothing_left(run_id)


def test_a_wait_that_times_out_falls_back_to_the_poll(e2e):
    job = "quiet"
    e2e.stack.put_config(e2e.harness.config_source(job), f"# {job} config for the e2e tests\n")
    faults = e2e.stack.faults
    faults.drop_events = {"command_invocation": None}
    faults.reconcile = False
    outcome = e2e.run("unheard", job=job, timeout=180)
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    timed_out = [e for e in outcome.events if e["type"] == "TaskTimedOut"]
    assert [e["taskTimedOutEventDetails"]["error"] for e in timed_out] == ["States.Timeout"]
    assert "hush: poll" in outcome.entered()
    [command] = e2e.commands(run_id)
    assert e2e.exited(outcome, "hush: poll")[0]["result"]["command_id"] == command.command_id
    assert answers(e2e, run_id) == [] and reconciled(e2e, run_id) == []
    e2e.assert_nothing_left(run_id)


def test_redrive_gives_the_waiting_step_a_new_token_twice_in_a_row(e2e):
    arn, run_id = e2e.start("redrive-twice", {"mode": "failing"})
    first = e2e.wait(arn, rule=False)
    assert (first.status, first.failed_state()) == ("FAILED", "fail: failed")

    # Redriven without a fix: the step is sent again (round 1) and fails again.
    second_arn = e2e.harness.redrive(arn)
    second = e2e.wait(second_arn, rule=False)
    assert (second.status, second.failed_state()) == ("FAILED", "fail: failed")
    assert "quoting: send" not in second.entered()

    # Fixed, redriven again (round 2): it resumes at the failed step and succeeds.
    (e2e.state_dir() / "fail.ok").write_text("fixed by the e2e test\n")
    third = e2e.wait(e2e.harness.redrive(second_arn))
    assert third.status == "SUCCEEDED", (third.error, third.cause_message())
    assert "quoting: send" not in third.entered()

    assert [(c.step, c.round) for c in e2e.commands(run_id) if c.step == "fail"] == [("fail", 0), ("fail", 1), ("fail", 2)]
    # Each round's token was live when its step ended: every answer was taken.
    told = [a for a in answers(e2e, run_id, "command_invocation") if a[0] == "fail"]
    assert told == [("fail", 0, "StepFailed", True), ("fail", 1, "StepFailed", True), ("fail", 2, "Succeeded", True)]
    wait_until(lambda: not e2e.stack.live_instances(), 30, "the run's instances to be gone")
    e2e.assert_nothing_left(run_id)
