"""The benchmark's reading of execution histories (bench/history.py) and of its event results
(bench/report.py), on made-up histories: no emulator runs."""

import datetime
import json
from types import SimpleNamespace

import pytest

import history
import report
from spotstep_local import contract

T0 = datetime.datetime(2026, 11, 29, 6, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entered(name: str, seconds: float, kind: str = "TaskStateEntered") -> dict:
    return {"type": kind, "timestamp": at(seconds), "stateEnteredEventDetails": {"name": name}}


def waiting_task(function: str, payload: dict, seconds: float) -> dict:
    parameters = {"FunctionName": f"arn:aws:lambda:us-east-1:123456789012:function:{function}", "Payload": payload}
    return {"type": "TaskScheduled", "timestamp": at(seconds),
            "taskScheduledEventDetails": {"resourceType": "lambda", "resource": "invoke.waitForTaskToken",
                                          "parameters": json.dumps(parameters)}}


def plain_task(function: str, payload: dict, seconds: float) -> dict:
    return {"type": "LambdaFunctionScheduled", "timestamp": at(seconds),
            "lambdaFunctionScheduledEventDetails": {"resource": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
                                                    "input": json.dumps(payload)}}


def send(step: str) -> str:
    return contract.fmt("state_send").make(step=step)


def execution(events: list, runs: list) -> dict:
    return {"job": "data-weekly", "mode": "full", "name": "bench-x", "status": "SUCCEEDED", "wall_seconds": 10.0,
            "events": events, "runs": runs}


def command(step: str, started: float, ended, status: str = "Success"):
    return SimpleNamespace(step=step, status=status, started=iso(started), ended=iso(ended) if ended is not None else "")


def test_a_waiting_send_counts_as_a_send_step_invocation_with_its_payload():
    launch = contract.state("launch")
    events = [
        entered(launch, 0), plain_task("launch", {"run": {"run_id": "r"}}, 0.01),
        entered(send("deps"), 1), waiting_task("send-step", {"step": {"name": "deps"}, "task_token": "t"}, 1.01),
        entered(contract.state("resume"), 5, "ChoiceStateEntered"),
    ]
    a = history.analyse(execution(events, [command("deps", 1.1, 4.5)]))
    assert a["per_state"][send("deps")] == {"type": "Task", "entered": 1, "invocations": 1, "retries": 0}
    assert a["lambda_invocations"] == 2
    assert a["inputs"]["send-step"] == [{"state": send("deps"), "input": {"step": {"name": "deps"}, "task_token": "t"}}]
    assert a["inputs"]["launch"][0]["state"] == launch


def test_a_waiting_task_of_another_service_is_refused():
    event = waiting_task("send-step", {}, 0)
    event["taskScheduledEventDetails"]["resourceType"] = "sqs"
    with pytest.raises(ValueError, match="resource type"):
        history.scheduled_invocation(event)
    event = waiting_task("send-step", {}, 0)
    event["taskScheduledEventDetails"]["parameters"] = json.dumps({"FunctionName": "x"})
    with pytest.raises(ValueError, match="FunctionName and Payload"):
        history.scheduled_invocation(event)


def test_step_end_detection_is_to_the_next_state_entered_after_the_command_ended():
    events = [
        entered(send("bootstrap"), 0), entered(send("deps"), 2.0),
        entered(contract.state("resume"), 6.25, "ChoiceStateEntered"), entered(contract.state("finish"), 6.5),
    ]
    runs = [command("bootstrap", 0.1, 1.0), command("deps", 2.1, 6.2), command("lost", 6.3, None)]
    found = history.step_end_detection(execution(events, runs))
    assert [(d["step"], d["next_state"]) for d in found] == [("bootstrap", send("deps")), ("deps", contract.state("resume"))]
    assert [d["detection_seconds"] for d in found] == pytest.approx([1.0, 0.05])
    with pytest.raises(RuntimeError, match="no state entered after step"):
        history.step_end_detection(execution(events, [command("late", 7, 8)]))


def events_results(step_p95: float, reclaim_p95: float) -> dict:
    def p(x):
        return {"n": 5, "p50": x / 2, "p95": x, "max": x}

    return {"step_end_detection": {"all": p(step_p95)},
            "reclaim_detection": {"to_resume_here": p(reclaim_p95), "to_relaunch_clean_up": p(reclaim_p95)}}


def cost(token_transitions: int, token_ratio: float) -> dict:
    design = {"state_transitions": token_transitions, "lambda_invocations": 50, "orchestration_over_instance": token_ratio,
              "usd": {"orchestration": 0.001, "spot_instance": 0.1}, "told_events": 7, "reconciler_ticks": 35,
              "invocations_by_function": {"states": 8}, "detection_lag_seconds": [0]}
    polling = dict(design, state_transitions=140, orchestration_over_instance=0.034, detection_lag_seconds=[18, 78],
                   invocations_by_function={"states": 8, "poll-result (poll states)": 116})
    return {"token": design, "polling": polling, "free_tier_transitions_per_month": 4000,
            "runs_per_month_in_free_tier": {"token": 4000 // token_transitions, "polling": 28},
            "steps": [{"policy": {"cap": 120}}]}


def test_the_event_targets_fail_when_their_figures_do():
    rows = {r["target"].split(" ≤")[0].split(" <")[0]: r["met"] for r in report.event_verdicts(cost(24, 0.006), events_results(1.05, 0.04))}
    assert rows == {"orchestration cost": True, "transitions per data-weekly full run": True,
                    "Lambda invocations per data-weekly full run": None, "step-end detection p95": True, "reclaim detection": True}
    bad = report.event_verdicts(cost(31, 0.02), events_results(5.5, 6.0))
    assert [r["met"] for r in bad] == [False, False, None, False, False]
