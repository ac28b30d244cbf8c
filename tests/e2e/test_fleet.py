"""The launch's one instant EC2 Fleet request over all the job's pools, on the local stage.

moto never answers a fleet with `Errors`: the front door (`local/spotstep_local/fleet.py`)
adds them as EC2 does, in the same HTTP 200 answer as the instances (see `Faults`).
"""

from test_pipeline import SETUP


def pools(e2e) -> list:
    subnets = e2e.stack.world["subnets"]
    return [(t, s) for t in e2e.job("demo")["instance_types"] for s in subnets]


def test_errors_for_some_pools_and_an_instance_from_another_in_the_same_answer(e2e):
    every = pools(e2e)
    # Every pool but the last has no capacity: the instance comes from the last one.
    e2e.stack.faults.no_capacity = set(every[:-1])
    outcome = e2e.run("fleet-mixed", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    launch = e2e.exited(outcome, "Launch")[0]["launch"]
    assert (launch["instance_type"], launch["subnet_id"]) == every[-1]
    assert [(p["instance_type"], p["subnet_id"], p["error"]) for p in launch["pools_tried"]] == [
        (t, s, "InsufficientInstanceCapacity") for t, s in every[:-1]
    ] + [(*every[-1], "")]
    assert e2e.stack.faults.launch_calls == [("CreateFleet", "spot")], "one request for all pools"
    [instance] = e2e.stack.instances(run_id=run_id)
    assert (instance.id, instance.instance_type) == (launch["instance_id"], every[-1][0])
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)


def test_request_limit_exceeded_in_errors_is_sent_again_then_launches(e2e):
    e2e.stack.faults.fleet_throttled = 2
    outcome = e2e.run("fleet-throttled", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert e2e.stack.faults.fleet_throttled == 0
    # Backed off inside the one Launch call: three requests, no state-machine retry.
    assert e2e.stack.faults.launch_calls == [("CreateFleet", "spot")] * 3
    launch_errors = [e for e, _ in e2e.function_errors(outcome) if e in ("Throttled", "NoCapacity", "LaunchRejected")]
    assert launch_errors == [], e2e.function_errors(outcome)
    assert outcome.entered().count("Launch") == 1
    launch = e2e.exited(outcome, "Launch")[0]["launch"]
    assert [p["error"] for p in launch["pools_tried"]] == [""] * len(pools(e2e))
    assert e2e.steps_ran(run_id) == [SETUP, "quoting"]
    e2e.assert_nothing_left(run_id)


def test_an_unauthorized_launch_fails_clearly_and_is_no_capacity_wait(e2e):
    e2e.stack.faults.fleet_unauthorized = True
    before = len(e2e.stack.notifications())
    outcome = e2e.run("fleet-unauthorized", {"mode": "quick"})
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "Launch"
    assert outcome.error == "LaunchRejected", outcome.error
    message = outcome.cause_message()
    assert "UnauthorizedOperation" in message, message
    assert "not allowed to launch" in message and "not a capacity wait" in message, message
    # Not retried as a capacity wait: one Launch call, one fleet request.
    assert [e for e, _ in e2e.function_errors(outcome)] == ["LaunchRejected"]
    assert e2e.stack.faults.launch_calls == [("CreateFleet", "spot")]
    [(subject, told)] = e2e.stack.notifications()[before:]
    assert "Error: LaunchRejected\n" in told and "not allowed to launch" in told, told
    assert e2e.stack.instances(run_id=run_id) == []
    e2e.assert_nothing_left(run_id)
