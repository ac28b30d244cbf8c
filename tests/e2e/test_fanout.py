"""Fan-out on the local stage: the backtest job's sweep over many shards on many spot
instances (an Inline Map of lanes), its redrive of only the failed shards, a reclaim
mid-shard, a dynamic shard list and bad ones. Each checks the launches, the commands per
shard and that nothing is left."""

import collections
import json

import pytest
from spotstep_local import contract
from test_cli import spotstep

JOB = "backtest"
SHARDS = 12
LANES = 3


def backtest(fast: int, slow: int, seed: int):
    """jobs/backtest/steps/sweep.sh's computation, independently: (pnl, trades)."""
    x, p = seed, []
    for i in range(240):
        x = (x * 1103515245 + 12345) % 2147483648
        p.append(1000 + i // 2 + x % 97 - 48)
    pos = entry = pnl = trades = 0
    for i in range(slow, 240):
        fs, ss = sum(p[i - fast : i]), sum(p[i - slow : i])
        if fs * slow > ss * fast and pos == 0:
            pos, entry, trades = 1, p[i], trades + 1
        elif fs * slow < ss * fast and pos == 1:
            pos, pnl = 0, pnl + p[i] - entry
    if pos == 1:
        pnl += p[-1] - entry
    return pnl, trades


def shard_commands(e2e, run_id: str) -> collections.Counter:
    return collections.Counter(c.shard for c in e2e.commands(run_id, "sweep"))


def index(e2e, run_id: str) -> dict:
    return json.loads(e2e.stack.read(f"logs/{JOB}/{run_id}/sweep/results.json"))


def lane_of(instance):
    """The instance's `spotstep:lane` tag (None: the run's own instance)."""
    return {t["key"]: t["value"] for t in instance.get_tags()}.get(contract.tag("lane"))


def most_at_once(e2e, run_id: str) -> int:
    """The most instances of the run up at one moment, from the stage's record of each one's
    RunInstances and termination (every one is terminated by the run's end)."""
    faults = e2e.stack.faults
    edges = []
    for instance in e2e.stack.instances(run_id=run_id):
        edges += [(faults.launched[instance.id], 1), (faults.gone[instance.id], -1)]
    up = most = 0
    for _, change in sorted(edges):  # at one moment, a termination counts before a launch
        up += change
        most = max(most, up)
    return most


def test_twelve_shards_on_three_instances_each_once_with_its_result(e2e):
    outcome = e2e.run("sweep", job=JOB, timeout=150)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    run_id = outcome.name
    # Exactly min(instances, shards) launches in the whole run, setup once on each: lane 0
    # runs on the run's own instance (which ran the setup and `plan`, and then `report`).
    instances = e2e.stack.instances(run_id=run_id)
    assert len(instances) == LANES
    assert len(e2e.commands(run_id, "prepare")) == LANES
    assert sorted(lane_of(i) or "" for i in instances) == ["", "sweep.1", "sweep.2"]
    assert most_at_once(e2e, run_id) == LANES
    assert shard_commands(e2e, run_id) == {k: 1 for k in range(SHARDS)}
    # Handed out dynamically: every lane ran shards (the run's instance too), none ran them all.
    per_instance = collections.Counter(c.instance_id for c in e2e.commands(run_id, "sweep"))
    assert len(per_instance) == LANES and max(per_instance.values()) < SHARDS
    (own,) = [i.id for i in instances if lane_of(i) is None]
    assert own in per_instance
    assert [c.instance_id for c in e2e.commands(run_id, "plan") + e2e.commands(run_id, "report")] == [own, own]
    found = index(e2e, run_id)
    assert (found["shards"], found["succeeded"], found["failed"], found["not_run"]) == (SHARDS, SHARDS, [], [])
    for entry in found["entries"]:
        k, result = entry["shard"], entry["result"]
        assert (result["pnl"], result["trades"]) == backtest(2 + k % 4, 8 + 2 * (k % 5), 1000 + 17 * k), k
        assert entry["output"].startswith(f"s3://{e2e.stack.bucket}/logs/{JOB}/{run_id}/sweep/{k}/")
    # The operator's view: the sweep's progress, and one shard's output.
    watched = spotstep(e2e, "watch", f"{JOB}/{run_id}")
    assert watched.returncode == 0, watched.stderr
    assert f"sweep sweep: {SHARDS} done, 0 running, 0 failed of {SHARDS} shards" in watched.stdout, watched.stdout
    shard = spotstep(e2e, "logs", f"{JOB}/{run_id}", "sweep", "--shard", "7")
    assert shard.returncode == 0, shard.stderr
    assert "sweep: shard 7: fast=5 slow=12 seed=1119 (2s)" in shard.stdout, shard.stdout
    assert "shard 8" not in shard.stdout
    assert f"logs/{JOB}/{run_id}/sweep/7/" in shard.stderr
    summary = (e2e.state_dir(JOB) / f"summary-{run_id}.txt").read_text()
    total = sum(backtest(2 + k % 4, 8 + 2 * (k % 5), 1000 + 17 * k)[0] for k in range(SHARDS))
    assert summary.startswith(f"shards={SHARDS} total_pnl={total} "), summary
    e2e.assert_nothing_left(run_id)


def test_a_failed_shard_fails_the_step_and_a_redrive_reruns_only_it(e2e):
    state = e2e.state_dir(JOB)
    state.mkdir(parents=True, exist_ok=True)
    (state / "break-shard-5").write_text("broken\n")
    outcome = e2e.run("sweepfail", job=JOB, timeout=150)
    assert outcome.status == "FAILED"
    assert (outcome.error, outcome.failed_state()) == ("ShardsFailed", "sweep: results")
    assert "1 of 12 shards did not succeed" in outcome.cause_message()
    assert "shard 5 (StepFailed" in outcome.cause_message()
    run_id = outcome.name
    assert shard_commands(e2e, run_id) == {k: 1 for k in range(SHARDS)}
    assert len(e2e.stack.instances(run_id=run_id)) == LANES
    assert index(e2e, run_id)["failed"] == [5]
    watched = spotstep(e2e, "watch", f"{JOB}/{run_id}")
    assert watched.returncode == 1
    assert f"sweep sweep: {SHARDS - 1} done, 0 running, 1 failed of {SHARDS} shards" in watched.stdout, watched.stdout
    assert "broken (state/break-shard-5)" in spotstep(e2e, "logs", f"{JOB}/{run_id}", "sweep", "--shard", "5").stdout
    e2e.assert_nothing_left(run_id)

    (state / "break-shard-5").unlink()
    redriven = e2e.wait(e2e.harness.redrive(outcome.arn), timeout=150)
    assert redriven.status == "SUCCEEDED", (redriven.error, redriven.cause_message())
    # Only shard 5 ran again, on one new lane (the failed run's instance was ended with it, so
    # lane 0 launches), and the report on a relaunched run instance; it ran once.
    assert shard_commands(e2e, run_id) == {k: 2 if k == 5 else 1 for k in range(SHARDS)}
    assert len(e2e.stack.instances(run_id=run_id)) == LANES + 1 + 1
    assert most_at_once(e2e, run_id) <= LANES
    assert len(e2e.commands(run_id, "report")) == 1
    assert index(e2e, run_id)["succeeded"] == SHARDS
    e2e.assert_nothing_left(run_id)


def test_a_reclaim_mid_shard_returns_it_to_the_pool_and_the_lane_relaunches(e2e):
    e2e.stack.faults.reclaim_during = {"sweep": {"after": 0.5, "times": 1}}
    outcome = e2e.run("sweepreclaim", job=JOB, timeout=150)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    run_id = outcome.name
    counts = shard_commands(e2e, run_id)
    reclaimed = [k for k, n in counts.items() if n == 2]
    assert len(reclaimed) == 1 and sorted(counts) == list(range(SHARDS)), counts
    assert sum(counts.values()) == SHARDS + 1
    # The sweep's first command is lane 0's, on the run's own instance (the other lanes still
    # boot and run the setup): the reclaim takes the run's instance. Lane 0 relaunches a lane
    # instance, which runs the setup again and is ended with the sweep; `report` then finds the
    # run's instance gone and relaunches it (setup again) before it runs, once.
    instances = e2e.stack.instances(run_id=run_id)
    (lost,) = [i for i in instances if i.state_reason.code == "Server.SpotInstanceTermination"]
    assert lane_of(lost) is None, lane_of(lost)
    assert sorted(lane_of(i) or "" for i in instances) == ["", "", "sweep.0", "sweep.1", "sweep.2"]
    assert len(e2e.commands(run_id, "prepare")) == LANES + 2
    (report,) = e2e.commands(run_id, "report")
    assert report.instance_id != lost.id
    assert most_at_once(e2e, run_id) <= LANES
    assert index(e2e, run_id)["succeeded"] == SHARDS
    e2e.assert_nothing_left(run_id)


def test_bad_shard_lists_are_refused_before_the_sweep_launches(e2e):
    # Static: the manifest check (`spotstep asl`) refuses it, naming the file.
    with pytest.raises(RuntimeError) as refused:
        e2e.harness.deploy("badsweep")
    assert "fan_out.shards`: `shards.json` must be a JSON array of shard items, not an object" in str(refused.value)
    assert e2e.stack.instances(job="badsweep") == []
    # Dynamic: refused at the fan-out, naming the file and the step that wrote it.
    state = e2e.state_dir(JOB)
    state.mkdir(parents=True, exist_ok=True)
    (state / "bad-plan").write_text("\n")
    outcome = e2e.run("sweepbad", job=JOB, timeout=120)
    assert (outcome.status, outcome.error, outcome.failed_state()) == ("FAILED", "InvalidInput", "sweep: shards")
    message = outcome.cause_message()
    assert "the shard list `shards.json` written by step `plan` must be a JSON array" in message, message
    run_id = outcome.name
    assert len(e2e.stack.instances(run_id=run_id)) == 1
    assert e2e.commands(run_id, "sweep") == []
    e2e.assert_nothing_left(run_id)


def test_lost_answers_and_duplicated_events_neither_run_nor_count_a_shard_twice(e2e):
    faults = e2e.stack.faults
    # `next shard` claimed a shard but Step Functions never saw the answer (Lambda's
    # ServiceException after the function succeeded): the retried call must hand out the same
    # shard, not claim another (that one would be left claimed and never run).
    faults.lose_answer = {("poll-result", "fanout:next"): 2}
    # Every shard's end told twice, the copy a second later.
    faults.duplicate_events = {"command_invocation": 2}
    faults.duplicate_after = 1.0
    outcome = e2e.run("sweepunkind", job=JOB, timeout=150)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert len(faults.lost_answers) == 2
    run_id = outcome.name
    assert shard_commands(e2e, run_id) == {k: 1 for k in range(SHARDS)}
    records = e2e.stack.keys(f"logs/{JOB}/{run_id}/sweep/records/")
    assert sorted(records) == sorted(f"logs/{JOB}/{run_id}/sweep/records/{k}.round-0.json" for k in range(SHARDS))
    assert index(e2e, run_id)["succeeded"] == SHARDS
    e2e.assert_nothing_left(run_id)
