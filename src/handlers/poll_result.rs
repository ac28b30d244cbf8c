//! poll-result: decide a step's outcome, whether an event tells or a state asks, and answer
//! the step's waiting task token.
//!
//! Shapes:
//! - an EventBridge event ([`waiting::told`]): an SSM invocation that ended, a spot
//!   interruption warning, an instance stopping or terminating. poll-result goes from the
//!   instance's tags to its run, from the run to the send markers waiting on that instance,
//!   checks the command id, decides, and calls SendTaskSuccess or SendTaskFailure with the
//!   stable error names (`StepFailed`, `InstanceReclaimed`, `InstanceLost`). Duplicate, late
//!   and out-of-order events are harmless: an answered marker is skipped, and a token already
//!   used or timed out is an expected answer, logged at info.
//! - the reconciler's `Scheduled Event` (every 5 minutes): every waiting step of this stack's
//!   instances whose command ended or whose instance is gone is answered, so a lost event
//!   costs minutes, not the run.
//! - the `<step>: poll` state's input: the fallback after a waiting state timed out. It
//!   classifies the step's last send once (retrying `StillRunning` briefly).
//!
//! Deciding is today's rules: not finished is `StillRunning` (nothing to answer yet); success
//! returns where the full output is; anything else checks the instance first (a reclaim is
//! `InstanceReclaimed`), then fails the step with the last 40 lines of its real output,
//! read from S3.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::sfn::{self, Delivered};
use crate::aws::{ec2, s3, ssm};
use crate::env::{parse_rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::fanout;
use crate::input::{parse, Checked};
use crate::manifest::{JobSpec, StepKind, StepSpec};
use crate::naming;
use crate::records::{Command, Launch, Run};
use crate::status::{classify, tail_lines, Failure, Verdict};
use crate::telemetry;
use crate::waiting::{self, Answer, SendMarker, Told};

/// How many lines of output a failure message ends with.
pub const TAIL_LINES: usize = 40;
/// How many bytes from the end of the output object are read for the tail.
const TAIL_BYTES: u64 = 64 * 1024;
/// Pauses while SSM still reports a command running that its event said ended (the event
/// can overtake GetCommandInvocation), and while EC2 still shows an instance running that
/// its event said is going.
const CONFIRM_PAUSES_SECONDS: [u64; 3] = [1, 2, 4];

/// What the `<step>: poll` state passes to poll-result.
#[derive(Debug, Deserialize)]
pub struct Input {
    pub run: Run,
    pub job: JobSpec,
    pub instance: Launch,
    pub step: StepSpec,
}

/// A step that succeeded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
    fn check(&self) -> Result<()> {
        self.run.validate(&self.job)
    }
}

/// One waiting step an event or the reconciler answered (or found already answered).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answered {
    pub run_id: String,
    pub step: String,
    pub round: u32,
    /// `Succeeded` or the error name.
    pub answer: String,
    /// False when the token was already answered or had timed out.
    pub taken: bool,
}

/// What poll-result did.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Polled {
    /// The `<step>: poll` state's answer.
    Step(StepResult),
    /// An event's or the reconciler's: the steps answered.
    Told { answered: Vec<Answered> },
    /// A sweep's bookkeeping (`{"fanout": ...}` requests: `crate::handlers::fanout`).
    FanOut(Value),
}

/// Handles one request: an event, the reconciler's schedule, or the poll state.
pub async fn handle(env: &Env, input: Value) -> Result<Polled> {
    if input.get("fanout").is_some() {
        return Ok(Polled::FanOut(
            Box::pin(crate::handlers::fanout::handle(env, input)).await?,
        ));
    }
    match waiting::told(&input) {
        Some(told) => {
            env.settings.require(&[Need::Bucket, Need::Stack])?;
            let answered = Box::pin(on_told(env, told?)).await?;
            Ok(Polled::Told { answered })
        }
        None => Ok(Polled::Step(Box::pin(poll(env, input)).await?)),
    }
}

