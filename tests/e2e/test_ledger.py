"""The run ledger (`runs/<job>/<run_id>.json`) and the cost of a run, on the local stage.

The stage answers DescribeSpotPriceHistory at its front door (`local/spotstep_local/prices.py`):
each test sets the price history of the demo job's pools, with a change during the run, and
computes the instance cost by hand from the record's own launch and end times.
"""

import datetime
import json
import time

from conftest import wait_until
from spotstep_local import contract
from test_cli import spotstep

# The demo job's instance types, the stage's zones, and its root volume (jobs/demo/job.toml).
TYPES = ["t3.micro", "t3.small", "t3a.micro"]
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
VOLUME_GB = 8


def prices() -> dict:
    return contract.load()["prices"]


def seed(e2e, changes: list):
    """Every pool of the demo job gets the price history `changes` [(epoch s, usd/h)]."""
    e2e.stack.faults.spot_prices = {(t, z): changes for t in TYPES for z in ZONES}


def epoch(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def by_hand(changes: list, start: int, end: int) -> float:
    """The price integrated per second over [start, end)."""
    usd = 0.0
    for i, (at, per_hour) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            usd += per_hour * (hi - lo) / 3600
    return usd


def record_of(e2e, run_id: str, job: str = "demo") -> dict:
    key = contract.load()["ledger"]["key"].format(job=job, run_id=run_id)
    return json.loads(wait_until(lambda: key in e2e.stack.keys(key) and e2e.stack.read(key), 30, key))


def test_a_runs_ledger_record_is_what_the_history_and_the_stage_say(e2e):
    # The price alternates between 0.01 and 0.02 every 5 s over the next two minutes; the
    # first instance is reclaimed during `slow`.
    now = int(time.time())
    history = [(now - 86400, 0.0100)] + [(now + 5 * k, 0.0100 * (1 + k % 2)) for k in range(1, 24)]
    seed(e2e, history)
    e2e.stack.faults.reclaim_during = {"slow": {"after": 2, "times": 1}}
    outcome = e2e.run("ledger", {"mode": "all"})
    run_id = outcome.name
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())

    r = record_of(e2e, run_id)
    assert (r["job"], r["run_id"], r["mode"], r["status"]) == ("demo", run_id, "all", "SUCCEEDED")
    assert r["execution"].rsplit(":", 1)[-1] == run_id
    # Steps: as the history's sends and results say.
    assert [(s["name"], s["status"], s.get("exit_code"), s["attempts"]) for s in r["steps"]] == [
        ("prepare", "Success", 0, 2),
        ("quoting", "Success", 0, 1),
        ("slow", "Success", 0, 2),
        ("big-output", "Success", 0, 1),
    ]
    # Instances: the ones the stage launched, in order, where EC2 put them.
    launched = e2e.stack.instances(run_id=run_id)
    assert [i["instance_id"] for i in r["instances"]] == [i.id for i in launched]
    for mine, ec2 in zip(r["instances"], launched):
        assert (mine["instance_type"], mine["availability_zone"], mine["market"]) == (
            ec2.instance_type,
            ec2._placement.zone,
            "spot",
        )
    first, second = r["instances"]
    # The stage's reclaim ends the instance with EC2's own state reason.
    assert (first["ended_why"], first["reclaimed"], first["ended_by_ec2"]) == ("spot reclaim", True, True)
    assert (second["ended_why"], second["reclaimed"]) == ("end of run", False)
    assert [(x["instance_id"], x["error"], x["resume_at"]) for x in r["reclaims"]] == [
        (first["instance_id"], "InstanceReclaimed", "slow")
    ]
    # The cost, by hand: the reclaimed one in its first hour costs no instance time; the
    # second is billed its seconds (at least 60) at the prices in force, across the change.
    assert (first["cost"]["rule"], first["cost"]["instance_usd"]) == ("interrupted-first-hour", 0.0)
    start, end = epoch(second["launched_at"]), epoch(second["ended_at"])
    billed = max(end - start, 60)
    assert second["cost"]["billed_seconds"] == billed
    assert second["cost"]["instance_usd"] == round(by_hand(history, start, start + billed), 6)
    assert any(start < at < start + billed for at, _ in history), "the price changed during the billed time"
    gb_month = prices()["list"]["ebs_gp3_per_gb_month"] / prices()["seconds_per_month"]
    volume = sum(round(VOLUME_GB * gb_month * (epoch(i["ended_at"]) - epoch(i["launched_at"])), 6) for i in r["instances"])
    cost = r["cost"]
    assert abs(cost["volume_usd"] - volume) < 2e-6
    assert cost["instance_usd"] == second["cost"]["instance_usd"]
    assert abs(cost["total_usd"] - (cost["instance_usd"] + cost["volume_usd"] + cost["orchestration_usd"])) < 2e-6
    # Orchestration: counted from the history (every state entered is a transition).
    assert r["counts"]["transitions"] >= len(outcome.entered())
    assert cost["orchestration_usd"] > 0
    e2e.assert_nothing_left(run_id)


