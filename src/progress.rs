//! An execution's progress, rendered from its history: the one renderer behind
//! `spotstep watch` (and so the demo, which runs `spotstep watch`).
//!
//! [`render`] is a pure function of the history events: the lines of a history are a prefix
//! of the lines of any longer history of the same execution, so a watcher prints
//! `lines[printed..]` after each fetch. What runs now ([`Progress::current`]) is rendered
//! apart ([`running_line`]), since its elapsed time changes with the clock.
//!
//! Line format: `+MM:SS  <what>` (minutes may exceed 59), the time since the execution
//! started; details of the line above are indented by two more spaces. A function error is
//! a line only when it was not retried (caught, or failing the execution); retried errors
//! are counted in [`Current`].

use serde_json::Value;

use crate::asl::state;

/// One history event, as far as progress needs it (from GetExecutionHistory).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's `type`, such as `TaskStateEntered` or `LambdaFunctionFailed`.
    pub kind: String,
    /// When it happened, in milliseconds since the epoch.
    pub at_millis: i64,
    /// The state entered or exited (`StateEntered`/`StateExited` events).
    pub state: Option<String>,
    /// The JSON output of a state exit, or of a task's submission (`TaskSubmitted`: the
    /// function's answer, such as send-step's record of the command it sent).
    pub output: Option<String>,
    /// The JSON input of a state entry.
    pub input: Option<String>,
    /// The error name of a failure event (Lambda, Task or execution).
    pub error: Option<String>,
    /// The cause of a failure event.
    pub cause: Option<String>,
}

impl Event {
    /// Reads one event of GetExecutionHistory's JSON form (`type`, `timestamp` in seconds
    /// since the epoch, `stateEnteredEventDetails`, ..., `*FailedEventDetails`), as the API
    /// returns it and as recorded in tests; `None` without a `type` or `timestamp`.
    pub fn from_json(v: &Value) -> Option<Event> {
        let kind = v["type"].as_str()?.to_string();
        let at_millis = (v["timestamp"].as_f64()? * 1000.0).round() as i64;
        let details = v.as_object().into_iter().flatten().filter_map(|(k, d)| {
            (k.ends_with("EventDetails") && !k.starts_with("state")).then_some(d)
        });
        let failure = details
            .into_iter()
            .find(|d| d.get("error").is_some() || d.get("cause").is_some());
        let text = |d: Option<&Value>, key: &str| d.and_then(|d| d[key].as_str()).map(String::from);
        let entered = v.get("stateEnteredEventDetails");
        let exited = v
            .get("stateExitedEventDetails")
            .or(v.get("taskSubmittedEventDetails"));
        Some(Event {
            kind,
            at_millis,
            state: text(entered.or(v.get("stateExitedEventDetails")), "name"),
            output: text(exited, "output"),
            input: text(entered, "input"),
            error: text(failure, "error"),
            cause: text(failure, "cause"),
        })
    }
}

/// What runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The step, when the state running is one of a step's (send, poll, failed).
    pub step: Option<String>,
    /// The state running now.
    pub state: String,
    /// Since when: the step's send for a step, else the state's entry (epoch milliseconds).
    pub since_millis: i64,
    /// How many times the state's function failed and was retried (waiting for a step to
    /// end is not counted), and the last such error.
    pub retried: u32,
    pub last_error: Option<String>,
}

/// The rendered progress of a history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// One line per thing that happened, in order.
    pub lines: Vec<String>,
    /// What runs now; `None` before the first state and once the execution ended.
    pub current: Option<Current>,
    /// The end status (`SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`) when the history ends
    /// the execution (a later redrive reopens it).
    pub ended: Option<String>,
}

/// `+MM:SS` for `millis` since the start.
pub fn offset(millis: i64) -> String {
    let s = millis.max(0) / 1000;
    format!("+{:02}:{:02}", s / 60, s % 60)
}

/// A duration in words: `42s`, `3m05s`, `2h03m`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// The first line of a failure's cause: a Lambda's `errorMessage` when the cause is its JSON
/// error, else the cause itself.
pub fn cause_message(cause: &str) -> String {
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(String::from))
        .unwrap_or_else(|| cause.to_string());
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The step a step state belongs to (`<step>: send`, `<step>: poll`, `<step>: failed`), and
/// which of the three it is.
pub(crate) fn step_of(name: &str) -> Option<(&str, &'static str)> {
    [
        (state::send(""), "send"),
        (state::poll(""), "poll"),
        (state::failed(""), "failed"),
    ]
    .into_iter()
    .find_map(|(suffix, which)| name.strip_suffix(suffix.as_str()).map(|s| (s, which)))
}