/// The fallback poll: the step's last send, classified once.
async fn poll(env: &Env, input: Value) -> Result<StepResult> {
    let Input {
        run,
        step,
        instance,
        ..
    } = parse("poll-result input", input)?;
    env.settings.require(&[Need::Bucket])?;
    let Some((_, marker)) = latest_marker(env, &run, &step.name).await? else {
        return Err(Error::StepFailed(format!(
            "step `{}` has no record of a send (its send marker is gone); redrive the execution to send it again",
            step.name
        )));
    };
    let Some(command) = sent_command(env, &marker).await? else {
        return Err(Error::StepFailed(format!(
            "step `{}` was never sent: its send marker (round {}) records no command and SSM lists none; redrive the execution to send it again",
            step.name, marker.round
        )));
    };
    if command.instance_id != instance.instance_id {
        return Err(Error::StepFailed(format!(
            "step `{}`'s last command {} ran on instance {}, not on the run's instance {}; redrive the execution to send it again",
            step.name, command.command_id, command.instance_id, instance.instance_id
        )));
    }
    let result = decide(env, &marker, &command).await?;
    heartbeats(env, &marker);
    Ok(result)
}

/// Answers what an event told, or reconciles.
async fn on_told(env: &Env, told: Told) -> Result<Vec<Answered>> {
    let mut answered = Vec::new();
    match told {
        Told::Reconcile => return reconcile(env).await,
        Told::Foreign { why } => {
            info!(
                why,
                "an event about something not this stack's; nothing to answer"
            );
        }
        Told::CommandEnded {
            command_id,
            instance_id,
            status,
        } => {
            for (key, marker) in waiting_on(env, &instance_id).await? {
                let Some(command) = command_of(env, &marker, &command_id).await? else {
                    continue;
                };
                info!(run_id = %marker.run.run_id, step = %marker.step.name, %command_id, %status, "told: the command ended");
                let outcome = confirm(
                    env,
                    || decide(env, &marker, &command),
                    |o| matches!(o, Err(Error::StillRunning(_))),
                )
                .await;
                answered.extend(answer(env, &key, marker, &outcome).await?);
            }
        }
        Told::SpotWarning {
            instance_id,
            action,
        } => {
            for (key, marker) in waiting_on(env, &instance_id).await? {
                if marker.step.checkpoint.is_some() {
                    // Relaunching now would terminate the instance while the step's runner
                    // saves its checkpoint, and the new instance would restore an older one:
                    // the instance's end (EC2's state change, or the reconciler) answers.
                    info!(run_id = %marker.run.run_id, step = %marker.step.name, %instance_id, %action, "told: spot warning; the step saves its checkpoint, the instance's end answers");
                    continue;
                }
                let outcome: Result<StepResult> = Err(waiting::reclaim_warning(
                    &instance_id,
                    &action,
                    &marker.step.name,
                ));
                answered.extend(answer(env, &key, marker, &outcome).await?);
            }
        }
        Told::InstanceGoing { instance_id, state } => {
            let client = env.ec2().await;
            for (key, marker) in waiting_on(env, &instance_id).await? {
                let check = || ec2::ensure_alive(client, &instance_id, None);
                // Gone as EC2 shows it: classified by its state reason (a reclaim whose warning
                // was lost relaunches). Still shown running after the pauses: EC2 is eventually
                // consistent, so nothing is answered; the reconciler sees the final state.
                let outcome: Result<StepResult> = match confirm(env, check, Result::is_ok).await {
                    Ok(()) => Err(Error::StillRunning(format!(
                        "EC2 reported instance {instance_id} {state} while step `{}` ran, but still \
                         shows it running; the reconciler answers once EC2 shows why it went",
                        marker.step.name
                    ))),
                    Err(e) => Err(e),
                };
                answered.extend(answer(env, &key, marker, &outcome).await?);
            }
        }
    }
    Ok(answered)
}

/// Runs `check` again after each of [`CONFIRM_PAUSES_SECONDS`] while `unconfirmed` says the
/// AWS API does not show yet what the event told.
async fn confirm<T, F, Fut>(
    env: &Env,
    check: F,
    unconfirmed: impl Fn(&Result<T>) -> bool,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut outcome = check().await;
    for pause in CONFIRM_PAUSES_SECONDS {
        if !unconfirmed(&outcome) {
            break;
        }
        env.clock.pause(pause).await;
        outcome = check().await;
    }
    outcome
}

/// The reconciler: every waiting step of this stack's instances (in any state: a terminated
/// instance's step waits too) whose command ended or whose instance is gone is answered,
/// also a step whose marker names no command (found by the command's Comment).
async fn reconcile(env: &Env) -> Result<Vec<Answered>> {
    let mut runs: Vec<(String, String)> =
        ec2::stack_instances_any_state(env.ec2().await, &env.settings.stack)
            .await?
            .iter()
            .filter_map(ec2::run_of)
            .collect();
    runs.sort();
    runs.dedup();
    let mut answered = Vec::new();
    for (job, run_id) in runs {
        for (key, marker) in markers(env, &job, &run_id).await? {
            if !marker.waiting() {
                continue;
            }
            let Some(command) = sent_command(env, &marker).await? else {
                continue;
            };
            let outcome = decide(env, &marker, &command).await;
            answered.extend(answer(env, &key, marker, &outcome).await?);
        }
    }
    info!(answered = answered.len(), "reconciled the waiting steps");
    Ok(answered)
}

