//! A step waits on a task token: what is recorded while it waits, and the events that can end
//! the wait.
//!
//! Each step's send state is `lambda:invoke.waitForTaskToken`. send-step writes the
//! [`SendMarker`] (S3, under the run's staging prefix, so it is deleted with the staging)
//! *before* SendCommand, holding the token and everything poll-result needs to decide the
//! step's outcome, then completes it with the command. poll-result answers the token when an
//! event tells it (SSM invocation status change, spot interruption warning, instance state
//! change), when the 5-minute reconciler finds the command ended or the instance gone, or
//! when a retried send finds its command already ended. The token never goes to the instance
//! or into the command (its Comment holds 100 characters; a token up to 2,048).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::manifest::{JobSpec, StepSpec};
use crate::records::{Command, Launch, Run};

/// The S3 record of one step's send in one redrive round
/// ([`naming::send_marker_key`](crate::naming::send_marker_key)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMarker {
    pub run: Run,
    pub job: JobSpec,
    pub instance: Launch,
    /// The step, without its script.
    pub step: StepSpec,
    /// The redrive round the step was sent in.
    pub round: u32,
    /// The waiting state's `$$.Task.Token` (a retried send writes its own).
    pub task_token: String,
    /// `None` until SendCommand answered.
    #[serde(default)]
    pub command: Option<Command>,
    /// Empty while the step waits; then the answer given: [`SUCCEEDED`] or an error name.
    #[serde(default)]
    pub answer: String,
    /// Where in a sweep the command runs (a lane's setup step, or a shard); none for the
    /// run's own steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<crate::fanout::Slot>,
}

/// The answer recorded for a step that succeeded.
pub const SUCCEEDED: &str = "Succeeded";

impl SendMarker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SendMarker always serializes")
    }

    /// Reads a marker; `None` for one this version cannot read (written by another).
    pub fn parse(text: &str) -> Option<SendMarker> {
        serde_json::from_str(text).ok()
    }

    /// True while its token is unanswered.
    pub fn waiting(&self) -> bool {
        self.answer.is_empty()
    }

    /// The command id, once sent.
    pub fn command_id(&self) -> Option<&str> {
        self.command.as_ref().map(|c| c.command_id.as_str())
    }
}

