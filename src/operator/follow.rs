//! `spotstep logs --follow`: a step's output as it arrives, until the step ends.

use std::io::Write;

use aws_sdk_sfn::Client as Sfn;
use serde_json::Value;

use super::logs::{command_of, print_s3_output, step_named, Sent, Sources};
use super::watch::Watching;
use super::{io, Failure};
use crate::aws::{logs, sfn, ssm};
use crate::cli::exit;
use crate::naming;
use crate::progress;

/// How the last send of `step` in a history ended, as an exit code: [`exit::OK`] when its
/// poll returned the step's result, [`exit::FAILED`] when the step failed (`StepFailed`),
/// the execution's code ([`exit::of_status`]) when the execution ended first (an instance
/// lost, a stop, a timeout). `None` while the step runs, before it is sent, and while it
/// waits to be sent again (a relaunch; a redrive after it failed).
pub fn step_end(events: &[progress::Event], step: &str) -> Option<u8> {
    use crate::asl::state;
    let (send, poll) = (state::send(step), state::poll(step));
    let own = |s: Option<&str>| s == Some(send.as_str()) || s == Some(poll.as_str());
    let step_failed = crate::error::Error::StepFailed(String::new()).name();
    let mut end = None;
    let mut sent = false;
    let mut current: Option<&str> = None;
    for e in events {
        let kind = e.kind.as_str();
        match kind {
            "ExecutionRedriven" if end != Some(exit::OK) => end = None,
            "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"
                if sent && end.is_none() =>
            {
                let status = match kind {
                    "ExecutionSucceeded" => "SUCCEEDED",
                    "ExecutionTimedOut" => "TIMED_OUT",
                    "ExecutionAborted" => "ABORTED",
                    _ => "FAILED",
                };
                end = Some(exit::of_status(status));
            }
            "LambdaFunctionFailed" | "TaskFailed"
                if own(current) && e.error.as_deref() == Some(step_failed) =>
            {
                end = Some(exit::FAILED);
            }
            _ if kind.ends_with("StateEntered") => {
                current = e.state.as_deref();
                if current == Some(send.as_str()) {
                    sent = true;
                    end = None;
                }
            }
            _ if kind.ends_with("StateExited") && own(e.state.as_deref()) => {
                let output: Value = e
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                if output["result"]["step"] == step {
                    end = Some(exit::OK);
                }
            }
            _ => {}
        }
    }
    end.filter(|_| sent)
}

