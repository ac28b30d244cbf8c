//! send-step: render a step's script and send it through `AWS-RunShellScript`, once, and
//! leave the waiting state's task token where poll-result finds it.
//!
//! The step's send state waits on a task token (`lambda:invoke.waitForTaskToken`). Before
//! sending, send-step writes the [`SendMarker`] under the run's staging prefix (S3, strongly
//! consistent): the token and everything poll-result needs to decide the step, so a command
//! that ends at once cannot beat it. After the send it completes the marker with the command.
//!
//! `SendCommand` has no client token: a retried send finds the command in its marker and
//! sends nothing; it records its own (new) token, and answers it at once if the command has
//! already ended (its end event may have gone to the old token). Only when a try died
//! between marking and recording does it fall back to ListCommands, by the command's
//! `Comment` (run, step, redrive round).

use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::ssm::{self, Sent, StepCommand};
use crate::aws::{ec2, s3};
use crate::checkpoint::Restored;
use crate::env::{rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::fanout::{self, Slot};
use crate::handlers::{self, poll_result};
use crate::input::{parse, Checked};
use crate::manifest::{JobSpec, StepSpec};
use crate::naming;
use crate::records::{Command, Launch, Run};
use crate::script::{self, Placement};
use crate::waiting::SendMarker;

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
    /// `$$.Task.Token` of the waiting send state.
    pub task_token: String,
    /// Where in a sweep the step runs (a lane's setup step, or a shard).
    #[serde(default)]
    pub slot: Option<Slot>,
}

impl Checked for Input {
    fn check(&self) -> Result<()> {
        self.run.validate(&self.job)?;
        if self.task_token.is_empty() || self.task_token.len() > MAX_TOKEN_CHARS {
            return Err(Error::InvalidInput(format!(
                "task_token must be the waiting state's $$.Task.Token (1 to {MAX_TOKEN_CHARS} characters), got {} characters",
                self.task_token.len()
            )));
        }
        Ok(())
    }
}

/// The longest task token Step Functions issues (its API reference).
pub const MAX_TOKEN_CHARS: usize = 2048;

/// Handles one send-step request.
pub async fn handle(env: &Env, input: Value) -> Result<Command> {
    let Input {
        run,
        job,
        instance,
        step,
        redrive_count,
        task_token,
        slot,
    } = parse("send-step input", input)?;
    env.settings.require(&[Need::Bucket, Need::Region])?;
    let id = instance.instance_id.as_str();
    let comment = fanout::comment(&run.run_id, &step.name, redrive_count, slot.as_ref());
    let log_prefix = fanout::log_prefix(&job.name, &run.run_id, &step.name, slot.as_ref());
    let bucket = &env.settings.bucket;
    let restored = match &step.checkpoint {
        Some(_) => Box::pin(restored_checkpoint(env, &run, &step.name)).await?,
        None => None,
    };
    if let Some(r) = &restored {
        info!(step = %step.name, instance_id = %id, saved_at = %r.saved_at, age_seconds = r.age_seconds, reason = %r.reason, "the step resumes from a checkpoint");
    }
    let record = |command_id: &str, sent_at: String, reused: bool| Command {
        command_id: command_id.to_string(),
        step: step.name.clone(),
        instance_id: id.to_string(),
        round: redrive_count,
        sent_at,
        output_prefix: format!("s3://{bucket}/{log_prefix}"),
        reused,
        checkpoint: restored.clone(),
    };

    let marker_key = fanout::marker_key(
        &job.name,
        &run.run_id,
        &step.name,
        redrive_count,
        slot.as_ref(),
    );
    let earlier = s3::read(env.s3().await, bucket, &marker_key)
        .await?
        .and_then(|text| SendMarker::parse(&text))
        .filter(|m| m.instance.instance_id == id);
    let mut marker = SendMarker {
        run: run.clone(),
        job: job.clone(),
        instance: instance.clone(),
        step: step.without_script(),
        round: redrive_count,
        task_token,
        command: None,
        answer: String::new(),
        slot: slot.clone(),
    };
    if let Some(earlier) = earlier {
        let found = match earlier.command {
            Some(command) => {
                info!(step = %step.name, instance_id = %id, command_id = %command.command_id, "command already sent (S3 marker); not sending it again");
                Some(record(&command.command_id, command.sent_at, true))
            }
            None => ssm::commands_on(env.ssm().await, id)
                .await?
                .into_iter()
                .find(|c| c.comment == comment)
                .map(|sent| {
                    info!(step = %step.name, instance_id = %id, command_id = %sent.command_id, "command already sent (listed); not sending it again");
                    record(&sent.command_id, sent.requested_at, true)
                }),
        };
        if let Some(command) = found {
            marker.command = Some(command.clone());
            s3::put(env.s3().await, bucket, &marker_key, marker.to_json()).await?;
            Box::pin(poll_result::settle(env, &marker_key, marker)).await?;
            return Ok(command);
        }
        warn!(step = %step.name, instance_id = %id, "an earlier try marked this send but recorded no command and SSM lists none; sending");
    }
    s3::put(env.s3().await, bucket, &marker_key, marker.to_json()).await?;
    if slot.is_some() {
        handlers::fanout::point(env, &run, id, &marker_key).await?;
    }

    let placement = Placement {
        bucket: bucket.clone(),
        region: env.settings.region.clone(),
    };
    let step =
        handlers::fanout::with_preludes(env, &run, &job, step.clone(), slot.as_ref()).await?;
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
    match ssm::send(env.ssm().await, &command).await? {
        Sent::Command(command_id) => {
            info!(step = %step.name, instance_id = %id, %command_id, timeout = step.timeout_seconds, "step sent");
            let command = record(&command_id, rfc3339(env.clock.now()), false);
            marker.command = Some(command.clone());
            if let Err(e) = s3::put(env.s3().await, bucket, &marker_key, marker.to_json()).await {
                warn!(step = %step.name, %command_id, error = %e, "the command was sent but its S3 marker was not completed");
            }
            Ok(command)
        }
        Sent::NotRegistered => {
            ec2::ensure_alive(
                env.ec2().await,
                id,
                instance.seconds_since_launch(env.clock.now()),
            )
            .await?;
            Err(Error::AgentNotOnline(format!(
                "SSM does not accept commands for instance {id} yet (InvalidInstanceId: its agent is not registered); \
                 the state machine retries the send"
            )))
        }
    }
}

/// The checkpoint the step's runner will restore, from the marker its last upload left
/// (`None` before any upload: the step starts from zero).
async fn restored_checkpoint(env: &Env, run: &Run, step: &str) -> Result<Option<Restored>> {
    let key = naming::checkpoint_marker_key(&run.job, &run.run_id, step);
    Ok(s3::read(env.s3().await, &env.settings.bucket, &key)
        .await?
        .and_then(|text| Restored::from_marker(&text, env.clock.now())))
}