/// Renders a history (events in order, the first one `ExecutionStarted`).
pub fn render(events: &[Event]) -> Progress {
    let start = events.first().map(|e| e.at_millis).unwrap_or_default();
    let still_running = crate::error::Error::StillRunning(String::new())
        .name()
        .to_string();
    let mut p = Progress::default();
    let mut step_started: Option<(String, i64)> = None;
    // A function error, a line unless the next event retries the function.
    let mut pending: Option<(String, String)> = None;
    for e in events {
        let at = offset(e.at_millis - start);
        match (e.kind.as_str(), pending.take()) {
            ("LambdaFunctionScheduled" | "TaskScheduled", Some((_, retried))) => {
                if let Some(c) = p.current.as_mut() {
                    c.retried += 1;
                    c.last_error = Some(retried);
                }
            }
            (_, Some((at, failed))) => p.lines.push(format!("{at}    {failed}")),
            (_, None) => {}
        }
        let mut line = |text: String| p.lines.push(format!("{at}  {text}"));
        let failure = || {
            format!(
                "{}: {}",
                e.error.as_deref().unwrap_or("error"),
                cause_message(e.cause.as_deref().unwrap_or_default())
            )
        };
        match e.kind.as_str() {
            "ExecutionStarted" => line("started".into()),
            "ExecutionRedriven" => {
                p.ended = None;
                line("redriven: the failed state runs again".into());
            }
            "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => {
                let status = match e.kind.as_str() {
                    "ExecutionSucceeded" => "SUCCEEDED",
                    "ExecutionFailed" => "FAILED",
                    "ExecutionTimedOut" => "TIMED_OUT",
                    _ => "ABORTED",
                };
                let took = duration((e.at_millis - start) / 1000);
                let at_state = p
                    .current
                    .take()
                    .map(|c| format!(" at `{}`", c.state))
                    .unwrap_or_default();
                if e.error.is_some() || e.cause.is_some() {
                    line(format!("{status} after {took}{at_state}: {}", failure()));
                } else {
                    line(format!("{status} after {took}{at_state}"));
                }
                p.ended = Some(status.to_string());
            }
            "LambdaFunctionFailed" | "LambdaFunctionTimedOut" | "TaskFailed" | "TaskTimedOut"
                if e.error.as_deref() != Some(still_running.as_str())
                    && p.current
                        .as_ref()
                        .is_none_or(|c| step_of(&c.state).is_none_or(|(_, w)| w != "failed")) =>
            {
                pending = Some((at.clone(), failure()));
            }
            "TaskSubmitted" => {
                if let Some((step, restored)) = crate::preemption::resume_of(e) {
                    line(format!("  step {step}: {}", restored.describe()));
                }
            }
            kind if kind.ends_with("StateEntered") => {
                let name = e.state.clone().unwrap_or_default();
                let step = step_of(&name).map(|(s, which)| (s.to_string(), which));
                let since = match &step {
                    Some((s, "send")) => {
                        line(format!("step {s}: started"));
                        step_started = Some((s.clone(), e.at_millis));
                        e.at_millis
                    }
                    Some((s, "failed")) => {
                        line(format!(
                            "step {s}: failed: cleaning up; the execution fails here (redrive to send it again)"
                        ));
                        e.at_millis
                    }
                    Some((s, _)) => step_started
                        .as_ref()
                        .filter(|(started, _)| started == s)
                        .map_or(e.at_millis, |(_, t)| *t),
                    None => {
                        match name.as_str() {
                            state::LAUNCH | state::WAIT_FOR_AGENT | state::FINISH => {
                                line(name.clone())
                            }
                            state::RELAUNCH_CLEAN_UP => line(
                                "relaunch: the instance is gone; cleaning up, then a new one"
                                    .into(),
                            ),
                            _ => {}
                        }
                        e.at_millis
                    }
                };
                p.current = Some(Current {
                    step: step.map(|(s, _)| s),
                    state: name,
                    since_millis: since,
                    retried: 0,
                    last_error: None,
                });
            }
            kind if kind.ends_with("StateExited") => {
                let name = e.state.clone().unwrap_or_default();
                let output: Value = e
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                let r = &output["result"];
                // A caught error's exit (moto) still carries an earlier step's result.
                let polled = step_of(&name)
                    .filter(|(s, which)| matches!(*which, "send" | "poll") && r["step"] == *s);
                if let Some((s, _)) = polled {
                    let took = r["duration_seconds"]
                        .as_i64()
                        .or_else(|| step_started.as_ref().map(|(_, t)| (e.at_millis - t) / 1000));
                    line(format!(
                        "step {s}: {} (exit {}) in {}",
                        r["status"].as_str().unwrap_or("done"),
                        r["exit_code"]
                            .as_i64()
                            .map_or("?".to_string(), |c| c.to_string()),
                        took.map_or("?".to_string(), duration)
                    ));
                    step_started = None;
                } else if name == state::LAUNCH {
                    let l = &output["launch"];
                    let field = |k: &str| l[k].as_str().unwrap_or("?").to_string();
                    let reclaims = match l["reclaims"].as_u64().unwrap_or_default() {
                        0 => String::new(),
                        1 => ", after 1 reclaim".to_string(),
                        n => format!(", after {n} reclaims"),
                    };
                    line(format!(
                        "  instance {} ({}, {}, {}), attempt {}{reclaims}",
                        field("instance_id"),
                        field("instance_type"),
                        field("market"),
                        field("availability_zone"),
                        l["attempt"].as_i64().unwrap_or_default()
                    ));
                }
                if p.current.as_ref().is_some_and(|c| c.state == name) {
                    p.current = None;
                }
            }
            _ => {}
        }
    }
    p
}

