"""The benchmark's cost model: a production data-weekly run, priced with published prices, in
both designs from the same local execution of the token definition (`cost_model`): the token
design the definitions have today (each step's send state waits on a task token, poll-result
is told by EventBridge and the 5-minute reconciler) and the polling design before it (a
`<step>: poll` state per step, retried by the production poll schedule of
`contract.timing("production")`, its delays counted as the definition generator counts them:
`asl::Backoff::delay`, checked against the contract by `check_schedule`).
"""

import math
import re

from spotstep_local import contract

# Stated production step durations of a data-weekly run (minutes), from the issue.
DATA_WEEKLY_MINUTES = {"bootstrap": 5, "deps": 8, "morning-enrich": 40, "data-phase1": 90, "rag-ingestion": 30}

# List prices (us-east-1): the ones the run ledger uses, kept once in src/cost.rs and read
# from the contract (`prices.list`, with their date). EventBridge Scheduler's price applies
# after its 14 million free invocations a month (the reconciler's ticks); AWS service events
# (SSM, EC2) on the default bus are free. Sources in BENCHMARKS.md.
PRICES = {k: v for k, v in contract.load()["prices"]["list"].items() if isinstance(v, float)}
# Step Functions' free tier (Standard workflows), a month, every customer, no expiry.
FREE_TIER_TRANSITIONS_PER_MONTH = 4000

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


def _lambda_usd(invocations: int, init_ms: float) -> tuple:
    """(requests USD, duration USD) of `invocations` at the billed duration assumed, plus the
    cold inits of one run."""
    a = ASSUMPTIONS
    gb = a["lambda_memory_mb"] / 1024
    requests = invocations * PRICES["lambda_per_request"]
    duration = (invocations * a["lambda_billed_ms_per_invocation"] + a["lambda_cold_starts_per_run"] * init_ms) / 1000 * gb * PRICES[
        "lambda_arm64_per_gb_second"
    ]
    return requests, duration


def production_poll_policy() -> dict:
    """The polling design's schedule: `contract.timing("production")["poll"]` (the fallback
    `<step>: poll` uses the same Backoff)."""
    poll = contract.timing("production")["poll"]
    return {"interval": poll["interval_seconds"], "rate": poll["backoff_rate"], "cap": poll["max_delay_seconds"]}


def reconcile_every_seconds() -> int:
    """The reconciler's production schedule from the contract (`rate(N minutes)`), in seconds."""
    schedule = contract.load()["events"]["reconcile_schedule"]
    m = re.fullmatch(r"rate\((\d+) minutes?\)", schedule)
    if not m:
        raise ValueError(f"the reconciler's schedule {schedule!r} is not rate(N minutes)")
    return int(m.group(1)) * 60


def reconciler_ticks(run_seconds: float) -> int:
    """The reconciler's invocations during a run of `run_seconds`: ceil(run / 300 s), the most
    ticks of a 5-minute schedule a run of that length can overlap (one fewer when it starts
    right after a tick)."""
    return math.ceil(run_seconds / reconcile_every_seconds())


def _priced(transitions: int, invocations: int, run_seconds: float, init_ms: float, scheduled: int = 0) -> dict:
    a = ASSUMPTIONS
    hours = run_seconds / 3600
    sfn = transitions * PRICES["sfn_standard_per_transition"]
    lam_requests, lam_duration = _lambda_usd(invocations, init_ms)
    scheduler = scheduled * PRICES["scheduler_per_invocation"]
    instance = hours * a["spot_price_per_hour"]
    orchestration = sfn + lam_requests + lam_duration + scheduler
    return {
        "step_functions": sfn,
        "lambda_requests": lam_requests,
        "lambda_duration": lam_duration,
        "scheduler": scheduler,
        "orchestration": orchestration,
        "spot_instance": instance,
        "root_volume": a["root_volume_gb"] * PRICES["ebs_gp3_per_gb_month"] * hours / 730,
        "on_demand_instance": hours * a["on_demand_price_per_hour"],
    }


