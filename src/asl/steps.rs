//! The steps: each step's send (waiting), poll (fallback) and failed states; the setup steps
//! on every fresh instance, the resume choice after a relaunch, the workload steps by mode.

use serde_json::{json, Value};

use super::task::{task, TaskState};
use super::timing::{timed_step, SEND_AGENT_ATTEMPTS};
use super::{
    poll_attempts, resource, state, task_timeout, wait_seconds, Timing, FALLBACK_POLL_SECONDS,
    LOST_ERRORS,
};
use crate::manifest::{Job, JobSpec, StepSpec};

/// The setup steps, in order, on every fresh instance; the last one leads to Resume.
pub(super) fn setup_states(
    job: &Job,
    setup: &[&StepSpec],
    timing: &Timing,
) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    for (i, step) in setup.iter().enumerate() {
        let next = setup
            .get(i + 1)
            .map_or(state::RESUME.to_string(), |s| state::send(&s.name));
        for (name, body) in step_states(&job.spec, step, &next, state::RELAUNCH_CLEAN_UP, timing) {
            add(name, body);
        }
    }

    states
}

/// Resume: after a relaunch, straight to the workload step that lost its instance.
pub(super) fn resume_states(workload: &[&StepSpec]) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    let first_in_mode = state::in_mode(&workload[0].name);
    let rules: Vec<Value> = workload
        .iter()
        .filter(|s| s.fan_out.is_none())
        .map(|s| json!({"Variable": "$.resume_at", "StringEquals": s.name, "Next": state::send(&s.name)}))
        .collect();
    add(
        state::RESUME.into(),
        json!({
            "Type": "Choice",
            "Comment": "After a relaunch: go straight to the workload step that lost its instance",
            "Choices": rules,
            "Default": first_in_mode,
        }),
    );

    states
}

/// Each workload step: `in mode?`, its send/poll/failed states, and `resume here`.
pub(super) fn workload_states(
    job: &Job,
    workload: &[&StepSpec],
    timing: &Timing,
) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    for (i, step) in workload.iter().enumerate() {
        let next = workload
            .get(i + 1)
            .map_or(state::FINISH.to_string(), |s| state::in_mode(&s.name));
        // The manifest guarantees every workload step is in at least one mode.
        let tests: Vec<Value> = job
            .spec
            .modes
            .iter()
            .filter(|(_, m)| m.steps.contains(&step.name))
            .map(|(mode, _)| json!({"Variable": "$.run.mode", "StringEquals": mode}))
            .collect();
        let mut rule = match tests.as_slice() {
            [single] => single.clone(),
            _ => json!({"Or": tests}),
        };
        if step.fan_out.is_some() {
            rule["Next"] = json!(super::fanout::entry(&step.name));
            add(
                state::in_mode(&step.name),
                json!({"Type": "Choice", "Choices": [rule], "Default": next}),
            );
            for (name, body) in super::fanout::fan_out_states(job, step, &next, timing) {
                add(name, body);
            }
            continue;
        }
        rule["Next"] = json!(state::send(&step.name));
        let resume_here = state::resume_here(&step.name);
        add(
            state::in_mode(&step.name),
            json!({"Type": "Choice", "Choices": [rule], "Default": next}),
        );
        for (name, body) in step_states(&job.spec, step, &next, &resume_here, timing) {
            add(name, body);
        }
        add(
            resume_here,
            json!({
                "Type": "Pass",
                "Result": step.name,
                "ResultPath": "$.resume_at",
                "Next": state::RELAUNCH_CLEAN_UP,
            }),
        );
    }

    states
}

/// A step's waiting send Task: send-step sends it and the state waits for its token, its
/// answer at `result_path`; `slot` (a JSON object of paths) places it in a sweep's lane.
pub(super) fn send_task(
    job: &JobSpec,
    step: &StepSpec,
    slot: Option<Value>,
    result_path: &str,
    timing: &Timing,
) -> TaskState {
    let mut payload = json!({
        "run.$": "$.run",
        "job.$": "$.job",
        "instance.$": "$.launch",
        "step": serde_json::to_value(timed_step(step, timing)).expect("a StepSpec always serializes"),
        "redrive_count.$": "$$.Execution.RedriveCount",
        "task_token.$": "$$.Task.Token",
    });
    if let Some(slot) = slot {
        payload["slot"] = slot;
    }
    task(
        resource::WAIT_FOR_TOKEN,
        wait_seconds(job, step, timing),
        json!({"FunctionName": resource::SEND_STEP, "Payload": payload}),
        result_path,
        timing,
    )
    .comment(
        "Sends the step and waits for its token: poll-result answers it when SSM or EC2 \
         tells (or the 5-minute reconciler finds the command ended or the instance gone). \
         A wait that times out goes to the fallback poll",
    )
    .retry(
        &["AgentNotOnline"],
        json!({
            "IntervalSeconds": timing.agent_interval_seconds,
            "MaxAttempts": SEND_AGENT_ATTEMPTS,
            "BackoffRate": 1.0,
        }),
    )
}