/// The line for what runs now, at `now_millis`: `now: step <step> running for 42s (<state>)`
/// or `now: <state> for 3s`.
pub fn running_line(current: &Current, now_millis: i64) -> String {
    let took = duration((now_millis - current.since_millis) / 1000);
    let retried = match &current.last_error {
        Some(error) => format!("; retried {}x, last: {}", current.retried, error),
        None => String::new(),
    };
    match &current.step {
        Some(step) => format!(
            "now: step {step} running for {took} ({}){retried}",
            current.state
        ),
        None => format!("now: {} for {took}{retried}", current.state),
    }
}

/// A `TaskStateEntered` event of `state` with `input` (tests of what reads histories).
#[cfg(test)]
pub(crate) fn task_entered(state: &str, input: serde_json::Value) -> Event {
    Event {
        kind: "TaskStateEntered".into(),
        at_millis: 0,
        state: Some(state.into()),
        output: None,
        input: Some(input.to_string()),
        error: None,
        cause: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(file: &str) -> Vec<Event> {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Event::from_json(e).unwrap())
            .collect()
    }

    #[test]
    fn a_run_that_succeeded() {
        let p = render(&history("history-succeeded.json"));
        assert_eq!(p.ended.as_deref(), Some("SUCCEEDED"));
        assert_eq!(p.current, None);
        let text: Vec<&str> = p.lines.iter().map(|l| &l[8..]).collect();
        assert_eq!(
            text,
            [
                "started",
                "Launch",
                "  instance i-febd21cf7e070f241 (t3.micro, spot, us-east-1a), attempt 1",
                "Wait for agent",
                "step prepare: started",
                "step prepare: Success (exit 0) in 0s",
                "step quoting: started",
                "step quoting: Success (exit 0) in 0s",
                "Finish",
                "SUCCEEDED after 3s",
            ]
        );
        assert!(p.lines.iter().all(|l| l.starts_with("+00:")), "{p:?}");
    }

    #[test]
    fn a_reclaim_relaunches_and_a_failure_names_its_state() {
        let p = render(&history("history-reclaimed-failed.json"));
        assert_eq!(p.ended.as_deref(), Some("FAILED"));
        let text = p.lines.join("\n");
        for expected in [
            "  InstanceReclaimed: instance i-",
            "relaunch: the instance is gone",
            "attempt 2",
            "step big-output: started",
            "  StepFailed: step `big-output` failed",
            "step big-output: failed: cleaning up",
            "FAILED after ",
            " at `big-output: failed`: StepFailed: step `big-output` failed",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        // Retried waits for the agent are not lines; the step's error is one line, not one
        // per state that carried it.
        assert!(!text.contains("AgentNotOnline"), "{text}");
        assert_eq!(text.matches("  StepFailed:").count(), 1, "{text}");
        assert!(!text.contains("step big-output: Success"), "{text}");
    }

    #[test]
    fn lines_of_a_prefix_are_a_prefix_and_the_running_step_is_current() {
        let events = history("history-reclaimed-failed.json");
        let full = render(&events).lines;
        for n in 1..events.len() {
            let part = render(&events[..n]);
            assert_eq!(part.lines, full[..part.lines.len()], "prefix of {n} events");
        }
        // Cut while `slow` is polled after the relaunch's `Wait for agent` retried once.
        let at = events
            .iter()
            .rposition(|e| e.state.as_deref() == Some("slow: poll") && e.kind.ends_with("Entered"))
            .unwrap();
        let p = render(&events[..=at + 2]);
        let current = p.current.clone().unwrap();
        assert_eq!(current.step.as_deref(), Some("slow"));
        assert_eq!(current.state, "slow: poll");
        let send = events[..at]
            .iter()
            .rev()
            .find(|e| e.state.as_deref() == Some("slow: send") && e.kind.ends_with("Entered"))
            .unwrap();
        assert_eq!(current.since_millis, send.at_millis);
        assert_eq!(
            running_line(&current, send.at_millis + 75_000),
            "now: step slow running for 1m15s (slow: poll)"
        );
        let agent = events
            .iter()
            .rposition(|e| e.state.as_deref() == Some("Wait for agent"))
            .unwrap();
        let waiting = render(&events[..agent]).current.unwrap();
        assert_eq!(waiting.state, "Wait for agent");
        assert_eq!(waiting.retried, 1);
        assert!(
            running_line(&waiting, waiting.since_millis + 3_000).starts_with(
                "now: Wait for agent for 3s; retried 1x, last: AgentNotOnline: the SSM agent"
            ),
            "{}",
            running_line(&waiting, waiting.since_millis)
        );
    }

    #[test]
    fn a_relaunch_names_its_market_and_reclaims_and_a_resume_its_checkpoint() {
        let events: Vec<Event> = [
            serde_json::json!({"type": "ExecutionStarted", "timestamp": 100.0}),
            serde_json::json!({"type": "TaskStateExited", "timestamp": 130.0, "stateExitedEventDetails": {
                "name": state::LAUNCH,
                "output": serde_json::json!({"launch": {"instance_id": "i-2", "instance_type": "g5.xlarge",
                    "market": "on-demand", "availability_zone": "us-east-1a", "attempt": 3, "reclaims": 2}}).to_string()}}),
            serde_json::json!({"type": "TaskStateEntered", "timestamp": 140.0, "stateEnteredEventDetails": {
                "name": state::send("train"), "input": "{}"}}),
            serde_json::json!({"type": "TaskSubmitted", "timestamp": 141.0, "taskSubmittedEventDetails": {
                "output": serde_json::json!({"StatusCode": 200, "Payload": {"step": "train", "command_id": "c",
                    "checkpoint": {"saved_at": "2026-12-06T08:00:00Z", "age_seconds": 75, "reason": "notice", "complete": true}}}).to_string()}}),
        ]
        .iter()
        .map(|e| Event::from_json(e).unwrap())
        .collect();
        let p = render(&events);
        let text: Vec<&str> = p.lines.iter().map(|l| &l[8..]).collect();
        assert_eq!(
            text,
            [
                "started",
                "  instance i-2 (g5.xlarge, on-demand, us-east-1a), attempt 3, after 2 reclaims",
                "step train: started",
                "  step train: resumes from a checkpoint 1m15s old (saved at the spot notice)",
            ]
        );
        assert_eq!(p.current.unwrap().state, state::send("train"));
    }

    #[test]
    fn durations_and_offsets() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7380), "2h03m");
        assert_eq!(offset(61_999), "+01:01");
        assert_eq!(offset(-5), "+00:00");
    }

    #[test]
    fn causes_are_a_lambda_error_message_first_line() {
        assert_eq!(
            cause_message(r#"{"errorType":"StepFailed","errorMessage":"step `x` exit 3\nmore"}"#),
            "step `x` exit 3"
        );
        assert_eq!(cause_message("plain\nrest"), "plain");
    }
}
