//! The message the on-call engineer gets when an execution ends without success: which
//! execution, which state failed with which error, the first lines of the cause, the console
//! link and how to redrive. The status-change event names none of the state, the error or
//! the cause: cleanup reads them from the execution and its history, then publishes this.

use crate::preemption::Preemption;

/// How many lines of the cause the message quotes (the execution's page has all of it).
pub const CAUSE_LINES: usize = 12;

/// What the message is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended<'a> {
    pub execution_arn: &'a str,
    /// `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: &'a str,
    /// The state the execution was in when it ended (`None` when the history has none).
    pub failed_state: Option<&'a str>,
    /// The run's launches (markets, reclaims) and checkpoint resumes.
    pub preemption: &'a Preemption,
    pub error: &'a str,
    /// The failure's cause: a Lambda error's JSON, or text.
    pub cause: &'a str,
    /// What the run cost, as its ledger record says (empty: no record).
    pub cost: &'a str,
}

/// The execution's name and its state machine's, from its ARN
/// (`arn:aws:states:<region>:<account>:execution:<machine>:<name>`).
fn names(arn: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        [_, _, _, region, _, _, machine, name, ..] => (region, machine, name),
        _ => ("", "", arn),
    }
}

/// The e-mail subject: at most 100 characters (SNS's limit).
pub fn subject(ended: &Ended) -> String {
    let (_, machine, name) = names(ended.execution_arn);
    let at = ended
        .failed_state
        .map(|s| format!(" at {s}"))
        .unwrap_or_default();
    let full = format!("spotstep {machine}: {name} {}{at}", ended.status);
    full.chars().take(100).collect()
}

/// The message body.
pub fn message(ended: &Ended) -> String {
    let (region, machine, name) = names(ended.execution_arn);
    let text = cause_text(ended.cause);
    let lines: Vec<&str> = text.lines().collect();
    let quoted = lines
        .iter()
        .take(CAUSE_LINES)
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let more = if lines.len() > CAUSE_LINES {
        format!(
            "\n    ... ({} more lines on the execution's page)",
            lines.len() - CAUSE_LINES
        )
    } else {
        String::new()
    };
    // The run's facts (launches, checkpoints, cost), a paragraph of their own.
    let mut facts = String::new();
    if !ended.preemption.markets.is_empty() {
        facts = format!("Launches: {}\n", ended.preemption.launches());
    }
    for resume in ended.preemption.resume_lines() {
        facts.push_str(&format!("Checkpoint: {resume}\n"));
    }
    if !ended.cost.is_empty() {
        facts.push_str(&format!("Cost: {}\n", ended.cost));
    }
    if !facts.is_empty() {
        facts.push('\n');
    }
    format!(
        "Execution {name} of {machine} ended {status}.\n\
         Failed state: {state}\n\
         Error: {error}\n\
         Cause (first lines):\n{quoted}{more}\n\n{facts}\
         Console: https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}\n\n\
         Its instances and staging are cleaned up. To resume the run: fix the cause, then choose \
         Redrive on that page, or run\n    \
         aws stepfunctions redrive-execution --execution-arn {arn}\n\
         (within 14 days). The redrive resumes at the failed step; finished steps are not rerun.\n",
        status = ended.status,
        state = ended.failed_state.unwrap_or("(unknown)"),
        error = if ended.error.is_empty() { "(none given)" } else { ended.error },
        arn = ended.execution_arn,
    )
}

