"""Secrets stay out of history, end to end (see conftest.py for the stack and the harness).

The `secretleak` job (tests/e2e/jobs/secretleak) names one SSM parameter in `[secrets]`; its
setup step prints the value and its workload step prints it alone, embedded in text and in a
`set -x` trace, then fails. The value is put in the local Parameter Store here; the runner on
the emulated instance reads it with the instance's `aws` CLI and masks it in everything the
steps print. It must appear nowhere outside the instance's memory.
"""

import hashlib
import json
import uuid
from pathlib import Path

JOB = "secretleak"
PARAMETER = "/spotstep-e2e/leak-token"


def prepare(e2e):
    """The job's config object and a Parameter Store client (moto's, directly)."""
    e2e.stack.put_config(e2e.harness.config_source(JOB), f"# {JOB} config for the e2e tests\n")
    return e2e.stack.client("ssm")


def every_s3_object(e2e):
    """{(bucket, key): bytes} of every object in every bucket of the local stack."""
    s3 = e2e.stack.client("s3")
    objects = {}
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for key in e2e.stack.keys("", bucket=bucket):
            objects[(bucket, key)] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return objects


def files_under(root: Path):
    """{path: bytes} of every file under `root`."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_secret_reaches_its_steps_and_appears_nowhere_else(e2e):
    ssm = prepare(e2e)
    core = uuid.uuid4().hex
    # Regex and sed metacharacters and slashes (quotes, backslashes and newlines are covered by
    # the unit tests of the filter); JSON writes all of these unescaped, so a leak into the
    # history would show the value as it is. `core` alone is searched for too.
    secret = f"S3cr3t.*[x]^$/a|b+(c)?&-{core}"
    ssm.put_parameter(Name=PARAMETER, Value=secret, Type="SecureString", Overwrite=True)

    outcome = e2e.run("secret", job=JOB)
    run_id = outcome.name

    assert outcome.status == "FAILED", (outcome.error, outcome.cause_message())
    assert outcome.failed_state() == "leak: failed"
    assert outcome.error == "StepFailed"
    prepare_cmd, leak_cmd = e2e.commands(run_id)
    assert (prepare_cmd.step, prepare_cmd.status) == ("prepare", "Success")
    assert (leak_cmd.step, leak_cmd.status, leak_cmd.response_code) == ("leak", "Failed", 7)

    # The steps got the value intact (its hash), and printed it masked.
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert prepare_cmd.stdout == "prepare: the token is ***\n"
    assert leak_cmd.stdout == (
        "***\n"
        "leak: embedded [***] in text\n"
        "+ : '***'\n"
        f"leak: sha256 {digest}\n"
        "leak: about to exit 7\n"
    ), leak_cmd.stdout

    # The failure message carries the masked output.
    cause = outcome.cause_message()
    assert cause.startswith("step `leak` failed: status Failed (Failed), exit code 7"), cause
    assert "\n***\nleak: embedded [***] in text\n" in cause, cause
    assert cause.rstrip().endswith("leak: about to exit 7"), cause

    def leaks(text) -> bool:
        if isinstance(text, bytes):
            return secret.encode() in text or core.encode() in text
        return secret in text or core in text

    # Not in the execution history: every event, every field (the step inputs carry the
    # parameter's name, never its value).
    events = e2e.harness.history(outcome.arn)
    assert len(events) > 20
    dumped = [json.dumps(e, default=str, ensure_ascii=False) for e in events]
    assert [d for d in dumped if leaks(d)] == []
    assert any(PARAMETER in d for d in dumped), "the step inputs name the parameter"
    assert any("***" in d for d in dumped)

    # Not in the function logs.
    logs = files_under(Path(e2e.stack.root) / "logs")
    assert {p.name for p in logs} >= {"send-step.log", "poll-result.log", "cleanup.log"}, sorted(logs)
    assert [str(p) for p, data in logs.items() if leaks(data)] == []

    # Not in SSM's inline output.
    for command in (prepare_cmd, leak_cmd):
        invocation = e2e.ssm.get_command_invocation(CommandId=command.command_id, InstanceId=command.instance_id)
        assert invocation["StandardOutputContent"] == command.stdout
        assert not leaks(invocation["StandardOutputContent"] + invocation["StandardErrorContent"])

    # Not in any S3 object (SSM's output objects and the health log included: they hold the
    # masked output).
    objects = every_s3_object(e2e)
    assert [k for k, data in objects.items() if leaks(data)] == []
    bucket = e2e.stack.bucket
    [stdout_key] = [k for k in e2e.log_keys(JOB, run_id, "leak") if k.endswith("/stdout")]
    assert objects[(bucket, stdout_key)].decode() == leak_cmd.stdout
    run_date = e2e.exited(outcome, "Name the run")[0]["run"]["run_date"]
    health = e2e.health_logs("leak", run_date)
    assert list(health.values()) == [leak_cmd.stdout], health

    # Not on the instance's disk either: the runner holds the value in memory only.
    [instance] = e2e.stack.instances(run_id=run_id)
    disk = files_under(Path(e2e.stack.root) / "instances" / instance.id)
    assert any(p.name == "run.sh" for p in disk)
    assert [str(p) for p, data in disk.items() if leaks(data)] == []

    e2e.assert_nothing_left(run_id)


def test_a_missing_parameter_fails_the_step_naming_it(e2e):
    ssm = prepare(e2e)
    try:
        ssm.delete_parameter(Name=PARAMETER)
    except ssm.exceptions.ParameterNotFound:
        pass

    outcome = e2e.run("no-secret", job=JOB)
    run_id = outcome.name

    assert outcome.status == "FAILED"
    assert outcome.failed_state() == "prepare: failed"
    assert outcome.error == "StepFailed"
    cause = outcome.cause_message()
    assert cause.startswith("step `prepare` failed: status Failed (Failed), exit code 1"), cause
    assert f"An error occurred (ParameterNotFound) when calling the GetParameter operation: Parameter {PARAMETER} not found." in cause
    assert cause.rstrip().endswith(
        f"spotstep: cannot read secret LEAK_TOKEN from SSM parameter {PARAMETER} (the aws error is above)"
    ), cause
    assert "prepare: the token is" not in cause, "the step body never started"
    assert e2e.steps_ran(run_id) == ["prepare"]
    e2e.assert_nothing_left(run_id)
