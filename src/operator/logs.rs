//! `spotstep logs`: a step's full output from S3, and how a history names the commands its
//! steps were sent as (which `--follow` reads too).

use std::io::Write;

use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_s3::Client as S3;
use aws_sdk_sfn::Client as Sfn;
use aws_sdk_ssm::Client as Ssm;
use serde_json::Value;

use super::{io, Aws, Failure};
use crate::aws::{s3, sfn, ssm};
use crate::cli::{self, exit, Target};
use crate::naming::{self, parse_s3_uri};
use crate::progress;

/// The arguments of `spotstep logs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LogsOptions {
    /// The execution: its ARN, or `<job>/<run-id>`
    #[arg(value_name = "execution")]
    pub execution: String,
    /// The step (default: the last step sent)
    #[arg(value_name = "step", value_parser = cli::name("step"))]
    pub step: Option<String>,
    /// Print the step's lines as they arrive, until it ends
    #[arg(long, conflicts_with = "shard")]
    pub follow: bool,
    /// A fan-out step's shard: print that shard's full output (every command it ran as)
    #[arg(long, value_name = "K", requires = "step")]
    pub shard: Option<u32>,
    #[command(flatten)]
    pub target: Target,
}

impl LogsOptions {
    /// Prints the step's output ([`logs`]), or follows it ([`follow`](super::follow::follow)).
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let e = super::execution(aws.env.sfn().await, &self.target, &self.execution).await?;
        let sources = Sources {
            ssm: aws.env.ssm().await,
            logs: aws.env.logs().await,
            storage: aws.env.s3().await,
        };
        let (step, arn) = (self.step.as_deref(), &e.arn);
        let (mut out, mut note) = (std::io::stdout(), std::io::stderr());
        if let (Some(shard), Some(step)) = (self.shard, step) {
            let events = sfn::history(aws.env.sfn().await, arn).await?;
            super::shards::print_shard(
                aws.env.s3().await,
                &events,
                arn,
                step,
                shard,
                &mut out,
                &mut note,
            )
            .await?;
            return Ok(exit::OK);
        }
        if self.follow {
            let how = aws.how;
            return super::follow::follow(
                aws.env.sfn().await,
                sources,
                arn,
                step,
                how,
                &mut out,
                &mut note,
            )
            .await;
        }
        logs(aws.env.sfn().await, sources, arn, step, &mut out, &mut note).await?;
        Ok(exit::OK)
    }
}

/// A command a step was sent as: from the result its token was answered with, or, while the
/// step waits, from SSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub step: String,
    pub command_id: String,
    pub instance_id: String,
    /// `s3://<bucket>/logs/<job>/<run_id>/<step>`.
    pub output_prefix: String,
}

/// The step a send or poll state belongs to.
fn step_of_state(name: &str) -> Option<&str> {
    use crate::asl::state;
    name.strip_suffix(&state::send(""))
        .or_else(|| name.strip_suffix(&state::poll("")))
}

/// The steps that ended in a history, in order (one per end, so a step sent twice is
/// twice): the result a send's token was answered with, or a fallback poll's.
pub fn sent(events: &[progress::Event]) -> Vec<Sent> {
    events
        .iter()
        .filter(|e| e.kind.ends_with("StateExited"))
        .filter_map(|e| {
            let step = step_of_state(e.state.as_deref()?)?;
            let v: Value = serde_json::from_str(e.output.as_deref()?).ok()?;
            let r = &v["result"];
            let field = |k: &str| r[k].as_str().map(String::from);
            // A caught error's exit still carries an earlier step's result.
            if r["step"] != step {
                return None;
            }
            let command_id = field("command_id")?;
            let output = field("output")?;
            let (output_prefix, _) = output.split_once(&format!("/{command_id}/"))?;
            Some(Sent {
                step: step.to_string(),
                output_prefix: output_prefix.to_string(),
                instance_id: field("instance_id")?,
                command_id,
            })
        })
        .collect()
}

