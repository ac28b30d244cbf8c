//! A sweep's bookkeeping, asked of poll-result with `{"fanout": ...}`: the plan (the shard
//! list checked and kept, the lanes), a lane's next shard (the last outcome recorded, the
//! next unclaimed shard claimed) and the results index; cleanup returns a lost lane's shard
//! to the pool ([`release`]); send-step gives a shard (or a step after a sweep) its prelude
//! ([`with_preludes`]).
//!
//! Claims live in the run's staging, one per shard and round (`If-None-Match: *`: of two
//! lanes one gets it). Records live with the step's logs, one per shard and round, written
//! once (a duplicated or late answer is not counted twice), and a `done` mark per succeeded
//! shard: they outlive a failed run's staging, so a redrive's lanes skip the shards that
//! succeeded, whatever the engine reruns.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::aws::s3::{self, Condition, Written};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::fanout::{
    self, carried_file, check_list, compact, Lane, ResultsIndex, Shard, ShardRecord, Slot,
    MAX_RESULT_BYTES, RESULT_FILE, SUCCEEDED,
};
use crate::handlers::poll_result;
use crate::input::{parse, Checked};
use crate::manifest::{JobSpec, StepKind, StepSpec};
use crate::naming;
use crate::records::{Launch, Run};
use crate::waiting::{fit_cause, SendMarker};

/// What the state machine asks.
#[derive(Debug, Deserialize)]
#[serde(tag = "fanout", rename_all = "kebab-case")]
pub enum Request {
    /// `<step>: shards`.
    Plan {
        run: Run,
        job: JobSpec,
        step: StepSpec,
        /// The run's own instance (`$.launch`): lane 0 adopts it.
        #[serde(default)]
        instance: Launch,
        #[serde(default)]
        redrive_count: u32,
    },
    /// `<step> lane: next shard`: `shard` and `outcome` are the lane's last (null at first
    /// and after a relaunch).
    Next {
        run: Run,
        job: JobSpec,
        plan: Plan,
        lane: Lane,
        #[serde(default)]
        shard: Option<Shard>,
        #[serde(default)]
        outcome: Option<Value>,
        #[serde(default)]
        redrive_count: u32,
    },
    /// `<step>: results`.
    Results {
        run: Run,
        job: JobSpec,
        step: StepSpec,
        plan: Plan,
        #[serde(default)]
        redrive_count: u32,
    },
}

impl Checked for Request {
    fn check(&self) -> Result<()> {
        match self {
            Request::Plan { run, job, .. }
            | Request::Next { run, job, .. }
            | Request::Results { run, job, .. } => run.validate(job),
        }
    }
}

/// A sweep's plan (`$.fanout`): what every lane and the results state read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub step: String,
    pub shards: usize,
    /// The lanes' numbers: min(instances, shards not yet succeeded).
    pub lanes: Vec<u32>,
    /// The shards that had succeeded before this round.
    pub done: usize,
    /// Where the list is kept (`s3://…/shards.json`).
    pub list: String,
    /// The redrive round that planned it.
    pub round: u32,
    pub max_failed_shards: u32,
    /// The run's instance lane 0 runs on instead of launching (null: lane 0 launches); the
    /// lane leaves it running at the end, for the steps after the sweep.
    #[serde(default)]
    pub adopt: Option<Launch>,
}

/// What `<step>: results` hands to the next steps (`$.swept`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// The results index (`s3://…/results.json`).
    pub index: String,
    pub shards: usize,
    pub succeeded: usize,
    pub failed: Vec<u32>,
    pub not_run: Vec<u32>,
    /// Redriven: the plan runs again for the shards that did not succeed.
    pub rerun: bool,
}

/// Handles one `{"fanout": ...}` request.
pub async fn handle(env: &Env, input: Value) -> Result<Value> {
    env.settings.require(&[crate::env::Need::Bucket])?;
    let out = match parse::<Request>("fan-out request", input)? {
        Request::Plan {
            run,
            step,
            instance,
            redrive_count,
            ..
        } => json!(plan(env, &run, &step, &instance, redrive_count).await?),
        Request::Next {
            run,
            plan,
            lane,
            shard,
            outcome,
            redrive_count,
            ..
        } => {
            if let (Some(shard), Some(outcome)) = (&shard, &outcome) {
                record(env, &run, &plan.step, shard.index, outcome, redrive_count).await?;
            }
            let last = shard.as_ref().map(|s| s.index);
            json!(claim(env, &run, &plan, &lane, last, redrive_count).await?)
        }
        Request::Results {
            run,
            step,
            plan,
            redrive_count,
            ..
        } => json!(results(env, &run, &step.name, &plan, redrive_count).await?),
    };
    Ok(out)
}