/// Answers `marker`'s token with `outcome`, when there is something to say: nothing while the
/// step runs, an error that is not the step's (AWS failing us) goes back to the caller. The
/// marker records the answer once Step Functions took it; a stale token changes nothing.
async fn answer(
    env: &Env,
    key: &str,
    mut marker: SendMarker,
    outcome: &Result<StepResult>,
) -> Result<Option<Answered>> {
    let Some(answer) = Answer::of(outcome)? else {
        info!(run_id = %marker.run.run_id, step = %marker.step.name, "the step is still running; nothing to answer");
        return Ok(None);
    };
    let delivered = sfn::answer_task(env.sfn().await, &marker.task_token, &answer).await?;
    let recorded = answer.recorded().to_string();
    let step = marker.step.name.clone();
    let taken = match delivered {
        Delivered::Taken => {
            info!(run_id = %marker.run.run_id, %step, answer = %recorded, "answered the waiting step");
            if matches!(answer, Answer::Success(_)) {
                heartbeats(env, &marker);
            }
            marker.answer = recorded.clone();
            if let Err(e) =
                s3::put(env.s3().await, &env.settings.bucket, key, marker.to_json()).await
            {
                warn!(%step, error = %e, "the answer was taken but its send marker was not updated");
            }
            true
        }
        Delivered::Stale(code) => {
            info!(run_id = %marker.run.run_id, %step, %code, "the waiting state's token was already answered or timed out");
            false
        }
    };
    Ok(Some(Answered {
        run_id: marker.run.run_id,
        step,
        round: marker.round,
        answer: recorded,
        taken,
    }))
}

/// For send-step, when a retried send finds its command already sent: answers the (new)
/// token now if the command has already ended, since its event may have gone to the old one.
pub async fn settle(env: &Env, key: &str, marker: SendMarker) -> Result<()> {
    let Some(command) = marker.command.clone() else {
        return Ok(());
    };
    let outcome = decide(env, &marker, &command).await;
    answer(env, key, marker, &outcome).await.map(|_| ())
}

/// The send markers waiting on `instance_id`: from the instance's tags to its run (only an
/// instance of this stack), then the run's markers.
async fn waiting_on(env: &Env, instance_id: &str) -> Result<Vec<(String, SendMarker)>> {
    let Some(instance) = ec2::describe(env.ec2().await, instance_id).await? else {
        info!(instance_id, "EC2 does not know the instance; the reconciler and the state's timeout cover its steps");
        return Ok(Vec::new());
    };
    let ours = ec2::tag(&instance, naming::tags::STACK) == Some(env.settings.stack.as_str());
    let Some((job, run_id)) = ec2::run_of(&instance).filter(|_| ours) else {
        info!(
            instance_id,
            "not an instance of this stack's runs; nothing to answer"
        );
        return Ok(Vec::new());
    };
    let lane = ec2::tag(&instance, naming::tags::LANE).is_some();
    let pointed = match lane {
        true => crate::handlers::fanout::pointed(env, &job, &run_id, instance_id).await?,
        false => None,
    };
    let candidates = match pointed {
        Some(marker) => vec![marker],
        None => markers(env, &job, &run_id).await?,
    };
    Ok(candidates
        .into_iter()
        .filter(|(_, m)| m.waiting() && m.instance.instance_id == instance_id)
        .collect())
}

/// Every readable send marker of a run, in key order.
pub async fn markers(env: &Env, job: &str, run_id: &str) -> Result<Vec<(String, SendMarker)>> {
    let bucket = &env.settings.bucket;
    let prefix = naming::send_markers_prefix(job, run_id);
    let mut out = Vec::new();
    for listed in s3::list(env.s3().await, bucket, &prefix).await? {
        if !listed.key.starts_with(&prefix) {
            continue;
        }
        let Some(text) = s3::read(env.s3().await, bucket, &listed.key).await? else {
            continue;
        };
        match SendMarker::parse(&text) {
            Some(marker) if marker.run.run_id == run_id && marker.run.job == job => {
                out.push((listed.key, marker))
            }
            _ => warn!(key = %listed.key, "an unreadable send marker; skipped"),
        }
    }
    Ok(out)
}