/// The send (waiting), poll (fallback) and failed states of one step. `next` follows a
/// success; `lost` is where a lost instance leads.
pub(super) fn step_states(
    job: &JobSpec,
    step: &StepSpec,
    next: &str,
    lost: &str,
    timing: &Timing,
) -> Vec<(String, Value)> {
    let send = state::send(&step.name);
    let poll = state::poll(&step.name);
    let failed = state::failed(&step.name);
    let timed = timed_step(step, timing);
    let identity =
        serde_json::to_value(timed.without_script()).expect("a StepSpec always serializes");
    vec![
        (
            send.clone(),
            send_task(job, step, None, "$.result", timing)
            .catch(&LOST_ERRORS, "$.lost", lost)
            .catch(&["StepFailed"], "$.failure", &failed)
            .catch(&["States.Timeout"], "$.timeout", &poll)
            .next(next),
        ),
        (
            poll.clone(),
            task(
                resource::POLL_RESULT,
                task_timeout::POLL_RESULT,
                json!({
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "instance.$": "$.launch",
                    "step": identity.clone(),
                }),
                "$.result",
                timing,
            )
            .comment("The step's wait timed out (its events and the reconciler were lost): classify its command")
            .retry(
                &["StillRunning"],
                json!({
                    "IntervalSeconds": timing.poll.interval_seconds,
                    "MaxAttempts": poll_attempts(FALLBACK_POLL_SECONDS, timing),
                    "BackoffRate": timing.poll.backoff_rate,
                    "MaxDelaySeconds": timing.poll.max_delay_seconds,
                }),
            )
            .catch(&LOST_ERRORS, "$.lost", lost)
            .catch(&["StepFailed"], "$.failure", &failed)
            .next(next),
        ),
        (
            failed,
            task(
                resource::CLEANUP,
                task_timeout::CLEANUP,
                json!({
                    "action": "step-failed",
                    "run.$": "$.run",
                    "job.$": "$.job",
                    "step": identity,
                    "failure.$": "$.failure",
                    "redrive_count.$": "$$.Execution.RedriveCount",
                }),
                "$.gate",
                timing,
            )
            .comment(
                "The step failed: cleans up and fails the execution here with the step's error. \
                 Redrive the execution to send the step again (on a fresh instance, after the setup steps)",
            )
            .next(&send),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, SMALL};
    use super::super::{definition, function_of, CAPACITY_WAIT_SECONDS};
    use super::*;

    #[test]
    fn steps_flow_through_setup_resume_and_modes() {
        let def = definition(&job(SMALL), &Timing::production());
        let states = &def["States"];
        assert_eq!(def["StartAt"], state::APPLY_DEFAULTS);
        assert_eq!(
            def["TimeoutSeconds"],
            7200 * 2 + CAPACITY_WAIT_SECONDS + 1800
        );
        assert_eq!(states[state::WAIT_FOR_AGENT]["Next"], "setup: send");
        assert_eq!(states["setup: send"]["Next"], state::RESUME);
        assert_eq!(states["setup: poll"]["Next"], state::RESUME);
        assert_eq!(states["setup: send"]["Resource"], resource::WAIT_FOR_TOKEN);
        assert_eq!(
            function_of(&states["setup: send"]),
            Some(resource::SEND_STEP)
        );
        assert_eq!(
            states["one: send"]["Parameters"]["Payload"]["task_token.$"],
            "$$.Task.Token"
        );
        assert_eq!(states["one: send"]["TimeoutSeconds"], 300 + 5400 + 120);
        let send_catches: Vec<(Value, Value)> = states["one: send"]["Catch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["ErrorEquals"].clone(), c["Next"].clone()))
            .collect();
        assert_eq!(
            send_catches,
            [
                (json!(LOST_ERRORS), json!("one: resume here")),
                (json!(["StepFailed"]), json!("one: failed")),
                (json!(["States.Timeout"]), json!("one: poll")),
            ]
        );
        assert_eq!(
            states["setup: send"]["Catch"][0]["Next"],
            state::RELAUNCH_CLEAN_UP
        );
        assert_eq!(states["one: send"]["Catch"][0]["Next"], "one: resume here");
        assert_eq!(states["one: send"]["Next"], "two: in mode?");
        assert_eq!(states["one: poll"]["Next"], "two: in mode?");
        assert_eq!(states["two: send"]["Next"], state::FINISH);
        assert_eq!(states["two: poll"]["Next"], state::FINISH);
        assert_eq!(states["one: failed"]["Next"], "one: send");
        assert_eq!(states[state::RESUME]["Default"], "one: in mode?");
        assert_eq!(
            states["one: in mode?"]["Choices"][0],
            json!({"Variable": "$.run.mode", "StringEquals": "a", "Next": "one: send"})
        );
        assert_eq!(
            states["two: in mode?"]["Choices"][0]["Or"],
            json!([
                {"Variable": "$.run.mode", "StringEquals": "a"},
                {"Variable": "$.run.mode", "StringEquals": "b"},
            ])
        );
        assert_eq!(states["one: resume here"]["Result"], "one");
        assert_eq!(
            states["one: send"]["Parameters"]["Payload"]["step"]["script"],
            "echo hi\n"
        );
        assert!(states["one: poll"]["Parameters"]["step"]
            .get("script")
            .is_none());
        assert_eq!(states["one: poll"]["Retry"][1]["MaxAttempts"], 7);
        assert_eq!(
            states["Name the run"]["Parameters"]["job"]["workload_steps"],
            json!(["one", "two"])
        );
    }
}
