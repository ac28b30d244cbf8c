"""poll-result written in Python with boto3: the benchmark's baseline.

The same behaviour as the `<step>: poll` entry of `src/handlers/poll_result.rs` (the fallback
poll of a step whose wait timed out, input `{run, job, instance, step}`), written the way a
Python Lambda would be: the boto3 clients are created at import (init), once per execution
environment. Only that entry: the event and reconciler entries (which answer task tokens) are
not in the baseline, and the benchmark times them for Rust only.

- the step's latest send marker: every marker of the run (S3 ListObjectsV2 of the run's
  `sent/` prefix, GetObject of each, as the Rust side reads them), the highest round of the
  step; none, none with a command, or one on another instance: `StepFailed`;
- `GetCommandInvocation` of the marker's command;
  `InvocationDoesNotExist`: check the instance (gone -> InstanceLost/InstanceReclaimed), then
  `StillRunning` within the registration grace, `StepFailed` after it;
- classify Status / StatusDetails / ResponseCode as `src/status.rs` does;
- running: check the instance, then `StillRunning`;
- success: the step's result (status, exit code, duration, where the full output is), and
  the EMF heartbeat lines of a workload step outside preflight;
- failure: check the instance, then `StepFailed` with the last 40 lines of the full output
  read from S3 (a ranged GET of the last 64 KiB), falling back to SSM's truncated head.

Errors carry spotstep's stable names as their class names, which the Python runtime
reports as `errorType` (what the state machine's Retry/Catch match on).
"""

import datetime
import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

TAIL_LINES = 40
TAIL_BYTES = 64 * 1024

# --- init: clients built once, as in production (default credential and region chain,
# `AWS_ENDPOINT_URL` honoured by botocore; path-style S3 against an emulator) -------------
_EMULATED = "AWS_ENDPOINT_URL" in os.environ
SSM = boto3.client("ssm")
EC2 = boto3.client("ec2")
S3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}) if _EMULATED else None)
BUCKET = os.environ.get("SPOTSTEP_BUCKET", "").strip()
# The key layouts the Rust side owns (`spotstep contract`: the `step_log_prefix` and
# `ssm_output_key` templates), given by the benchmark; without them the init fails.
LOG_PREFIX_TEMPLATE = os.environ["SPOTSTEP_STEP_LOG_PREFIX_TEMPLATE"]
OUTPUT_KEY_TEMPLATE = os.environ["SPOTSTEP_SSM_OUTPUT_KEY_TEMPLATE"]
# The `send_marker_key` template ({job}, {run_id}, {step}, {round}); the run's markers are under
# its text before `{step}`.
MARKER_KEY_TEMPLATE = os.environ["SPOTSTEP_SEND_MARKER_KEY_TEMPLATE"]


def _grace(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise Misconfigured(f"{name}=`{raw}` is not a positive number of seconds")
    return int(raw)


class SpotstepError(Exception):
    pass


class InvalidInput(SpotstepError):
    pass


class Misconfigured(SpotstepError):
    pass


class StillRunning(SpotstepError):
    pass


class StepFailed(SpotstepError):
    pass


class InstanceLost(SpotstepError):
    pass


class InstanceReclaimed(SpotstepError):
    pass


class Throttled(SpotstepError):
    pass


class AwsError(SpotstepError):
    pass


REGISTRATION_GRACE = _grace("SPOTSTEP_REGISTRATION_GRACE", 300)

THROTTLING = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "SlowDown", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException",
}
RECLAIM_SPOT_CODES = {
    "instance-terminated-no-capacity", "instance-terminated-by-price",
    "instance-terminated-capacity-oversubscribed", "instance-stopped-no-capacity",
    "instance-stopped-by-price", "instance-stopped-capacity-oversubscribed", "marked-for-termination",
}
RECLAIM_REASON_CODES = {"Server.SpotInstanceTermination", "Server.InsufficientInstanceCapacity"}
HINTS = {
    "ExitCode": "the step's script exited non-zero; read its output below",
    "ExecutionTimedOut": "the step ran longer than its timeout_seconds and was stopped; raise the timeout in the job manifest if the work is legitimately longer",
    "DeliveryTimedOut": "the command never reached the instance's SSM agent (agent stopped or instance unreachable)",
    "AgentLost": "the script never ran or the SSM agent was lost while it ran",
    "Cancelled": "the command was cancelled (by an operator or by cleanup)",
    "Undeliverable": "SSM could not deliver the command to the instance",
    "Unknown": "SSM reported a status spotstep does not know",
}


