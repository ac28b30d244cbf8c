"""The benchmark's cost model (bench/cost.py): a production data-weekly run in the token design
(today's definitions) and the polling design before it, from the same local execution."""

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


def send(step: str) -> str:
    return contract.fmt("state_send").make(step=step)


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


def test_the_polling_design_polls_by_the_production_schedule(production):
    policy = cost.production_poll_policy()
    assert (policy["interval"], policy["rate"], policy["cap"]) == (10, 1.5, 120)
    # The fallback poll of today's definition retries with the same Backoff.
    fallback = cost.poll_policy(production["States"][poll("deps")])
    assert (fallback["interval"], fallback["rate"], fallback["cap"]) == (10, 1.5, 120)
    # 8 minutes: retries after 10, 25, 47, 80, 130, 205, 318, 438, 558 s.
    assert cost.polls_for(480, policy) == (10, 78)
    assert cost.polls_for(5, policy) == (2, 5)
    assert cost.polls_for(480, policy, cap=30)[0] > 10


def test_the_reconciler_ticks_during_a_run_round_up():
    assert cost.reconcile_every_seconds() == 300
    assert [cost.reconciler_ticks(s) for s in (1, 300, 301, 570, 10800)] == [1, 1, 2, 2, 36]


def sim(states: dict) -> dict:
    return {"per_state": {n: {"entered": e, "invocations": i, "retries": max(i - e, 0)} for n, (e, i) in states.items()}}


RUN = {
    contract.state("launch"): (1, 1),
    contract.state("wait_for_agent"): (1, 2),
    send("deps"): (1, 1),
    contract.state("done"): (1, 0),
}


def test_both_designs_from_the_same_run(production):
    model = cost.cost_model(sim(RUN), production, init_ms=20.0, told=3)
    assert model["states"][contract.state("wait_for_agent")] == {"entered": 1, "retries": 6}
    assert [s["step"] for s in model["steps"]] == ["deps"]

    token = model["token"]
    # 4 states entered + 6 agent retries; the send waits on its token: no poll state.
    assert token["state_transitions"] == 4 + 6
    # launch 1, wait-online 7, send-step 1; poll-result: 3 events + ceil(570 / 300) ticks.
    assert token["run_seconds"] == 30 + 60 + 480
    assert token["reconciler_ticks"] == 2
    assert token["lambda_invocations"] == 1 + 7 + 1 + 3 + 2
    assert token["detection_lag_seconds"] == [0]

    polling = model["polling"]
    # + `deps: poll` entered once and retried 9 times (10 polls over 8 minutes).
    assert polling["state_transitions"] == 4 + 6 + 1 + 9
    assert polling["lambda_invocations"] == 1 + 7 + 1 + 10
    assert polling["run_seconds"] == 30 + 60 + 480 + 78
    assert polling["detection_lag_seconds"] == [78]

    for design in (token, polling):
        usd = design["usd"]
        assert usd["step_functions"] == pytest.approx(design["state_transitions"] * cost.PRICES["sfn_standard_per_transition"])
        assert usd["lambda_requests"] == pytest.approx(design["lambda_invocations"] * cost.PRICES["lambda_per_request"])
        assert usd["orchestration"] == pytest.approx(
            usd["step_functions"] + usd["lambda_requests"] + usd["lambda_duration"] + usd["scheduler"]
        )
        assert usd["spot_instance"] == pytest.approx(design["run_seconds"] / 3600 * cost.ASSUMPTIONS["spot_price_per_hour"])
        assert design["orchestration_over_instance"] == pytest.approx(usd["orchestration"] / usd["spot_instance"])
    assert token["usd"]["scheduler"] == pytest.approx(2 * cost.PRICES["scheduler_per_invocation"])
    assert polling["usd"]["scheduler"] == 0
    assert model["runs_per_month_in_free_tier"] == {"token": 4000 // 10, "polling": 4000 // 20}

    current = [a for a in model["alternatives"] if a["policy"].endswith("(the polling design)")]
    assert len(current) == 1 and current[0]["transitions"] == polling["state_transitions"]
    assert current[0]["invocations"] == polling["lambda_invocations"]
    assert model["alternatives"][-1]["transitions"] == token["state_transitions"]
    caps = [a for a in model["alternatives"] if a["worst_detection_seconds"]]
    assert [a["transitions"] for a in caps] == sorted((a["transitions"] for a in caps), reverse=True)

    standing = model["reconciler_standing"]
    assert standing["invocations_per_month"] == 12 * 24 * 30 == 8640
    assert standing["usd"] == pytest.approx(standing["lambda_requests_usd"] + standing["lambda_duration_usd"] + standing["scheduler_usd"])


def test_events_cost_invocations_not_transitions(production):
    quiet = cost.cost_model(sim(RUN), production, init_ms=20.0, told=0)
    busy = cost.cost_model(sim(RUN), production, init_ms=20.0, told=7)
    assert busy["token"]["state_transitions"] == quiet["token"]["state_transitions"]
    assert busy["token"]["lambda_invocations"] == quiet["token"]["lambda_invocations"] + 7
    assert busy["polling"] == quiet["polling"]


def test_a_longer_step_costs_the_polling_design_only(production):
    short = cost.cost_model(sim(RUN), production, init_ms=20.0, told=3)
    longer = sim({**RUN, send("data-phase1"): (1, 1)})
    model = cost.cost_model(longer, production, init_ms=20.0, told=4)
    assert model["token"]["state_transitions"] == short["token"]["state_transitions"] + 1
    # 90 minutes polled by the schedule: far more than one transition.
    assert model["polling"]["state_transitions"] - short["polling"]["state_transitions"] > 40


def test_a_run_that_is_not_clean_is_refused(production):
    with pytest.raises(ValueError, match="fallback poll"):
        cost.cost_model(sim({**RUN, poll("deps"): (1, 1)}), production, init_ms=20.0, told=3)
    with pytest.raises(ValueError, match="no stated production duration"):
        cost.cost_model(sim({**RUN, send("not-a-data-weekly-step"): (1, 1)}), production, init_ms=20.0, told=3)
    with pytest.raises(ValueError, match="no send state"):
        cost.cost_model(sim({contract.state("launch"): (1, 1)}), production, init_ms=20.0, told=0)