/// The latest send marker of `step` in the run (the highest round).
pub async fn latest_marker(
    env: &Env,
    run: &Run,
    step: &str,
) -> Result<Option<(String, SendMarker)>> {
    Ok(markers(env, &run.job, &run.run_id)
        .await?
        .into_iter()
        .filter(|(_, m)| m.step.name == step && m.slot.is_none())
        .max_by_key(|(_, m)| m.round))
}

/// The command of `marker` if it is `command_id`. A marker not yet completed with its command
/// (the command ended before send-step recorded it) is matched by the command's Comment, which
/// names the run, the step and the round.
async fn command_of(env: &Env, marker: &SendMarker, command_id: &str) -> Result<Option<Command>> {
    match &marker.command {
        Some(command) => Ok((command.command_id == command_id).then(|| command.clone())),
        None => listed_command(env, marker, Some(command_id)).await,
    }
}

/// The command `marker` records, or, when its completing write failed (send-step sent the
/// command but could not record it), the one SSM lists with the send's Comment.
async fn sent_command(env: &Env, marker: &SendMarker) -> Result<Option<Command>> {
    match &marker.command {
        Some(command) => Ok(Some(command.clone())),
        None => listed_command(env, marker, None).await,
    }
}

/// The command SSM lists on the marker's instance with the marker's Comment (run, step,
/// round), and with id `command_id` when given: for a marker send-step did not complete.
async fn listed_command(
    env: &Env,
    marker: &SendMarker,
    command_id: Option<&str>,
) -> Result<Option<Command>> {
    let id = &marker.instance.instance_id;
    let slot = marker.slot.as_ref();
    let comment = fanout::comment(&marker.run.run_id, &marker.step.name, marker.round, slot);
    let listed = ssm::commands_on(env.ssm().await, id).await?;
    Ok(listed
        .into_iter()
        .find(|c| c.comment == comment && command_id.is_none_or(|want| c.command_id == want))
        .map(|c| Command {
            command_id: c.command_id,
            step: marker.step.name.clone(),
            instance_id: id.clone(),
            round: marker.round,
            sent_at: c.requested_at,
            output_prefix: format!(
                "s3://{}/{}",
                env.settings.bucket,
                fanout::log_prefix(&marker.run.job, &marker.run.run_id, &marker.step.name, slot)
            ),
            reused: false,
            checkpoint: None,
        }))
}

/// The workload step's heartbeat metrics, once it succeeded (not for a preflight).
fn heartbeats(env: &Env, marker: &SendMarker) {
    if marker.step.kind == StepKind::Workload && !marker.run.preflight {
        for process in &marker.step.heartbeats {
            telemetry::emit_count(
                "AlphaEngine",
                "Heartbeat",
                ("Process", process),
                env.clock.now(),
            );
        }
    }
}

/// Decides a sent step's outcome from its invocation, its instance and its output.
pub async fn decide(env: &Env, marker: &SendMarker, command: &Command) -> Result<StepResult> {
    let SendMarker {
        run,
        instance,
        step,
        ..
    } = marker;
    let expected = fanout::log_prefix(&run.job, &run.run_id, &step.name, marker.slot.as_ref());
    match naming::parse_s3_uri(&command.output_prefix) {
        Ok((_, key)) if key == expected => {}
        _ => {
            return Err(Error::InvalidInput(format!(
                "command.output_prefix `{}` is not s3://<bucket>/{expected}",
                command.output_prefix
            )))
        }
    }
    let id = command.instance_id.as_str();
    let (bucket, stdout_key) =
        naming::ssm_stdout_object(&command.output_prefix, &command.command_id, id)
            .map_err(Error::InvalidInput)?;
    let output = format!("s3://{bucket}/{stdout_key}");
    let Some(invocation) = ssm::invocation(env.ssm().await, &command.command_id, id).await? else {
        ec2::ensure_alive(
            env.ec2().await,
            id,
            instance.seconds_since_launch(env.clock.now()),
        )
        .await?;
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
            ec2::ensure_alive(
                env.ec2().await,
                id,
                instance.seconds_since_launch(env.clock.now()),
            )
            .await?;
            Err(Error::StillRunning(format!(
                "step {} is {status} ({details})",
                step.name
            )))
        }
        Verdict::Succeeded => {
            let duration = duration_seconds.unwrap_or(0);
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
            ec2::ensure_alive(
                env.ec2().await,
                id,
                instance.seconds_since_launch(env.clock.now()),
            )
            .await?;
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
    match s3::tail(env.s3().await, bucket, key, TAIL_BYTES).await {
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
