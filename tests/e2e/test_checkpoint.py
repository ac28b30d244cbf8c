"""A reclaimed step resumes from its checkpoint (jobs/train): the runner restores
`checkpoints/<job>/<run_id>/<step>/` before the step, uploads it while the step runs, and on
the spot notice in the instance's metadata stops the step (SIGTERM) and uploads it a last
time. The final weights are the same with or without a reclaim; the work redone is what the
checkpoint missed. Then the preemption budget (`on_demand_after_reclaims`) and the manifest's
refusals. The stage's local timing: uploads every 2 s, grace 3 s, the notice polled every 1 s.
"""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, TARGET

from spotstep_local import contract
from test_cli import spotstep

# An iteration of the train job is 0.1 s of work (TRAIN_ITERATION_SECONDS), ten an epoch.
ITERATION_SECONDS = 0.1
# The stage's checkpoint interval (`CheckpointTiming::LOCAL`).
LOCAL_EVERY_SECONDS = 2


def reference_result(e2e, job: str) -> str:
    """The final weights of an uninterrupted run: the step script itself, without pauses."""
    env = dict(e2e.job(job)["env"], TRAIN_ITERATION_SECONDS="0", PATH=os.environ["PATH"])
    with tempfile.TemporaryDirectory() as ckpt:
        env.update(SPOTSTEP_CHECKPOINT_DIR=ckpt, SPOTSTEP_WORKDIR=ckpt)
        done = subprocess.run(
            ["bash", "-eo", "pipefail", str(REPO / "jobs/train/steps/train.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return result_of(done.stdout)


def result_of(stdout: str) -> str:
    [result] = re.findall(r"^train: result (\d+)$", stdout, re.M)
    return result


def progress(stdout: str) -> list:
    return [int(p) for p in re.findall(r"^train: progress (\d+)$", stdout, re.M)]


def resumed_at(stdout: str, iterations: int) -> int:
    [(epoch, iteration)] = re.findall(r"^train: resumed at epoch (\d+) iteration (\d+)", stdout, re.M)
    return int(epoch) * iterations + int(iteration)


def sent_records(outcome, step: str) -> list:
    """send-step's record of each send of `step` (the TaskSubmitted events' payload)."""
    records = []
    entered = None
    for e in outcome.events:
        details = e.get("stateEnteredEventDetails")
        if details:
            entered = details["name"]
        if e["type"] == "TaskSubmitted" and entered == contract.fmt("state_send").make(step=step):
            records.append(json.loads(e["taskSubmittedEventDetails"]["output"])["Payload"])
    return records


def launches(outcome) -> list:
    """The launch record of each launch, in order."""
    return [
        json.loads(e["stateExitedEventDetails"]["output"])["launch"]
        for e in outcome.events
        if e.get("stateExitedEventDetails", {}).get("name") == contract.state("launch")
    ]


def test_reclaimed_mid_epoch_with_the_warning_resumes_where_it_stopped(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"train": {"after": 4.0, "times": 1}}
    # The notice, then 8 s to the termination (AWS: 120 s): room for the notice poll (1 s), the
    # step's save on SIGTERM and the final upload on a loaded machine.
    faults.reclaim_lead = 8.0
    outcome = e2e.run("ckpt-warned", job="train")
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    first, second = e2e.commands(run_id, "train")
    iterations = int(e2e.job("train")["env"]["TRAIN_ITERATIONS"])
    # The step heard SIGTERM mid-epoch, saved, and the runner uploaded it before EC2 acted.
    assert "spotstep: spot interruption notice" in first.stdout, first.stdout
    assert "train: stopped at epoch" in first.stdout, first.stdout
    assert "spotstep: checkpoint uploaded after the step stopped (notice)" in first.stdout, first.stdout
    done_before = progress(first.stdout)[-1]
    # Stopped between two epoch ends: the step's save on SIGTERM (not the last epoch end's)
    # is what it resumes from, so nothing is redone.
    [(epoch, iteration)] = re.findall(r"^train: stopped at epoch (\d+) iteration (\d+);", first.stdout, re.M)
    assert int(epoch) * iterations + int(iteration) == done_before
    assert "spotstep: resumed from the checkpoint" in second.stdout, second.stdout
    assert resumed_at(second.stdout, iterations) == done_before, second.stdout
    assert progress(second.stdout)[0] == done_before + 1
    assert result_of(second.stdout) == reference_result(e2e, "train")
    # The history says so: the resend's record names the checkpoint, its age and why.
    records = sent_records(outcome, "train")
    assert "checkpoint" not in records[0]
    restored = records[-1]["checkpoint"]
    assert (restored["reason"], restored["complete"]) == ("notice", True), restored
    assert 0 <= restored["age_seconds"] <= 30, restored
    assert [(x["market"], x["reclaims"]) for x in launches(outcome)] == [("spot", 0), ("spot", 1)]
    # `watch` and `runs` say it too.
    watched = spotstep(e2e, "watch", f"train/{run_id}")
    assert watched.returncode == 0, watched.stderr
    assert ", attempt 2, after 1 reclaim\n" in watched.stdout, watched.stdout
    assert "  step train: resumes from a checkpoint " in watched.stdout, watched.stdout
    assert "old (saved at the spot notice)\n" in watched.stdout, watched.stdout
    runs = spotstep(e2e, "runs", "train")
    [row] = [line for line in runs.stdout.splitlines() if f"train/{run_id} " in line]
    assert " spot, spot (1 reclaim) " in row + " ", runs.stdout
    # The run succeeded: its checkpoints are gone.
    assert e2e.stack.keys(contract.fmt("checkpoint_run_prefix").make(job="train", run_id=run_id)) == []
    e2e.assert_nothing_left(run_id)


def test_reclaimed_without_a_warning_resumes_from_the_last_upload(e2e):
    faults = e2e.stack.faults
    faults.reclaim_during = {"train": {"after": 5.5, "times": 1}}
    faults.reclaim_notice = False
    # The rebalance recommendation (it can come earlier than a notice, or alone): an upload
    # at once, the step goes on.
    faults.rebalance_before = 1.5
    outcome = e2e.run("ckpt-unwarned", job="train")
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    first, second = e2e.commands(run_id, "train")
    iterations = int(e2e.job("train")["env"]["TRAIN_ITERATIONS"])
    assert "spotstep: spot interruption notice" not in first.stdout
    assert "train: stopped at" not in first.stdout
    assert "spotstep: rebalance recommendation: uploading the checkpoint now" in first.stdout, first.stdout
    restored = sent_records(outcome, "train")[-1]["checkpoint"]
    assert restored["reason"] in ("rebalance", "periodic") and not restored["complete"], restored
    done_before = progress(first.stdout)[-1]
    resumed = resumed_at(second.stdout, iterations)
    assert resumed > 0 and resumed % iterations == 0, "an epoch's end, as uploaded"
    redone_seconds = (done_before - resumed) * ITERATION_SECONDS
    assert redone_seconds <= LOCAL_EVERY_SECONDS + iterations * ITERATION_SECONDS, (done_before, resumed)
    assert result_of(second.stdout) == reference_result(e2e, "train")
    e2e.assert_nothing_left(run_id)


def test_a_redrive_after_a_failed_train_step_resumes_from_its_checkpoint(e2e):
    switch = e2e.state_dir("train") / "fail-at-epoch"
    switch.parent.mkdir(parents=True, exist_ok=True)
    switch.write_text("3\n")
    failed = e2e.run("ckpt-redrive", job="train")
    run_id = failed.name
    assert failed.status == "FAILED"
    assert failed.failed_state() == contract.fmt("state_failed").make(step="train")
    # The failure kept the checkpoint (the runner's final upload), for the redrive.
    kept = e2e.stack.keys(contract.fmt("checkpoint_run_prefix").make(job="train", run_id=run_id))
    assert contract.fmt("checkpoint_marker_key").make(job="train", run_id=run_id, step="train") in kept, kept
    [message] = [m for s, m in e2e.stack.notifications() if run_id in s]
    assert "\nLaunches: spot (no reclaim)\n" in message, message

    switch.unlink()
    outcome = e2e.wait(e2e.harness.redrive(failed.arn))
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    last = e2e.commands(run_id, "train")[-1]
    iterations = int(e2e.job("train")["env"]["TRAIN_ITERATIONS"])
    assert resumed_at(last.stdout, iterations) == 3 * iterations, last.stdout
    restored = sent_records(outcome, "train")[-1]["checkpoint"]
    assert (restored["reason"], restored["complete"]) == ("failure", True), restored
    assert result_of(last.stdout) == reference_result(e2e, "train")
    assert e2e.stack.keys(contract.fmt("checkpoint_run_prefix").make(job="train", run_id=run_id)) == []
    e2e.assert_nothing_left(run_id)


def test_after_the_reclaim_budget_the_relaunch_goes_on_demand(e2e):
    faults = e2e.stack.faults
    # Two reclaims planned; after the first (the budget: on_demand_after_reclaims = 1) the
    # relaunch is on-demand, which EC2 does not reclaim.
    faults.reclaim_during = {"train": {"after": 2.0, "times": 2}}
    faults.reclaim_lead = 4.0
    outcome = e2e.run("ckpt-ondemand", job="train-ondemand")
    run_id = outcome.name

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause_message())
    assert [(x["market"], x["reclaims"]) for x in launches(outcome)] == [("spot", 0), ("on-demand", 1)]
    [on_demand] = [i for i in e2e.stack.instances(run_id=run_id) if i.lifecycle != "spot"]
    assert faults.not_reclaimed == [on_demand.id]
    assert result_of(e2e.commands(run_id, "train")[-1].stdout) == reference_result(e2e, "train-ondemand")
    e2e.assert_nothing_left(run_id)


BAD = [
    ('dir = "../outside"', "field `steps[2].checkpoint.dir`: `../outside` leaves the step's work folder"),
    ('dir = "/var/ckpt"', "field `steps[2].checkpoint.dir`: `/var/ckpt` is absolute"),
    ("every_seconds = 10", "field `steps[2].checkpoint.every_seconds`: 10 is under 30 s"),
    ("grace_seconds = 110", "field `steps[2].checkpoint.grace_seconds`: 110 does not fit the spot warning"),
]


@pytest.mark.parametrize("setting,error", BAD, ids=["dir-escapes", "dir-absolute", "interval", "grace"])
def test_each_bad_checkpoint_setting_is_refused_before_anything_launches(setting, error, tmp_path):
    job = tmp_path / "train"
    (job / "steps").mkdir(parents=True)
    for script in (REPO / "jobs/train/steps").iterdir():
        (job / "steps" / script.name).write_text(script.read_text())
    manifest = (REPO / "jobs/train/job.toml").read_text()
    key = setting.split(" =")[0]
    manifest = re.sub(rf"(?m)^{key} = .*$", setting, manifest, count=1)
    (job / "job.toml").write_text(manifest)
    done = subprocess.run([str(Path(TARGET) / "spotstep"), "asl", str(job), "--local"], capture_output=True, text=True)
    assert done.returncode != 0, done.stdout
    assert error in done.stderr, done.stderr
