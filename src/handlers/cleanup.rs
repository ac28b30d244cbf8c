//! cleanup: leave nothing running and nothing staged. Every shape is idempotent and best
//! effort per resource, and none hides the run's own error.
//!
//! Shapes (by `action`, or by the EventBridge `detail-type`):
//! - `end-of-run`: terminate every instance tagged with the run, delete `tmp/<job>/<run_id>/`
//!   and the run's checkpoints (`checkpoints/<job>/<run_id>/`).
//! - `relaunch`: terminate the run's instances before a relaunch (the staging stays).
//! - `step-failed`: the state a failed step is caught into. On the first pass it cleans up
//!   like `end-of-run` and fails again with the step's own error, so the execution fails at
//!   this state; a redrive re-runs it with a higher `RedriveCount`, and then it lets the
//!   execution go on to send the step again.
//! - `Step Functions Execution Status Change` (FAILED, TIMED_OUT, ABORTED): cancel the
//!   execution's in-flight commands, terminate its instances, delete its staging.
//! - `sweep` (or a `Scheduled Event`): terminate spotstep instances whose execution is no
//!   longer running, or that outlived their max runtime plus grace.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::{ec2, s3, sfn, sns, ssm};
use crate::env::{Env, Need};
use crate::error::{Error, Result};
use crate::fanout::{Lane, Shard};
use crate::handlers::poll_result;
use crate::input::{parse, Checked};
use crate::ledger;
use crate::lock;
use crate::manifest::{JobSpec, StepSpec};
use crate::naming::{self, tags};
use crate::notification;
use crate::records::{Launch, Run};
use crate::telemetry;
use crate::waiting;

/// The error a caught step failure carries (`Catch` with `ResultPath`).
#[derive(Debug, Clone, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error")]
    pub error: String,
    /// Absent or null when the failure gave none (SendTaskFailure's cause is optional).
    #[serde(rename = "Cause", default, deserialize_with = "null_as_empty")]
    pub cause: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
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
        /// The error that lost the instance (the Catch's `$.lost`).
        #[serde(default)]
        lost: Option<CaughtError>,
        /// The workload step the run resumes at after the relaunch (empty: a setup step).
        #[serde(default)]
        resume_at: String,
        #[serde(default)]
        redrive_count: u32,
        /// A sweep lane's relaunch: only its instance goes, and its shard returns to the pool.
        #[serde(default)]
        lane: Option<Lane>,
        #[serde(default)]
        shard: Option<Shard>,
    },
    /// A sweep lane found no shard left: its instance goes, unless it is `keep`, the run's
    /// instance lane 0 adopted (the steps after the sweep run on it).
    LaneEnd {
        run: Run,
        lane: Lane,
        #[serde(default)]
        instance: Launch,
        #[serde(default)]
        keep: Option<Launch>,
    },
    StepFailed {
        run: Run,
        job: Box<JobSpec>,
        step: StepSpec,
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

impl Checked for Request {
    fn check(&self) -> Result<()> {
        match self {
            Request::EndOfRun { run }
            | Request::Relaunch { run, .. }
            | Request::LaneEnd { run, .. } => run.check(),
            Request::StepFailed { run, job, .. } => run.validate(job),
            Request::ExecutionEnded { .. } | Request::Sweep => Ok(()),
        }
    }
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
    /// What an end-of-run cleanup could not do (left to the hourly sweep); the run still
    /// succeeds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// True when the on-call engineer was told (execution-ended with `SPOTSTEP_TOPIC`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub notified: bool,
    /// The run's cost, as its ledger record says it ([`ledger`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cost: String,
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
        Request::EndOfRun { run } => Ok(Box::pin(end_of_run(env, &run)).await),
        Request::Relaunch {
            run,
            instance,
            lost,
            resume_at,
            redrive_count,
            lane,
            shard,
        } => {
            if let (Some(lane), Some(shard)) = (&lane, &shard) {
                Box::pin(crate::handlers::fanout::release(
                    env,
                    &run,
                    lane,
                    shard,
                    redrive_count,
                ))
                .await?;
            }
            Box::pin(relaunch(
                env,
                &run,
                &instance,
                lost.as_ref(),
                &resume_at,
                redrive_count,
                lane.as_ref(),
            ))
            .await
        }
        Request::LaneEnd {
            run,
            lane,
            instance,
            keep,
        } => {
            // Only the lane's own (tagged) instances go when it still runs on the run's.
            let kept = keep.is_some_and(|k| k.instance_id == instance.instance_id);
            let instance = if kept { Launch::default() } else { instance };
            let mut report =
                Box::pin(relaunch(env, &run, &instance, None, "", 0, Some(&lane))).await?;
            report.action = "lane-end".into();
            Ok(report)
        }
        Request::StepFailed {
            run,
            step,
            failure,
            redrive_count,
            ..
        } => {
            env.settings.require(&[Need::Bucket, Need::Stack])?;
            let sent_round = Box::pin(poll_result::latest_marker(env, &run, &step.name))
                .await?
                .map(|(_, marker)| marker.round);
            if redriven(redrive_count, sent_round) {
                info!(step = %step.name, redrive_count, "redriven: sending the failed step again");
                return Ok(Report {
                    action: "step-failed".into(),
                    resumed: true,
                    ..Report::default()
                });
            }
            let (_, mut errors) = Box::pin(clean_run(env, &run.job, &run.run_id, true)).await;
            if let Err(e) = Box::pin(lock::release(env, &run.job, &run.execution)).await {
                errors.push(e);
            }
            for e in errors {
                warn!(step = %step.name, error = %e, "cleanup after the failed step was incomplete; the status-change rule retries it");
            }
            Err(Error::StepFailed(cause_message(&failure)))
        }
        Request::ExecutionEnded { execution, status } => {
            Box::pin(execution_ended(env, &execution, &status)).await
        }
        Request::Sweep => Box::pin(sweep(env)).await,
    }
}