fn uri(env: &Env, key: &str) -> String {
    format!("s3://{}/{key}", env.settings.bucket)
}

/// The plan: the list (kept from an earlier round, else the static one or the one its step
/// wrote, checked), kept with the step's logs; the lanes for the shards not yet succeeded.
async fn plan(
    env: &Env,
    run: &Run,
    step: &StepSpec,
    run_instance: &Launch,
    redrive_count: u32,
) -> Result<Plan> {
    let Some(f) = &step.fan_out else {
        return Err(Error::InvalidInput(format!(
            "step `{}` does not fan out",
            step.name
        )));
    };
    let bucket = &env.settings.bucket;
    let key = naming::shard_list_key(&run.job, &run.run_id, &step.name);
    let items = match s3::read(env.s3().await, bucket, &key).await? {
        Some(kept) => check_list(&kept).map_err(|p| {
            Error::InvalidInput(format!("the kept shard list {} {p}", uri(env, &key)))
        })?,
        None => {
            let items = match &f.written_by {
                Some(writer) => written_list(env, run, &step.name, writer, &f.shards).await?,
                None => check_list(&compact(&Value::Array(f.items.clone()))).map_err(|p| {
                    Error::InvalidInput(format!("step `{}`: `{}` {p}", step.name, f.shards))
                })?,
            };
            s3::put(
                env.s3().await,
                bucket,
                &key,
                compact(&Value::Array(items.clone())),
            )
            .await?;
            items
        }
    };
    let done = done_shards(env, run, &step.name).await?;
    let remaining = items.len() - done.iter().filter(|&&k| (k as usize) < items.len()).count();
    let plan = Plan {
        step: step.name.clone(),
        shards: items.len(),
        lanes: fanout::lanes(f.instances, remaining),
        done: items.len() - remaining,
        list: uri(env, &key),
        round: redrive_count,
        max_failed_shards: f.max_failed_shards,
        adopt: fanout::adopted(run_instance, redrive_count),
    };
    info!(step = %step.name, shards = plan.shards, done = plan.done, lanes = plan.lanes.len(), adopted = ?plan.adopt.as_ref().map(|l| &l.instance_id), "sweep planned");
    Ok(plan)
}

/// The shard list step `writer` carried out at the end of its output, checked; an error
/// names the file and the step.
async fn written_list(
    env: &Env,
    run: &Run,
    step: &str,
    writer: &str,
    file: &str,
) -> Result<Vec<Value>> {
    let refuse = |why: String| {
        Err(Error::InvalidInput(format!(
            "step `{step}`: the shard list `{file}` written by step `{writer}` {why}; nothing was launched for `{step}`"
        )))
    };
    let Some((_, marker)) = poll_result::latest_marker(env, run, writer).await? else {
        return refuse("is missing: that step did not run in this run".into());
    };
    let Some(command) = marker.command else {
        return refuse("is missing: that step records no command".into());
    };
    let (bucket, key) = naming::ssm_stdout_object(
        &command.output_prefix,
        &command.command_id,
        &command.instance_id,
    )
    .map_err(Error::InvalidInput)?;
    let output = s3::read(env.s3().await, &bucket, &key)
        .await?
        .unwrap_or_default();
    match carried_file(&output, file) {
        None => refuse(format!(
            "is missing: the step did not write it in its work folder (no `{}` line at the end of its output)",
            fanout::FILE_LINE
        )),
        Some(Err(why)) => refuse(why),
        Some(Ok(text)) => match check_list(&text) {
            Ok(items) => Ok(items),
            Err(why) => refuse(why),
        },
    }
}

/// The shards recorded as succeeded in any round (their `done` marks).
async fn done_shards(env: &Env, run: &Run, step: &str) -> Result<BTreeSet<u32>> {
    let prefix = naming::shard_done_prefix(&run.job, &run.run_id, step);
    indices_under(env, &prefix).await
}