/// `spotstep logs --follow`: prints the output of `step` (default: the last step sent) as
/// it arrives in CloudWatch Logs (the command's stdout stream in the log group SSM streams
/// it to), following the step's new command when it is sent again, until the step ends
/// ([`step_end`]); returns that exit code. A command that streams to no log group is
/// printed from S3 once the step ends. Headers go to `note`, output to `out`.
pub async fn follow(
    client: &Sfn,
    sources: Sources<'_>,
    arn: &str,
    step: Option<&str>,
    how: Watching,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<u8, Failure> {
    let mut events = sfn::history(client, arn).await?;
    let step = step_named(&events, arn, step)?;
    let mut followed: Option<Sent> = None;
    let mut streaming = ssm::Streaming::Unknown;
    let mut token: Option<String> = None;
    loop {
        let end = step_end(&events, &step);
        let command = command_of(&events, sources.ssm, &step).await?;
        let Some(command) = command.or_else(|| followed.clone()) else {
            tokio::time::sleep(how.interval).await;
            events = sfn::history(client, arn).await?;
            continue;
        };
        if followed.as_ref() != Some(&command) {
            writeln!(
                note,
                "--- step {step}: command {} on {}",
                command.command_id, command.instance_id
            )
            .map_err(io)?;
            (streaming, token) = (ssm::Streaming::Unknown, None);
        }
        if streaming == ssm::Streaming::Unknown {
            streaming =
                ssm::streaming(sources.ssm, &command.command_id, &command.instance_id).await?;
            match &streaming {
                ssm::Streaming::To(group) => writeln!(
                    note,
                    "--- CloudWatch Logs {group} {}",
                    naming::ssm_log_stream(&command.command_id, &command.instance_id, "stdout")
                ),
                ssm::Streaming::Off => writeln!(
                    note,
                    "step {step} streams no output to CloudWatch Logs; its output follows from S3 when it ends"
                ),
                ssm::Streaming::Unknown => Ok(()),
            }
            .map_err(io)?;
        }
        if let ssm::Streaming::To(group) = &streaming {
            let stream =
                naming::ssm_log_stream(&command.command_id, &command.instance_id, "stdout");
            // While the step runs, one read an interval; once it ended, until the stream
            // has nothing more.
            while let Some(page) =
                logs::read(sources.logs, group, &stream, token.as_deref()).await?
            {
                for message in &page.messages {
                    out.write_all(message.as_bytes()).map_err(io)?;
                    if !message.ends_with('\n') {
                        out.write_all(b"\n").map_err(io)?;
                    }
                }
                out.flush().map_err(io)?;
                token = page.next_token.or(token);
                if end.is_none() || page.messages.is_empty() {
                    break;
                }
            }
        }
        followed = Some(command);
        if let Some(code) = end {
            if let (ssm::Streaming::Off | ssm::Streaming::Unknown, Some(command)) =
                (&streaming, &followed)
            {
                print_s3_output(sources.storage, command, out, note).await?;
            }
            let outcome = match code {
                exit::OK => "succeeded".to_string(),
                exit::FAILED => "failed".to_string(),
                other => format!("ended with the execution (exit {other})"),
            };
            writeln!(note, "--- step {step} {outcome}").map_err(io)?;
            return Ok(code);
        }
        tokio::time::sleep(how.interval).await;
        events = sfn::history(client, arn).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        kind: &str,
        state: Option<&str>,
        output: Option<Value>,
        error: Option<&str>,
    ) -> progress::Event {
        progress::Event {
            kind: kind.into(),
            at_millis: 0,
            state: state.map(String::from),
            output: output.map(|o| o.to_string()),
            input: None,
            error: error.map(String::from),
            cause: None,
        }
    }

    #[test]
    fn how_a_followed_step_ended() {
        let entered = |state: &str| event("TaskStateEntered", Some(state), None, None);
        let answered = |step: &str, state: &str| {
            let result = json!({"result": {"step": step, "status": "Success", "exit_code": 0}});
            event(
                "TaskStateExited",
                Some(&format!("{step}: {state}")),
                Some(result),
                None,
            )
        };
        let polled = |step: &str| answered(step, "send");
        let failed = |error: &str| event("TaskFailed", None, None, Some(error));
        let ended = |kind: &str| event(kind, None, None, None);
        let running = vec![ended("ExecutionStarted"), entered("slow: send")];
        assert_eq!(step_end(&running, "slow"), None);
        assert_eq!(step_end(&[], "slow"), None);
        let done = [running.clone(), vec![polled("slow")]].concat();
        assert_eq!(step_end(&done, "slow"), Some(exit::OK));
        // A wait that timed out ends at the fallback poll.
        let timed_out = [
            running.clone(),
            vec![
                failed("States.Timeout"),
                entered("slow: poll"),
                answered("slow", "poll"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&timed_out, "slow"), Some(exit::OK));
        // Another step's result does not end it; the execution's end does.
        let other = [running.clone(), vec![polled("quick")]].concat();
        assert_eq!(step_end(&other, "slow"), None);
        let aborted = [other, vec![ended("ExecutionAborted")]].concat();
        assert_eq!(step_end(&aborted, "slow"), Some(exit::ABORTED));
        // A failure, then a redrive: it waits for the step to be sent again.
        let step_failed = [
            running.clone(),
            vec![
                failed("StepFailed"),
                entered("slow: failed"),
                ended("ExecutionFailed"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&step_failed, "slow"), Some(exit::FAILED));
        let redriven = [
            step_failed,
            vec![ended("ExecutionRedriven"), entered("slow: failed")],
        ]
        .concat();
        assert_eq!(step_end(&redriven, "slow"), None);
        let sent_again = [redriven, vec![entered("slow: send"), polled("slow")]].concat();
        assert_eq!(step_end(&sent_again, "slow"), Some(exit::OK));
        // A relaunch sends it again; a later step's failure is not its end.
        let relaunched = [
            running.clone(),
            vec![
                failed("InstanceReclaimed"),
                entered("slow: resume here"),
                entered("Launch"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&relaunched, "slow"), None);
        let later = [done, vec![entered("big: send"), failed("StepFailed")]].concat();
        assert_eq!(step_end(&later, "slow"), Some(exit::OK));
    }
}
