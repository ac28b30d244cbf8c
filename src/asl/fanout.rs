//! A fan-out step: its shard list planned, an Inline Map of lanes, the results index.
//!
//! `<step>: shards` (poll-result) checks the shard list and stages it, and says how many
//! lanes run: min(instances, shards not yet succeeded). `<step>: sweep` is an Inline Map
//! over the lanes (`MaxConcurrency` = `instances`); lane 0 adopts the run's instance (it ran
//! the setup steps), each other lane launches its own instance, waits for its agent, runs
//! the setup steps on it once; then each loops: `next shard` (records
//! the last shard's outcome, claims the next unclaimed shard with an S3 conditional write),
//! `send shard` (one SSM command per shard, waiting on its task token like every step),
//! until no shard is left; then it ends its instance (lane 0 leaves the run's running for the
//! steps after the sweep). A reclaim returns the lane's shard to the pool and the lane
//! relaunches (lane 0 too: its replacement is a lane instance, ended with the sweep). `<step>: results` writes the results index and fails
//! the execution with `ShardsFailed` past `max_failed_shards`; redriven, it sends the run
//! back to `<step>: shards`, which reruns only the shards that have not succeeded.

use serde_json::{json, Value};

use super::launch::{launch_task, wait_task};
use super::steps::send_task;
use super::task::task;
use super::{resource, task_timeout, Timing, LOST_ERRORS};
use crate::manifest::{Job, StepKind, StepSpec};

/// The first state of fan-out step `step` (its plan).
pub(super) fn entry(step: &str) -> String {
    format!("{step}: shards")
}

/// The Inline Map of step `step`'s lanes.
pub fn sweep(step: &str) -> String {
    format!("{step}: sweep")
}

/// The state that writes step `step`'s results index.
pub fn results(step: &str) -> String {
    format!("{step}: results")
}

fn rerun(step: &str) -> String {
    format!("{step}: rerun?")
}

/// A state of a lane of step `step` (inside its Map).
pub fn lane(step: &str, what: &str) -> String {
    format!("{step} lane: {what}")
}

/// The top-level states of fan-out step `step`; `next` follows a sweep that succeeded.
pub(super) fn fan_out_states(
    job: &Job,
    step: &StepSpec,
    next: &str,
    timing: &Timing,
) -> Vec<(String, Value)> {
    let fan_out = step.fan_out.as_ref().expect("a fan-out step");
    let name = &step.name;
    let identity =
        serde_json::to_value(step.without_script()).expect("a StepSpec always serializes");
    let mut planned = step.without_script();
    planned.fan_out = Some(fan_out.clone());
    vec![
        (
            entry(name),
            task(
                resource::POLL_RESULT,
                task_timeout::POLL_RESULT,
                json!({
                    "fanout": "plan",
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "step": serde_json::to_value(&planned).expect("a StepSpec always serializes"),
                    "instance.$": "$.launch",
                    "redrive_count.$": "$$.Execution.RedriveCount",
                }),
                "$.fanout",
                timing,
            )
            .comment(
                "Checks the shard list (a dynamic one as its step wrote it) and keeps it with the \
                 step's logs; lanes = min(instances, shards not yet succeeded), lane 0 on the \
                 run's instance",
            )
            .next(&sweep(name)),
        ),
        (
            sweep(name),
            json!({
                "Type": "Map",
                "Comment": "One iteration per lane: its own instance (lane 0: the run's), the setup steps once, then shards until none is left",
                "ItemsPath": "$.fanout.lanes",
                "ItemSelector": {
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "fanout.$": "$.fanout",
                    "lane": {"step": name, "index.$": "$$.Map.Item.Value"},
                    "launch": {"attempt": 0, "round": 0, "round_attempts": 0},
                    "shard": null,
                    "outcome": null,
                },
                "MaxConcurrency": fan_out.instances,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": lane(name, "adopt?"),
                    "States": lane_states(job, step, timing)
                        .into_iter()
                        .collect::<serde_json::Map<String, Value>>(),
                },
                "ResultPath": null,
                "Next": results(name),
            }),
        ),
        (
            results(name),
            task(
                resource::POLL_RESULT,
                task_timeout::POLL_RESULT,
                json!({
                    "fanout": "results",
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "step": identity,
                    "plan.$": "$.fanout",
                    "redrive_count.$": "$$.Execution.RedriveCount",
                }),
                "$.swept",
                timing,
            )
            .comment(
                "Writes the results index (shard -> status, output, result) and fails with \
                 ShardsFailed past max_failed_shards. Redrive: back to the plan, which reruns only \
                 the shards that did not succeed",
            )
            .next(&rerun(name)),
        ),
        (
            rerun(name),
            json!({
                "Type": "Choice",
                "Choices": [{"Variable": "$.swept.rerun", "BooleanEquals": true, "Next": entry(name)}],
                "Default": next,
            }),
        ),
    ]
}

