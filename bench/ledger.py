"""What the run ledger says a production data-weekly run costs, split into the instance, its
root volume and the orchestration: the token design's modeled run of bench/cost.py (from the
local execution in bench/events.json), under the ledger's rules (src/cost.rs): the instance
billed its seconds (ended by spotstep, not interrupted; at least 60 s), the 30 GB gp3 volume
its share of a 730-hour GB-month, the orchestration at the contract's list prices.

Rerun: `.local/emu/bin/python bench/ledger.py` (reads bench/events.json, writes
bench/ledger.json), then `python bench/report.py`.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "local"))
sys.path.insert(0, HERE)

from spotstep_local import contract  # noqa: E402

import cost  # noqa: E402


def split(events: dict) -> dict:
    """The cost split of the modeled data-weekly run in `events` (bench/events.json)."""
    token = events["cost"]["token"]
    usd = token["usd"]
    seconds = token["run_seconds"]
    prices = contract.load()["prices"]
    a = cost.ASSUMPTIONS
    # The ledger's rules: ended by spotstep at the end of the run, so its seconds (>= 60).
    billed = max(seconds, 60)
    instance = a["spot_price_per_hour"] * billed / 3600
    volume = a["root_volume_gb"] * prices["list"]["ebs_gp3_per_gb_month"] * seconds / prices["seconds_per_month"]
    orchestration = usd["orchestration"]
    total = instance + volume + orchestration
    return {
        "run_seconds": seconds,
        "instance_type": a["spot_instance_type"],
        "spot_price_per_hour": a["spot_price_per_hour"],
        "root_volume_gb": a["root_volume_gb"],
        "transitions": token["state_transitions"],
        "lambda_invocations": token["lambda_invocations"],
        "reconciler_ticks": token["reconciler_ticks"],
        "usd": {"instance": instance, "volume": volume, "orchestration": orchestration, "total": total},
        "share": {"instance": instance / total, "volume": volume / total, "orchestration": orchestration / total},
        "prices_as_of": prices["list"]["as_of"],
        "events_from": events.get("date_utc"),
    }


def table(s: dict) -> list:
    """The BENCHMARKS.md rows of the split."""
    u, sh = s["usd"], s["share"]
    return [
        "| part | USD | share | rule |",
        "|---|---|---|---|",
        f"| instance ({s['instance_type']}, spot ${s['spot_price_per_hour']}/h) | {u['instance']:.4f} | {sh['instance']:.1%}"
        " | its seconds (ended by spotstep; an EC2 interruption in the first hour would be free) |",
        f"| root volume ({s['root_volume_gb']} GB gp3) | {u['volume']:.4f} | {sh['volume']:.1%} | its GB-month share over its lifetime |",
        f"| orchestration ({s['transitions']} transitions, {s['lambda_invocations']} Lambda invocations, "
        f"{s['reconciler_ticks']} scheduler ticks) | {u['orchestration']:.4f} | {sh['orchestration']:.1%} | list prices of {s['prices_as_of']} |",
        f"| **total** | **{u['total']:.4f}** | | |",
        "",
    ]


def main():
    with open(os.path.join(HERE, "events.json")) as f:
        events = json.load(f)
    result = {"command": "python bench/ledger.py", "split": split(events)}
    with open(os.path.join(HERE, "ledger.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result["split"]["usd"]))


if __name__ == "__main__":
    main()
