"""The benchmark's cost model: a data-weekly run in production, priced with published prices,
from the states a local execution entered and the Retry blocks of the production definition
(`spotstep asl jobs/data-weekly`), with the poll delays counted as the definition generator
counts them (`asl::Backoff::delay`, checked against `spotstep contract` by `check_schedule`).
"""

import math

from spotstep_local import contract

# Stated production step durations of a data-weekly run (minutes), from the issue.
DATA_WEEKLY_MINUTES = {"bootstrap": 5, "deps": 8, "morning-enrich": 40, "data-phase1": 90, "rag-ingestion": 30}

# Prices (us-east-1), and the assumptions of the cost model. Sources in BENCHMARKS.md.
PRICES = {
    "sfn_standard_per_transition": 0.025 / 1000,
    "lambda_arm64_per_gb_second": 0.0000133334,
    "lambda_per_request": 0.20 / 1_000_000,
    "ebs_gp3_per_gb_month": 0.08,
}
ASSUMPTIONS = {
    "spot_instance_type": "c5.large",
    "spot_price_per_hour": 0.035,
    "on_demand_price_per_hour": 0.085,
    "root_volume_gb": 30,
    "launch_seconds": 30,
    "agent_online_seconds": 60,
    "lambda_memory_mb": 128,
    "lambda_billed_ms_per_invocation": 100,
    "lambda_cold_starts_per_run": 5,
}


def poll_policy(state: dict) -> dict:
    for r in state.get("Retry", []):
        if "StillRunning" in r["ErrorEquals"]:
            return {
                "interval": r["IntervalSeconds"],
                "rate": r.get("BackoffRate", 2.0),
                "cap": r.get("MaxDelaySeconds"),
                "max_attempts": r.get("MaxAttempts", 3),
            }
    raise ValueError("no StillRunning retry")


def poll_delay(policy: dict, k: int, cap=None) -> int:
    """The delay before retry `k` (0-based) of `policy`, as the generator counts it:
    `IntervalSeconds * BackoffRate^k` rounded down to whole seconds, at most `cap` (default:
    the policy's `MaxDelaySeconds`; none when both are None)."""
    cap = policy["cap"] if cap is None else cap
    delay = math.floor(policy["interval"] * policy["rate"] ** k)
    return min(delay, cap) if cap else delay


def check_schedule(timing: dict):
    """Raises ValueError unless `poll_delay` gives the poll delays the contract states for
    `timing` (`contract.timing("production")` or `("local")`), and the cap after them."""
    poll = timing["poll"]
    policy = {"interval": poll["interval_seconds"], "rate": poll["backoff_rate"], "cap": poll["max_delay_seconds"]}
    want = poll["delays_seconds"] + [poll["max_delay_seconds"]] * 3
    got = [poll_delay(policy, k) for k in range(len(want))]
    if got != want:
        raise ValueError(f"poll delays {got} differ from the generator's {want} ({poll['delay']})")


def polls_for(duration: float, policy: dict, cap=None) -> tuple:
    """(polls, detection lag) of a step running `duration` seconds: the first poll right after
    the send, then one per Retry delay (`poll_delay`)."""
    t, k = 0, 0
    while t < duration:
        t += poll_delay(policy, k, cap)
        k += 1
    return k + 1, t - duration


