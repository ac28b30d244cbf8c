"""The benchmark's cost model (bench/cost.py) on the production definition of data-weekly."""

import copy
import json
import os
import subprocess

import pytest

import cost
from spotstep_local import contract


@pytest.fixture(scope="module")
def production() -> dict:
    done = subprocess.run(
        [contract.binary(), "asl", os.path.join(contract.REPO, "jobs", "data-weekly")], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def poll(step: str) -> str:
    return contract.fmt("state_poll").make(step=step)


def test_poll_delays_are_counted_as_the_generator_counts_them():
    for timing in ("production", "local"):
        cost.check_schedule(contract.timing(timing))
    rounded_up = copy.deepcopy(contract.timing("production"))
    rounded_up["poll"]["delays_seconds"][2] = 23
    with pytest.raises(ValueError, match="differ from the generator"):
        cost.check_schedule(rounded_up)
    policy = {"interval": 10, "rate": 1.5, "cap": 120}
    assert [cost.poll_delay(policy, k) for k in range(4)] == [10, 15, 22, 33]
    assert cost.poll_delay(policy, 20, cap=600) == 600
    assert cost.poll_delay({"interval": 10, "rate": 1.5, "cap": None}, 9) == 384


def test_polls_and_detection_lag_of_a_step(production):
    policy = cost.poll_policy(production["States"][poll("deps")])
    assert (policy["interval"], policy["rate"], policy["cap"]) == (10, 1.5, 120)
    # 8 minutes: retries after 10, 25, 47, 80, 130, 205, 318, 438, 558 s.
    assert cost.polls_for(480, policy) == (10, 78)
    assert cost.polls_for(5, policy) == (2, 5)
    assert cost.polls_for(480, policy, cap=30)[0] > 10


def sim(states: dict) -> dict:
    return {"per_state": {n: {"entered": e, "invocations": i, "retries": max(i - e, 0)} for n, (e, i) in states.items()}}


def test_cost_model_counts_transitions_invocations_and_prices(production):
    model = cost.cost_model(
        sim(
            {
                contract.state("launch"): (1, 1),
                contract.state("wait_for_agent"): (1, 2),
                contract.fmt("state_send").make(step="deps"): (1, 1),
                poll("deps"): (1, 40),
                contract.state("done"): (1, 0),
            }
        ),
        production,
        init_ms=20.0,
    )
    assert model["states"][contract.state("wait_for_agent")] == {"entered": 1, "retries": 6}
    assert model["states"][poll("deps")] == {"entered": 1, "retries": 9}
    assert [s["step"] for s in model["steps"]] == ["deps"]
    assert model["state_transitions"] == 5 + 6 + 9
    assert model["lambda_invocations"] == (1 + 7 + 1 + 10)
    assert model["run_seconds"] == 30 + 60 + 480 + 78
    usd = model["usd"]
    assert usd["step_functions"] == pytest.approx(20 * cost.PRICES["sfn_standard_per_transition"])
    assert usd["orchestration"] == pytest.approx(usd["step_functions"] + usd["lambda_requests"] + usd["lambda_duration"])
    assert usd["spot_instance"] == pytest.approx(model["run_seconds"] / 3600 * cost.ASSUMPTIONS["spot_price_per_hour"])
    current = [a for a in model["alternatives"] if a["policy"].endswith("(current)")]
    assert len(current) == 1 and current[0]["transitions"] == model["state_transitions"]
    assert model["alternatives"][-1]["transitions"] == 4 + 6 + 1


def test_a_schedule_too_short_for_the_step_is_an_error(production):
    short = copy.deepcopy(production)
    for retry in short["States"][poll("deps")]["Retry"]:
        if "StillRunning" in retry["ErrorEquals"]:
            retry["MaxAttempts"] = 3
    with pytest.raises(ValueError, match="exceed MaxAttempts 3"):
        cost.cost_model(sim({poll("deps"): (1, 4)}), short, init_ms=20.0)
