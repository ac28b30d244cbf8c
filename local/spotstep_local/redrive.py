"""Step Functions' RedriveExecution at the stack's front door, and a redriven execution as
Step Functions shows it afterwards.

moto has no RedriveExecution. The front door answers the real call (the JSON protocol's
`AWSStepFunctions.RedriveExecution`, as the CLI and the console send it) with the harness's
emulated redrive (`Harness.redrive`: the failed state runs again in a derived execution),
and refuses what AWS refuses: `ExecutionDoesNotExist` for an unknown execution,
`ExecutionNotRedrivable` for one that is RUNNING or SUCCEEDED.

A redriven execution keeps its ARN on AWS. The harness mirrors the round that runs now onto
that (logical) execution's status; the front door adds the rest of what AWS shows for it:
DescribeExecution carries `redriveCount` and `redriveDate`, and GetExecutionHistory is one
history that goes on after the failure: an `ExecutionRedriven` event, then the redriven
round's events (its own `ExecutionStarted` left out), numbered on from the original's.
Only callers through the front door (the Rust functions and the CLI) see this; the harness
and the tests' boto3 clients talk to moto directly and see the derived executions.
"""

import threading
import time

from botocore.exceptions import ClientError

TARGET_PREFIX = "AWSStepFunctions."
# The statuses an execution can be redriven from.
REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
# AWS's default GetExecutionHistory page size.
DEFAULT_PAGE = 100


class Refused(Exception):
    """An error answer of the Step Functions API: its code (`__type`) and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Redrives:
    """The Step Functions calls about redrive that the front door answers itself."""

    def __init__(self, stack):
        self.stack = stack
        self.lock = threading.Lock()

    def answer(self, operation: str, body: dict, fetch):
        """The answer (a dict) to `operation`, or None when moto's own answer stands.
        `fetch(operation, body)` asks moto: (HTTP status, parsed JSON). Raises `Refused`."""
        if operation == "RedriveExecution":
            return self.redrive(body.get("executionArn", ""))
        if operation not in ("DescribeExecution", "GetExecutionHistory"):
            return None
        rounds = self.rounds(body.get("executionArn", ""))
        if not rounds:
            return None
        if operation == "DescribeExecution":
            return self.describe(body, rounds, fetch)
        return self.history(body, rounds, fetch)

    def rounds(self, logical: str) -> list:
        """The derived executions that carried `logical` on, oldest first."""
        harness = self.stack.harness
        if harness is None:
            return []
        return [derived for derived, of in list(harness.redrives.items()) if of == logical]

    def redrive(self, arn: str) -> dict:
        harness = self.stack.harness
        if harness is None:
            raise Refused("ExecutionNotRedrivable", "the local stack has no harness to emulate redrive with")
        try:
            logical = harness.logical_arn(arn)
            status = harness.sfn.describe_execution(executionArn=logical)["status"]
        except ClientError as e:
            error = e.response.get("Error", {})
            raise Refused(error.get("Code", "ExecutionDoesNotExist"), error.get("Message", "")) from e
        if status not in REDRIVABLE:
            raise Refused("ExecutionNotRedrivable", f"Execution is {status} and cannot be redriven.")
        with self.lock:
            rounds = self.rounds(logical)
            harness.redrive(rounds[-1] if rounds else logical)
        return {"redriveDate": time.time()}

    @staticmethod
    def _moto(fetch, operation: str, body: dict) -> dict:
        status, out = fetch(operation, body)
        if status != 200:
            raise Refused(out.get("__type", "InternalServerError").rsplit("#", 1)[-1], out.get("message", str(out)))
        return out

    def describe(self, body: dict, rounds: list, fetch) -> dict:
        out = self._moto(fetch, "DescribeExecution", body)
        last = self._moto(fetch, "DescribeExecution", {"executionArn": rounds[-1]})
        out["redriveCount"] = len(rounds)
        out["redriveDate"] = last["startDate"]
        return out

    def _events(self, fetch, arn: str, with_data) -> list:
        events, token = [], None
        while True:
            body = {"executionArn": arn}
            if with_data is not None:
                body["includeExecutionData"] = with_data
            if token:
                body["nextToken"] = token
            page = self._moto(fetch, "GetExecutionHistory", body)
            events.extend(page.get("events", []))
            token = page.get("nextToken")
            if not token:
                return events

    def history(self, body: dict, rounds: list, fetch) -> dict:
        with_data = body.get("includeExecutionData")
        events = self._events(fetch, body["executionArn"], with_data)
        for count, derived in enumerate(rounds, start=1):
            own = self._events(fetch, derived, with_data)
            if not own:
                continue
            redriven_id = len(events) + 1
            events.append(
                {
                    "id": redriven_id,
                    "previousEventId": events[-1]["id"] if events else 0,
                    "timestamp": own[0]["timestamp"],
                    "type": "ExecutionRedriven",
                    "executionRedrivenEventDetails": {"redriveCount": count},
                }
            )
            # The derived round's ids, numbered on; its ExecutionStarted is the redriven event.
            ids = {own[0]["id"]: redriven_id}
            for event in own[1:]:
                ids[event["id"]] = len(events) + 1
                event = dict(event, id=ids[event["id"]])
                if "previousEventId" in event:
                    event["previousEventId"] = ids.get(event["previousEventId"], redriven_id)
                events.append(event)
        if body.get("reverseOrder"):
            events.reverse()
        start = int(body.get("nextToken") or 0)
        size = int(body.get("maxResults") or DEFAULT_PAGE)
        page = {"events": events[start : start + size]}
        if start + size < len(events):
            page["nextToken"] = str(start + size)
        return page
