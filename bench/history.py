"""Reading an execution's history (pure, no stage): the Lambda invocations its states
scheduled and their inputs, its state transitions and retries, and the step-end detection
(from the agent's end of each command to the next state entered).
"""

import datetime
import json


def parse_ts(value) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def scheduled_invocation(event: dict):
    """(function name, its input) of a history event that schedules a Lambda invocation: a
    plain task (`LambdaFunctionScheduled`) or a waiting one (`TaskScheduled` of a
    `lambda:invoke.waitForTaskToken` state, its `parameters` holding `FunctionName` and
    `Payload`); None for any other event."""
    if event["type"] == "LambdaFunctionScheduled":
        details = event.get("lambdaFunctionScheduledEventDetails", {})
        return details.get("resource", "").rsplit(":", 1)[-1], json.loads(details.get("input") or "null")
    if event["type"] == "TaskScheduled":
        details = event.get("taskScheduledEventDetails", {})
        if details.get("resourceType") != "lambda":
            raise ValueError(f"a task of resource type {details.get('resourceType')!r}: the benchmark counts only Lambda tasks")
        parameters = json.loads(details.get("parameters") or "{}")
        if "FunctionName" not in parameters or "Payload" not in parameters:
            raise ValueError(f"a waiting Lambda task without FunctionName and Payload: {sorted(parameters)}")
        return parameters["FunctionName"].rsplit(":", 1)[-1], parameters["Payload"]
    return None


def step_end_detection(execution: dict) -> list:
    """For each command of the run that ended (`CommandRun.ended`, the agent emulation's clock):
    the next state the execution entered after it (history timestamps), and how long after."""
    entered = [(parse_ts(e["timestamp"]), e["stateEnteredEventDetails"]["name"]) for e in execution["events"] if "stateEnteredEventDetails" in e]
    out = []
    for run in execution["runs"]:
        if not run.ended:
            continue  # a command lost with its instance never ends
        ended = parse_ts(run.ended)
        nxt = next(((t, name) for t, name in entered if t >= ended), None)
        if nxt is None:
            raise RuntimeError(f"{execution['name']}: no state entered after step {run.step} ended at {run.ended}")
        out.append({
            "execution": execution["name"],
            "step": run.step,
            "status": run.status,
            "command_seconds": (ended - parse_ts(run.started)).total_seconds() if run.started else None,
            "next_state": nxt[1],
            "detection_seconds": (nxt[0] - ended).total_seconds(),
        })
    return out


def analyse(execution: dict) -> dict:
    """State transitions and Lambda invocations from a history, the inputs each function was
    invoked with, and the step-end detection (`step_end_detection`)."""
    per_state = {}
    current = None
    scheduled_inputs = {}
    for e in execution["events"]:
        if "stateEnteredEventDetails" in e:
            current = e["stateEnteredEventDetails"]["name"]
            s = per_state.setdefault(current, {"type": e["type"].replace("StateEntered", ""), "entered": 0, "invocations": 0})
            s["entered"] += 1
            continue
        scheduled = scheduled_invocation(e)
        if scheduled:
            fn, payload = scheduled
            per_state[current]["invocations"] += 1
            scheduled_inputs.setdefault(fn, []).append({"state": current, "input": payload})
    for s in per_state.values():
        s["retries"] = max(s["invocations"] - s["entered"], 0) if s["invocations"] else 0
    entered = sum(s["entered"] for s in per_state.values())
    retries = sum(s["retries"] for s in per_state.values())
    return {
        "job": execution["job"],
        "mode": execution["mode"],
        "name": execution["name"],
        "status": execution["status"],
        "wall_seconds": execution["wall_seconds"],
        "history_events": len(execution["events"]),
        "states_entered": entered,
        "retries": retries,
        "state_transitions": entered + retries,
        "lambda_invocations": sum(s["invocations"] for s in per_state.values()),
        "per_state": per_state,
        "detection": step_end_detection(execution),
        "inputs": scheduled_inputs,
    }