/// Whether a `step-failed` pass runs in a redrive of the failure it was caught for: the
/// execution's round is past the round the step was last sent in (`sent_round`, from its
/// send marker). The first pass deletes the staging with the markers, so a redrive finds
/// none; the first pass itself always finds the marker of the send that failed.
pub fn redriven(redrive_count: u32, sent_round: Option<u32>) -> bool {
    redrive_count > 0 && sent_round.is_none_or(|round| redrive_count > round)
}

/// Before a relaunch: terminate what is left of the run's instance, and decide whether the
/// loss may relaunch at all. A spot reclaim relaunches (and counts `SpotInterruptionRetry`).
/// Any other loss (the max-runtime watchdog, an operator's terminate, the sweep) fails the
/// execution here with `InstanceLost`, to be looked at and redriven; a redrive (a round
/// above the instance's) relaunches. Only instances whose tags name this run and stack are
/// terminated.
async fn relaunch(
    env: &Env,
    run: &Run,
    instance: &Launch,
    lost: Option<&CaughtError>,
    resume_at: &str,
    redrive_count: u32,
    lane: Option<&Lane>,
) -> Result<Report> {
    env.settings.require(&[Need::Stack])?;
    let stack = env.settings.stack.as_str();
    let lane_id = lane.map(Lane::id);
    let mut wanted = vec![
        (tags::RUN_ID, run.run_id.as_str()),
        (tags::JOB, run.job.as_str()),
        (tags::STACK, stack),
    ];
    wanted.extend(lane_id.as_deref().map(|id| (tags::LANE, id)));
    let ids = instance_ids(env, &wanted).await?;
    let unknown = ec2::terminate(env.ec2().await, &ids).await?;
    let mut ids = confirmed(ids, &unknown);
    let id = instance.instance_id.as_str();
    if !id.is_empty() && !ids.iter().any(|i| i == id) {
        match ec2::describe(env.ec2().await, id).await? {
            Some(found) => {
                let ours = ec2::run_of(&found) == Some((run.job.clone(), run.run_id.clone()))
                    && ec2::tag(&found, tags::STACK) == Some(stack);
                if ours && ec2::is_live(&found) {
                    let unknown = ec2::terminate(env.ec2().await, &[id.to_string()]).await?;
                    ids.extend(confirmed(vec![id.to_string()], &unknown));
                } else if !ours {
                    warn!(instance_id = id, "the launch record names an instance whose tags are not this run's; not terminating it");
                }
            }
            None if instance
                .seconds_since_launch(env.clock.now())
                .is_some_and(|age| age < crate::loss::NOT_VISIBLE_GRACE_SECONDS) =>
            {
                ec2::terminate_launched(env.ec2().await, id, env.clock).await?;
                ids.push(id.to_string());
            }
            None => {}
        }
    }
    info!(terminated = ?ids, "cleaned up before relaunch");
    let error = lost.map_or("", |l| l.error.as_str());
    let expected_after_redrive = redrive_count > instance.round;
    if error == "InstanceLost" && !expected_after_redrive {
        let step = if resume_at.is_empty() {
            "a setup step".to_string()
        } else {
            format!("step `{resume_at}`")
        };
        return Err(Error::InstanceLost(format!(
            "{} Only a spot reclaim relaunches by itself: find out what stopped the instance \
             (the max-runtime watchdog, an operator, the sweep), then redrive the execution: it \
             relaunches, runs the setup steps and resumes at {step}",
            cause_message(lost.expect("an InstanceLost error was caught"))
        )));
    }
    if error == "InstanceReclaimed" {
        telemetry::emit_count(
            "AlphaEngine",
            "SpotInterruptionRetry",
            ("Process", &run.job),
            env.clock.now(),
        );
    }
    Ok(Report {
        action: "relaunch".into(),
        terminated: ids,
        ..Report::default()
    })
}

