//! The SSM calls: the agent's registration, sending a step's command, reading its
//! invocation, listing and cancelling the commands on an instance.

use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::{
    CloudWatchOutputConfig, CommandStatus, InstanceInformationStringFilter, PingStatus,
};
use aws_sdk_ssm::Client;

use crate::env::{parse_rfc3339, rfc3339};
use crate::error::{Error, Result};

/// The SSM document every step runs with.
pub const DOCUMENT: &str = "AWS-RunShellScript";

/// An instance's SSM agent as SSM knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping_status: String,
    pub agent_version: String,
    pub platform: String,
}

impl Agent {
    /// Whether the agent takes commands now.
    pub fn online(&self) -> bool {
        self.ping_status == PingStatus::Online.as_str()
    }
}

/// The agent of `instance_id`, or `None` while it has not registered.
pub async fn agent(ssm: &Client, instance_id: &str) -> Result<Option<Agent>> {
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(instance_id)
        .build()
        .map_err(|e| {
            Error::AwsError(format!(
                "building the DescribeInstanceInformation filter: {e}"
            ))
        })?;
    let out = ssm
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("DescribeInstanceInformation {instance_id}"), &e))?;
    Ok(out
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(instance_id))
        .map(|i| Agent {
            ping_status: i
                .ping_status()
                .map_or(String::new(), |s| s.as_str().to_string()),
            agent_version: i.agent_version().unwrap_or_default().into(),
            platform: i.platform_name().unwrap_or_default().into(),
        }))
}

/// A step's command as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCommand<'a> {
    /// The step the command runs (for messages).
    pub step: &'a str,
    pub instance_id: &'a str,
    /// The `commands` parameter of [`DOCUMENT`].
    pub commands: Vec<String>,
    /// `executionTimeout`: how long the script may run.
    pub execution_timeout_seconds: u64,
    /// `TimeoutSeconds`: how long the command may wait for delivery.
    pub delivery_timeout_seconds: u64,
    /// The `Comment` that identifies the command (at most 100 characters).
    pub comment: &'a str,
    /// Where SSM writes the full output: bucket and key prefix.
    pub output_bucket: &'a str,
    pub output_key_prefix: &'a str,
    /// A CloudWatch log group to stream the output to (empty: S3 only).
    pub log_group: &'a str,
}

/// What SSM answered a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The command's id.
    Command(String),
    /// SSM refused the instance (`InvalidInstanceId`): its agent is not registered.
    NotRegistered,
}

/// Sends a step's command.
pub async fn send(ssm: &Client, command: &StepCommand<'_>) -> Result<Sent> {
    let mut request = ssm
        .send_command()
        .document_name(DOCUMENT)
        .instance_ids(command.instance_id)
        .parameters("commands", command.commands.clone())
        .parameters(
            "executionTimeout",
            vec![command.execution_timeout_seconds.to_string()],
        )
        .timeout_seconds(command.delivery_timeout_seconds as i32)
        .comment(command.comment)
        .output_s3_bucket_name(command.output_bucket)
        .output_s3_key_prefix(command.output_key_prefix);
    if !command.log_group.is_empty() {
        request = request.cloud_watch_output_config(
            CloudWatchOutputConfig::builder()
                .cloud_watch_output_enabled(true)
                .cloud_watch_log_group_name(command.log_group)
                .build(),
        );
    }
    match request.send().await {
        Ok(out) => out
            .command()
            .and_then(|c| c.command_id())
            .map(|id| Sent::Command(id.to_string()))
            .ok_or_else(|| Error::AwsError("SendCommand answered without a command id".into())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id()) =>
        {
            Ok(Sent::NotRegistered)
        }
        Err(e) => Err(Error::from_sdk(
            &format!(
                "SendCommand of step {} to {}",
                command.step, command.instance_id
            ),
            &e,
        )),
    }
}

/// A command on an instance, as ListCommands shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub command_id: String,
    pub comment: String,
    /// When it was requested (RFC 3339; empty when SSM did not say).
    pub requested_at: String,
    /// Pending or in progress: cancelling it still matters.
    pub live: bool,
    /// Where SSM writes its output: `s3://<bucket>/<prefix>` (empty when not to S3).
    pub output_prefix: String,
}

