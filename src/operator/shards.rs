//! A sweep as the operator sees it (fan-out steps): its progress for `spotstep watch`
//! (shards done / running / failed of N) and one shard's output for
//! `spotstep logs <execution> <step> --shard K`, both read from the execution's history.

use std::collections::BTreeMap;
use std::io::Write;

use aws_sdk_s3::Client as S3;
use serde_json::Value;

use super::logs::{print_s3_output, Sent};
use super::Failure;
use crate::progress::Event;

/// What one shard is doing, as the history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Done,
    Failed,
    /// Its lane lost its instance: back in the pool.
    Returned,
}

/// The plan a sweep's `<step>: shards` state made last (`$.fanout`), with its step.
fn plans(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind.ends_with("StateExited"))
        .filter(|e| e.state.as_deref().is_some_and(|s| s.ends_with(": shards")))
        .filter_map(|e| serde_json::from_str::<Value>(e.output.as_deref()?).ok())
        .filter_map(|v| v.get("fanout").cloned())
        .collect()
}

fn input(e: &Event) -> Option<Value> {
    serde_json::from_str(e.input.as_deref()?).ok()
}

/// One line per sweep seen in the history: `sweep <step>: D done, R running, F failed of N
/// shards`, a shard's latest state counting (a redrive's rerun replaces a failure).
pub fn progress_lines(events: &[Event]) -> Vec<String> {
    let mut lines = Vec::new();
    for plan in plans(events) {
        let (Some(step), Some(total)) = (plan["step"].as_str(), plan["shards"].as_u64()) else {
            continue;
        };
        if lines
            .iter()
            .any(|l: &String| l.starts_with(&format!("sweep {step}:")))
        {
            continue;
        }
        let lane = |what: &str| format!("{step} lane: {what}");
        let mut shards: BTreeMap<u64, State> = BTreeMap::new();
        for e in events.iter().filter(|e| e.kind.ends_with("StateEntered")) {
            let Some(name) = e.state.as_deref() else {
                continue;
            };
            let Some(v) = input(e) else { continue };
            let Some(k) = v["shard"]["index"].as_u64() else {
                continue;
            };
            let state = if name == lane("send shard") {
                State::Running
            } else if name == lane("relaunch") {
                State::Returned
            } else if name == lane("next shard") && v["outcome"].is_object() {
                if v["outcome"].get("Error").is_some() {
                    State::Failed
                } else {
                    State::Done
                }
            } else {
                continue;
            };
            shards.insert(k, state);
        }
        let count = |s: State| shards.values().filter(|&&x| x == s).count();
        let before = plan["done"].as_u64().unwrap_or(0) as usize;
        let done = count(State::Done).max(before);
        lines.push(format!(
            "sweep {step}: {done} done, {} running, {} failed of {total} shards",
            count(State::Running),
            count(State::Failed),
        ));
    }
    lines
}

/// Prints shard `shard`'s full output of fan-out step `step` (every command it ran as,
/// oldest first), from the shard's folder under the step's logs.
pub async fn print_shard(
    storage: &S3,
    events: &[Event],
    arn: &str,
    step: &str,
    shard: u32,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Failure> {
    let plan = plans(events)
        .into_iter()
        .rev()
        .find(|p| p["step"] == step)
        .ok_or_else(|| {
            Failure::error(format!(
                "step `{step}` did not fan out in {arn} (or its shards were not planned yet)"
            ))
        })?;
    let total = plan["shards"].as_u64().unwrap_or(0);
    if u64::from(shard) >= total {
        return Err(Failure::error(format!(
            "step `{step}` has {total} shards (0 to {}); there is no shard {shard}",
            total.saturating_sub(1)
        )));
    }
    let list = plan["list"].as_str().unwrap_or_default();
    let folder = list.strip_suffix("/shards.json").ok_or_else(|| {
        Failure::error(format!(
            "step `{step}`'s plan names no shard list (`{list}`)"
        ))
    })?;
    let chosen = Sent {
        step: format!("{step} shard {shard}"),
        command_id: String::new(),
        instance_id: String::new(),
        output_prefix: format!("{folder}/{shard}"),
    };
    print_s3_output(storage, &chosen, out, note).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::progress::task_entered as entered;

    #[test]
    fn the_progress_counts_each_shards_latest_state() {
        let plan = Event {
            kind: "TaskStateExited".into(),
            state: Some("sweep: shards".into()),
            output: Some(
                json!({"fanout": {"step": "sweep", "shards": 5, "done": 0, "list": "s3://b/logs/j/r/sweep/shards.json"}})
                    .to_string(),
            ),
            input: None,
            ..entered("x", json!({}))
        };
        let shard = |k: u32| json!({"index": k, "item": k});
        let events = vec![
            plan,
            entered("sweep lane: send shard", json!({"shard": shard(0)})),
            entered("sweep lane: send shard", json!({"shard": shard(1)})),
            entered(
                "sweep lane: next shard",
                json!({"shard": shard(0), "outcome": {"status": "Success"}}),
            ),
            entered("sweep lane: send shard", json!({"shard": shard(2)})),
            entered(
                "sweep lane: next shard",
                json!({"shard": shard(1), "outcome": {"Error": "StepFailed"}}),
            ),
            entered("sweep lane: send shard", json!({"shard": shard(3)})),
            entered("sweep lane: relaunch", json!({"shard": shard(3)})),
            entered(
                "sweep lane: next shard",
                json!({"shard": null, "outcome": null}),
            ),
        ];
        assert_eq!(
            progress_lines(&events),
            vec!["sweep sweep: 1 done, 1 running, 1 failed of 5 shards"]
        );
        assert!(progress_lines(&events[1..]).is_empty());
    }
}