/// After an execution ended FAILED, TIMED_OUT or ABORTED (the EventBridge rule): cancel its
/// commands, terminate its instances, delete its staging, tell the on-call engineer. The
/// event may come late or twice, after the operator stopped and redrove the execution: so
/// the execution is described first, and nothing is done while it runs again (by its status,
/// or by a send marker of a later round than the described one: a redrive that began since),
/// after it ended otherwise since (a redrive that SUCCEEDED), or for an execution Step
/// Functions does not know (not this stack's). Only the instances of its rounds up to the
/// described `redriveCount` (from this stack) are touched.
async fn execution_ended(env: &Env, execution: &str, status: &str) -> Result<Report> {
    let nothing = |why: String| {
        info!(execution, status, why, "nothing to clean");
        Ok(Report {
            action: format!("execution-ended ({status}): {why}, nothing to do"),
            ..Report::default()
        })
    };
    if !matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED") {
        return nothing("not a failure".into());
    }
    env.settings.require(&[Need::Bucket, Need::Stack])?;
    let Some(described) = sfn::execution(env.sfn().await, execution).await? else {
        return nothing("not an execution of this stack (Step Functions does not know it)".into());
    };
    if described.running() {
        return nothing(format!(
            "running again (redrive {})",
            described.redrive_count
        ));
    }
    if described.status != status {
        return nothing(format!(
            "the execution ended {} since (redrive {})",
            described.status, described.redrive_count
        ));
    }
    let round = described.redrive_count;
    let instances: Vec<_> =
        ec2::instances_of_execution(env.ec2().await, execution, &env.settings.stack)
            .await?
            .into_iter()
            .filter(|i| ec2::round_of(i) <= round)
            .collect();
    let mut runs: Vec<(String, String)> = instances.iter().filter_map(ec2::run_of).collect();
    runs.sort();
    runs.dedup();
    for (job, run_id) in &runs {
        let later = Box::pin(poll_result::markers(env, job, run_id))
            .await?
            .into_iter()
            .any(|(_, m)| m.round > round);
        if later {
            return nothing(format!(
                "running again (a step was sent after redrive {round})"
            ));
        }
    }
    let mut report = Report {
        action: format!("execution-ended ({status})"),
        ..Report::default()
    };
    let live: Vec<String> = instances
        .iter()
        .filter(|i| ec2::is_live(i))
        .filter_map(|i| i.instance_id().map(String::from))
        .collect();
    for id in &live {
        report
            .cancelled_commands
            .extend(cancel_commands(env, id).await?);
    }
    let unknown = ec2::terminate(env.ec2().await, &live).await?;
    report.terminated = confirmed(live, &unknown);
    for (job, run_id) in runs {
        let prefix = naming::staging_prefix(&job, &run_id);
        report.deleted_objects +=
            s3::delete_prefix(env.s3().await, &env.settings.bucket, &prefix).await?;
        Box::pin(lock::release(env, &job, execution)).await?;
    }
    Box::pin(record(env, execution, status, &mut report)).await;
    if !env.settings.topic.is_empty() {
        Box::pin(notify(env, execution, status, &described, &report.cost)).await?;
        report.notified = true;
    }
    Ok(report)
}

/// Writes the run's ledger record ([`ledger::write`]) and puts its cost in the report. Best
/// effort: a failure is logged and reported in `incomplete`, never the cleanup's error.
async fn record(env: &Env, execution: &str, status: &str, report: &mut Report) {
    match ledger::write(env, execution, status).await {
        Ok(Some(record)) => report.cost = record.cost.line(),
        Ok(None) => {}
        Err(e) => {
            warn!(execution, error_type = e.name(), error = %e, "the run's ledger record could not be written");
            report
                .incomplete
                .push(format!("{}: {e} (the ledger record of the run)", e.name()));
        }
    }
}