/// The shard numbers named by the keys under `prefix` (`<prefix><shard>`).
async fn indices_under(env: &Env, prefix: &str) -> Result<BTreeSet<u32>> {
    Ok(s3::list(env.s3().await, &env.settings.bucket, prefix)
        .await?
        .iter()
        .filter_map(|l| l.key.strip_prefix(prefix)?.parse().ok())
        .collect())
}

/// Records shard `shard`'s outcome in round `round`, once: a second answer for the same
/// shard and round (a duplicated or late event, a retried invocation) is not counted.
async fn record(
    env: &Env,
    run: &Run,
    step: &str,
    shard: u32,
    outcome: &Value,
    round: u32,
) -> Result<()> {
    let bucket = &env.settings.bucket;
    let text = |k: &str| {
        outcome
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut record = ShardRecord {
        shard,
        round,
        status: SUCCEEDED.into(),
        output: text("output"),
        result: None,
        error: String::new(),
        command_id: text("command_id"),
        instance_id: text("instance_id"),
    };
    if let Some(error) = outcome.get("Error").and_then(Value::as_str) {
        record.status = error.to_string();
        record.error = first_line(&text("Cause"));
    } else {
        match shard_result(env, &record.output).await {
            Ok(result) => record.result = result,
            Err(why) => {
                record.status = "StepFailed".into();
                record.error = why;
            }
        }
    }
    let key = naming::shard_record_key(&run.job, &run.run_id, step, shard, round);
    let body = serde_json::to_string(&record).expect("a ShardRecord always serializes");
    if s3::put_if(env.s3().await, bucket, &key, body, Condition::Absent).await? == Written::Refused
    {
        warn!(
            step,
            shard, round, "the shard's outcome was already recorded; this one is not counted"
        );
        return Ok(());
    }
    info!(step, shard, round, status = %record.status, "shard recorded");
    if record.succeeded() {
        let done = naming::shard_done_key(&run.job, &run.run_id, step, shard);
        s3::put(env.s3().await, bucket, &done, String::new()).await?;
    }
    Ok(())
}

/// The cause's message (a Lambda error's `errorMessage`, else the text), its first line.
fn first_line(cause: &str) -> String {
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| cause.to_string());
    fit_cause(message.lines().next().unwrap_or_default())
}

/// The result a succeeded shard carried out (its result file, JSON), if any.
async fn shard_result(env: &Env, output: &str) -> std::result::Result<Option<Value>, String> {
    let Ok((bucket, key)) = naming::parse_s3_uri(output) else {
        return Ok(None);
    };
    let tail = s3::tail(env.s3().await, &bucket, &key, 4 * MAX_RESULT_BYTES as u64)
        .await
        .map_err(|code| format!("its output {output} could not be read for its result ({code})"))?;
    match carried_file(&tail, RESULT_FILE) {
        None => Ok(None),
        Some(Err(why)) => Err(format!("its result file {why}")),
        Some(Ok(text)) if text.len() > MAX_RESULT_BYTES => Err(format!(
            "its result file is {} bytes; a shard's result may be at most {MAX_RESULT_BYTES}",
            text.len()
        )),
        Some(Ok(text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("its result file is not JSON: {e}")),
    }
}

/// The shard this lane claimed last in this round, if a retried call must hand it out again:
/// not the one it just recorded (`last`), still claimed by this lane, and not recorded.
async fn held(
    env: &Env,
    run: &Run,
    step: &str,
    lane: &Lane,
    last: Option<u32>,
    round: u32,
) -> Result<Option<u32>> {
    let bucket = &env.settings.bucket;
    let key = naming::lane_claim_key(&run.job, &run.run_id, step, &lane.id(), round);
    let Some(k) = s3::read(env.s3().await, bucket, &key)
        .await?
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|k| Some(*k) != last)
    else {
        return Ok(None);
    };
    let claim = naming::shard_claim_key(&run.job, &run.run_id, step, k, round);
    if s3::read(env.s3().await, bucket, &claim).await?.as_deref() != Some(lane.id().as_str()) {
        return Ok(None);
    }
    let record = naming::shard_record_key(&run.job, &run.run_id, step, k, round);
    Ok(s3::read(env.s3().await, bucket, &record)
        .await?
        .is_none()
        .then_some(k))
}

