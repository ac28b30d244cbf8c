//! poll-result: read a step's invocation. Not finished is the retryable `StillRunning` (the
//! state machine polls through Retry); success returns where the full output is; anything
//! else checks the instance first (a reclaim is `InstanceReclaimed`), then fails the step
//! with the last 40 lines of its real output, read from S3.

use aws_sdk_ssm::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::ec2;
use crate::env::{parse_rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::manifest::{JobSpec, StepKind, StepSpec};
use crate::naming;
use crate::run::{parse, Command, Launch, Run};
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

/// Handles one poll.
pub async fn handle(env: &Env, input: Value) -> Result<StepResult> {
    let Input {
        run,
        job,
        instance,
        step,
        command,
    } = parse("poll-result input", input)?;
    env.settings.require(&[Need::Bucket])?;
    let id = instance.instance_id.as_str();
    let stdout_key = naming::ssm_stdout_key(
        &naming::step_log_prefix(&job.name, &run.run_id, &step.name),
        &command.command_id,
        id,
    );
    let output = format!("s3://{}/{stdout_key}", env.settings.bucket);
    let invocation = env
        .ssm
        .get_command_invocation()
        .command_id(&command.command_id)
        .instance_id(id)
        .send()
        .await;
    let invocation = match invocation {
        Ok(inv) => inv,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invocation_does_not_exist()) =>
        {
            ec2::ensure_alive(&env.ec2, id).await?;
            let age = parse_rfc3339(&command.sent_at)
                .map_or(0, |t| (env.clock.now() - t).whole_seconds());
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
        }
        Err(e) => {
            return Err(Error::from_sdk(
                &format!("GetCommandInvocation of step {}", step.name),
                &e,
            ))
        }
    };
    let status = invocation.status().map_or("", |s| s.as_str()).to_string();
    let details = invocation.status_details().unwrap_or_default().to_string();
    let code = invocation.response_code();
    match classify(&status, &details, code) {
        Verdict::Running => {
            ec2::ensure_alive(&env.ec2, id).await?;
            Err(Error::StillRunning(format!(
                "step {} is {status} ({details})",
                step.name
            )))
        }
        Verdict::Succeeded => {
            let duration = match (
                invocation
                    .execution_start_date_time()
                    .and_then(parse_rfc3339),
                invocation.execution_end_date_time().and_then(parse_rfc3339),
            ) {
                (Some(start), Some(end)) => (end - start).whole_seconds(),
                _ => 0,
            };
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
            ec2::ensure_alive(&env.ec2, id).await?;
            let tail = output_tail(env, &stdout_key, invocation.standard_output_content()).await;
            Err(Error::StepFailed(failure_message(
                &step.name, &status, &details, code, failure, &output, &tail,
            )))
        }
    }
}

/// The last lines of the step's full output from S3; the truncated head SSM returns is the
/// fallback, and the message says so.
async fn output_tail(env: &Env, key: &str, head: Option<&str>) -> String {
    let object = env
        .s3
        .get_object()
        .bucket(&env.settings.bucket)
        .key(key)
        .range(format!("bytes=-{TAIL_BYTES}"))
        .send()
        .await;
    let read = match object {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.into_bytes()).into_owned())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.code().unwrap_or("unreadable").to_string()),
    };
    match read {
        Ok(text) => tail_lines(&text, TAIL_LINES),
        Err(why) => format!(
            "(the full output could not be read from S3: {why}; these are the last lines of the first 24,000 characters SSM returns)\n{}",
            tail_lines(head.unwrap_or_default(), TAIL_LINES)
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