/// Tells the on-call engineer (`SPOTSTEP_TOPIC`) which state failed, with which error and
/// cause, and how to redrive ([`notification`]). After the cleanup, so a failed publish is
/// retried (EventBridge's async invocation retries, then the dead-letter queue) with the
/// cleanup already done.
async fn notify(
    env: &Env,
    execution: &str,
    status: &str,
    described: &sfn::Execution,
    cost: &str,
) -> Result<()> {
    let events = sfn::history(env.sfn().await, execution).await?;
    let failed_state = sfn::last_state_of(&events);
    let preemption = crate::preemption::of(&events);
    let ended = notification::Ended {
        execution_arn: execution,
        status,
        failed_state: failed_state.as_deref(),
        preemption: &preemption,
        error: described.error.as_deref().unwrap_or_default(),
        cause: described.cause.as_deref().unwrap_or_default(),
        cost,
    };
    sns::publish(
        env.sns().await,
        &env.settings.topic,
        &notification::subject(&ended),
        &notification::message(&ended),
    )
    .await?;
    info!(execution, status, failed_state = ?ended.failed_state, "failure notification sent");
    Ok(())
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
    Ok(ec2::tagged_instances(env.ec2().await, wanted)
        .await?
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect())
}

/// The end of a run that succeeded: clean up, and never turn the success into a failure.
/// What could not be done is logged, reported in `incomplete`, and left to the hourly sweep
/// (which terminates the run's instances once its execution is over, and deletes its
/// staging) and to the staging lifecycle rule.
async fn end_of_run(env: &Env, run: &Run) -> Report {
    let (mut report, mut errors) = match env.settings.require(&[Need::Bucket, Need::Stack]) {
        Ok(()) => clean_run(env, &run.job, &run.run_id, true).await,
        Err(e) => (Report::default(), vec![e]),
    };
    if errors.is_empty() {
        // The run succeeded: its checkpoints are done with (a failed run keeps them for
        // its redrive, until the lifecycle rule expires them).
        let prefix = naming::checkpoint_run_prefix(&run.job, &run.run_id);
        match s3::delete_prefix(env.s3().await, &env.settings.bucket, &prefix).await {
            Ok(n) => report.deleted_objects += n,
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        if let Err(e) = Box::pin(lock::release(env, &run.job, &run.execution)).await {
            errors.push(e);
        }
    }
    report.action = "end-of-run".into();
    if !env.settings.bucket.is_empty() {
        Box::pin(record(env, &run.execution, "SUCCEEDED", &mut report)).await;
    }
    for e in errors {
        warn!(error_type = e.name(), error = %e, "end-of-run cleanup incomplete; the run still succeeds");
        report.incomplete.push(format!(
            "{}: {e} (left to the hourly sweep and the tmp/ lifecycle rule)",
            e.name()
        ));
    }
    report
}

/// Terminates the run's instances and (when `staging`) deletes its staging prefix, trying
/// each even when another failed; returns what was done and every error met. `job` and
/// `run_id` are checked already: they come from a checked input or from [`ec2::run_of`].
async fn clean_run(env: &Env, job: &str, run_id: &str, staging: bool) -> (Report, Vec<Error>) {
    let mut report = Report::default();
    let mut errors = Vec::new();
    let wanted = [
        (tags::RUN_ID, run_id),
        (tags::JOB, job),
        (tags::STACK, env.settings.stack.as_str()),
    ];
    match instance_ids(env, &wanted).await {
        Ok(ids) => match ec2::terminate(env.ec2().await, &ids).await {
            Ok(unknown) => report.terminated = confirmed(ids, &unknown),
            Err(e) => errors.push(e),
        },
        Err(e) => errors.push(e),
    }
    if staging {
        let prefix = naming::staging_prefix(job, run_id);
        match s3::delete_prefix(env.s3().await, &env.settings.bucket, &prefix).await {
            Ok(n) => report.deleted_objects = n,
            Err(e) => errors.push(e),
        }
    }
    info!(job, run_id, terminated = ?report.terminated, errors = errors.len(), "run cleaned up");
    (report, errors)
}

/// The instances of `ids` whose terminate EC2 confirmed (not among the `unknown` ones).
fn confirmed(mut ids: Vec<String>, unknown: &[String]) -> Vec<String> {
    ids.retain(|id| !unknown.contains(id));
    ids
}

/// A clean-up's report, or its first error (for callers whose retry is the answer to it).
fn settled((report, errors): (Report, Vec<Error>)) -> Result<Report> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Cancels the commands still pending or running on an instance.
async fn cancel_commands(env: &Env, instance_id: &str) -> Result<Vec<String>> {
    let mut cancelled = Vec::new();
    for command in ssm::commands_on(env.ssm().await, instance_id).await? {
        if !command.live {
            continue;
        }
        match ssm::cancel(env.ssm().await, &command.command_id, instance_id).await {
            Ok(()) => cancelled.push(command.command_id),
            Err(e) => {
                warn!(command_id = %command.command_id, error = %e, "could not cancel command")
            }
        }
    }
    Ok(cancelled)
}

/// What the sweep knows of an instance's execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionSeen {
    /// Ended, or unknown to Step Functions.
    Ended,
    /// Running in redrive round `round`.
    Running { round: u32 },
    /// No execution tag, or Step Functions could not be asked.
    Unknown,
}