/// A send of a step: its name, run id and instance, from the send state's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendEntered {
    pub step: String,
    pub run_id: String,
    pub instance_id: String,
}

/// Every entry of a send state in a history, with its position.
fn sends_entered(events: &[progress::Event]) -> Vec<(usize, SendEntered)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind.ends_with("StateEntered"))
        .filter_map(|(i, e)| {
            let step = e
                .state
                .as_deref()?
                .strip_suffix(&crate::asl::state::send(""))?;
            let input: Value = serde_json::from_str(e.input.as_deref()?).ok()?;
            Some((
                i,
                SendEntered {
                    step: step.to_string(),
                    run_id: input["run"]["run_id"].as_str()?.to_string(),
                    instance_id: input["launch"]["instance_id"].as_str()?.to_string(),
                },
            ))
        })
        .collect()
}

/// The step waiting on its token now: the last state entered is its send, it has not
/// exited, and the execution has not ended.
pub fn waiting(events: &[progress::Event]) -> Option<SendEntered> {
    let last_entered = events
        .iter()
        .rposition(|e| e.kind.ends_with("StateEntered"))?;
    let over = events[last_entered..].iter().any(|e| {
        e.kind.ends_with("StateExited")
            || (e.kind.starts_with("Execution")
                && !matches!(e.kind.as_str(), "ExecutionStarted" | "ExecutionRedriven"))
    });
    let (at, send) = sends_entered(events).pop()?;
    (at == last_entered && !over).then_some(send)
}

/// The command of a send, from SSM: the latest command on its instance whose Comment names
/// its run and step (`None` until SSM lists it).
async fn listed_command(ssm_client: &Ssm, send: &SendEntered) -> Result<Option<Sent>, Failure> {
    let comment = naming::command_comment_from(&send.step, &naming::run_hash(&send.run_id), "");
    let mut listed: Vec<ssm::Listed> = ssm::commands_on(ssm_client, &send.instance_id)
        .await?
        .into_iter()
        .filter(|c| c.comment.starts_with(&comment) && !c.output_prefix.is_empty())
        .collect();
    listed.sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
    Ok(listed.pop().map(|c| Sent {
        step: send.step.clone(),
        command_id: c.command_id,
        instance_id: send.instance_id.clone(),
        output_prefix: c.output_prefix,
    }))
}

