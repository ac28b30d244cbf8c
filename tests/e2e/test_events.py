"""The `sam local invoke` events stay true: every `events/*.json` runs through its real
binary on the local stack, and none is refused as `InvalidInput` (nor `Misconfigured`). An
event file that drifts from its handler's input shape, or from the rules its handler checks
(a run its job would refuse, an output prefix that is not the step's), fails here. This is
what proves the event files right: `sam local invoke` itself needs Docker."""

import json
from pathlib import Path

import pytest

from spotstep_local import contract

EVENTS = sorted((Path(__file__).resolve().parents[2] / "events").glob("*.json"))


def function_of(event: Path) -> str:
    """`<function>.json` or `<function>-<shape>.json`: the longest function name it starts with."""
    names = [f for f in contract.functions() if event.stem == f or event.stem.startswith(f + "-")]
    assert names, f"{event.name}: no function is named by it ({contract.functions()})"
    return max(names, key=len)


def test_every_function_has_an_event():
    assert sorted({function_of(e) for e in EVENTS}) == sorted(contract.functions())


@pytest.mark.parametrize("event", EVENTS, ids=lambda p: p.stem)
def test_the_event_is_not_refused_by_its_function(e2e, event):
    payload = json.loads(event.read_text())
    _, body, error = e2e.stack.lambdas.invoke(function_of(event), json.dumps(payload).encode())
    answer = json.loads(body or b"null")
    if error:
        assert answer["errorType"] not in ("InvalidInput", "Misconfigured"), (event.name, answer)
