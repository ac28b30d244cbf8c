//! The run ledger: one record per run, `runs/<job>/<run_id>.json` in the staging bucket
//! (outside `tmp/`, so it is kept), written by cleanup at the end of every run (success,
//! failure, abort, time-out, the sweep) and rewritten by the end of each redrive.
//!
//! The record is read from the execution's own history ([`facts`]: the run, each step's
//! sends and outcome, each launch's instance and why it ended, the reclaims, the
//! orchestration counts), then priced ([`priced`], [`crate::cost`]) with the spot price
//! history of each instance's type and zone. A redrive's history goes on from the failure,
//! so the rewritten record covers both rounds; [`merge`] keeps a price the earlier record
//! had when the new one could not be had.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::asl::state;
use crate::aws::{ec2, s3, sfn};
use crate::cost::{self, Cost, Counts, EndedBy, InstanceCost, PricePoint};
use crate::env::{parse_rfc3339, rfc3339, Env};
use crate::error::{Error, Result};
use crate::naming;
use crate::progress::{step_of, Event};

/// The record's format version.
pub const VERSION: u32 = 1;

/// One run, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub job: String,
    pub run_id: String,
    pub execution: String,
    pub mode: String,
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED` (or `RUNNING` while a redrive runs).
    pub status: String,
    pub started_at: String,
    pub ended_at: String,
    /// How many times the execution was redriven.
    pub redrive_count: u32,
    pub steps: Vec<StepRun>,
    /// Every instance the run launched, in launch order (one run may have many).
    pub instances: Vec<InstanceRun>,
    pub reclaims: Vec<Reclaim>,
    pub counts: Counts,
    pub cost: Cost,
}

/// One step of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRun {
    pub name: String,
    /// Its first send.
    pub started_at: String,
    /// When its outcome was known (empty while unfinished).
    pub ended_at: String,
    /// `Success`, the failure's error name (`StepFailed`), `Interrupted` (its instance went)
    /// or `Unfinished` (the run ended while it ran).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How many times its send state ran (relaunches and redrives send again; a send that
    /// finds its instance gone counts too).
    pub attempts: u32,
}

/// One instance the run launched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRun {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// `spot` or `on-demand`, per launch.
    pub market: String,
    pub launched_at: String,
    /// When the run stopped using it: the relaunch's cleanup after a reclaim or loss, the
    /// end of the run (the cleanup that terminated it), as the history and cleanup saw it.
    pub ended_at: String,
    /// `end of run`, `spot reclaim`, `lost: ...`, `run FAILED`, ...
    pub ended_why: String,
    /// True when the run lost it to a spot reclaim (the interruption warning).
    pub reclaimed: bool,
    /// True when EC2 itself terminated it (`Server.SpotInstanceTermination`): only then is
    /// an interruption in the first hour free. On a warning the relaunch's cleanup
    /// terminates the instance first, and an instance spotstep terminated is billed its
    /// seconds. Read from EC2's state reason when the record is written.
    #[serde(default)]
    pub ended_by_ec2: bool,
    pub root_volume_gb: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<InstanceCost>,
}

/// A spot reclaim (or a loss) during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaim {
    pub instance_id: String,
    pub at: String,
    /// `InstanceReclaimed` or `InstanceLost`.
    pub error: String,
    /// The workload step the run resumed at (empty: a setup step).
    pub resume_at: String,
}

fn at(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .map(rfc3339)
        .unwrap_or_default()
}

fn seconds(text: &str) -> Option<i64> {
    parse_rfc3339(text).map(|t| t.unix_timestamp())
}

fn json(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The exit code a `StepFailed` message names (`..., exit code 3: ...`).
fn exit_code_in(message: &str) -> Option<i32> {
    let rest = &message[message.find("exit code ")? + "exit code ".len()..];
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

/// Reads a run from its execution's history, oldest event first. `now_millis` ends what is
/// still open when the history has no end (the end-of-run cleanup runs inside the
/// execution) and `status` is then the run's status. `None` when the history names no run
/// (it failed before `Name the run`) or a run whose names are unsafe as S3 keys.
pub fn facts(events: &[Event], status: &str, now_millis: i64) -> Option<Record> {
    let named = events
        .iter()
        .filter(|e| e.kind.ends_with("StateExited"))
        .map(|e| json(e.output.as_deref()))
        .find(|v| v.get("run").is_some())
        .unwrap_or(Value::Null);
    let (run, job) = (&named["run"], &named["job"]);
    let (job_name, run_id) = (text(run, "job"), text(run, "run_id"));
    if naming::check_name(&job_name).is_err() || naming::check_run_id(&run_id).is_err() {
        return None;
    }
    let volume_gb = job["root_volume_gb"].as_u64().unwrap_or_default() as u32;
    let started = events.first().map_or(now_millis, |e| e.at_millis);
    let mut steps: Vec<StepRun> = Vec::new();
    let mut instances: Vec<InstanceRun> = Vec::new();
    let mut reclaims = Vec::new();
    let mut open: Option<usize> = None;
    let mut end: Option<(String, i64)> = None;
    let mut redrives = 0;
    let mut counts = Counts::default();
    let (mut entered_tasks, mut scheduled) = (0u64, 0u64);
    let mut failed_ends = 0u64;
    let mut tokens = 0u64;
    let close = |instances: &mut Vec<InstanceRun>,
                 open: &mut Option<usize>,
                 millis,
                 why: String,
                 reclaimed| {
        if let Some(i) = open.take() {
            instances[i].ended_at = at(millis);
            instances[i].ended_why = why;
            instances[i].reclaimed = reclaimed;
        }
    };
    for e in events {
        let name = e.state.clone().unwrap_or_default();
        match e.kind.as_str() {
            "ExecutionRedriven" => {
                redrives += 1;
                end = None;
            }
            "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => {
                let status = match e.kind.as_str() {
                    "ExecutionSucceeded" => "SUCCEEDED",
                    "ExecutionFailed" => "FAILED",
                    "ExecutionTimedOut" => "TIMED_OUT",
                    _ => "ABORTED",
                };
                if status != "SUCCEEDED" {
                    failed_ends += 1;
                }
                let why = if status == "SUCCEEDED" {
                    "end of run".to_string()
                } else {
                    format!("run {status}")
                };
                close(&mut instances, &mut open, e.at_millis, why, false);
                end = Some((status.to_string(), e.at_millis));
            }
            "LambdaFunctionScheduled" => scheduled += 1,
            "TaskScheduled" => {
                scheduled += 1;
                tokens += 1;
            }
            kind if kind.ends_with("StateEntered") => {
                counts.transitions += 1;
                if kind == "TaskStateEntered" {
                    entered_tasks += 1;
                }
                let input = json(e.input.as_deref());
                if name == state::RELAUNCH_CLEAN_UP {
                    let lost = &input["lost"];
                    let error = text(lost, "Error");
                    let id = open
                        .map(|i| instances[i].instance_id.clone())
                        .unwrap_or_default();
                    let reclaimed = error == "InstanceReclaimed";
                    let why = if reclaimed {
                        "spot reclaim".to_string()
                    } else {
                        let cause = crate::progress::cause_message(&text(lost, "Cause"));
                        format!("lost: {cause}")
                    };
                    // A redrive's relaunch finds the instance the failure's cleanup ended:
                    // no instance was open, nothing was reclaimed or lost then.
                    if !error.is_empty() && open.is_some() {
                        reclaims.push(Reclaim {
                            instance_id: id,
                            at: at(e.at_millis),
                            error,
                            resume_at: text(&input, "resume_at"),
                        });
                    }
                    close(&mut instances, &mut open, e.at_millis, why, reclaimed);
                    for s in steps.iter_mut().filter(|s| s.ended_at.is_empty()) {
                        s.status = "Interrupted".into();
                        s.ended_at = at(e.at_millis);
                    }
                }
                match step_of(&name) {
                    Some((step, "send")) => match steps.iter_mut().find(|s| s.name == step) {
                        Some(s) => {
                            s.attempts += 1;
                            s.status = "Unfinished".into();
                            s.ended_at.clear();
                            s.exit_code = None;
                        }
                        None => steps.push(StepRun {
                            name: step.to_string(),
                            started_at: at(e.at_millis),
                            ended_at: String::new(),
                            status: "Unfinished".into(),
                            exit_code: None,
                            attempts: 1,
                        }),
                    },
                    Some((step, "failed")) => {
                        if let Some(s) = steps.iter_mut().find(|s| s.name == step) {
                            let failure = &input["failure"];
                            let message = crate::progress::cause_message(&text(failure, "Cause"));
                            s.status = text(failure, "Error");
                            s.exit_code = exit_code_in(&message);
                            if s.ended_at.is_empty() {
                                s.ended_at = at(e.at_millis);
                            }
                        }
                    }
                    _ => {}
                }
            }
            kind if kind.ends_with("StateExited") => {
                let output = json(e.output.as_deref());
                if name == state::LAUNCH {
                    let launch = &output["launch"];
                    let id = text(launch, "instance_id");
                    if !id.is_empty() && instances.iter().all(|i| i.instance_id != id) {
                        let launched = text(launch, "launched_at");
                        instances.push(InstanceRun {
                            instance_id: id,
                            instance_type: text(launch, "instance_type"),
                            availability_zone: text(launch, "availability_zone"),
                            market: text(launch, "market"),
                            launched_at: if launched.is_empty() {
                                at(e.at_millis)
                            } else {
                                launched
                            },
                            ended_at: String::new(),
                            ended_why: String::new(),
                            reclaimed: false,
                            ended_by_ec2: false,
                            root_volume_gb: volume_gb,
                            cost: None,
                        });
                        open = Some(instances.len() - 1);
                    }
                }
                if let Some((step, "send" | "poll")) = step_of(&name) {
                    let result = &output["result"];
                    if result["step"].as_str() == Some(step) {
                        if let Some(s) = steps.iter_mut().find(|s| s.name == step) {
                            s.status = text(result, "status");
                            s.exit_code = result["exit_code"].as_i64().map(|c| c as i32);
                            s.ended_at = at(e.at_millis);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (status, ended_millis) = match end {
        Some((status, millis)) => (status, millis),
        None => (status.to_string(), now_millis),
    };
    let why = if status == "SUCCEEDED" {
        "end of run".to_string()
    } else {
        format!("run {status}")
    };
    close(&mut instances, &mut open, ended_millis, why, false);
    counts.transitions += scheduled.saturating_sub(entered_tasks);
    // Each waiting step is answered by one poll-result invocation (an event or the
    // reconciler), and each failed end runs the status-change rule's cleanup.
    counts.lambda_invocations = scheduled + tokens + failed_ends;
    let run_seconds = (ended_millis - started).max(0) / 1000;
    counts.scheduler_invocations =
        (run_seconds as u64).div_ceil(crate::waiting::events::RECONCILE_EVERY_SECONDS);
    Some(Record {
        version: VERSION,
        job: job_name,
        run_id,
        execution: text(run, "execution"),
        mode: text(run, "mode"),
        status,
        started_at: at(started),
        ended_at: at(ended_millis),
        redrive_count: redrives,
        steps,
        instances,
        reclaims,
        counts,
        cost: Cost::of([], &Counts::default()),
    })
}

/// The record with its cost: each instance priced by `prices[i]` (its spot price history
/// over its lifetime, or why there is none).
pub fn priced(
    mut record: Record,
    prices: &[std::result::Result<Vec<PricePoint>, String>],
) -> Record {
    for (instance, prices) in record.instances.iter_mut().zip(prices) {
        let (Some(launched), Some(ended)) =
            (seconds(&instance.launched_at), seconds(&instance.ended_at))
        else {
            continue;
        };
        let ended_by = if instance.ended_by_ec2 {
            EndedBy::Interruption
        } else {
            EndedBy::Us
        };
        instance.cost = Some(cost::instance_cost(
            launched,
            ended,
            ended_by,
            instance.root_volume_gb,
            prices.as_ref().map(Vec::as_slice).map_err(Clone::clone),
        ));
    }
    record.cost = run_cost(&record);
    record
}

fn run_cost(record: &Record) -> Cost {
    let unpriced = InstanceCost {
        billed_seconds: 0,
        rule: cost::Rule::SecondsUsed,
        instance_usd: None,
        volume_usd: 0.0,
        unknown: Some("the instance's lifetime is not known".into()),
    };
    Cost::of(
        record
            .instances
            .iter()
            .map(|i| i.cost.as_ref().unwrap_or(&unpriced)),
        &record.counts,
    )
}

/// A redrive's record over the earlier one: the new record (read from the whole history)
/// wins, but an instance it could not price keeps the earlier record's price.
pub fn merge(earlier: &Record, mut next: Record) -> Record {
    for instance in &mut next.instances {
        let known_before = earlier
            .instances
            .iter()
            .find(|e| e.instance_id == instance.instance_id && e.ended_at == instance.ended_at)
            .and_then(|e| e.cost.clone())
            .filter(|c| c.instance_usd.is_some());
        let unknown_now = instance
            .cost
            .as_ref()
            .is_none_or(|c| c.instance_usd.is_none());
        if let (Some(before), true) = (known_before, unknown_now) {
            instance.cost = Some(before);
        }
    }
    next.cost = run_cost(&next);
    next
}

/// Whether EC2 itself terminated a reclaimed instance, as its state reason says
/// (`Server.SpotInstanceTermination`). EC2 shows a terminated instance for about an hour:
/// when it no longer does (or cannot be asked), spotstep's own terminate is assumed, the
/// dearer rule.
async fn ended_by_ec2(env: &Env, instance_id: &str) -> bool {
    match ec2::describe(env.ec2().await, instance_id).await {
        Ok(Some(instance)) => instance
            .state_reason()
            .and_then(|r| r.code())
            .is_some_and(|code| crate::loss::RECLAIM_REASON_CODES.contains(&code)),
        Ok(None) => false,
        Err(e) => {
            warn!(instance_id, error = %e, "could not ask EC2 who ended the reclaimed instance; billing it as ended by spotstep");
            false
        }
    }
}

/// The spot price history of an instance over its lifetime (from its launch to the end of
/// its billed time), or why it cannot be had (an on-demand instance, an AWS error).
async fn prices_of(
    env: &Env,
    instance: &InstanceRun,
) -> std::result::Result<Vec<PricePoint>, String> {
    if instance.market != crate::capacity::Market::Spot.as_str() {
        return Err(format!(
            "{} is {}: spotstep prices spot instances only (no on-demand price list)",
            instance.instance_id, instance.market
        ));
    }
    let (Some(from), Some(to)) = (seconds(&instance.launched_at), seconds(&instance.ended_at))
    else {
        return Err("the instance's lifetime is not known".into());
    };
    let to = to.max(from + cost::MINIMUM_BILLED_SECONDS);
    ec2::spot_price_history(
        env.ec2().await,
        &instance.instance_type,
        &instance.availability_zone,
        from,
        to,
    )
    .await
    .map_err(|e| format!("{}: {e}", e.name()))
}

/// The run's record read from its execution's history and priced, without writing it
/// (`spotstep cost` where a run has no ledger record); `None` when the history names no run.
pub async fn from_history(env: &Env, execution: &str, status: &str) -> Result<Option<Record>> {
    let events = sfn::history(env.sfn().await, execution).await?;
    let now = env.clock.now().unix_timestamp() * 1000;
    let Some(facts) = facts(&events, status, now) else {
        return Ok(None);
    };
    let mut facts = facts;
    let mut prices = Vec::new();
    for instance in &mut facts.instances {
        if instance.reclaimed {
            instance.ended_by_ec2 = ended_by_ec2(env, &instance.instance_id).await;
        }
        prices.push(prices_of(env, instance).await);
    }
    Ok(Some(priced(facts, &prices)))
}

/// The ledger record of `job`'s run `run_id`, when there is one.
pub async fn read(env: &Env, bucket: &str, job: &str, run_id: &str) -> Result<Option<Record>> {
    let key = naming::ledger_key(job, run_id);
    let Some(text) = s3::read(env.s3().await, bucket, &key).await? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::AwsError(format!(
            "the ledger record s3://{bucket}/{key} is unreadable: {e}"
        ))
    })
}

/// Every ledger record under `runs/` (or `runs/<job>/`), in key order.
pub async fn records(env: &Env, bucket: &str, job: Option<&str>) -> Result<Vec<Record>> {
    let prefix = job.map_or("runs/".to_string(), naming::ledger_prefix);
    let mut out = Vec::new();
    for object in s3::list(env.s3().await, bucket, &prefix).await? {
        let Some(text) = s3::read(env.s3().await, bucket, &object.key).await? else {
            continue;
        };
        match serde_json::from_str::<Record>(&text) {
            Ok(record) => out.push(record),
            Err(e) => warn!(key = %object.key, error = %e, "skipping an unreadable ledger record"),
        }
    }
    Ok(out)
}

/// Reads the execution's history, prices its instances, merges it over the run's earlier
/// record and writes it to `runs/<job>/<run_id>.json`. `status` is the run's status when
/// the history has not ended yet (the end-of-run cleanup). `Ok(None)` when the history names
/// no run (it failed before naming it).
pub async fn write(env: &Env, execution: &str, status: &str) -> Result<Option<Record>> {
    let Some(mut record) = from_history(env, execution, status).await? else {
        warn!(execution, "the history names no run; no ledger record");
        return Ok(None);
    };
    let key = naming::ledger_key(&record.job, &record.run_id);
    let bucket = &env.settings.bucket;
    if let Some(text) = s3::read(env.s3().await, bucket, &key).await? {
        match serde_json::from_str::<Record>(&text) {
            Ok(earlier) => record = merge(&earlier, record),
            Err(e) => {
                warn!(key, error = %e, "the earlier ledger record is unreadable; rewriting it")
            }
        }
    }
    let body = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::AwsError(format!("serialising the ledger record: {e}")))?;
    s3::put(env.s3().await, bucket, &key, body).await?;
    info!(key, status = %record.status, cost = %record.cost.total_text(), "ledger record written");
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_796_000_000_000;

    fn ev(
        kind: &str,
        secs: i64,
        state: Option<&str>,
        input: Option<Value>,
        output: Option<Value>,
    ) -> Event {
        Event {
            kind: kind.into(),
            at_millis: T0 + secs * 1000,
            state: state.map(String::from),
            output: output.map(|v| v.to_string()),
            input: input.map(|v| v.to_string()),
            error: None,
            cause: None,
        }
    }

    fn entered(kind: &str, secs: i64, state: &str, input: Value) -> Event {
        ev(
            &format!("{kind}StateEntered"),
            secs,
            Some(state),
            Some(input),
            None,
        )
    }

    fn exited(kind: &str, secs: i64, state: &str, output: Value) -> Event {
        ev(
            &format!("{kind}StateExited"),
            secs,
            Some(state),
            None,
            Some(output),
        )
    }

    fn launch(secs: i64, id: &str) -> Vec<Event> {
        vec![
            entered("Task", secs, "Launch", json!({})),
            ev("LambdaFunctionScheduled", secs, None, None, None),
            exited(
                "Task",
                secs + 1,
                "Launch",
                json!({"launch": {"instance_id": id, "instance_type": "c5.large",
                    "availability_zone": "us-east-1a", "market": "spot",
                    "launched_at": at(T0 + (secs + 1) * 1000)}}),
            ),
        ]
    }

    fn step(secs: i64, step: &str, took: i64, exit: i64) -> Vec<Event> {
        vec![
            entered("Task", secs, &state::send(step), json!({})),
            ev("TaskScheduled", secs, None, None, None),
            exited(
                "Task",
                secs + took,
                &state::send(step),
                json!({"result": {"step": step, "status": "Success", "exit_code": exit}}),
            ),
        ]
    }

    /// A run: named, launched, `bootstrap` 100 s, `work` reclaimed after 200 s, relaunched,
    /// `bootstrap` again, `work` 300 s, then the end-of-run cleanup (no end in the history).
    fn history() -> Vec<Event> {
        let run = json!({"run": {"job": "data-weekly", "run_id": "manual-1", "execution": "arn:x",
            "mode": "full"}, "job": {"root_volume_gb": 30}});
        let mut h = vec![
            ev("ExecutionStarted", 0, None, None, None),
            entered("Pass", 0, "Name the run", json!({})),
            exited("Pass", 0, "Name the run", run),
        ];
        h.extend(launch(1, "i-1"));
        h.extend(step(10, "bootstrap", 100, 0));
        h.push(entered("Task", 110, &state::send("work"), json!({})));
        h.push(ev("TaskScheduled", 110, None, None, None));
        h.push(entered("Pass", 310, &state::resume_here("work"), json!({})));
        h.push(entered(
            "Task",
            311,
            state::RELAUNCH_CLEAN_UP,
            json!({"lost": {"Error": "InstanceReclaimed", "Cause": "reclaimed"}, "resume_at": "work"}),
        ));
        h.push(ev("LambdaFunctionScheduled", 311, None, None, None));
        h.extend(launch(320, "i-2"));
        h.extend(step(330, "bootstrap", 50, 0));
        h.extend(step(380, "work", 300, 0));
        h.push(entered("Task", 680, state::FINISH, json!({})));
        h.push(ev("LambdaFunctionScheduled", 680, None, None, None));
        h
    }

    #[test]
    fn a_run_with_a_reclaim_from_its_history() {
        let f = facts(&history(), "SUCCEEDED", T0 + 681_000).unwrap();
        assert_eq!(
            (f.job.as_str(), f.run_id.as_str(), f.mode.as_str()),
            ("data-weekly", "manual-1", "full")
        );
        assert_eq!(f.status, "SUCCEEDED");
        assert_eq!(f.ended_at, at(T0 + 681_000));
        let steps: Vec<_> = f
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.status.as_str(), s.exit_code, s.attempts))
            .collect();
        assert_eq!(
            steps,
            [
                ("bootstrap", "Success", Some(0), 2),
                ("work", "Success", Some(0), 2)
            ]
        );
        let instances: Vec<_> = f
            .instances
            .iter()
            .map(|i| {
                (
                    i.instance_id.as_str(),
                    i.ended_why.as_str(),
                    i.reclaimed,
                    i.root_volume_gb,
                )
            })
            .collect();
        assert_eq!(
            instances,
            [
                ("i-1", "spot reclaim", true, 30),
                ("i-2", "end of run", false, 30)
            ]
        );
        assert_eq!(f.instances[0].launched_at, at(T0 + 2000));
        assert_eq!(f.instances[0].ended_at, at(T0 + 311_000));
        assert_eq!(f.instances[1].ended_at, at(T0 + 681_000));
        assert_eq!(f.reclaims.len(), 1);
        assert_eq!(
            (
                f.reclaims[0].instance_id.as_str(),
                f.reclaims[0].resume_at.as_str()
            ),
            ("i-1", "work")
        );
        // 10 states entered; 4 functions and 4 waiting tasks scheduled, no retries.
        assert_eq!(f.counts.transitions, 10);
        assert_eq!(f.counts.lambda_invocations, 4 + 4 + 4);
        assert_eq!(f.counts.scheduler_invocations, 3);
    }

    #[test]
    fn the_cost_follows_the_billing_rules() {
        let f = facts(&history(), "SUCCEEDED", T0 + 681_000).unwrap();
        let launched = T0 / 1000;
        let prices = vec![
            Ok(vec![PricePoint {
                at: launched - 100,
                usd_per_hour: 0.04,
            }]),
            Ok(vec![
                PricePoint {
                    at: launched,
                    usd_per_hour: 0.036,
                },
                PricePoint {
                    at: launched + 500,
                    usd_per_hour: 0.072,
                },
            ]),
        ];
        // spotstep's relaunch cleanup terminated the warned instance before EC2 did: billed
        // its seconds, as any instance we end.
        let ours = priced(f.clone(), &prices);
        let first = ours.instances[0].cost.clone().unwrap();
        assert_eq!(
            (first.rule, first.billed_seconds),
            (cost::Rule::SecondsUsed, 309)
        );
        assert_eq!(first.instance_usd, Some(cost::round(0.04 * 309.0 / 3600.0)));
        // EC2 terminated it (its state reason): in its first hour, free.
        let mut f = f;
        f.instances[0].ended_by_ec2 = true;
        let r = priced(f, &prices);
        let first = r.instances[0].cost.clone().unwrap();
        assert_eq!(
            (first.rule, first.instance_usd),
            (cost::Rule::InterruptedFirstHour, Some(0.0))
        );
        let second = r.instances[1].cost.clone().unwrap();
        // Launched at +321 s, ended at +681 s: 179 s at 0.036, 181 s at 0.072.
        assert_eq!(second.billed_seconds, 360);
        assert_eq!(
            second.instance_usd,
            Some(cost::round((179.0 * 0.036 + 181.0 * 0.072) / 3600.0))
        );
        assert_eq!(r.cost.instance_usd, second.instance_usd);
        assert!(r.cost.total_usd.unwrap() > second.instance_usd.unwrap());
    }

    #[test]
    fn a_redrive_keeps_a_price_it_cannot_have_again() {
        let f = facts(&history(), "SUCCEEDED", T0 + 681_000).unwrap();
        let launched = T0 / 1000;
        let ok = vec![
            Ok(vec![PricePoint {
                at: launched,
                usd_per_hour: 0.04,
            }]),
            Ok(vec![PricePoint {
                at: launched,
                usd_per_hour: 0.04,
            }]),
        ];
        let earlier = priced(f.clone(), &ok);
        let throttled = vec![
            Err("Throttled: slow down".to_string()),
            Err("Throttled: slow down".to_string()),
        ];
        let again = priced(f, &throttled);
        assert_eq!(again.cost.total_usd, None);
        assert_eq!(again.cost.unknown, ["Throttled: slow down"]);
        let merged = merge(&earlier, again);
        assert_eq!(merged.cost, earlier.cost);
    }

    #[test]
    fn a_run_that_failed_before_any_step_still_has_a_record() {
        let run = json!({"run": {"job": "demo", "run_id": "r-1", "execution": "arn:y", "mode": "full"}, "job": {}});
        let mut h = vec![
            ev("ExecutionStarted", 0, None, None, None),
            exited("Pass", 0, "Name the run", run),
            entered("Task", 1, "Launch", json!({})),
            ev("LambdaFunctionScheduled", 1, None, None, None),
        ];
        h.push(ev("ExecutionFailed", 5, None, None, None));
        let r = priced(facts(&h, "FAILED", T0 + 9_000).unwrap(), &[]);
        assert_eq!(
            (r.status.as_str(), r.steps.len(), r.instances.len()),
            ("FAILED", 0, 0)
        );
        assert_eq!(r.ended_at, at(T0 + 5_000));
        assert_eq!(r.cost.instance_usd, Some(0.0));
        assert!(
            r.cost.total_usd.unwrap() > 0.0,
            "its orchestration still cost something"
        );
        // No run named, or an unsafe one: no record.
        assert!(facts(&h[..1], "FAILED", T0).is_none());
        let unsafe_run = json!({"run": {"job": "../x", "run_id": "r"}});
        assert!(facts(
            &[exited("Pass", 0, "Name the run", unsafe_run)],
            "FAILED",
            T0
        )
        .is_none());
    }

    #[test]
    fn a_failed_step_keeps_its_error_and_exit_code() {
        let run = json!({"run": {"job": "demo", "run_id": "r-2", "execution": "arn:z", "mode": "full"}, "job": {"root_volume_gb": 8}});
        let mut h = vec![
            ev("ExecutionStarted", 0, None, None, None),
            exited("Pass", 0, "Name the run", run),
        ];
        h.extend(launch(1, "i-9"));
        h.push(entered("Task", 5, &state::send("fail"), json!({})));
        let cause = json!({"errorType": "StepFailed", "errorMessage": "step `fail` failed: status Failed (Failed), exit code 3: see s3://b/k\nlast line"}).to_string();
        h.push(entered(
            "Task",
            9,
            &state::failed("fail"),
            json!({"failure": {"Error": "StepFailed", "Cause": cause}}),
        ));
        h.push(ev("ExecutionFailed", 10, None, None, None));
        let r = facts(&h, "FAILED", T0 + 20_000).unwrap();
        assert_eq!(r.steps[0].status, "StepFailed");
        assert_eq!(r.steps[0].exit_code, Some(3));
        assert_eq!(r.instances[0].ended_why, "run FAILED");
        assert_eq!(exit_code_in("exit code -1: x"), Some(-1));
        assert_eq!(exit_code_in("no code"), None);
    }
}