/// The step `logs` is about: `step` (it must have been sent), else the last one sent.
pub(super) fn step_named(
    events: &[progress::Event],
    arn: &str,
    step: Option<&str>,
) -> Result<String, Failure> {
    let entered = sends_entered(events);
    match step {
        Some(s) if entered.iter().any(|(_, x)| x.step == s) => Ok(s.to_string()),
        Some(s) => {
            let mut known: Vec<&str> = entered.iter().map(|(_, x)| x.step.as_str()).collect();
            known.dedup();
            Err(Failure::error(format!(
                "step `{s}` was not sent in {arn} (sent: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )))
        }
        None => entered
            .last()
            .map(|(_, x)| x.step.clone())
            .ok_or_else(|| Failure::error(format!("no step was sent yet in {arn}"))),
    }
}

/// The last command `step` was sent as: the result its last send ended with, else (the step
/// runs, failed, or lost its instance) the command SSM lists for that send; `None` while SSM
/// does not list it yet.
pub(super) async fn command_of(
    events: &[progress::Event],
    ssm_client: &Ssm,
    step: &str,
) -> Result<Option<Sent>, Failure> {
    let Some((at, send)) = sends_entered(events)
        .into_iter()
        .rev()
        .find(|(_, x)| x.step == step)
    else {
        return Ok(None);
    };
    if let Some(done) = sent(&events[at..]).into_iter().find(|x| x.step == step) {
        return Ok(Some(done));
    }
    listed_command(ssm_client, &send).await
}

/// Prints the full output of `chosen` from S3: every command's stdout under the step's log
/// prefix, oldest first (a relaunch or redrive sends it again), then its stderr when not
/// empty. Headers go to `note`, output to `out`.
pub(super) async fn print_s3_output(
    storage: &S3,
    chosen: &Sent,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Failure> {
    let (bucket, key) = parse_s3_uri(&chosen.output_prefix).map_err(Failure::error)?;
    let prefix = format!("{key}/");
    let mut objects = s3::list(storage, &bucket, &prefix).await?;
    objects.sort_by_key(|o| (o.modified_millis, o.key.clone()));
    let stdout: Vec<_> = objects
        .iter()
        .filter(|o| o.key.ends_with("/stdout"))
        .collect();
    if stdout.is_empty() {
        return Err(Failure::error(format!(
            "no output of step `{}` in s3://{bucket}/{prefix} yet",
            chosen.step
        )));
    }
    for o in stdout {
        writeln!(note, "--- s3://{bucket}/{} ({} bytes)", o.key, o.size).map_err(io)?;
        let text = s3::read(storage, &bucket, &o.key)
            .await?
            .unwrap_or_default();
        out.write_all(text.as_bytes()).map_err(io)?;
        let stderr_key = format!("{}stderr", o.key.trim_end_matches("stdout"));
        if let Some(err) = s3::read(storage, &bucket, &stderr_key)
            .await?
            .filter(|t| !t.is_empty())
        {
            writeln!(note, "--- s3://{bucket}/{stderr_key}").map_err(io)?;
            out.write_all(err.as_bytes()).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// `spotstep logs`: the full output of `step` (default: the last step sent) from S3.
pub async fn logs(
    client: &Sfn,
    sources: Sources<'_>,
    arn: &str,
    step: Option<&str>,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Failure> {
    let events = sfn::history(client, arn).await?;
    let step = step_named(&events, arn, step)?;
    if waiting(&events).is_some_and(|w| w.step == step) {
        return Err(Failure::error(format!(
            "step `{step}` is running: its full output reaches S3 when it ends; follow it live \
             with `spotstep logs {arn} {step} --follow`"
        )));
    }
    let command = command_of(&events, sources.ssm, &step)
        .await?
        .ok_or_else(|| {
            Failure::error(format!(
                "step `{step}` was sent in {arn} but SSM lists no command for it"
            ))
        })?;
    print_s3_output(sources.storage, &command, out, note).await
}

/// What `logs --follow` reads besides the execution: SSM (where a command streams its
/// output), CloudWatch Logs (the stream) and S3 (the output of a command that streams none).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub ssm: &'a Ssm,
    pub logs: &'a Logs,
    pub storage: &'a S3,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sent_steps_and_the_step_waiting() {
        let exited = |state: &str, output: Value| progress::Event {
            kind: "TaskStateExited".into(),
            at_millis: 0,
            state: Some(state.into()),
            output: Some(output.to_string()),
            input: None,
            error: None,
            cause: None,
        };
        let command = |step: &str| {
            json!({"result": {"step": step, "command_id": format!("c-{step}"), "instance_id": "i-1",
                "output": format!("s3://b/logs/demo/r1/{step}/c-{step}/i-1/awsrunShellScript/0.awsrunShellScript/stdout")}})
        };
        let events = [
            exited("prepare: send", command("prepare")),
            exited("fail: send", command("prepare")),
            exited("fail: poll", command("fail")),
        ];
        let expected = |step: &str| Sent {
            step: step.into(),
            command_id: format!("c-{step}"),
            instance_id: "i-1".into(),
            output_prefix: format!("s3://b/logs/demo/r1/{step}"),
        };
        assert_eq!(sent(&events), [expected("prepare"), expected("fail")]);
        let entered = progress::task_entered;
        let data = json!({"run": {"run_id": "r1"}, "launch": {"instance_id": "i-1"}});
        let now = [entered("slow: send", data.clone())];
        assert_eq!(
            waiting(&now),
            Some(SendEntered {
                step: "slow".into(),
                run_id: "r1".into(),
                instance_id: "i-1".into()
            })
        );
        let after = [now[0].clone(), entered("Finish", data)];
        assert_eq!(waiting(&after), None);
    }
}