def test_spotstep_cost_totals_runs_and_never_shows_an_unknown_price_as_zero(e2e):
    seed(e2e, [(int(time.time()) - 3600, 0.0120)])
    priced = e2e.run("cost-a", {"mode": "quick"})
    # Prices throttled for the second run: its cost is unknown, with the reason.
    e2e.stack.faults.throttle = {"DescribeSpotPriceHistory": 1000}
    unpriced = e2e.run("cost-b", {"mode": "quick"})
    e2e.stack.faults.throttle = {}
    # A run that fails before any step still gets its record.
    early = e2e.run("cost-c", {"mode": "nope"})
    assert (priced.status, unpriced.status, early.status) == ("SUCCEEDED", "SUCCEEDED", "FAILED")

    a, b, c = (record_of(e2e, o.name) for o in (priced, unpriced, early))
    assert a["cost"]["total_usd"] > 0
    assert b["cost"]["total_usd"] is None and b["cost"]["instance_usd"] is None
    assert any("Throttled" in why for why in b["cost"]["unknown"]), b["cost"]
    assert (c["status"], c["steps"], c["instances"]) == ("FAILED", [], [])
    assert c["cost"]["instance_usd"] == 0.0 and c["cost"]["total_usd"] > 0

    shown = spotstep(e2e, "cost", "demo", "--since", "2000-01-01", SPOTSTEP_BUCKET=e2e.stack.bucket)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    row = {o.name: [l.split() for l in lines if l.startswith(f"demo/{o.name} ")][0] for o in (priced, unpriced, early)}
    assert row[priced.name][7] == f"${a['cost']['total_usd']:.4f}" and row[priced.name][8] == "ledger"
    assert row[unpriced.name][4] == "unknown" and row[unpriced.name][7] == "unknown"
    assert row[early.name][1] == "FAILED"
    # The job's total is every demo record's known total, plus the unknown ones counted.
    records = [json.loads(e2e.stack.read(k)) for k in e2e.stack.keys(contract.load()["ledger"]["prefix"].format(job="demo"))]
    known = sum(x["cost"]["total_usd"] for x in records if x["cost"]["total_usd"] is not None)
    unknown = sum(1 for x in records if x["cost"]["total_usd"] is None)
    [total] = [l.split() for l in lines[lines.index("TOTAL BY JOB") + 1 :] if l.startswith("demo ")][:1]
    assert total[:4] == ["demo", str(len(records)), "run(s)", f"${known:.4f}"]
    assert total[4:] == ["+", str(unknown), "unknown"]
    assert f"{unpriced.name}: " in shown.stdout.split("UNKNOWN COSTS", 1)[1]
    # `runs` shows the ledger's cost beside each execution.
    runs = spotstep(e2e, "runs", "demo", SPOTSTEP_BUCKET=e2e.stack.bucket)
    [line] = [l for l in runs.stdout.splitlines() if l.startswith(f"demo/{priced.name} ")]
    assert f"${a['cost']['total_usd']:.4f}" in line.split(), runs.stdout