def cost_model(sim: dict, prod_definition: dict, init_ms: float) -> dict:
    """The data-weekly run in production: the states the local execution entered (same
    definition shape), with the poll retries of the production policy for the stated step
    durations and the agent-wait retries for `agent_online_seconds`."""
    a = ASSUMPTIONS
    states = prod_definition["States"]
    steps = []
    entered = retries = invocations = 0
    modeled_states = {}
    for name, s in sim["per_state"].items():
        r = s["retries"]
        poll = contract.fmt("state_poll").match(name)
        if poll:
            step = poll["step"]
            policy = poll_policy(states[name])
            minutes = DATA_WEEKLY_MINUTES[step]
            polls, lag = polls_for(minutes * 60, policy)
            if polls - 1 > policy["max_attempts"]:
                raise ValueError(f"{name}: {polls - 1} retries exceed MaxAttempts {policy['max_attempts']}")
            r = (polls - 1) * s["entered"]
            steps.append({"step": step, "minutes": minutes, "policy": policy, "polls": polls, "detection_lag_seconds": lag})
        elif name == contract.state("wait_for_agent"):
            interval = next(x["IntervalSeconds"] for x in states[name]["Retry"] if "AgentNotOnline" in x["ErrorEquals"])
            r = math.ceil(a["agent_online_seconds"] / interval)
        entered += s["entered"]
        retries += r
        invocations += (s["entered"] + r) if s["invocations"] else 0
        modeled_states[name] = {"entered": s["entered"], "retries": r}
    transitions = entered + retries
    run_seconds = (
        a["launch_seconds"]
        + a["agent_online_seconds"]
        + sum(st["minutes"] * 60 + st["detection_lag_seconds"] for st in steps)
    )
    hours = run_seconds / 3600
    gb = a["lambda_memory_mb"] / 1024
    sfn = transitions * PRICES["sfn_standard_per_transition"]
    lam_requests = invocations * PRICES["lambda_per_request"]
    lam_duration = (invocations * a["lambda_billed_ms_per_invocation"] + a["lambda_cold_starts_per_run"] * init_ms) / 1000 * gb * PRICES["lambda_arm64_per_gb_second"]
    instance = hours * a["spot_price_per_hour"]
    ebs = a["root_volume_gb"] * PRICES["ebs_gp3_per_gb_month"] * hours / 730
    orchestration = sfn + lam_requests + lam_duration
    # The same run under other poll caps, and event-driven completion.
    alternatives = []
    base_nonpoll = transitions - sum(st["polls"] for st in steps)
    for cap in (30, 60, 120, 300, 600):
        polls = [polls_for(st["minutes"] * 60, st["policy"], cap) for st in steps]
        t = base_nonpoll + sum(p for p, _ in polls)
        inv = invocations - sum(st["polls"] for st in steps) + sum(p for p, _ in polls)
        secs = a["launch_seconds"] + a["agent_online_seconds"] + sum(st["minutes"] * 60 + lag for st, (_, lag) in zip(steps, polls))
        orch = t * PRICES["sfn_standard_per_transition"] + inv * PRICES["lambda_per_request"] + (
            inv * a["lambda_billed_ms_per_invocation"] + a["lambda_cold_starts_per_run"] * init_ms) / 1000 * gb * PRICES["lambda_arm64_per_gb_second"]
        inst = secs / 3600 * a["spot_price_per_hour"]
        alternatives.append(
            {
                "policy": f"poll, MaxDelaySeconds {cap}" + (" (current)" if cap == steps[0]["policy"]["cap"] else ""),
                "transitions": t,
                "invocations": inv,
                "orchestration_usd": orch,
                "instance_usd": inst,
                "ratio": orch / inst,
                "worst_detection_seconds": cap,
                "modeled_detection_seconds": [round(lag, 1) for _, lag in polls],
            }
        )
    # Event-driven: `<step>: send` waits for a task token; an EventBridge rule on "EC2 Command
    # Invocation Status-change Notification" runs a function that answers the token. Per step:
    # the send state (1 transition) and one extra invocation of the answering function; the
    # poll state is entered once to read the result (1 transition, 1 invocation).
    event_t = base_nonpoll + len(steps)
    event_inv = invocations - sum(st["polls"] for st in steps) + 2 * len(steps)
    secs = a["launch_seconds"] + a["agent_online_seconds"] + sum(st["minutes"] * 60 for st in steps)
    orch = event_t * PRICES["sfn_standard_per_transition"] + event_inv * PRICES["lambda_per_request"] + (
        event_inv * a["lambda_billed_ms_per_invocation"] + a["lambda_cold_starts_per_run"] * init_ms) / 1000 * gb * PRICES["lambda_arm64_per_gb_second"]
    alternatives.append(
        {
            "policy": "event-driven (task token + EventBridge SSM status change)",
            "transitions": event_t,
            "invocations": event_inv,
            "orchestration_usd": orch,
            "instance_usd": secs / 3600 * a["spot_price_per_hour"],
            "ratio": orch / (secs / 3600 * a["spot_price_per_hour"]),
            "worst_detection_seconds": None,
            "modeled_detection_seconds": None,
        }
    )
    return {
        "steps": steps,
        "states": modeled_states,
        "states_entered": entered,
        "retries": retries,
        "state_transitions": transitions,
        "lambda_invocations": invocations,
        "run_seconds": run_seconds,
        "usd": {
            "step_functions": sfn,
            "lambda_requests": lam_requests,
            "lambda_duration": lam_duration,
            "orchestration": orchestration,
            "spot_instance": instance,
            "root_volume": ebs,
            "on_demand_instance": hours * a["on_demand_price_per_hour"],
        },
        "orchestration_over_instance": orchestration / instance,
        "alternatives": alternatives,
        "init_ms_used": init_ms,
    }


def local_poll_model_check(sim: dict, local_definition: dict) -> list:
    """Observed local polls vs. the local policy's prediction for each command's duration."""
    out = []
    for d in sim["detection"]:
        name = contract.fmt("state_poll").make(step=d["step"])
        policy = poll_policy(local_definition["States"][name])
        predicted, lag = polls_for(d["command_seconds"], policy)
        out.append({"step": d["step"], "command_seconds": d["command_seconds"], "observed_polls": d["polls"],
                    "predicted_polls": predicted, "predicted_lag": lag, "observed_detection": d["detection_seconds"]})
    return out