/// The states of one lane, inside the Map.
fn lane_states(job: &Job, step: &StepSpec, timing: &Timing) -> Vec<(String, Value)> {
    let name = &step.name;
    let setup: Vec<&StepSpec> = job
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Setup)
        .collect();
    let setup_send = |s: &StepSpec| lane(name, &format!("{}: send", s.name));
    let next_shard = lane(name, "next shard");
    let relaunch = lane(name, "relaunch");
    let mut states = vec![
        (
            lane(name, "adopt?"),
            json!({
                "Type": "Choice",
                "Choices": [{
                    "And": [
                        {"Variable": "$.lane.index", "NumericEquals": 0},
                        {"Variable": "$.fanout.adopt", "IsNull": false},
                    ],
                    "Next": lane(name, "adopt"),
                }],
                "Default": lane(name, "launch"),
            }),
        ),
        (
            lane(name, "adopt"),
            json!({
                "Type": "Pass",
                "Comment": "Lane 0 runs on the run's instance: it ran the setup steps already",
                "InputPath": "$.fanout.adopt",
                "ResultPath": "$.launch",
                "Next": next_shard.clone(),
            }),
        ),
        (
            lane(name, "launch"),
            launch_task(
                json!({
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "previous.$": "$.launch",
                    "redrive_count.$": "$$.Execution.RedriveCount",
                    "lane.$": "$.lane",
                }),
                timing,
            )
            .next(&lane(name, "wait for agent")),
        ),
        (
            lane(name, "wait for agent"),
            wait_task(timing)
                .catch(&LOST_ERRORS, "$.lost", &relaunch)
                .next(&setup.first().map_or(next_shard.clone(), |s| setup_send(s))),
        ),
    ];
    for (i, s) in setup.iter().enumerate() {
        let after = setup
            .get(i + 1)
            .map_or(next_shard.clone(), |n| setup_send(n));
        states.push((
            setup_send(s),
            send_task(
                &job.spec,
                s,
                Some(json!({"lane.$": "$.lane"})),
                "$.result",
                timing,
            )
            .catch(&LOST_ERRORS, "$.lost", &relaunch)
            .next(&after),
        ));
    }
    let mut shard_step = step.clone();
    shard_step.fan_out = step.fan_out.as_ref().map(|f| f.without_items());
    states.extend([
        (
            next_shard.clone(),
            task(
                resource::POLL_RESULT,
                task_timeout::POLL_RESULT,
                json!({
                    "fanout": "next",
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "plan.$": "$.fanout",
                    "lane.$": "$.lane",
                    "shard.$": "$.shard",
                    "outcome.$": "$.outcome",
                    "redrive_count.$": "$$.Execution.RedriveCount",
                }),
                "$.shard",
                timing,
            )
            .comment("Records the last shard's outcome, then claims the next unclaimed shard (null: none left)")
            .next(&lane(name, "shard left?")),
        ),
        (
            lane(name, "shard left?"),
            json!({
                "Type": "Choice",
                "Choices": [{"Variable": "$.shard", "IsNull": false, "Next": lane(name, "send shard")}],
                "Default": lane(name, "end"),
            }),
        ),
        (
            lane(name, "send shard"),
            send_task(
                &job.spec,
                &shard_step,
                Some(json!({"lane.$": "$.lane", "shard.$": "$.shard"})),
                "$.outcome",
                timing,
            )
            .catch(&LOST_ERRORS, "$.lost", &relaunch)
            .catch(&["StepFailed", "States.Timeout"], "$.outcome", &next_shard)
            .next(&next_shard),
        ),
        (
            relaunch.clone(),
            task(
                resource::CLEANUP,
                task_timeout::CLEANUP,
                json!({
                    "action": "relaunch",
                    "run.$": "$.run",
                    "instance.$": "$.launch",
                    "lost.$": "$.lost",
                    "resume_at": name,
                    "redrive_count.$": "$$.Execution.RedriveCount",
                    "lane.$": "$.lane",
                    "shard.$": "$.shard",
                }),
                "$.gate",
                timing,
            )
            .comment(
                "The lane's instance was lost: terminate what is left of it and return its shard to \
                 the pool. A spot reclaim relaunches the lane; any other loss fails it (InstanceLost)",
            )
            .next(&lane(name, "shard returned")),
        ),
        (
            lane(name, "shard returned"),
            json!({"Type": "Pass", "Result": null, "ResultPath": "$.shard", "Next": lane(name, "relaunch pause")}),
        ),
        (
            lane(name, "relaunch pause"),
            json!({"Type": "Wait", "Seconds": timing.relaunch_pause_seconds, "Next": lane(name, "launch")}),
        ),
        (
            lane(name, "end"),
            task(
                resource::CLEANUP,
                task_timeout::CLEANUP,
                json!({
                    "action": "lane-end",
                    "run.$": "$.run",
                    "instance.$": "$.launch",
                    "lane.$": "$.lane",
                    "keep.$": "$.fanout.adopt",
                }),
                "$.gate",
                timing,
            )
            .comment(
                "No shard left: the lane ends its instance (not the run's, which lane 0 adopted: \
                 the steps after the sweep run on it)",
            )
            .end(),
        ),
    ]);
    states
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{definition, state};
    use super::*;

    pub const SWEEP: &str = r#"
        name = "t"
        instance_name_prefix = "t"
        instance_types = ["t3.micro"]
        root_volume_gb = 8
        max_runtime_seconds = 7200
        config_source = "s3://b/c.yaml"
        default_mode = "a"
        [[steps]]
        name = "setup"
        kind = "setup"
        script = "s.sh"
        timeout_seconds = 60
        [[steps]]
        name = "sweep"
        kind = "workload"
        script = "sweep.sh"
        timeout_seconds = 60
        [steps.fan_out]
        shards = "shards.json"
        instances = 3
        [[steps]]
        name = "report"
        kind = "workload"
        script = "r.sh"
        timeout_seconds = 60
        [modes.a]
        steps = ["sweep", "report"]
    "#;

    #[test]
    fn a_fan_out_is_a_plan_a_map_of_lanes_and_the_results() {
        let job = Job::parse(Path::new("jobs/t/job.toml"), SWEEP, |f| {
            Ok(if f == "shards.json" {
                "[1,2,3,4]"
            } else {
                "echo hi\n"
            }
            .into())
        })
        .unwrap();
        let def = definition(&job, &Timing::local());
        let states = &def["States"];
        assert_eq!(
            states["sweep: in mode?"]["Choices"][0]["Next"],
            "sweep: shards"
        );
        assert_eq!(
            states["sweep: shards"]["Parameters"]["step"]["fan_out"]["items"],
            json!([1, 2, 3, 4])
        );
        assert!(states["sweep: shards"]["Parameters"]["step"]
            .get("script")
            .is_none());
        let map = &states["sweep: sweep"];
        assert_eq!(map["MaxConcurrency"], 3);
        assert_eq!(map["Next"], "sweep: results");
        assert_eq!(states["sweep: rerun?"]["Default"], "report: in mode?");
        assert_eq!(
            states["sweep: rerun?"]["Choices"][0]["Next"],
            "sweep: shards"
        );
        assert!(states.get("sweep: send").is_none());
        assert!(!states[state::RESUME]["Choices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["StringEquals"] == "sweep"));
        assert_eq!(
            states["sweep: shards"]["Parameters"]["instance.$"],
            "$.launch"
        );
        let lane = &map["ItemProcessor"]["States"];
        // Lane 0 adopts the run's instance (the plan says which) and goes to its shards; the
        // other lanes launch.
        assert_eq!(map["ItemProcessor"]["StartAt"], "sweep lane: adopt?");
        let adopt = &lane["sweep lane: adopt?"];
        assert_eq!(
            adopt["Choices"][0]["And"],
            json!([
                {"Variable": "$.lane.index", "NumericEquals": 0},
                {"Variable": "$.fanout.adopt", "IsNull": false},
            ])
        );
        assert_eq!(adopt["Choices"][0]["Next"], "sweep lane: adopt");
        assert_eq!(adopt["Default"], "sweep lane: launch");
        assert_eq!(lane["sweep lane: adopt"]["InputPath"], "$.fanout.adopt");
        assert_eq!(lane["sweep lane: adopt"]["ResultPath"], "$.launch");
        assert_eq!(lane["sweep lane: adopt"]["Next"], "sweep lane: next shard");
        // The lane's end keeps the run's instance.
        assert_eq!(
            lane["sweep lane: end"]["Parameters"]["keep.$"],
            "$.fanout.adopt"
        );
        assert_eq!(
            lane["sweep lane: wait for agent"]["Next"],
            "sweep lane: setup: send"
        );
        assert_eq!(
            lane["sweep lane: setup: send"]["Next"],
            "sweep lane: next shard"
        );
        assert_eq!(
            lane["sweep lane: setup: send"]["Parameters"]["Payload"]["slot"],
            json!({"lane.$": "$.lane"})
        );
        let send = &lane["sweep lane: send shard"];
        assert_eq!(send["Parameters"]["Payload"]["step"]["script"], "echo hi\n");
        assert!(send["Parameters"]["Payload"]["step"]["fan_out"]
            .get("items")
            .is_none());
        assert_eq!(send["Next"], "sweep lane: next shard");
        assert_eq!(send["ResultPath"], "$.outcome");
        assert_eq!(send["Catch"][0]["Next"], "sweep lane: relaunch");
        assert_eq!(
            send["Catch"][1]["ErrorEquals"],
            json!(["StepFailed", "States.Timeout"])
        );
        assert_eq!(lane["sweep lane: end"]["End"], true);
        assert_eq!(
            lane["sweep lane: relaunch pause"]["Next"],
            "sweep lane: launch"
        );
    }
}
