//! The last phase: the end-of-run cleanup, then Done.

use serde_json::{json, Value};

use super::task::task;
use super::{resource, state, task_timeout, Timing};

/// Finish and Done: the end-of-run cleanup, which never fails the execution.
pub(super) fn finish_states(timing: &Timing) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    add(
        state::FINISH.into(),
        task(
            resource::CLEANUP,
            task_timeout::CLEANUP,
            json!({"action": "end-of-run", "run.$": "$.run"}),
            "$.cleanup",
            timing,
        )
        .comment(
            "The job succeeded: a cleanup failure here is logged and left to the hourly sweep, \
             never a failed execution",
        )
        .catch(&["States.ALL"], "$.cleanup", state::DONE)
        .next(state::DONE),
    );
    add(state::DONE.into(), json!({"Type": "Succeed"}));
    states
}

#[cfg(test)]
mod tests {
    use super::super::definition;
    use super::super::tests::{job, SMALL};
    use super::*;

    #[test]
    fn a_finish_that_fails_still_succeeds() {
        let def = definition(&job(SMALL), &Timing::production());
        let finish = &def["States"][state::FINISH];
        let last = finish["Catch"].as_array().unwrap().last().unwrap();
        assert_eq!(last["ErrorEquals"], json!(["States.ALL"]));
        assert_eq!(last["Next"], state::DONE);
        assert_eq!(finish["Next"], state::DONE);
    }
}