/// A cause as text: a Lambda error's `errorMessage` in full (it holds the step's output
/// tail), else the cause as it is.
fn cause_text(cause: &str) -> String {
    serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(String::from))
        .unwrap_or_else(|| cause.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:spotstep-data-weekly:run-7";

    fn failed(cause: &str) -> Ended<'_> {
        Ended {
            execution_arn: ARN,
            status: "FAILED",
            failed_state: Some("data-phase1: failed"),
            preemption: &NONE,
            error: "StepFailed",
            cause,
            cost: "",
        }
    }

    static NONE: Preemption = Preemption {
        markets: Vec::new(),
        reclaims: 0,
        resumes: Vec::new(),
    };

    #[test]
    fn names_the_launches_their_reclaims_and_the_checkpoint_resumed_from() {
        let preemption = Preemption {
            markets: vec!["spot".into(), "on-demand".into()],
            reclaims: 1,
            resumes: vec![(
                "train".into(),
                crate::checkpoint::Restored {
                    saved_at: "2026-12-06T08:00:00Z".into(),
                    age_seconds: 4,
                    reason: "notice".into(),
                    complete: true,
                },
            )],
        };
        let text = message(&Ended {
            preemption: &preemption,
            ..failed("x")
        });
        assert!(
            text.contains(
                "    x\n\n\
                 Launches: spot, on-demand (1 reclaim)\n\
                 Checkpoint: step train resumes from a checkpoint 4s old (saved at the spot notice)\n\
                 \nConsole: "
            ),
            "{text}"
        );
    }

    #[test]
    fn names_the_state_the_error_the_cause_the_link_and_the_redrive() {
        let tail: Vec<String> = (1..=40).map(|i| format!("phase1: line {i}")).collect();
        let cause = serde_json::json!({
            "errorType": "StepFailed",
            "errorMessage": format!("step `data-phase1` failed: status Failed (Failed), exit code 3\n{}", tail.join("\n")),
        })
        .to_string();
        let text = message(&failed(&cause));
        assert!(
            text.contains("Execution run-7 of spotstep-data-weekly ended FAILED."),
            "{text}"
        );
        assert!(
            text.contains("Failed state: data-phase1: failed\n"),
            "{text}"
        );
        assert!(text.contains("Error: StepFailed\n"), "{text}");
        assert!(
            text.contains("    step `data-phase1` failed: status Failed (Failed), exit code 3\n"),
            "{text}"
        );
        assert!(text.contains("    phase1: line 11\n"), "{text}");
        assert!(!text.contains("phase1: line 12\n"), "{text}");
        assert!(
            text.contains("(29 more lines on the execution's page)"),
            "{text}"
        );
        assert!(text.contains(
            "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/arn:aws:states:us-east-1:123456789012:execution:spotstep-data-weekly:run-7"
        ), "{text}");
        assert!(
            text.contains(&format!(
                "aws stepfunctions redrive-execution --execution-arn {ARN}"
            )),
            "{text}"
        );
    }

    #[test]
    fn a_plain_cause_and_a_missing_state_are_said_as_they_are() {
        let ended = Ended {
            status: "ABORTED",
            failed_state: None,
            error: "",
            ..failed("stopped by the operator")
        };
        let text = message(&ended);
        assert!(
            !text.contains("Cost:"),
            "no ledger record, no cost line: {text}"
        );
        let costed = message(&Ended {
            cost: "$0.0123 (instance $0.0100, ...)",
            ..ended.clone()
        });
        assert!(
            costed.contains(
                "    stopped by the operator\n\nCost: $0.0123 (instance $0.0100, ...)\n\nConsole:"
            ),
            "{costed}"
        );
        assert!(
            text.contains("Failed state: (unknown)\nError: (none given)\n"),
            "{text}"
        );
        assert!(text.contains("    stopped by the operator\n"), "{text}");
        assert_eq!(
            subject(&ended),
            "spotstep spotstep-data-weekly: run-7 ABORTED"
        );
    }

    #[test]
    fn the_subject_fits_sns() {
        assert_eq!(
            subject(&failed("")),
            "spotstep spotstep-data-weekly: run-7 FAILED at data-phase1: failed"
        );
        let long = format!(
            "arn:aws:states:us-east-1:1:execution:{}:{}",
            "m".repeat(80),
            "r".repeat(80)
        );
        let ended = Ended {
            execution_arn: &long,
            ..failed("")
        };
        assert_eq!(subject(&ended).chars().count(), 100);
    }
}
