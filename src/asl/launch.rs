//! Launching an instance and waiting for its agent, and the way back after a lost instance.

use serde_json::{json, Value};

use super::task::{task, TaskState};
use super::{resource, state, task_timeout, Timing, LOST_ERRORS};

/// Launch and Wait for agent; `after_wait` is the first setup step's send (or Resume).
pub(super) fn launch_states(after_wait: &str, timing: &Timing) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    add(
        state::LAUNCH.into(),
        launch_task(
            json!({
                "run.$": "$.run",
                "job.$": "$.job",
                "previous.$": "$.launch",
                "redrive_count.$": "$$.Execution.RedriveCount",
            }),
            timing,
        )
        .next(state::WAIT_FOR_AGENT),
    );
    add(
        state::WAIT_FOR_AGENT.into(),
        wait_task(timing)
            .catch(&LOST_ERRORS, "$.lost", state::RELAUNCH_CLEAN_UP)
            .next(after_wait),
    );

    states
}

/// The launch Task (`parameters`: its input), retrying `NoCapacity` over the capacity wait.
pub(super) fn launch_task(parameters: Value, timing: &Timing) -> TaskState {
    task(resource::LAUNCH, task_timeout::LAUNCH, parameters, "$.launch", timing)
        .comment(
            "No capacity in any pool: wait and ask again (backoff). Other launch errors end the \
             execution here (nothing is running); a redrive re-runs this state with a fresh launch budget",
        )
        .retry(
            &["NoCapacity"],
            json!({
                "IntervalSeconds": timing.capacity.interval_seconds,
                "MaxAttempts": timing.capacity.attempts_covering(timing.capacity_wait_seconds),
                "BackoffRate": timing.capacity.backoff_rate,
                "MaxDelaySeconds": timing.capacity.max_delay_seconds,
            }),
        )
}

/// The wait for the launched instance's agent (`$.launch`), retrying `AgentNotOnline`.
pub(super) fn wait_task(timing: &Timing) -> TaskState {
    task(
        resource::WAIT_ONLINE,
        task_timeout::WAIT_ONLINE,
        json!({"run.$": "$.run", "instance.$": "$.launch"}),
        "$.result",
        timing,
    )
    .retry(
        &["AgentNotOnline"],
        json!({
            "IntervalSeconds": timing.agent_interval_seconds,
            "MaxAttempts": timing.agent_max_attempts,
            "BackoffRate": 1.0,
        }),
    )
}

/// The relaunch path: clean up the lost instance, pause, back to Launch.
pub(super) fn relaunch_states(timing: &Timing) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    add(
        state::RELAUNCH_CLEAN_UP.into(),
        task(
            resource::CLEANUP,
            task_timeout::CLEANUP,
            json!({
                "action": "relaunch",
                "run.$": "$.run",
                "instance.$": "$.launch",
                "lost.$": "$.lost",
                "resume_at.$": "$.resume_at",
                "redrive_count.$": "$$.Execution.RedriveCount",
            }),
            "$.gate",
            timing,
        )
        .comment(
            "The instance was lost: terminate what is left of it. A spot reclaim goes on to Launch a \
             fresh one; any other loss fails the execution here (InstanceLost): redrive to relaunch",
        )
        .next(state::RELAUNCH_PAUSE),
    );
    add(
        state::RELAUNCH_PAUSE.into(),
        json!({"Type": "Wait", "Seconds": timing.relaunch_pause_seconds, "Next": state::LAUNCH}),
    );
    states
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, SMALL};
    use super::super::{definition, CAPACITY_WAIT_SECONDS};
    use super::*;

    #[test]
    fn no_capacity_is_retried_at_launch_within_the_capacity_wait() {
        for timing in [Timing::production(), Timing::local()] {
            let def = definition(&job(SMALL), &timing);
            let retry = def["States"][state::LAUNCH]["Retry"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["ErrorEquals"] == json!(["NoCapacity"]))
                .expect("Launch retries NoCapacity")
                .clone();
            let attempts = retry["MaxAttempts"].as_u64().unwrap();
            let waited: u64 = (0..attempts).map(|k| timing.capacity.delay(k)).sum();
            assert!(waited >= timing.capacity_wait_seconds, "{waited}");
            assert!(waited - timing.capacity.delay(attempts - 1) < timing.capacity_wait_seconds);
            assert!(waited <= CAPACITY_WAIT_SECONDS + timing.capacity.max_delay_seconds);
        }
        let production = definition(&job(SMALL), &Timing::production());
        assert_eq!(
            production["States"][state::LAUNCH]["Retry"][1]["MaxAttempts"],
            9
        );
    }
}
