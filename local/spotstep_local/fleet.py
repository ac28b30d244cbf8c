"""CreateFleet at the front door: what moto does not do for `instant` fleets.

moto answers an instant fleet with `FleetId` and `Instances` only: never `Errors`, no capacity
model, and without `diversified` it takes the first (cheapest-priced) override. EC2 answers
HTTP 200 with the instances and, in the same answer, an `Errors` list per pool: no capacity is
an answer with only `Errors`, and `Errors` also carries `RequestLimitExceeded` and
`UnauthorizedOperation`. The front door (stack.py) decides with `Faults` which pools err, sends
moto the request with only the pool that launches (price-capacity-optimized emulated as the
first pool with capacity, in request order), and adds the `Errors` to moto's answer.
"""

import re
import urllib.parse
import uuid
from xml.sax.saxutils import escape

OVERRIDE = re.compile(r"^LaunchTemplateConfigs\.1\.Overrides\.(\d+)\.(.+)$")
MARKET = "TargetCapacitySpecification.DefaultTargetCapacityType"


def parse(body: bytes):
    """(the form's pairs, the market, [(override number, instance type, subnet)])."""
    pairs = urllib.parse.parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
    overrides = {}
    for key, value in pairs:
        m = OVERRIDE.match(key)
        if m:
            overrides.setdefault(int(m.group(1)), {})[m.group(2)] = value
    market = dict(pairs).get(MARKET, "on-demand")
    pools = [(n, o.get("InstanceType", ""), o.get("SubnetId", "")) for n, o in sorted(overrides.items())]
    return pairs, market, pools


def keep_only(pairs, number: int) -> bytes:
    """The request with override `number` alone (renumbered 1)."""
    out = []
    for key, value in pairs:
        m = OVERRIDE.match(key)
        if m:
            if int(m.group(1)) != number:
                continue
            key = f"LaunchTemplateConfigs.1.Overrides.1.{m.group(2)}"
        out.append((key, value))
    return urllib.parse.urlencode(out).encode()


def _error_items(errors, market: str) -> str:
    items = []
    for instance_type, subnet, code, message in errors:
        pool = ""
        if instance_type:
            pool = (
                "<launchTemplateAndOverrides><overrides>"
                f"<instanceType>{escape(instance_type)}</instanceType><subnetId>{escape(subnet)}</subnetId>"
                "</overrides></launchTemplateAndOverrides>"
            )
        items.append(
            f"<item>{pool}<lifecycle>{escape(market)}</lifecycle>"
            f"<errorCode>{escape(code)}</errorCode><errorMessage>{escape(message)}</errorMessage></item>"
        )
    return f"<errorSet>{''.join(items)}</errorSet>"


def with_errors(moto_answer: bytes, errors, market: str) -> bytes:
    """moto's CreateFleet answer with `errors` [(type, subnet, code, message)] as its `Errors`."""
    text = moto_answer.decode()
    close = "</CreateFleetResponse>"
    at = text.rindex(close)
    return (text[:at] + _error_items(errors, market) + text[at:]).encode()


def only_errors(errors, market: str) -> bytes:
    """An HTTP 200 CreateFleet answer without instances: only `errors`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>{uuid.uuid4()}</requestId><fleetId>fleet-{uuid.uuid4().hex[:17]}</fleetId>"
        f"{_error_items(errors, market)}<fleetInstanceSet/></CreateFleetResponse>"
    ).encode()
