//! cleanup: leave nothing running and nothing staged. Every shape is idempotent and best
//! effort per resource, and none hides the run's own error.
//!
//! Shapes (by `action`, or by the EventBridge `detail-type`):
//! - `end-of-run`: terminate every instance tagged with the run, delete `tmp/<job>/<run_id>/`.
//! - `relaunch`: terminate the run's instances before a relaunch (the staging stays).
//! - `step-failed`: the state a failed step is caught into. On the first pass it cleans up
//!   like `end-of-run` and fails again with the step's own error, so the execution fails at
//!   this state; a redrive re-runs it with a higher `RedriveCount`, and then it lets the
//!   execution go on to send the step again.
//! - `Step Functions Execution Status Change` (FAILED, TIMED_OUT, ABORTED): cancel the
//!   execution's in-flight commands, terminate its instances, delete its staging.
//! - `sweep` (or a `Scheduled Event`): terminate spotstep instances whose execution is no
//!   longer running, or that outlived their max runtime plus grace.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_ssm::types::CommandStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::ec2;
use crate::env::{Env, Need};
use crate::error::{Error, Result};
use crate::manifest::{JobSpec, StepSpec};
use crate::naming::{self, tags};
use crate::run::{parse, Command, Launch, Run};

/// The error a caught step failure carries (`Catch` with `ResultPath`).
#[derive(Debug, Clone, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// A cleanup request.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Request {
    EndOfRun {
        run: Run,
    },
    Relaunch {
        run: Run,
        #[serde(default)]
        instance: Launch,
    },
    StepFailed {
        run: Run,
        job: Box<JobSpec>,
        step: StepSpec,
        command: Command,
        failure: CaughtError,
        #[serde(default)]
        redrive_count: u32,
    },
    ExecutionEnded {
        execution: String,
        status: String,
    },
    Sweep,
}

/// What cleanup did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub action: String,
    pub terminated: Vec<String>,
    pub cancelled_commands: Vec<String>,
    pub deleted_objects: usize,
    /// True when a redriven `step-failed` let the execution resume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// Reads the request shape: an EventBridge event or an `action` object.
pub fn request(input: Value) -> Result<Request> {
    match input.get("detail-type").and_then(Value::as_str) {
        Some("Step Functions Execution Status Change") => {
            let detail = &input["detail"];
            let field = |k: &str| detail.get(k).and_then(Value::as_str).map(String::from);
            match (field("executionArn"), field("status")) {
                (Some(execution), Some(status)) => {
                    Ok(Request::ExecutionEnded { execution, status })
                }
                _ => Err(Error::InvalidInput(
                    "execution status change event without detail.executionArn and detail.status"
                        .into(),
                )),
            }
        }
        Some("Scheduled Event") => Ok(Request::Sweep),
        Some(other) => Err(Error::InvalidInput(format!(
            "cleanup does not handle `{other}` events"
        ))),
        None => parse("cleanup request", input),
    }
}

/// Handles one cleanup request.
pub async fn handle(env: &Env, input: Value) -> Result<Report> {
    match request(input)? {
        Request::EndOfRun { run } => {
            naming::check_run_id(&run.run_id).map_err(Error::InvalidInput)?;
            env.settings.require(&[Need::Bucket])?;
            let mut report = Box::pin(clean_run(env, &run.job, &run.run_id, true)).await?;
            report.action = "end-of-run".into();
            Ok(report)
        }
        Request::Relaunch { run, instance } => {
            naming::check_run_id(&run.run_id).map_err(Error::InvalidInput)?;
            let mut ids =
                instance_ids(env, &[(tags::RUN_ID, &run.run_id), (tags::JOB, &run.job)]).await?;
            if !instance.instance_id.is_empty() && !ids.contains(&instance.instance_id) {
                ids.push(instance.instance_id.clone());
            }
            ec2::terminate(&env.ec2, &ids).await?;
            info!(terminated = ?ids, "cleaned up before relaunch");
            Ok(Report {
                action: "relaunch".into(),
                terminated: ids,
                ..Report::default()
            })
        }
        Request::StepFailed {
            run,
            job,
            step,
            command,
            failure,
            redrive_count,
        } => {
            run.validate(&job)?;
            if redrive_count > command.round {
                info!(step = %step.name, redrive_count, "redriven: sending the failed step again");
                return Ok(Report {
                    action: "step-failed".into(),
                    resumed: true,
                    ..Report::default()
                });
            }
            env.settings.require(&[Need::Bucket])?;
            if let Err(e) = Box::pin(clean_run(env, &run.job, &run.run_id, true)).await {
                warn!(step = %step.name, error = %e, "cleanup after the failed step was incomplete; the status-change rule retries it");
            }
            Err(Error::StepFailed(cause_message(&failure)))
        }
        Request::ExecutionEnded { execution, status } => {
            if !matches!(status.as_str(), "FAILED" | "TIMED_OUT" | "ABORTED") {
                return Ok(Report {
                    action: format!("execution-ended ({status}): nothing to do"),
                    ..Report::default()
                });
            }
            env.settings.require(&[Need::Bucket])?;
            let instances =
                ec2::tagged_instances(&env.ec2, &[(tags::EXECUTION, &execution)]).await?;
            let mut report = Report {
                action: format!("execution-ended ({status})"),
                ..Report::default()
            };
            for instance in &instances {
                let id = instance.instance_id().unwrap_or_default();
                report
                    .cancelled_commands
                    .extend(cancel_commands(env, id).await?);
            }
            // The runs come from every instance the execution launched, terminated ones too:
            // after a relaunch limit all of them are gone but the staging is still there.
            for (job, run_id) in ec2::runs_of_execution(&env.ec2, &execution).await? {
                let cleaned = Box::pin(clean_run(env, &job, &run_id, true)).await?;
                report.terminated.extend(cleaned.terminated);
                report.deleted_objects += cleaned.deleted_objects;
            }
            Ok(report)
        }
        Request::Sweep => Box::pin(sweep(env)).await,
    }
}

