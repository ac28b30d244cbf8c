//! send-step: render a step's script and send it through `AWS-RunShellScript`, once.
//!
//! `SendCommand` has no client token. Before sending, send-step writes a marker under the
//! run's staging prefix (S3, strongly consistent) and completes it with the command id after
//! the send; a retried send finds the command there and returns it instead of running the
//! script twice. Only when a try died between marking and recording does it fall back to
//! ListCommands, by the command's `Comment` (run, step, redrive round).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::ssm::{self, Sent, StepCommand};
use crate::aws::{ec2, s3};
use crate::env::{rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::input::{parse, Checked};
use crate::manifest::{JobSpec, StepSpec};
use crate::naming;
use crate::records::{Command, Launch, Run};
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

impl Checked for Input {
    fn check(&self) -> Result<()> {
        self.run.validate(&self.job)
    }
}

/// The S3 record of one send ([`naming::send_marker_key`]): written before SendCommand
/// (intent, no command id) and completed with the command id after it. S3 is strongly
/// consistent, so a retry right after a successful send finds the command here even while
/// ListCommands does not show it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendMarker {
    pub step: String,
    pub round: u32,
    pub instance_id: String,
    /// Empty until SendCommand answered.
    pub command_id: String,
    pub sent_at: String,
}

impl SendMarker {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SendMarker always serializes")
    }
}

/// Handles one send-step request.
pub async fn handle(env: &Env, input: Value) -> Result<Command> {
    let Input {
        run,
        job,
        instance,
        step,
        redrive_count,
    } = parse("send-step input", input)?;
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

    let marker_key = naming::send_marker_key(&job.name, &run.run_id, &step.name, redrive_count);
    let marker = s3::read(&env.s3, bucket, &marker_key)
        .await?
        .map(|text| serde_json::from_str::<SendMarker>(&text).unwrap_or_default())
        .filter(|m| m.instance_id == id);
    if let Some(marker) = marker {
        if !marker.command_id.is_empty() {
            info!(step = %step.name, instance_id = %id, command_id = %marker.command_id, "command already sent (S3 marker); not sending it again");
            return Ok(record(&marker.command_id, marker.sent_at, true));
        }
        let listed = ssm::commands_on(&env.ssm, id).await?;
        if let Some(sent) = listed.iter().find(|c| c.comment == comment) {
            info!(step = %step.name, instance_id = %id, command_id = %sent.command_id, "command already sent (listed); not sending it again");
            return Ok(record(&sent.command_id, sent.requested_at.clone(), true));
        }
        warn!(step = %step.name, instance_id = %id, "an earlier try marked this send but recorded no command and SSM lists none; sending");
    }
    let mut marker = SendMarker {
        step: step.name.clone(),
        round: redrive_count,
        instance_id: id.to_string(),
        ..SendMarker::default()
    };
    s3::put(&env.s3, bucket, &marker_key, marker.to_json()).await?;

    let placement = Placement {
        bucket: bucket.clone(),
        region: env.settings.region.clone(),
    };
    let command = StepCommand {
        step: &step.name,
        instance_id: id,
        commands: script::ssm_commands(&run, &job, &step, &placement),
        execution_timeout_seconds: step.timeout_seconds,
        delivery_timeout_seconds: job.delivery_timeout_seconds,
        comment: &comment,
        output_bucket: bucket,
        output_key_prefix: &log_prefix,
        log_group: &env.settings.log_group,
    };
    match ssm::send(&env.ssm, &command).await? {
        Sent::Command(command_id) => {
            info!(step = %step.name, instance_id = %id, %command_id, timeout = step.timeout_seconds, "step sent");
            marker.command_id = command_id.clone();
            marker.sent_at = rfc3339(env.clock.now());
            if let Err(e) = s3::put(&env.s3, bucket, &marker_key, marker.to_json()).await {
                warn!(step = %step.name, %command_id, error = %e, "the command was sent but its S3 marker was not completed");
            }
            Ok(record(&command_id, marker.sent_at, false))
        }
        Sent::NotRegistered => {
            ec2::ensure_alive(&env.ec2, id, instance.seconds_since_launch(env.clock.now())).await?;
            Err(Error::AgentNotOnline(format!(
                "SSM does not accept commands for instance {id} yet (InvalidInstanceId: its agent is not registered); \
                 the state machine retries the send"
            )))
        }
    }
}