def _sdk_error(what: str, e: ClientError) -> SpotstepError:
    code = e.response.get("Error", {}).get("Code", "")
    message = e.response.get("Error", {}).get("Message", "")
    detail = f"{code}: {message}"
    if code in THROTTLING:
        return Throttled(f"{what} was throttled ({detail}); the state machine retries it")
    return AwsError(f"{what} failed: {detail}")


def classify(status: str, details: str, code: int):
    """('running'|'succeeded'|'failed', failure kind)."""
    if status in ("Pending", "InProgress", "Delayed", "Cancelling"):
        return "running", None
    if status == "Success":
        return "succeeded", None
    if status == "Failed":
        if code == -1:
            return "failed", "AgentLost"
        if details in ("Undeliverable", "Invalid Platform", "Access Denied", "Terminated"):
            return "failed", "Undeliverable"
        return "failed", "ExitCode"
    if status == "TimedOut":
        if details == "Delivery Timed Out":
            return "failed", "DeliveryTimedOut"
        if code == -1 and details != "Execution Timed Out":
            return "failed", "AgentLost"
        return "failed", "ExecutionTimedOut"
    if status == "Cancelled":
        return "failed", "Cancelled"
    return "failed", "Unknown"


def ensure_alive(instance_id: str):
    try:
        out = EC2.describe_instances(InstanceIds=[instance_id])
        found = [i for r in out.get("Reservations", []) for i in r.get("Instances", []) if i.get("InstanceId") == instance_id]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "InvalidInstanceID.NotFound":
            found = []
        else:
            raise _sdk_error(f"DescribeInstances {instance_id}", e)
    if not found:
        raise InstanceLost(f"instance {instance_id} is gone: EC2 no longer knows the instance; the state machine relaunches and resumes at this step")
    inst = found[0]
    spot_code = None
    if inst.get("SpotInstanceRequestId"):
        try:
            reqs = EC2.describe_spot_instance_requests(SpotInstanceRequestIds=[inst["SpotInstanceRequestId"]])
            spot_code = (reqs.get("SpotInstanceRequests") or [{}])[0].get("Status", {}).get("Code")
        except ClientError:
            spot_code = None
    state = inst.get("State", {}).get("Name")
    if state in ("pending", "running") and spot_code != "marked-for-termination":
        return
    reason = inst.get("StateReason", {}).get("Code")
    transition = inst.get("StateTransitionReason") or ""
    reclaim = (
        spot_code in RECLAIM_SPOT_CODES
        or reason in RECLAIM_REASON_CODES
        or (state in ("shutting-down", "terminated") and "Service initiated" in transition)
    )
    why = (f"spot request status {spot_code}" if spot_code in RECLAIM_SPOT_CODES else None) or (
        f"state reason {reason}" if reason else None) or transition or "no reason given"
    detail = f"the instance is {state} ({why})"
    if reclaim:
        raise InstanceReclaimed(f"instance {instance_id} was reclaimed by EC2 spot: {detail}; the state machine relaunches and resumes at this step")
    raise InstanceLost(f"instance {instance_id} is gone: {detail}; the state machine relaunches and resumes at this step")


def tail_lines(text: str, n: int) -> str:
    if n == 0:
        return ""
    text = text[:-1] if text.endswith("\n") else text
    return "\n".join(text.split("\n")[-n:])


def _parse_time(value):
    if isinstance(value, datetime.datetime):
        return value
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def markers(job: str, run_id: str) -> list:
    """Every readable send marker of the run, in key order."""
    prefix = MARKER_KEY_TEMPLATE.split("{step}", 1)[0].format(job=job, run_id=run_id)
    out = []
    try:
        for page in S3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                try:
                    text = S3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                        continue
                    raise _sdk_error(f"S3 GetObject {obj['Key']}", e)
                try:
                    marker = json.loads(text)
                except ValueError:
                    continue
                if marker.get("run", {}).get("run_id") == run_id and marker.get("run", {}).get("job") == job:
                    out.append(marker)
    except ClientError as e:
        raise _sdk_error(f"S3 ListObjectsV2 {prefix}", e)
    return out


