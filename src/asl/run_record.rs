//! The first phase: the execution input merged over the job's defaults, then the run record.

use serde_json::{json, Value};

use super::state;
use crate::manifest::Job;

/// Apply defaults, Init, Name the run: the execution input merged over the job's defaults,
/// then the run record every later state passes on.
pub(super) fn run_record_states(job: &Job) -> Vec<(String, Value)> {
    let mut states = Vec::new();
    let mut add = |name: String, body: Value| states.push((name, body));
    let name = &job.spec.name;
    add(
        state::APPLY_DEFAULTS.into(),
        json!({
            "Type": "Pass",
            "Comment": "The job's defaults, merged under the execution input by Init",
            "Parameters": {
                "defaults": {
                    "job": name,
                    "mode": job.default_mode,
                    "preflight": false,
                    "branch": job.default_branch,
                    "instance_type": "",
                },
                "request.$": "$",
            },
            "Next": state::INIT,
        }),
    );
    add(
        state::INIT.into(),
        json!({
            "Type": "Pass",
            "Parameters": {"request.$": "States.JsonMerge($.defaults, $.request, false)"},
            "Next": state::NAME_THE_RUN,
        }),
    );
    add(
        state::NAME_THE_RUN.into(),
        json!({
            "Type": "Pass",
            "Comment": "The run record: the request, the execution's name, ARN and start (run_date is stamped once, here)",
            "Parameters": {
                "run": {
                    "job.$": "$.request.job",
                    "mode.$": "$.request.mode",
                    "preflight.$": "$.request.preflight",
                    "branch.$": "$.request.branch",
                    "instance_type.$": "$.request.instance_type",
                    "run_id.$": "$$.Execution.Name",
                    "execution.$": "$$.Execution.Id",
                    "started_at.$": "$$.Execution.StartTime",
                    "run_date.$": "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)",
                },
                "job": serde_json::to_value(&job.spec).expect("a JobSpec always serializes"),
                "launch": {"attempt": 0, "round": 0, "round_attempts": 0},
                "resume_at": "",
            },
            "Next": state::LAUNCH,
        }),
    );
    states
}