/// What the sweep does with one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    Keep,
    /// Terminate this instance only; the run goes on, its staging stays.
    Instance,
    /// Terminate every instance of the instance's run; delete its staging when `staging`.
    Run {
        staging: bool,
    },
}

/// The sweep's rule for one instance launched in redrive round `round`: a run whose
/// execution ended is cleaned up with its staging. While the execution runs, its staging
/// stays, and an instance of an earlier round is terminated only when the run no longer uses
/// it (`in_use`, from its send markers: a redrive can resume on the instance it had). An
/// instance past its max runtime plus grace is terminated whatever else holds.
pub fn sweep_rule(seen: ExecutionSeen, round: u32, in_use: bool, over_budget: bool) -> Swept {
    match seen {
        ExecutionSeen::Ended => Swept::Run { staging: true },
        ExecutionSeen::Running { round: current } if round < current && !in_use => Swept::Instance,
        _ if over_budget => Swept::Run { staging: false },
        _ => Swept::Keep,
    }
}

/// Terminates spotstep instances whose execution is no longer running (their runs' staging
/// deleted), that a running execution no longer uses, or that outlived their max runtime
/// plus grace ([`sweep_rule`]).
async fn sweep(env: &Env) -> Result<Report> {
    env.settings.require(&[Need::Bucket, Need::Stack])?;
    let now = env.clock.now();
    let mut report = Report {
        action: "sweep".into(),
        ..Report::default()
    };
    for instance in ec2::stack_instances(env.ec2().await, &env.settings.stack).await? {
        let id = instance.instance_id().unwrap_or_default().to_string();
        let age = instance
            .launch_time()
            .map_or(0, |t| now.unix_timestamp() - t.secs());
        let budget = ec2::tag(&instance, tags::MAX_RUNTIME)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
            + env.settings.sweep_grace_seconds;
        let seen = match ec2::tag(&instance, tags::EXECUTION) {
            Some(execution) => match sfn::execution(env.sfn().await, execution).await {
                Ok(Some(d)) if d.running() => ExecutionSeen::Running {
                    round: d.redrive_count,
                },
                Ok(_) => ExecutionSeen::Ended,
                Err(e) => {
                    warn!(instance_id = %id, error = %e, "could not describe the instance's execution");
                    ExecutionSeen::Unknown
                }
            },
            None => ExecutionSeen::Unknown,
        };
        let round = ec2::round_of(&instance);
        let run = ec2::run_of(&instance);
        let in_use = match (seen, &run) {
            (ExecutionSeen::Running { round: current }, Some((job, run_id))) if round < current => {
                let markers: Vec<_> = Box::pin(poll_result::markers(env, job, run_id))
                    .await?
                    .into_iter()
                    .map(|(_, m)| m)
                    .collect();
                waiting::instances_in_use(&markers, current).contains(&id)
            }
            _ => false,
        };
        let swept = sweep_rule(seen, round, in_use, age > budget);
        if in_use {
            info!(instance_id = %id, round, ?seen, "the running execution still uses this instance of an earlier round; not sweeping it");
        }
        if swept == Swept::Keep {
            continue;
        }
        info!(instance_id = %id, age, budget, ?seen, ?swept, "sweeping instance");
        match (swept, run) {
            (Swept::Run { staging }, Some((job, run_id))) => {
                let cleaned = settled(clean_run(env, &job, &run_id, staging).await)?;
                if let (ExecutionSeen::Ended, Some(execution)) =
                    (seen, ec2::tag(&instance, tags::EXECUTION))
                {
                    Box::pin(lock::release(env, &job, execution)).await?;
                    Box::pin(record(env, execution, "UNKNOWN", &mut report)).await;
                }
                report.terminated.extend(cleaned.terminated);
                report.deleted_objects += cleaned.deleted_objects;
            }
            _ => {
                let unknown = ec2::terminate(env.ec2().await, std::slice::from_ref(&id)).await?;
                report.terminated.extend(confirmed(vec![id], &unknown));
            }
        }
    }
    report.terminated.dedup();
    Ok(report)
}
