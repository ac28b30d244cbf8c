//! send-step: render a step's script and send it through `AWS-RunShellScript`, once.
//!
//! `SendCommand` has no client token, so the command carries a `Comment` made from the run,
//! the step and the redrive round; a retried send finds that command on the instance and
//! returns it instead of running the script twice.

use aws_sdk_ssm::types::CloudWatchOutputConfig;
use serde::Deserialize;
use serde_json::Value;
use tracing::info;

use crate::ec2;
use crate::env::{rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::manifest::{JobSpec, StepSpec};
use crate::naming;
use crate::run::{parse, Command, Launch, Run};
use crate::script::{self, Placement};

/// What the state machine passes to send-step.
#[derive(Debug, Deserialize)]
pub struct Input {
    pub run: Run,
    pub job: JobSpec,
    pub instance: Launch,
    pub step: StepSpec,
    /// `$$.Execution.RedriveCount`.
    #[serde(default)]
    pub redrive_count: u32,
}

/// The SSM document every step runs with.
pub const DOCUMENT: &str = "AWS-RunShellScript";

/// Handles one send-step request.
pub async fn handle(env: &Env, input: Value) -> Result<Command> {
    let Input {
        run,
        job,
        instance,
        step,
        redrive_count,
    } = parse("send-step input", input)?;
    run.validate(&job)?;
    env.settings.require(&[Need::Bucket, Need::Region])?;
    let id = instance.instance_id.as_str();
    let comment = naming::command_comment(&run.run_id, &step.name, redrive_count);
    let log_prefix = naming::step_log_prefix(&job.name, &run.run_id, &step.name);
    let bucket = &env.settings.bucket;
    let record = |command_id: &str, sent_at: String, reused: bool| Command {
        command_id: command_id.to_string(),
        step: step.name.clone(),
        instance_id: id.to_string(),
        round: redrive_count,
        sent_at,
        output_prefix: format!("s3://{bucket}/{log_prefix}"),
        reused,
    };

    if let Some((command_id, requested)) = earlier_command(env, id, &comment).await? {
        info!(step = %step.name, instance_id = %id, %command_id, "command already sent; not sending it again");
        return Ok(record(&command_id, requested, true));
    }

    let placement = Placement {
        bucket: bucket.clone(),
        region: env.settings.region.clone(),
    };
    let commands = script::ssm_commands(&run, &job, &step, &placement);
    let mut request = env
        .ssm
        .send_command()
        .document_name(DOCUMENT)
        .instance_ids(id)
        .parameters("commands", commands)
        .parameters("executionTimeout", vec![step.timeout_seconds.to_string()])
        .timeout_seconds(env.settings.delivery_timeout_seconds as i32)
        .comment(&comment)
        .output_s3_bucket_name(bucket)
        .output_s3_key_prefix(&log_prefix);
    if !env.settings.log_group.is_empty() {
        request = request.cloud_watch_output_config(
            CloudWatchOutputConfig::builder()
                .cloud_watch_output_enabled(true)
                .cloud_watch_log_group_name(&env.settings.log_group)
                .build(),
        );
    }
    match request.send().await {
        Ok(out) => {
            let command_id = out.command().and_then(|c| c.command_id()).ok_or_else(|| {
                Error::AwsError("SendCommand answered without a command id".into())
            })?;
            info!(step = %step.name, instance_id = %id, %command_id, timeout = step.timeout_seconds, "step sent");
            Ok(record(command_id, rfc3339(env.clock.now()), false))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id()) =>
        {
            ec2::ensure_alive(&env.ec2, id).await?;
            Err(Error::AgentNotOnline(format!(
                "SSM does not accept commands for instance {id} yet (InvalidInstanceId: its agent is not registered); \
                 the state machine retries the send"
            )))
        }
        Err(e) => Err(Error::from_sdk(
            &format!("SendCommand of step {} to {id}", step.name),
            &e,
        )),
    }
}

/// The command an earlier try of this send already sent (its id and request time).
async fn earlier_command(
    env: &Env,
    instance_id: &str,
    comment: &str,
) -> Result<Option<(String, String)>> {
    let out = env
        .ssm
        .list_commands()
        .instance_id(instance_id)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id()) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(Error::from_sdk(
                &format!("ListCommands on {instance_id}"),
                &e,
            ))
        }
    };
    Ok(out
        .commands()
        .iter()
        .find(|c| c.comment() == Some(comment))
        .and_then(|c| {
            let requested = c
                .requested_date_time()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                .map(rfc3339)
                .unwrap_or_default();
            c.command_id().map(|id| (id.to_string(), requested))
        }))
}