/// The instances a run in redrive round `round` still uses, by its send markers: every
/// instance a step of this round waits on, and the instance of the run's latest send (its
/// command sent last, or not recorded yet), which covers the moment between one step's
/// answer and the next step's send. A redrive that resumes on the instance it had keeps that
/// instance's older round tag: these markers, not the tag, say that the run still uses it.
/// (A marker of an earlier round can stay unanswered for good: its token died with that
/// round.)
pub fn instances_in_use(markers: &[SendMarker], round: u32) -> Vec<String> {
    let latest = markers
        .iter()
        .max_by_key(|m| (m.round, m.command.as_ref().map(|c| c.sent_at.clone())));
    let mut ids: Vec<String> = markers
        .iter()
        .filter(|m| m.waiting() && m.round == round)
        .chain(latest)
        .map(|m| m.instance.instance_id.clone())
        .filter(|id| !id.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The largest `cause` SendTaskFailure accepts (characters).
pub const MAX_CAUSE_CHARS: usize = 32_768;

/// `cause` cut to fit SendTaskFailure: the head (what failed and what to do) and the end of
/// the output tail are kept, the middle is cut and says so.
pub fn fit_cause(cause: &str) -> String {
    let chars: Vec<char> = cause.chars().collect();
    if chars.len() <= MAX_CAUSE_CHARS {
        return cause.to_string();
    }
    let marker = "\n[... cut to fit the 32,768 characters of a task failure's cause ...]\n";
    let keep = MAX_CAUSE_CHARS - marker.chars().count();
    let head = keep / 4;
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push_str(marker);
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// The EventBridge events poll-result is told by, and the schedule of its reconciler.
pub mod events {
    use serde_json::{json, Value};

    pub const COMMAND_INVOCATION: &str = "EC2 Command Invocation Status-change Notification";
    pub const SPOT_WARNING: &str = "EC2 Spot Instance Interruption Warning";
    pub const INSTANCE_STATE: &str = "EC2 Instance State-change Notification";
    pub const SCHEDULED: &str = "Scheduled Event";

    /// The invocation statuses that end a command (the rule matches only these).
    pub const TERMINAL_STATUSES: [&str; 4] = ["Success", "Failed", "TimedOut", "Cancelled"];
    /// The instance states that mean it is going away.
    pub const GOING_STATES: [&str; 3] = ["stopping", "shutting-down", "terminated"];

    /// The reconciler's schedule (production).
    pub const RECONCILE_SCHEDULE: &str = "rate(5 minutes)";
    /// [`RECONCILE_SCHEDULE`] in seconds (the ledger counts the ticks a run overlaps).
    pub const RECONCILE_EVERY_SECONDS: u64 = 300;

    /// Each rule feeding poll-result: its name in `template.yaml` and its event pattern.
    pub fn rules() -> Vec<(&'static str, Value)> {
        vec![
            (
                "CommandEndedRule",
                json!({
                    "source": ["aws.ssm"],
                    "detail-type": [COMMAND_INVOCATION],
                    "detail": {
                        "status": TERMINAL_STATUSES,
                        "document-name": [crate::aws::ssm::DOCUMENT],
                    },
                }),
            ),
            (
                "SpotWarningRule",
                json!({"source": ["aws.ec2"], "detail-type": [SPOT_WARNING]}),
            ),
            (
                "InstanceGoingRule",
                json!({
                    "source": ["aws.ec2"],
                    "detail-type": [INSTANCE_STATE],
                    "detail": {"state": GOING_STATES},
                }),
            ),
        ]
    }
}

/// What an event told poll-result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// A command's invocation on an instance reached a terminal status.
    CommandEnded {
        command_id: String,
        instance_id: String,
        status: String,
    },
    /// EC2 will reclaim the spot instance in about two minutes.
    SpotWarning { instance_id: String, action: String },
    /// The instance is stopping, shutting down or terminated.
    InstanceGoing { instance_id: String, state: String },
    /// The reconciler's schedule.
    Reconcile,
    /// An event about something that is not this stack's to answer: another document's
    /// command, a hybrid node (`mi-…`), an instance state that is not a going one.
    Foreign { why: String },
}

/// Reads an EventBridge event; `None` when `input` is not one (a state's input).
pub fn told(input: &Value) -> Option<Result<Told>> {
    let kind = input.get("detail-type")?.as_str()?;
    let detail = &input["detail"];
    let field = |k: &str| {
        detail
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .ok_or_else(|| Error::InvalidInput(format!("`{kind}` event without detail.{k}")))
    };
    let instance = || field("instance-id").and_then(checked_instance_id);
    let foreign = |why: String| Ok(Told::Foreign { why });
    let parsed = match kind {
        events::COMMAND_INVOCATION => (|| {
            if let Some(document) = detail.get("document-name").and_then(Value::as_str) {
                if document != crate::aws::ssm::DOCUMENT {
                    return foreign(format!("a command of document `{document}`"));
                }
            }
            let id = field("instance-id")?;
            if is_managed_node_id(&id) {
                return foreign(format!(
                    "a command on managed node {id}, not an EC2 instance"
                ));
            }
            Ok(Told::CommandEnded {
                command_id: field("command-id")?,
                instance_id: checked_instance_id(id)?,
                status: field("status")?,
            })
        })(),
        events::SPOT_WARNING => (|| {
            Ok(Told::SpotWarning {
                instance_id: instance()?,
                action: field("instance-action").unwrap_or_else(|_| "terminate".into()),
            })
        })(),
        events::INSTANCE_STATE => (|| {
            let state = field("state")?;
            if !events::GOING_STATES.contains(&state.as_str()) {
                return foreign(format!("an instance that is {state}"));
            }
            Ok(Told::InstanceGoing {
                instance_id: instance()?,
                state,
            })
        })(),
        events::SCHEDULED => Ok(Told::Reconcile),
        other => Err(Error::InvalidInput(format!(
            "poll-result does not handle `{other}` events"
        ))),
    };
    Some(parsed)
}

/// A hybrid or on-premises managed node's id (`mi-` and 17 hex characters): a valid
/// `InstanceId` for SSM, never one of this stack's instances.
fn is_managed_node_id(id: &str) -> bool {
    id.strip_prefix("mi-")
        .is_some_and(|hex| hex.len() == 17 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// An instance id as EC2 writes them (`i-` and hex): events are input too.
fn checked_instance_id(id: String) -> Result<String> {
    let ok = id.len() <= 32
        && id
            .strip_prefix("i-")
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(id)
    } else {
        Err(Error::InvalidInput(format!(
            "`{id}` is not an EC2 instance id"
        )))
    }
}

/// The error a spot interruption warning answers a waiting step with.
pub fn reclaim_warning(instance_id: &str, action: &str, step: &str) -> Error {
    Error::InstanceReclaimed(format!(
        "instance {instance_id} got EC2's spot interruption warning (action: {action}) while step \
         `{step}` ran: spot reclaims it in about two minutes; the state machine relaunches and \
         resumes at this step"
    ))
}

/// What a waiting state's token is answered with: success with the step's result, or
/// failure with a stable error name and the cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Success(Value),
    Failure { error: String, cause: String },
}

impl Answer {
    /// The answer for an outcome: `Ok(None)` while the step is still running (nothing to say
    /// yet); an error that is not the step's (AWS failing us) is returned as it is.
    pub fn of<T: Serialize>(outcome: &Result<T>) -> Result<Option<Answer>> {
        match outcome {
            Ok(result) => Ok(Some(Answer::Success(json!(result)))),
            Err(Error::StillRunning(_) | Error::AgentNotOnline(_)) => Ok(None),
            Err(
                e @ (Error::StepFailed(_) | Error::InstanceLost(_) | Error::InstanceReclaimed(_)),
            ) => Ok(Some(Answer::Failure {
                error: e.name().to_string(),
                cause: fit_cause(&e.to_string()),
            })),
            Err(e) => Err(e.clone()),
        }
    }

    /// What the marker records once the answer is delivered.
    pub fn recorded(&self) -> &str {
        match self {
            Answer::Success(_) => SUCCEEDED,
            Answer::Failure { error, .. } => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, detail: Value) -> Value {
        json!({"version": "0", "detail-type": kind, "source": "aws.ssm", "detail": detail})
    }

    #[test]
    fn events_are_read_by_detail_type() {
        let ended = event(
            events::COMMAND_INVOCATION,
            json!({"command-id": "c-1", "instance-id": "i-0abc", "status": "Success"}),
        );
        assert_eq!(
            told(&ended).unwrap().unwrap(),
            Told::CommandEnded {
                command_id: "c-1".into(),
                instance_id: "i-0abc".into(),
                status: "Success".into()
            }
        );
        let warning = event(
            events::SPOT_WARNING,
            json!({"instance-id": "i-0abc", "instance-action": "terminate"}),
        );
        assert!(matches!(
            told(&warning).unwrap().unwrap(),
            Told::SpotWarning { .. }
        ));
        let going = event(
            events::INSTANCE_STATE,
            json!({"instance-id": "i-0abc", "state": "shutting-down"}),
        );
        assert_eq!(
            told(&going).unwrap().unwrap(),
            Told::InstanceGoing {
                instance_id: "i-0abc".into(),
                state: "shutting-down".into()
            }
        );
        assert_eq!(
            told(&event(events::SCHEDULED, json!({}))).unwrap().unwrap(),
            Told::Reconcile
        );
        assert!(told(&json!({"run": {}})).is_none());
    }

    #[test]
    fn events_about_other_things_are_foreign() {
        let hybrid = event(
            events::COMMAND_INVOCATION,
            json!({"command-id": "c", "instance-id": "mi-0123456789abcdef0", "status": "Success", "document-name": "AWS-RunShellScript"}),
        );
        let other_document = event(
            events::COMMAND_INVOCATION,
            json!({"command-id": "c", "instance-id": "i-0abc", "status": "Success", "document-name": "AWS-RunPatchBaseline"}),
        );
        let pending = event(
            events::INSTANCE_STATE,
            json!({"instance-id": "i-0abc", "state": "pending"}),
        );
        for foreign in [hybrid, other_document, pending] {
            assert!(
                matches!(told(&foreign).unwrap(), Ok(Told::Foreign { .. })),
                "{foreign}"
            );
        }
    }

    #[test]
    fn malformed_events_are_invalid_input() {
        let no_instance = event(events::COMMAND_INVOCATION, json!({"command-id": "c"}));
        let err = told(&no_instance).unwrap().unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)));
        assert!(err.to_string().contains("detail.instance-id"), "{err}");
        let bad_id = event(events::SPOT_WARNING, json!({"instance-id": "../../etc"}));
        assert!(told(&bad_id).unwrap().is_err());
        let other = event("AWS API Call via CloudTrail", json!({}));
        assert!(told(&other)
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("does not handle"));
    }

    #[test]
    fn answers_keep_the_stable_error_names() {
        let failed: Result<()> = Err(Error::StepFailed("boom".into()));
        assert_eq!(
            Answer::of(&failed).unwrap(),
            Some(Answer::Failure {
                error: "StepFailed".into(),
                cause: "boom".into()
            })
        );
        let reclaimed: Result<()> = Err(reclaim_warning("i-1", "terminate", "deps"));
        assert_eq!(
            Answer::of(&reclaimed).unwrap().unwrap().recorded(),
            "InstanceReclaimed"
        );
        let running: Result<()> = Err(Error::StillRunning("x".into()));
        assert_eq!(Answer::of(&running), Ok(None));
        let aws: Result<()> = Err(Error::AwsError("x".into()));
        assert_eq!(Answer::of(&aws), Err(Error::AwsError("x".into())));
        assert_eq!(Answer::of(&Ok(1)).unwrap().unwrap().recorded(), SUCCEEDED);
    }

    #[test]
    fn long_causes_keep_their_head_and_end() {
        let cause = format!(
            "step `x` failed: read this\n{}\nlast line",
            "y".repeat(40_000)
        );
        let fitted = fit_cause(&cause);
        assert_eq!(fitted.chars().count(), MAX_CAUSE_CHARS);
        assert!(fitted.starts_with("step `x` failed: read this"));
        assert!(fitted.ends_with("\nlast line"));
        assert!(fitted.contains("cut to fit"));
        assert_eq!(fit_cause("short"), "short");
    }

    fn marker(instance: &str, round: u32, sent_at: Option<&str>, answer: &str) -> SendMarker {
        use crate::records::fixtures;
        SendMarker {
            run: fixtures::run(),
            job: fixtures::job(),
            step: crate::manifest::StepSpec {
                name: "slow".into(),
                kind: crate::manifest::StepKind::Workload,
                timeout_seconds: 60,
                heartbeats: Vec::new(),
                secrets: Default::default(),
                script: String::new(),
                checkpoint: None,
                fan_out: None,
            },
            instance: Launch {
                instance_id: instance.into(),
                ..Launch::default()
            },
            round,
            task_token: "t".into(),
            command: sent_at.map(|at| Command {
                command_id: format!("c-{instance}-{round}"),
                step: "x".into(),
                instance_id: instance.into(),
                round,
                sent_at: at.into(),
                output_prefix: String::new(),
                reused: false,
                checkpoint: None,
            }),
            answer: answer.into(),
            slot: None,
        }
    }

    #[test]
    fn a_run_uses_the_instances_its_round_waits_on_and_its_latest_send() {
        let t1 = Some("2026-11-28T09:00:00Z");
        let t2 = Some("2026-11-28T09:05:00Z");
        // Redriven at once: round 1 waits on the round-0 instance A.
        let redriven = [marker("i-a", 0, t1, ""), marker("i-a", 1, t2, "")];
        assert_eq!(instances_in_use(&redriven, 1), ["i-a"]);
        // Round 1 relaunched onto B: A's dead round-0 marker does not keep A.
        let relaunched = [marker("i-a", 0, t1, ""), marker("i-b", 1, t2, SUCCEEDED)];
        assert_eq!(instances_in_use(&relaunched, 1), ["i-b"]);
        // Between two steps: nothing waits; the latest send names the instance.
        let between = [
            marker("i-a", 0, t1, SUCCEEDED),
            marker("i-b", 0, t2, SUCCEEDED),
        ];
        assert_eq!(instances_in_use(&between, 0), ["i-b"]);
        // Marked, not sent yet.
        assert_eq!(instances_in_use(&[marker("i-c", 2, None, "")], 2), ["i-c"]);
        assert!(instances_in_use(&[], 0).is_empty());
    }

    #[test]
    fn the_command_rule_matches_only_terminal_statuses() {
        let rules = events::rules();
        let command = &rules[0].1;
        assert_eq!(
            command["detail"]["status"],
            json!(["Success", "Failed", "TimedOut", "Cancelled"])
        );
        assert_eq!(rules.len(), 3);
    }
}