/// The `errorMessage` of a Lambda error cause (its JSON), or the cause as it is.
pub fn cause_message(failure: &CaughtError) -> String {
    serde_json::from_str::<Value>(&failure.cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| failure.cause.clone())
}

async fn instance_ids(env: &Env, wanted: &[(&str, &str)]) -> Result<Vec<String>> {
    Ok(ec2::tagged_instances(&env.ec2, wanted)
        .await?
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect())
}

/// Terminates the run's instances and (when `staging`) deletes its staging prefix.
async fn clean_run(env: &Env, job: &str, run_id: &str, staging: bool) -> Result<Report> {
    naming::check_run_id(run_id).map_err(Error::InvalidInput)?;
    naming::check_name(job).map_err(Error::InvalidInput)?;
    let ids = instance_ids(env, &[(tags::RUN_ID, run_id), (tags::JOB, job)]).await?;
    let terminated = ec2::terminate(&env.ec2, &ids).await;
    let deleted = if staging {
        delete_prefix(env, &naming::staging_prefix(job, run_id)).await
    } else {
        Ok(0)
    };
    info!(job, run_id, terminated = ?ids, "run cleaned up");
    terminated?;
    Ok(Report {
        terminated: ids,
        deleted_objects: deleted?,
        ..Report::default()
    })
}

/// Deletes every object under `prefix` (a run's staging prefix, never anything else).
async fn delete_prefix(env: &Env, prefix: &str) -> Result<usize> {
    let bucket = &env.settings.bucket;
    let mut deleted = 0;
    let mut token: Option<String> = None;
    loop {
        let page = env
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk(&format!("ListObjectsV2 s3://{bucket}/{prefix}"), &e))?;
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .filter(|k| k.starts_with(prefix))
            .map(String::from)
            .collect();
        if !keys.is_empty() {
            let objects = keys
                .iter()
                .map(|k| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .build()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::AwsError(format!("building the DeleteObjects request: {e}")))?;
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::AwsError(format!("building the DeleteObjects request: {e}")))?;
            env.s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    Error::from_sdk(&format!("DeleteObjects under s3://{bucket}/{prefix}"), &e)
                })?;
            deleted += keys.len();
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => return Ok(deleted),
        }
    }
}

/// Cancels the commands still pending or running on an instance.
async fn cancel_commands(env: &Env, instance_id: &str) -> Result<Vec<String>> {
    let out = env
        .ssm
        .list_commands()
        .instance_id(instance_id)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("ListCommands on {instance_id}"), &e))?;
    let mut cancelled = Vec::new();
    for command in out.commands() {
        let live = matches!(
            command.status(),
            Some(CommandStatus::Pending | CommandStatus::InProgress)
        );
        let Some(id) = command.command_id().filter(|_| live) else {
            continue;
        };
        match env
            .ssm
            .cancel_command()
            .command_id(id)
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => cancelled.push(id.to_string()),
            Err(e) => warn!(command_id = id, error = %e, "could not cancel command"),
        }
    }
    Ok(cancelled)
}

/// Terminates spotstep instances whose execution is no longer running or that outlived their
/// max runtime plus grace, and deletes those runs' staging.
async fn sweep(env: &Env) -> Result<Report> {
    env.settings.require(&[Need::Bucket])?;
    let now = env.clock.now();
    let mut report = Report {
        action: "sweep".into(),
        ..Report::default()
    };
    for instance in ec2::spotstep_instances(&env.ec2).await? {
        let id = instance.instance_id().unwrap_or_default().to_string();
        let age = instance
            .launch_time()
            .map_or(0, |t| now.unix_timestamp() - t.secs());
        let budget = ec2::tag(&instance, tags::MAX_RUNTIME)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
            + env.settings.sweep_grace_seconds;
        let execution_over = match ec2::tag(&instance, tags::EXECUTION) {
            Some(execution) => match env
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
            {
                Ok(out) => out.status() != &ExecutionStatus::Running,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_execution_does_not_exist()) =>
                {
                    true
                }
                Err(e) => {
                    warn!(instance_id = %id, error = %e, "could not describe the instance's execution");
                    false
                }
            },
            None => true,
        };
        if !(execution_over || age > budget) {
            continue;
        }
        info!(instance_id = %id, age, budget, execution_over, "sweeping instance");
        match (
            ec2::tag(&instance, tags::JOB),
            ec2::tag(&instance, tags::RUN_ID),
        ) {
            (Some(job), Some(run_id))
                if naming::check_run_id(run_id).is_ok() && naming::check_name(job).is_ok() =>
            {
                let cleaned = clean_run(env, job, run_id, execution_over).await?;
                report.terminated.extend(cleaned.terminated);
                report.deleted_objects += cleaned.deleted_objects;
            }
            _ => {
                ec2::terminate(&env.ec2, std::slice::from_ref(&id)).await?;
                report.terminated.push(id);
            }
        }
    }
    report.terminated.dedup();
    Ok(report)
}