def cost_model(sim: dict, prod_definition: dict, init_ms: float, told: int) -> dict:
    """A production data-weekly run, both designs, from the same local execution of the token
    definition (`sim`: the states it entered, from `bench.analyse`):

    - `token` (the definition today): the states the local run entered, each step's waiting
      send state 1 transition and 1 send-step invocation; poll-result is invoked by the `told`
      events EventBridge delivered for the run's instances (each command's end, the instance's
      state changes at the end: counted on the local run) and by the reconciler's ticks during
      the run (`reconciler_ticks`); detection lag ~0 plus EventBridge's delivery.
    - `polling` (the design before): the same run, plus one `<step>: poll` state per step
      polling by the production schedule (`polls_for`), no events, no reconciler.

    Both: `Wait for agent` retries modeled from `agent_online_seconds` (its production Retry
    interval), the stated step durations of `DATA_WEEKLY_MINUTES`."""
    a = ASSUMPTIONS
    states = prod_definition["States"]
    policy = production_poll_policy()
    steps = []
    entered = retries = invocations = 0
    modeled_states = {}
    for name, s in sim["per_state"].items():
        if contract.fmt("state_poll").match(name):
            # The fallback poll: entered only when a wait timed out; the model has no such run.
            raise ValueError(f"{name}: the local run reached the fallback poll (a wait timed out); not a clean run to model")
        r = s["retries"]
        send = contract.fmt("state_send").match(name)
        if send:
            step = send["step"]
            if step not in DATA_WEEKLY_MINUTES:
                raise ValueError(f"{name}: no stated production duration for step {step!r}")
            minutes = DATA_WEEKLY_MINUTES[step]
            polls, lag = polls_for(minutes * 60, policy)
            steps.append({"step": step, "minutes": minutes, "sends": s["entered"], "policy": policy, "polls": polls * s["entered"],
                          "detection_lag_seconds": lag})
        elif name == contract.state("wait_for_agent"):
            interval = next(x["IntervalSeconds"] for x in states[name]["Retry"] if "AgentNotOnline" in x["ErrorEquals"])
            r = math.ceil(a["agent_online_seconds"] / interval)
        entered += s["entered"]
        retries += r
        invocations += (s["entered"] + r) if s["invocations"] else 0
        modeled_states[name] = {"entered": s["entered"], "retries": r}
    if not steps:
        raise ValueError("the local run entered no send state")
    base_seconds = a["launch_seconds"] + a["agent_online_seconds"] + sum(st["minutes"] * 60 for st in steps)

    # (a) the token design
    ticks = reconciler_ticks(base_seconds)
    token_transitions = entered + retries
    token_invocations = invocations + told + ticks
    token = {
        "design": "token",
        "states_entered": entered,
        "retries": retries,
        "state_transitions": token_transitions,
        "lambda_invocations": token_invocations,
        "invocations_by_function": {"states": invocations, "poll-result (events)": told, "poll-result (reconciler)": ticks},
        "told_events": told,
        "reconciler_ticks": ticks,
        "run_seconds": base_seconds,
        "detection_lag_seconds": [0 for _ in steps],
        "usd": _priced(token_transitions, token_invocations, base_seconds, init_ms, scheduled=ticks),
    }
    token["orchestration_over_instance"] = token["usd"]["orchestration"] / token["usd"]["spot_instance"]

    # (b) the polling design: + one poll state per send, retried by the schedule
    polls = sum(st["polls"] for st in steps)
    poll_entered = sum(st["sends"] for st in steps)
    poll_transitions = entered + poll_entered + retries + (polls - poll_entered)
    poll_invocations = invocations + polls
    poll_seconds = base_seconds + sum(st["detection_lag_seconds"] for st in steps)
    polling = {
        "design": "polling",
        "states_entered": entered + poll_entered,
        "retries": retries + polls - poll_entered,
        "state_transitions": poll_transitions,
        "lambda_invocations": poll_invocations,
        "invocations_by_function": {"states": invocations, "poll-result (poll states)": polls},
        "run_seconds": poll_seconds,
        "detection_lag_seconds": [st["detection_lag_seconds"] for st in steps],
        "usd": _priced(poll_transitions, poll_invocations, poll_seconds, init_ms),
    }
    polling["orchestration_over_instance"] = polling["usd"]["orchestration"] / polling["usd"]["spot_instance"]

    # The polling design under other poll caps, and the token design, side by side.
    alternatives = []
    for cap in (30, 60, 120, 300, 600):
        caps = [polls_for(st["minutes"] * 60, st["policy"], cap) for st in steps]
        n = sum(p * st["sends"] for st, (p, _) in zip(steps, caps))
        t = entered + retries + n
        inv = invocations + n
        secs = base_seconds + sum(lag for _, lag in caps)
        usd = _priced(t, inv, secs, init_ms)
        alternatives.append({
            "policy": f"poll, MaxDelaySeconds {cap}" + (" (the polling design)" if cap == policy["cap"] else ""),
            "transitions": t,
            "invocations": inv,
            "orchestration_usd": usd["orchestration"],
            "instance_usd": usd["spot_instance"],
            "ratio": usd["orchestration"] / usd["spot_instance"],
            "worst_detection_seconds": cap,
            "modeled_detection_seconds": [round(lag, 1) for _, lag in caps],
        })
    alternatives.append({
        "policy": "task token + EventBridge (today)",
        "transitions": token_transitions,
        "invocations": token_invocations,
        "orchestration_usd": token["usd"]["orchestration"],
        "instance_usd": token["usd"]["spot_instance"],
        "ratio": token["orchestration_over_instance"],
        "worst_detection_seconds": None,
        "modeled_detection_seconds": None,
    })

    # The reconciler runs whether or not a run does: its standing invocations a month.
    every = reconcile_every_seconds()
    monthly = 3600 // every * 24 * 30
    req, dur = _lambda_usd(monthly, 0.0)
    standing = {
        "every_seconds": every,
        "invocations_per_month": monthly,
        "lambda_requests_usd": req,
        "lambda_duration_usd": dur,
        "scheduler_usd": monthly * PRICES["scheduler_per_invocation"],
        "usd": req + dur + monthly * PRICES["scheduler_per_invocation"],
    }
    runs_in_free_tier = {d["design"]: FREE_TIER_TRANSITIONS_PER_MONTH // d["state_transitions"] for d in (token, polling)}
    return {
        "steps": steps,
        "states": modeled_states,
        "token": token,
        "polling": polling,
        "alternatives": alternatives,
        "reconciler_standing": standing,
        "free_tier_transitions_per_month": FREE_TIER_TRANSITIONS_PER_MONTH,
        "runs_per_month_in_free_tier": runs_in_free_tier,
        "init_ms_used": init_ms,
    }
