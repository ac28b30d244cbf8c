"""Run a job end to end on the local emulated AWS and show it as it goes.

    python local/demo.py [--job demo] [--mode all]

Starts moto (EC2, SSM, S3, Step Functions) with the SSM agent emulation and the real Rust
Lambda binaries (target/debug), deploys the job's real state machine (local timing), runs
it, shows its progress with `spotstep watch` (the operator's view, one renderer for both),
then the result, where each step's full output is, and what is left running (nothing).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from spotstep_local import contract  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.stack import REGION, LocalStack  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(stack) -> dict:
    """What the `spotstep` CLI needs to talk to the local stack."""
    return {
        "AWS_ENDPOINT_URL": stack.endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


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
        sys.stdout.flush()
        watcher = subprocess.Popen([contract.binary(), "watch", arn], env=dict(os.environ, **cli_env(stack)))
        outcome = harness.wait(arn, timeout=900)
        watcher.wait(timeout=60)
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


if __name__ == "__main__":
    sys.exit(main())