def lambda_handler(event, context):
    try:
        run, job, instance, step = (event[k] for k in ("run", "job", "instance", "step"))
        step_name = step["name"]
        run_id = run["run_id"]
    except (KeyError, TypeError) as e:
        raise InvalidInput(f"malformed poll-result input: missing {e}")
    if not BUCKET:
        raise Misconfigured("missing deployment setting(s): SPOTSTEP_BUCKET (set them as the function's environment; see template.yaml)")
    mine = [m for m in markers(job["name"], run_id) if m.get("step", {}).get("name") == step_name]
    if not mine:
        raise StepFailed(f"step `{step_name}` has no record of a send (its send marker is gone); redrive the execution to send it again")
    marker = max(mine, key=lambda m: m.get("round", 0))
    command = marker.get("command")
    if not command:
        raise StepFailed(
            f"step `{step_name}` was never sent: its send marker (round {marker.get('round')}) records no command; "
            "redrive the execution to send it again"
        )
    if command["instance_id"] != instance["instance_id"]:
        raise StepFailed(
            f"step `{step_name}`'s last command {command['command_id']} ran on instance {command['instance_id']}, "
            f"not on the run's instance {instance['instance_id']}; redrive the execution to send it again"
        )
    step, run = marker["step"], marker["run"]
    instance_id = command["instance_id"]
    command_id = command["command_id"]
    log_prefix = LOG_PREFIX_TEMPLATE.format(job=job["name"], run_id=run["run_id"], step=step_name)
    key = OUTPUT_KEY_TEMPLATE.format(log_prefix=log_prefix, command_id=command_id, instance_id=instance_id, stream="stdout")
    uri = f"s3://{BUCKET}/{key}"
    try:
        inv = SSM.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
            raise _sdk_error(f"GetCommandInvocation of step {step_name}", e)
        ensure_alive(instance_id)
        sent = _parse_time(command.get("sent_at"))
        age = int(time.time() - sent.timestamp()) if sent else 0
        if age < REGISTRATION_GRACE:
            raise StillRunning(f"step {step_name} was sent {age}s ago and is not registered yet")
        raise StepFailed(
            f"step `{step_name}` failed: its command {command_id} was never registered on instance {instance_id} "
            f"({age}s after sending). Redrive the execution to send it again"
        )
    status = inv.get("Status", "")
    details = inv.get("StatusDetails", "")
    code = inv.get("ResponseCode", -1)
    verdict, failure = classify(status, details, code)
    if verdict == "running":
        ensure_alive(instance_id)
        raise StillRunning(f"step {step_name} is {status} ({details})")
    if verdict == "succeeded":
        start, end = _parse_time(inv.get("ExecutionStartDateTime")), _parse_time(inv.get("ExecutionEndDateTime"))
        duration = int((end - start).total_seconds()) if start and end else 0
        if step.get("kind") == "workload" and not run.get("preflight"):
            now_ms = int(time.time() * 1000)
            for process in step.get("heartbeats") or []:
                print(json.dumps({
                    "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{"Namespace": "AlphaEngine", "Dimensions": [["Process"]],
                                                                         "Metrics": [{"Name": "Heartbeat", "Unit": "Count"}]}]},
                    "Process": process, "Heartbeat": 1,
                }))
        print(json.dumps({"level": "INFO", "message": "step succeeded", "step": step_name, "instance_id": instance_id, "duration_seconds": duration}))
        return {
            "step": step_name,
            "status": status,
            "exit_code": code,
            "duration_seconds": duration,
            "output": uri,
            "command_id": command_id,
            "instance_id": instance_id,
        }
    ensure_alive(instance_id)
    try:
        body = S3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes=-{TAIL_BYTES}")["Body"].read()
        tail = tail_lines(body.decode("utf-8", "replace"), TAIL_LINES)
    except ClientError as e:
        why = e.response.get("Error", {}).get("Code", "unreadable")
        tail = (
            f"(the full output could not be read from S3: {why}; these are the last lines of the first 24,000 characters SSM returns)\n"
            + tail_lines(inv.get("StandardOutputContent", ""), TAIL_LINES)
        )
    raise StepFailed(
        f"step `{step_name}` failed: status {status} ({details}), exit code {code}: {HINTS[failure]}. "
        f"Full output: {uri}. Fix the cause, then redrive the execution: it reruns this step "
        f"(on a fresh instance, after the setup steps) and keeps the steps that finished.\n"
        f"--- last {TAIL_LINES} lines of output ---\n{tail}"
    )
