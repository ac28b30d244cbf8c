//! poll-result: read a step's invocation. Not finished is the retryable `StillRunning` (the
//! state machine polls through Retry); success returns where the full output is; anything
//! else checks the instance first (a reclaim is `InstanceReclaimed`), then fails the step
//! with the last 40 lines of its real output, read from S3.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::aws::{ec2, s3, ssm};
use crate::env::{parse_rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::input::{parse, Checked};
use crate::manifest::{JobSpec, StepKind, StepSpec};
use crate::naming;
use crate::records::{Command, Launch, Run};
use crate::status::{classify, tail_lines, Failure, Verdict};
use crate::telemetry;

/// How many lines of output a failure message ends with.
pub const TAIL_LINES: usize = 40;
/// How many bytes from the end of the output object are read for the tail.
const TAIL_BYTES: u64 = 64 * 1024;

/// What the state machine passes to poll-result.
#[derive(Debug, Deserialize)]
pub struct Input {
    pub run: Run,
    pub job: JobSpec,
    pub instance: Launch,
    pub step: StepSpec,
    pub command: Command,
}

/// A step that succeeded.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StepResult {
    pub step: String,
    pub status: String,
    pub exit_code: i32,
    pub duration_seconds: i64,
    /// The full output in S3.
    pub output: String,
    pub command_id: String,
    pub instance_id: String,
}

impl Checked for Input {
    /// The run against its job, and the command's output prefix: it must be this step's
    /// log prefix, since the step's output is read from there.
    fn check(&self) -> Result<()> {
        self.run.validate(&self.job)?;
        let expected = naming::step_log_prefix(&self.job.name, &self.run.run_id, &self.step.name);
        match naming::parse_s3_uri(&self.command.output_prefix) {
            Ok((_, key)) if key == expected => Ok(()),
            _ => Err(Error::InvalidInput(format!(
                "command.output_prefix `{}` is not s3://<bucket>/{expected}",
                self.command.output_prefix
            ))),
        }
    }
}

/// Handles one poll.
pub async fn handle(env: &Env, input: Value) -> Result<StepResult> {
    let Input {
        run,
        instance,
        step,
        command,
        ..
    } = parse("poll-result input", input)?;
    env.settings.require(&[Need::Bucket])?;
    let id = instance.instance_id.as_str();
    let (bucket, stdout_key) =
        naming::ssm_stdout_object(&command.output_prefix, &command.command_id, id)
            .map_err(Error::InvalidInput)?;
    let output = format!("s3://{bucket}/{stdout_key}");
    let Some(invocation) = ssm::invocation(&env.ssm, &command.command_id, id).await? else {
        ec2::ensure_alive(&env.ec2, id, instance.seconds_since_launch(env.clock.now())).await?;
        let age =
            parse_rfc3339(&command.sent_at).map_or(0, |t| (env.clock.now() - t).whole_seconds());
        if age < env.settings.registration_grace_seconds {
            return Err(Error::StillRunning(format!(
                "step {} was sent {age}s ago and is not registered yet",
                step.name
            )));
        }
        return Err(Error::StepFailed(format!(
            "step `{}` failed: its command {} was never registered on instance {id} ({age}s after sending). \
             Redrive the execution to send it again",
            step.name, command.command_id
        )));
    };
    let ssm::Invocation {
        status,
        details,
        response_code: code,
        duration_seconds,
        stdout_head,
    } = invocation;
    match classify(&status, &details, code) {
        Verdict::Running => {
            ec2::ensure_alive(&env.ec2, id, instance.seconds_since_launch(env.clock.now())).await?;
            Err(Error::StillRunning(format!(
                "step {} is {status} ({details})",
                step.name
            )))
        }
        Verdict::Succeeded => {
            let duration = duration_seconds.unwrap_or(0);
            if step.kind == StepKind::Workload && !run.preflight {
                for process in &step.heartbeats {
                    telemetry::emit_count(
                        "AlphaEngine",
                        "Heartbeat",
                        ("Process", process),
                        env.clock.now(),
                    );
                }
            }
            info!(step = %step.name, instance_id = %id, duration_seconds = duration, "step succeeded");
            Ok(StepResult {
                step: step.name.clone(),
                status,
                exit_code: code,
                duration_seconds: duration,
                output,
                command_id: command.command_id.clone(),
                instance_id: id.to_string(),
            })
        }
        Verdict::Failed(failure) => {
            ec2::ensure_alive(&env.ec2, id, instance.seconds_since_launch(env.clock.now())).await?;
            let tail = output_tail(env, &bucket, &stdout_key, &stdout_head).await;
            Err(Error::StepFailed(failure_message(
                &step.name, &status, &details, code, failure, &output, &tail,
            )))
        }
    }
}

/// The last lines of the step's full output from S3; the truncated head SSM returns is the
/// fallback, and the message says so.
async fn output_tail(env: &Env, bucket: &str, key: &str, head: &str) -> String {
    match s3::tail(&env.s3, bucket, key, TAIL_BYTES).await {
        Ok(text) => tail_lines(&text, TAIL_LINES),
        Err(why) => format!(
            "(the full output could not be read from S3: {why}; these are the last lines of the first 24,000 characters SSM returns)\n{}",
            tail_lines(head, TAIL_LINES)
        ),
    }
}

/// The message of a failed step: what failed, how, what to do, then the output's tail.
pub fn failure_message(
    step: &str,
    status: &str,
    details: &str,
    exit_code: i32,
    failure: Failure,
    output: &str,
    tail: &str,
) -> String {
    format!(
        "step `{step}` failed: status {status} ({details}), exit code {exit_code}: {}. \
         Full output: {output}. Fix the cause, then redrive the execution: it reruns this step \
         (on a fresh instance, after the setup steps) and keeps the steps that finished.\n\
         --- last {TAIL_LINES} lines of output ---\n{tail}",
        failure.hint()
    )
}