/// The commands sent to `instance_id` (none when SSM does not know the instance).
pub async fn commands_on(ssm: &Client, instance_id: &str) -> Result<Vec<Listed>> {
    let out = match ssm.list_commands().instance_id(instance_id).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id()) =>
        {
            return Ok(Vec::new())
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
        .filter_map(|c| {
            Some(Listed {
                command_id: c.command_id()?.to_string(),
                comment: c.comment().unwrap_or_default().to_string(),
                requested_at: c
                    .requested_date_time()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                    .map(rfc3339)
                    .unwrap_or_default(),
                live: matches!(
                    c.status(),
                    Some(CommandStatus::Pending | CommandStatus::InProgress)
                ),
                output_prefix: match (c.output_s3_bucket_name(), c.output_s3_key_prefix()) {
                    (Some(bucket), Some(prefix)) if !bucket.is_empty() => {
                        format!("s3://{bucket}/{prefix}")
                    }
                    _ => String::new(),
                },
            })
        })
        .collect())
}

/// Cancels a command on one instance.
pub async fn cancel(ssm: &Client, command_id: &str, instance_id: &str) -> Result<()> {
    ssm.cancel_command()
        .command_id(command_id)
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| {
            Error::from_sdk(&format!("CancelCommand {command_id} on {instance_id}"), &e)
        })?;
    Ok(())
}

/// Where SSM streams a command's output besides S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streaming {
    /// SSM does not show the invocation yet (`InvocationDoesNotExist`).
    Unknown,
    /// To S3 only: the command has no `CloudWatchOutputConfig`.
    Off,
    /// To this CloudWatch Logs group (one stream per output, `naming::ssm_log_stream`).
    To(String),
}

/// Where SSM streams the output of `command_id` on `instance_id` (GetCommandInvocation's
/// `CloudWatchOutputConfig`; without a group name SSM uses `/aws/ssm/<document>`).
pub async fn streaming(ssm: &Client, command_id: &str, instance_id: &str) -> Result<Streaming> {
    let Some(out) = get_invocation(ssm, command_id, instance_id).await? else {
        return Ok(Streaming::Unknown);
    };
    Ok(match out.cloud_watch_output_config() {
        Some(c) if c.cloud_watch_output_enabled() => Streaming::To(
            c.cloud_watch_log_group_name()
                .filter(|g| !g.is_empty())
                .map_or_else(|| format!("/aws/ssm/{DOCUMENT}"), String::from),
        ),
        _ => Streaming::Off,
    })
}

/// GetCommandInvocation, or `None` while SSM has not registered the invocation yet
/// (`InvocationDoesNotExist`).
async fn get_invocation(
    ssm: &Client,
    command_id: &str,
    instance_id: &str,
) -> Result<Option<GetCommandInvocationOutput>> {
    match ssm
        .get_command_invocation()
        .command_id(command_id)
        .instance_id(instance_id)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invocation_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("GetCommandInvocation {command_id} on {instance_id}"),
            &e,
        )),
    }
}

/// A command's invocation on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub status: String,
    pub details: String,
    /// The script's exit code (-1: it never ran, or the agent was lost).
    pub response_code: i32,
    /// How long the script ran, where SSM says.
    pub duration_seconds: Option<i64>,
    /// The first 24,000 characters of stdout (SSM truncates; the full output is in S3).
    pub stdout_head: String,
}

/// The invocation of `command_id` on `instance_id`, or `None` while SSM has not registered
/// it yet (`InvocationDoesNotExist`).
pub async fn invocation(
    ssm: &Client,
    command_id: &str,
    instance_id: &str,
) -> Result<Option<Invocation>> {
    let Some(out) = get_invocation(ssm, command_id, instance_id).await? else {
        return Ok(None);
    };
    let duration_seconds = match (
        out.execution_start_date_time().and_then(parse_rfc3339),
        out.execution_end_date_time().and_then(parse_rfc3339),
    ) {
        (Some(start), Some(end)) => Some((end - start).whole_seconds()),
        _ => None,
    };
    Ok(Some(Invocation {
        status: out.status().map_or("", |s| s.as_str()).to_string(),
        details: out.status_details().unwrap_or_default().to_string(),
        response_code: out.response_code(),
        duration_seconds,
        stdout_head: out
            .standard_output_content()
            .unwrap_or_default()
            .to_string(),
    }))
}