/// Claims the first shard that has not succeeded and no lane has claimed in this round;
/// `None`: none is left. A retried call (its first answer lost) gets the shard the first
/// one claimed (`last`: the shard the call recorded).
async fn claim(
    env: &Env,
    run: &Run,
    plan: &Plan,
    lane: &Lane,
    last: Option<u32>,
    round: u32,
) -> Result<Option<Shard>> {
    let bucket = &env.settings.bucket;
    let step = plan.step.as_str();
    let shard = |items: &[Value], k: u32| Shard {
        index: k,
        item: items.get(k as usize).cloned().unwrap_or(Value::Null),
    };
    if let Some(k) = held(env, run, step, lane, last, round).await? {
        warn!(step, lane = %lane.id(), shard = k, "a retried call: the shard this lane claimed before is handed out again");
        return Ok(Some(shard(&shard_list(env, run, step).await?, k)));
    }
    let prefix = naming::shard_claims_prefix(&run.job, &run.run_id, step, round);
    let taken = indices_under(env, &prefix).await?;
    let done = done_shards(env, run, step).await?;
    let free: Vec<u32> = (0..plan.shards as u32)
        .filter(|k| !taken.contains(k) && !done.contains(k))
        .collect();
    if free.is_empty() {
        info!(step, lane = %lane.id(), "no shard left");
        return Ok(None);
    }
    let items = shard_list(env, run, step).await?;
    let held = naming::lane_claim_key(&run.job, &run.run_id, step, &lane.id(), round);
    for k in free {
        let claim = naming::shard_claim_key(&run.job, &run.run_id, step, k, round);
        if s3::put_if(env.s3().await, bucket, &claim, lane.id(), Condition::Absent).await?
            == Written::Written
        {
            s3::put(env.s3().await, bucket, &held, k.to_string()).await?;
            info!(step, lane = %lane.id(), shard = k, "shard claimed");
            return Ok(Some(shard(&items, k)));
        }
    }
    info!(step, lane = %lane.id(), "every free shard was claimed by another lane meanwhile");
    Ok(None)
}

/// The sweep's kept shard list.
async fn shard_list(env: &Env, run: &Run, step: &str) -> Result<Vec<Value>> {
    let key = naming::shard_list_key(&run.job, &run.run_id, step);
    let Some(text) = s3::read(env.s3().await, &env.settings.bucket, &key).await? else {
        return Err(Error::InvalidInput(format!(
            "step `{step}`'s shard list {} is gone",
            uri(env, &key)
        )));
    };
    check_list(&text).map_err(|p| Error::InvalidInput(format!("{} {p}", uri(env, &key))))
}

/// The results index from every record; `ShardsFailed` past `max_failed_shards`, unless
/// redriven (then the plan runs again).
async fn results(
    env: &Env,
    run: &Run,
    step: &str,
    plan: &Plan,
    redrive_count: u32,
) -> Result<Swept> {
    let bucket = &env.settings.bucket;
    let prefix = naming::shard_records_prefix(&run.job, &run.run_id, step);
    let mut records = Vec::new();
    for listed in s3::list(env.s3().await, bucket, &prefix).await? {
        let Some(text) = s3::read(env.s3().await, bucket, &listed.key).await? else {
            continue;
        };
        match serde_json::from_str::<ShardRecord>(&text) {
            Ok(r) => records.push(r),
            Err(e) => warn!(key = %listed.key, error = %e, "an unreadable shard record; skipped"),
        }
    }
    let index = ResultsIndex::of(step, plan.shards, &records);
    let key = naming::results_index_key(&run.job, &run.run_id, step);
    s3::put(
        env.s3().await,
        bucket,
        &key,
        serde_json::to_string(&index).expect("a ResultsIndex always serializes"),
    )
    .await?;
    let swept = Swept {
        index: uri(env, &key),
        shards: index.shards,
        succeeded: index.succeeded,
        failed: index.failed.clone(),
        not_run: index.not_run.clone(),
        rerun: false,
    };
    info!(
        step,
        shards = swept.shards,
        succeeded = swept.succeeded,
        failed = swept.failed.len(),
        not_run = swept.not_run.len(),
        "results index written"
    );
    if index.unsuccessful() <= plan.max_failed_shards as usize {
        return Ok(swept);
    }
    if redrive_count > plan.round {
        info!(
            step,
            redrive_count, "redriven: the sweep runs again for the shards that did not succeed"
        );
        return Ok(Swept {
            rerun: true,
            ..swept
        });
    }
    Err(Error::ShardsFailed(shards_failed_message(
        step,
        &index,
        plan.max_failed_shards,
        &swept.index,
    )))
}

