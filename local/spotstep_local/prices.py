"""The stage's spot price history, answered at the front door for DescribeSpotPriceHistory.

moto 5.2.1 answers every DescribeSpotPriceHistory with one constant price (0.00001) stamped
2006-01-02, whatever the window, product or zone. The ledger's cost needs what AWS answers:
for a window, the change in force at its start plus every change inside it, in the product
asked. So the stage keeps a seeded history per (instance type, availability zone): a base
price per type and zone that doubles in every other `PERIOD_SECONDS` slot of epoch time,
so a run of more than a few seconds sees price changes. A test can replace the history of a
pool (`Faults.spot_prices`) to compute a run's cost by hand; an empty one is a pool without
history.
"""

import datetime
import urllib.parse
from xml.sax.saxutils import escape

# The seeded price changes every PERIOD_SECONDS (epoch-aligned slots).
PERIOD_SECONDS = 20
# Base spot prices (USD per hour) of the types the jobs use; any other type gets DEFAULT_BASE.
BASE = {"t3.micro": 0.0031, "t3.small": 0.0062, "c5.large": 0.035, "m5.large": 0.04, "c6i.large": 0.036, "c5a.large": 0.032}
DEFAULT_BASE = 0.01
# Each zone's factor over the base (by its last letter).
ZONE_FACTOR = {"a": 1.0, "b": 1.1, "c": 1.2}


def seeded(instance_type: str, zone: str, start: float, end: float) -> list:
    """The seeded history of a pool from the slot in force at `start` to `end`: [(t, usd)]."""
    base = BASE.get(instance_type, DEFAULT_BASE) * ZONE_FACTOR.get(zone[-1:], 1.0)
    first = int(start // PERIOD_SECONDS) * PERIOD_SECONDS
    return [
        (t, round(base * (2 if (t // PERIOD_SECONDS) % 2 else 1), 6))
        for t in range(first, int(end) + 1, PERIOD_SECONDS)
    ]


def window(changes: list, start: float, end: float) -> list:
    """What AWS returns for [start, end]: the last change at or before `start`, then every
    change inside the window, oldest first."""
    changes = sorted(changes)
    before = [c for c in changes if c[0] <= start][-1:]
    return before + [c for c in changes if start < c[0] <= end]


def _time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def answer(form: dict, overrides: dict, product: str) -> bytes:
    """The DescribeSpotPriceHistory answer (EC2 query XML) to `form` (the parsed request):
    each asked type in the asked zone, over the asked window, from `overrides[(type, zone)]`
    when a test set it, else the seeded history. Only `product` has prices."""
    types = [v[0] for k, v in form.items() if k.startswith("InstanceType.")]
    zone = form.get("AvailabilityZone", [""])[0]
    products = [v[0] for k, v in form.items() if k.startswith("ProductDescription.")]
    start = _time(form["StartTime"][0]) if "StartTime" in form else 0.0
    end = _time(form["EndTime"][0]) if "EndTime" in form else start
    items = []
    if not products or product in products:
        for instance_type in types:
            key = (instance_type, zone)
            changes = overrides[key] if key in overrides else seeded(instance_type, zone, start, end)
            for t, usd in reversed(window(changes, start, end)):
                stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                items.append(
                    f"<item><instanceType>{escape(instance_type)}</instanceType>"
                    f"<productDescription>{escape(product)}</productDescription>"
                    f"<spotPrice>{usd:.6f}</spotPrice><timestamp>{stamp}</timestamp>"
                    f"<availabilityZone>{escape(zone)}</availabilityZone></item>"
                )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>local</requestId>"
        f"<spotPriceHistorySet>{''.join(items)}</spotPriceHistorySet><nextToken></nextToken>"
        "</DescribeSpotPriceHistoryResponse>"
    ).encode()


def parse(body: bytes) -> dict:
    return urllib.parse.parse_qs(body.decode(errors="replace"))
