"""Run a job end to end on the local emulated AWS and show it as it goes.

    python local/demo.py [--job demo] [--mode all]

Starts moto (EC2, SSM, S3, Step Functions) with the SSM agent emulation and the real Rust
Lambda binaries (target/debug), deploys the job's real state machine (local timing), runs
it, prints each state entered and each step's status and duration, then the result, where
each step's full output is, and what is left running (nothing).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="demo")
    parser.add_argument("--mode", default=None, help="a mode of the job (default: the job's default mode)")
    parser.add_argument("--preflight", action="store_true")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="spotstep-local-")
    print(f"local stack: moto + SSM agent emulation + Lambda binaries; work folder {root}")
    stack = LocalStack(root, Harness.binaries(REPO))
    harness = Harness(stack, REPO)
    try:
        definition = json.loads(harness.definition(args.job))
        config_source = definition["States"][contract.state("name_the_run")]["Parameters"]["job"]["config_source"]
        stack.put_config(config_source, "# demo config\n")
        payload = {}
        if args.mode:
            payload["mode"] = args.mode
        if args.preflight:
            payload["preflight"] = True
        name = time.strftime("demo-%Y%m%dT%H%M%SZ", time.gmtime())
        started = time.time()
        arn = harness.start(args.job, name, payload)
        print(f"started execution {name} of spotstep-{args.job} with input {json.dumps(payload)}")
        outcome = harness.wait(arn, timeout=900, on_event=Printer(started).event)
        print()
        print(f"result: {outcome.status} in {time.time() - started:.0f}s")
        if outcome.status != "SUCCEEDED":
            print(f"error: {outcome.error}\n{outcome.cause_message()}")
        else:
            output = json.loads(outcome.output)
            print(f"cleanup: {json.dumps(output.get('cleanup'))}")
        print("full output of each step (kept; cleanup never deletes it):")
        s3 = stack.client("s3")
        for obj in s3.list_objects_v2(Bucket=stack.bucket, Prefix=contract.fmt("step_log_prefix").prefix("step", job=args.job, run_id=name)).get("Contents", []):
            if contract.fmt("ssm_output_key").parse(obj["Key"])["stream"] == "stdout":
                print(f"  s3://{stack.bucket}/{obj['Key']} ({obj['Size']} bytes)")
        staged = s3.list_objects_v2(Bucket=stack.bucket, Prefix=contract.fmt("staging_prefix").prefix("run_id", job=args.job)).get("KeyCount", 0)
        live = stack.live_instances()
        print(f"left behind: {len(live)} running instance(s), {staged} staging object(s)")
        return 0 if outcome.status == "SUCCEEDED" and not live and not staged else 1
    finally:
        stack.stop()


class Printer:
    """Prints states as they are entered and steps as they finish; polls are summarised."""

    def __init__(self, started: float):
        self.started = started
        self.polls = 0

    def event(self, e: dict):
        t = f"[{time.time() - self.started:6.1f}s]"
        kind = e["type"]
        if "stateEnteredEventDetails" in e:
            name = e["stateEnteredEventDetails"]["name"]
            if not contract.fmt("state_poll").match(name):
                print(f"{t} {name}")
            self.polls = 0
        elif kind == "LambdaFunctionFailed":
            details = e.get("lambdaFunctionFailedEventDetails", {})
            if details.get("error") == "StillRunning":
                self.polls += 1
                if self.polls in (1, 5) or self.polls % 20 == 0:
                    print(f"{t}   still running ({self.polls} poll(s))")
            else:
                cause = details.get("cause", "")
                try:
                    cause = json.loads(cause)["errorMessage"]
                except (ValueError, KeyError, TypeError):
                    pass
                print(f"{t}   {details.get('error')}: {cause.splitlines()[0] if cause else ''}")
        elif "stateExitedEventDetails" in e:
            details = e["stateExitedEventDetails"]
            if contract.fmt("state_poll").match(details["name"]):
                result = json.loads(details.get("output") or "{}").get("result", {})
                print(
                    f"{t}   step {result.get('step')}: {result.get('status')} "
                    f"(exit {result.get('exit_code')}) in {result.get('duration_seconds')}s"
                )
            elif details["name"] == contract.state("launch"):
                launch = json.loads(details.get("output") or "{}").get("launch", {})
                print(
                    f"{t}   instance {launch.get('instance_id')} ({launch.get('instance_type')}, "
                    f"{launch.get('market')}, {launch.get('availability_zone')}), attempt {launch.get('attempt')}"
                )


if __name__ == "__main__":
    sys.exit(main())