/// The `ShardsFailed` message: how many, which (with each one's error), where the index is,
/// what to do.
pub fn shards_failed_message(step: &str, index: &ResultsIndex, max: u32, uri: &str) -> String {
    let mut which: Vec<String> = index
        .entries
        .iter()
        .filter(|e| e.status != SUCCEEDED)
        .take(20)
        .map(|e| match e.error.as_str() {
            "" => format!("shard {} ({})", e.shard, e.status),
            error => format!("shard {} ({}: {error})", e.shard, e.status),
        })
        .collect();
    if index.unsuccessful() > which.len() {
        which.push(format!("and {} more", index.unsuccessful() - which.len()));
    }
    fit_cause(&format!(
        "step `{step}`: {} of {} shards did not succeed (max_failed_shards {max}): {}. \
         Results index: {uri}. Fix the cause, then redrive the execution: it reruns only the \
         shards that did not succeed",
        index.unsuccessful(),
        index.shards,
        which.join("; ")
    ))
}

/// Notes that lane instance `instance_id` waits on the marker at `marker_key` (send-step).
pub async fn point(env: &Env, run: &Run, instance_id: &str, marker_key: &str) -> Result<()> {
    let key = naming::lane_instance_marker_key(&run.job, &run.run_id, instance_id);
    s3::put(
        env.s3().await,
        &env.settings.bucket,
        &key,
        marker_key.to_string(),
    )
    .await
}

/// The marker lane instance `instance_id` waits on now (poll-result, told about it): one read
/// instead of every marker of the run. `None` when no send noted one.
pub async fn pointed(
    env: &Env,
    job: &str,
    run_id: &str,
    instance_id: &str,
) -> Result<Option<(String, SendMarker)>> {
    let bucket = &env.settings.bucket;
    let key = naming::lane_instance_marker_key(job, run_id, instance_id);
    let Some(marker_key) = s3::read(env.s3().await, bucket, &key).await? else {
        return Ok(None);
    };
    if !marker_key.starts_with(&naming::send_markers_prefix(job, run_id)) {
        warn!(
            key,
            "a lane's marker pointer names no marker of its run; reading every marker"
        );
        return Ok(None);
    }
    Ok(s3::read(env.s3().await, bucket, &marker_key)
        .await?
        .and_then(|text| SendMarker::parse(&text))
        .filter(|m| m.run.job == job && m.run.run_id == run_id)
        .map(|m| (marker_key, m)))
}

/// Returns a lost lane's in-flight shard to the pool (its claim deleted), for cleanup.
pub async fn release(env: &Env, run: &Run, lane: &Lane, shard: &Shard, round: u32) -> Result<()> {
    env.settings.require(&[crate::env::Need::Bucket])?;
    let key = naming::shard_claim_key(&run.job, &run.run_id, &lane.step, shard.index, round);
    s3::delete(env.s3().await, &env.settings.bucket, &key).await?;
    info!(step = %lane.step, lane = %lane.id(), shard = shard.index, "shard returned to the pool");
    Ok(())
}

/// The step as its command runs it: a shard's prelude (`SPOTSTEP_SHARD`, its item, its result
/// file); a workload step after a sweep gets each earlier sweep's results index as
/// `spotstep-results/<step>.json` in its work folder.
pub async fn with_preludes(
    env: &Env,
    run: &Run,
    job: &JobSpec,
    step: StepSpec,
    slot: Option<&Slot>,
) -> Result<StepSpec> {
    if let Some(shard) = slot.and_then(|s| s.shard.as_ref()) {
        return Ok(StepSpec {
            script: fanout::shard_prelude(shard) + &step.script,
            ..step
        });
    }
    if slot.is_some() || step.kind != StepKind::Workload {
        return Ok(step);
    }
    let position = |name: &str| job.workload_steps.iter().position(|w| w == name);
    let mut prelude = String::new();
    for swept in job
        .fan_out_steps
        .iter()
        .filter(|f| position(f) < position(&step.name))
    {
        let key = naming::results_index_key(&run.job, &run.run_id, swept);
        let Some(index) = s3::read(env.s3().await, &env.settings.bucket, &key).await? else {
            continue;
        };
        prelude.push_str(&fanout::index_prelude(swept, &index, &uri(env, &key)));
    }
    Ok(StepSpec {
        script: prelude + &step.script,
        ..step
    })
}
