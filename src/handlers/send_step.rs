//! send-step: render a step's script and send it through `AWS-RunShellScript`, once.
//!
//! `SendCommand` has no client token, so the command carries a `Comment` made from the run,
//! the step and the redrive round; a retried send finds that command on the instance and
//! returns it instead of running the script twice.

use serde::Deserialize;
use serde_json::Value;
use tracing::info;

use crate::aws::ec2;
use crate::aws::ssm::{self, Sent, StepCommand};
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

    let earlier = ssm::commands_on(&env.ssm, id).await?;
    if let Some(sent) = earlier.iter().find(|c| c.comment == comment) {
        info!(step = %step.name, instance_id = %id, command_id = %sent.command_id, "command already sent; not sending it again");
        return Ok(record(&sent.command_id, sent.requested_at.clone(), true));
    }

    let placement = Placement {
        bucket: bucket.clone(),
        region: env.settings.region.clone(),
    };
    let command = StepCommand {
        step: &step.name,
        instance_id: id,
        commands: script::ssm_commands(&run, &job, &step, &placement),
        execution_timeout_seconds: step.timeout_seconds,
        delivery_timeout_seconds: env.settings.delivery_timeout_seconds,
        comment: &comment,
        output_bucket: bucket,
        output_key_prefix: &log_prefix,
        log_group: &env.settings.log_group,
    };
    match ssm::send(&env.ssm, &command).await? {
        Sent::Command(command_id) => {
            info!(step = %step.name, instance_id = %id, %command_id, timeout = step.timeout_seconds, "step sent");
            Ok(record(&command_id, rfc3339(env.clock.now()), false))
        }
        Sent::NotRegistered => {
            ec2::ensure_alive(&env.ec2, id).await?;
            Err(Error::AgentNotOnline(format!(
                "SSM does not accept commands for instance {id} yet (InvalidInstanceId: its agent is not registered); \
                 the state machine retries the send"
            )))
        }
    }
}
