"""The contract as Python reads it: formats round-trip, Rust-made strings parse, mismatches
fail loudly, and the stage's users of the contract refuse what does not match."""

import json
import os
import subprocess

import pytest

from spotstep_local import contract
from spotstep_local.agent import CommandRun
from spotstep_local.harness import substitute

REPO = contract.REPO
STEP = "a234567890-234567890-234567890-234567890"
RUN_ID = "R_34567890-234567890-234567890-234567890-234567890-234567890-234567890-234567890"
COMMAND = "0f8fad5b-d9cb-469f-a165-70867728950e"


def definition(job: str = "demo", *flags) -> dict:
    done = subprocess.run(
        [contract.binary(), "asl", os.path.join(REPO, "jobs", job), *flags], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_every_format_round_trips_with_the_longest_names():
    values = {
        "job": STEP,
        "step": STEP,
        "run_id": RUN_ID,
        "run_hash": "0123456789abcdef",
        "round": "4294967295",
        # A sweep's largest shard index (at most 1,000 shards).
        "shard": "999",
        "lane_state": "wait for agent",
        "command_id": COMMAND,
        "instance_id": "i-0123456789abcdef0",
        "stream": "stderr",
        "run_date": "2026-11-28",
        "prefix": "alpha-engine-data-weekly",
        "yyyymmdd": "20261128",
    }
    values["log_prefix"] = contract.fmt("step_log_prefix").make(job=STEP, run_id=RUN_ID, step=STEP)
    formats = contract.load()["formats"]
    # A shard's command writes under its own folder, which the output key's log prefix admits.
    shard_prefix = contract.fmt("shard_log_prefix").make(job=STEP, run_id=RUN_ID, step=STEP, shard="999")
    key = contract.fmt("ssm_output_key").make(log_prefix=shard_prefix, command_id=COMMAND, instance_id="i-0123456789abcdef0", stream="stdout")
    assert contract.fmt("ssm_output_key").parse(key)["log_prefix"] == shard_prefix
    assert {"command_comment", "step_log_prefix", "ssm_output_key", "staging_prefix", "health_log_prefix"} <= set(formats)
    for name in formats:
        f = contract.fmt(name)
        wanted = {k: values[k] for k in f.fields}
        parsed = f.parse(f.make(**wanted))
        assert {k: parsed[k] for k in f.fields} == wanted, name


def test_a_mismatch_names_the_string_and_the_format():
    with pytest.raises(contract.FormatMismatch) as e:
        contract.fmt("command_comment").parse("spotstep deps run 0123456789abcdef round 03")
    message = str(e.value)
    assert "command_comment" in message and "round 03" in message
    assert contract.fmt("command_comment").template in message
    assert contract.fmt("command_comment").match("spotstep deps run 0123456789abcdef round 3") == {
        "step": "deps",
        "run_hash": "0123456789abcdef",
        "round": "3",
    }
    for bad in (None, "", "spotstep deps run 0123456789abcdef round 3\n"):
        with pytest.raises(contract.FormatMismatch):
            contract.fmt("command_comment").parse(bad)
    with pytest.raises(contract.ContractError):
        contract.fmt("no-such-format")
    with pytest.raises(contract.ContractError):
        contract.state("no_such_state")
    with pytest.raises(contract.ContractError):
        contract.fmt("step_log_prefix").make(job="demo")


def test_prefixes_stop_before_a_field():
    assert contract.fmt("staging_prefix").prefix("run_id", job="demo") == "tmp/demo/"
    assert contract.fmt("step_log_prefix").prefix("step", job="demo", run_id="r1") == "logs/demo/r1/"
    with pytest.raises(contract.ContractError):
        contract.fmt("staging_prefix").prefix("step")


def test_every_state_of_a_generated_definition_is_in_the_contract():
    fixed = set(contract.load()["states"].values())
    per_step = [contract.fmt(n) for n in contract.load()["formats"] if n.startswith("state_")]
    states = definition("demo")["States"]
    for name in states:
        assert name in fixed or any(f.match(name) for f in per_step), name
    assert contract.state("name_the_run") in states
    assert contract.fmt("state_poll").make(step="quoting") in states


def test_definitions_get_every_function_and_nothing_else():
    text = json.dumps(definition("demo", "--local"))
    states = json.loads(substitute(text))["States"].values()
    waiting = [s for s in states if s.get("Resource") == contract.callback_resource()]
    assert waiting, "the steps' send states wait on task tokens"
    resources = {s["Resource"] for s in states if "Resource" in s and s not in waiting}
    resources |= {s["Parameters"]["FunctionName"] for s in waiting}
    assert resources == {f"arn:aws:lambda:us-east-1:123456789012:function:{n}" for n in contract.functions()}
    assert len(contract.functions()) == 5
    broken = text.replace(next(iter(contract.arn_placeholders())), "${RenamedFunctionArn}")
    with pytest.raises(contract.ContractError, match="RenamedFunctionArn"):
        substitute(broken)


def command_run(comment: str, prefix: str) -> CommandRun:
    return CommandRun(COMMAND, "i-0123456789abcdef0", comment, [], 60, "bucket", prefix)


def test_the_agent_reads_step_round_job_and_run_or_refuses():
    comment = contract.fmt("command_comment").make(step=STEP, run_hash="0123456789abcdef", round=7)
    prefix = contract.fmt("step_log_prefix").make(job="demo", run_id=RUN_ID, step=STEP)
    run = command_run(comment, prefix)
    assert (run.step, run.round, run.job, run.run_id) == (STEP, 7, "demo", RUN_ID)
    with pytest.raises(contract.FormatMismatch, match="command_comment"):
        command_run(comment.replace(" round ", " rnd "), prefix)
    with pytest.raises(contract.FormatMismatch, match="step_log_prefix"):
        command_run(comment, prefix + "/")
    other = contract.fmt("step_log_prefix").make(job="demo", run_id=RUN_ID, step="other")
    with pytest.raises(contract.FormatMismatch, match="output prefix of step"):
        command_run(comment, other)


def test_timing_is_the_generators():
    production = definition("data-weekly")["States"]
    poll = next(r for r in production[contract.fmt("state_poll").make(step="deps")]["Retry"] if "StillRunning" in r["ErrorEquals"])
    schedule = contract.timing("production")["poll"]
    assert (poll["IntervalSeconds"], poll["BackoffRate"], poll["MaxDelaySeconds"]) == (
        schedule["interval_seconds"],
        schedule["backoff_rate"],
        schedule["max_delay_seconds"],
    )
    assert schedule["delays_seconds"][-1] == schedule["max_delay_seconds"]


def test_the_stage_matches_events_as_the_rules_do():
    from spotstep_local.events import matches

    rules = {r["name"]: r["pattern"] for r in contract.event_rules()}
    ended = {"source": "aws.ssm", "detail-type": contract.detail_type("command_invocation"), "detail": {"status": "Success", "document-name": "AWS-RunShellScript"}}
    assert matches(rules["CommandEndedRule"], ended)
    assert not matches(rules["CommandEndedRule"], {**ended, "detail": {"status": "Success", "document-name": "AWS-RunPatchBaseline"}})
    assert not matches(rules["CommandEndedRule"], {**ended, "detail": {"status": "InProgress"}})
    assert not matches(rules["SpotWarningRule"], ended)
    going = {"source": "aws.ec2", "detail-type": contract.detail_type("instance_state"), "detail": {"state": "terminated"}}
    assert matches(rules["InstanceGoingRule"], going)
    assert not matches(rules["InstanceGoingRule"], {**going, "detail": {"state": "running"}})
