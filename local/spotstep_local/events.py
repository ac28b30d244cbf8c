"""EventBridge on the local stage: the events SSM and EC2 send about a run (a command's
invocation that ended, a spot interruption warning, an instance stopping or terminating),
matched against the rules `template.yaml` deploys (read from the contract) and delivered to
their target, poll-result, the way EventBridge invokes a Lambda: asynchronously, at least
once, in no promised order. Plus the reconciler's schedule, which invokes poll-result with a
`Scheduled Event` every `every` seconds (production: every 5 minutes).

By default the stage is kind: each event is delivered at once, once, in order. The unkind
switches live on `Faults` (reset between tests): `drop_events`, `duplicate_events` (with
`duplicate_after` between copies), `delay_events` (per detail-type key: `command_invocation`,
`spot_warning`, `instance_state`) and `reorder_events` (hold every event that long, then deliver the held ones newest first).
`sent`, `delivered` and `dropped` record what happened, so a test can assert its fault fired.
"""

import datetime
import json
import threading
import time
import uuid

from . import contract
from .lambdas import ACCOUNT, REGION

TARGET = "poll-result"


def matches(pattern: dict, event: dict) -> bool:
    """EventBridge's matching for the patterns the rules use: a list holds the values the
    event's field may have; a dict matches the event's object field by field."""
    for key, wanted in pattern.items():
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(wanted, dict):
            if not matches(wanted, value or {}):
                return False
        elif value not in wanted:
            return False
    return True


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invoke(lambdas, event: dict):
    """poll-result invoked with `event`: (its answer, parsed, or None; its error or None)."""
    _, body, error = lambdas.invoke(TARGET, json.dumps(event).encode())
    try:
        return json.loads(body or b"null"), error
    except ValueError:
        return None, error


class InFlight:
    """The invocations of poll-result that have begun and whose record is not written yet.
    poll-result answers a token before its invocation returns, so an execution can end
    while the answer that ended it is still unrecorded: reading the records back first waits
    for the invocations in flight (`settle`)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0

    def __enter__(self):
        with self._cond:
            self._count += 1

    def __exit__(self, *exc):
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def settle(self, timeout: float = 30.0):
        """Waits up to `timeout` seconds until no invocation is in flight."""
        with self._cond:
            self._cond.wait_for(lambda: self._count == 0, timeout)


class EventBus:
    def __init__(self, lambdas, faults):
        self.lambdas = lambdas
        self.faults = faults
        self.rules = contract.event_rules()
        self.lock = threading.Lock()
        # (time.time(), detail-type key, event) of every event sent, matched by a rule or not.
        self.sent = []
        # (time.time(), event, poll-result's answer, its error type or None) of each delivery.
        self.delivered = []
        self.dropped = []
        self._held = []
        self._flush = None
        self._in_flight = InFlight()

    # ------------------------------------------------------------------ what AWS sends

    def command_ended(self, command_id: str, instance_id: str, status: str, requested: str):
        """SSM: `EC2 Command Invocation Status-change Notification`."""
        detail = {
            "command-id": command_id,
            "document-name": "AWS-RunShellScript",
            "instance-id": instance_id,
            "requested-date-time": requested,
            "status": status,
        }
        self.put("command_invocation", "aws.ssm", detail, [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"])

    def spot_warning(self, instance_id: str):
        """EC2: `EC2 Spot Instance Interruption Warning` (two minutes before the reclaim)."""
        when = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        detail = {"instance-id": instance_id, "instance-action": "terminate", "instance-action-time": when}
        self.put("spot_warning", "aws.ec2", detail, [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"])

    def instance_state(self, instance_id: str, state: str):
        """EC2: `EC2 Instance State-change Notification`."""
        self.put("instance_state", "aws.ec2", {"instance-id": instance_id, "state": state}, [
            f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"
        ])

    # ------------------------------------------------------------------ EventBridge

    def put(self, key: str, source: str, detail: dict, resources: list):
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": contract.detail_type(key),
            "source": source,
            "account": ACCOUNT,
            "time": _now_iso(),
            "region": REGION,
            "resources": resources,
            "detail": detail,
        }
        with self.lock:
            self.sent.append((time.time(), key, event))
        if not any(matches(rule["pattern"], event) for rule in self.rules):
            return
        drop, copies, delay = self.faults.event_plan(key)
        if drop:
            with self.lock:
                self.dropped.append(event)
            return
        for copy in range(copies):
            self._route(event, delay + copy * self.faults.duplicate_after)

    def _route(self, event: dict, delay: float):
        window = self.faults.reorder_events
        if window:
            with self.lock:
                self._held.append(event)
                if self._flush is None:
                    self._flush = threading.Timer(window, self._release)
                    self._flush.daemon = True
                    self._flush.start()
            return
        if delay:
            timer = threading.Timer(delay, self._deliver, args=(event,))
            timer.daemon = True
            timer.start()
        else:
            threading.Thread(target=self._deliver, args=(event,), daemon=True).start()

    def _release(self):
        with self.lock:
            held, self._held, self._flush = self._held, [], None
        for event in reversed(held):
            self._deliver(event)

    def _deliver(self, event: dict):
        with self._in_flight:
            answer, error = _invoke(self.lambdas, event)
            with self.lock:
                self.delivered.append((time.time(), event, answer, error))

    # ------------------------------------------------------------------ reading it back

    def answered(self, via: str = None) -> list:
        """The answers poll-result gave (`{run_id, step, round, answer, taken}`), in order:
        all, or only those of deliveries of detail-type key `via`; deliveries in flight first
        finish."""
        self._in_flight.settle()
        wanted = contract.detail_type(via) if via else None
        out = []
        with self.lock:
            deliveries = list(self.delivered)
        for _, event, answer, error in deliveries:
            if error is None and isinstance(answer, dict) and (wanted is None or event["detail-type"] == wanted):
                out.extend(answer.get("answered", []))
        return out


class Reconciler:
    """The reconciler's schedule: poll-result with a `Scheduled Event` every `every` seconds
    while `Faults.reconcile` is on; `runs` holds (time.time(), answered list, error)."""

    def __init__(self, lambdas, faults, every: float):
        self.lambdas = lambdas
        self.faults = faults
        self.every = every
        self.runs = []
        self._in_flight = InFlight()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self._stop.wait(self.every):
            if self.faults.reconcile:
                self.run_once()

    def run_once(self) -> list:
        event = {"detail-type": contract.detail_type("scheduled"), "source": "aws.scheduler", "detail": {}}
        with self._in_flight:
            answer, error = _invoke(self.lambdas, event)
            answered = answer.get("answered", []) if isinstance(answer, dict) and not error else []
            self.runs.append((time.time(), answered, error))
        return answered

    def answered(self) -> list:
        """The answers of every tick, in order; a tick in flight first finishes."""
        self._in_flight.settle()
        return [a for _, answered, _ in self.runs for a in answered]

    def stop(self):
        self._stop.set()
