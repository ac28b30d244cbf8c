//! A sweep's bookkeeping against mocked S3: a duplicated outcome is not recorded twice and the
//! lane still gets the next free shard; the results index fails the step, or sends a
//! redriven run back to the plan.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectInput, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::Object;
use aws_smithy_mocks::{mock, Rule};
use serde_json::{json, Value};

use super::{job_json, meta, run_json, Mocks};
use crate::handlers::fanout::handle;

const LOGS: &str = "logs/demo/run-1/sweep/";
const STAGING: &str = "tmp/demo/run-1/fanout/sweep/round-0/";

type Puts = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// S3 holding `objects`; a PutObject to a key in `refused` answers 412; every PutObject's
/// (key, If-None-Match) is recorded.
fn store(objects: &[(&str, &str)], refused: &[&'static str]) -> (Vec<Rule>, Puts) {
    let mut rules = Vec::new();
    for (key, body) in objects {
        let (key, body) = (key.to_string(), body.to_string());
        rules.push(
            mock!(aws_sdk_s3::Client::get_object)
                .match_requests(move |r| r.key() == Some(key.as_str()))
                .then_output(move || {
                    GetObjectOutput::builder()
                        .body(ByteStream::from(body.clone().into_bytes()))
                        .build()
                }),
        );
    }
    rules.push(mock!(aws_sdk_s3::Client::get_object).then_error(|| {
        GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build())
    }));
    for prefix in [
        format!("{LOGS}done/"),
        format!("{LOGS}records/"),
        format!("{STAGING}claims/"),
    ] {
        let keys: Vec<String> = objects
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.to_string())
            .collect();
        rules.push(
            mock!(aws_sdk_s3::Client::list_objects_v2)
                .match_requests(move |r| r.prefix() == Some(prefix.as_str()))
                .then_output(move || {
                    keys.iter()
                        .fold(ListObjectsV2Output::builder(), |b, k| {
                            b.contents(Object::builder().key(k).size(1).build())
                        })
                        .build()
                }),
        );
    }
    let puts: Puts = Arc::default();
    for key in refused.iter().copied() {
        let sink = puts.clone();
        rules.push(
            mock!(aws_sdk_s3::Client::put_object)
                .match_requests(move |r: &PutObjectInput| {
                    let hit = r.key() == Some(key);
                    if hit {
                        let cond = r.if_none_match().map(String::from);
                        sink.lock().unwrap().push((key.to_string(), cond));
                    }
                    hit
                })
                .then_error(|| PutObjectError::generic(meta("PreconditionFailed"))),
        );
    }
    let sink = puts.clone();
    rules.push(
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r: &PutObjectInput| {
                let cond = r.if_none_match().map(String::from);
                sink.lock()
                    .unwrap()
                    .push((r.key().unwrap_or_default().to_string(), cond));
                true
            })
            .then_output(|| PutObjectOutput::builder().build()),
    );
    (rules, puts)
}

fn plan(round: u32) -> Value {
    json!({"step": "sweep", "shards": 3, "lanes": [0, 1], "done": 0,
           "list": format!("s3://spotstep-bucket/{LOGS}shards.json"), "round": round, "max_failed_shards": 0})
}

fn record(shard: u32, status: &str) -> String {
    json!({"shard": shard, "round": 0, "status": status, "output": "", "result": null,
           "error": if status == "Succeeded" { "" } else { "exit code 4" }})
    .to_string()
}

#[tokio::test]
async fn a_duplicated_outcome_is_not_counted_and_the_lane_gets_the_next_free_shard() {
    let record_key = "logs/demo/run-1/sweep/records/1.round-0.json";
    let (s3, puts) = store(
        &[
            ("logs/demo/run-1/sweep/shards.json", r#"["a","b","c"]"#),
            ("logs/demo/run-1/sweep/done/0", ""),
            ("tmp/demo/run-1/fanout/sweep/round-0/claims/0", "sweep.0"),
            ("tmp/demo/run-1/fanout/sweep/round-0/claims/1", "sweep.1"),
        ],
        &[record_key],
    );
    let mocks = Mocks {
        s3,
        ..Mocks::default()
    };
    let next = json!({
        "fanout": "next", "run": run_json(), "job": job_json(), "plan": plan(0),
        "lane": {"step": "sweep", "index": 1},
        "shard": {"index": 1, "item": "b"},
        // A second answer of shard 1's success (its record is already there).
        "outcome": {"step": "sweep", "status": "Success", "exit_code": 0, "output": "",
                    "command_id": "c-1", "instance_id": "i-1"},
    });
    let claimed = handle(&mocks.env(), next).await.unwrap();
    assert_eq!(claimed, json!({"index": 2, "item": "c"}));
    let puts = puts.lock().unwrap().clone();
    let star = Some("*".to_string());
    assert_eq!(
        puts,
        vec![
            (record_key.to_string(), star.clone()),
            (format!("{STAGING}claims/2"), star),
            (format!("{STAGING}lanes/sweep.1"), None),
        ],
        "the refused record writes no done mark"
    );
}

#[tokio::test]
async fn the_results_fail_the_step_naming_the_shard_or_rerun_it_when_redriven() {
    let objects = [
        (
            "logs/demo/run-1/sweep/records/0.round-0.json",
            record(0, "Succeeded"),
        ),
        (
            "logs/demo/run-1/sweep/records/1.round-0.json",
            record(1, "StepFailed"),
        ),
        (
            "logs/demo/run-1/sweep/records/2.round-0.json",
            record(2, "Succeeded"),
        ),
    ];
    let objects: Vec<(&str, &str)> = objects.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let request = |redrive_count: u32| {
        json!({"fanout": "results", "run": run_json(), "job": job_json(),
               "step": {"name": "sweep", "kind": "workload", "timeout_seconds": 60},
               "plan": plan(0), "redrive_count": redrive_count})
    };
    let (s3, puts) = store(&objects, &[]);
    let mocks = Mocks {
        s3,
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), request(0)).await.unwrap_err();
    assert_eq!(err.name(), "ShardsFailed");
    assert!(
        err.to_string().starts_with(
            "step `sweep`: 1 of 3 shards did not succeed (max_failed_shards 0): shard 1 (StepFailed: exit code 4)."
        ),
        "{err}"
    );
    assert_eq!(puts.lock().unwrap()[0].0, format!("{LOGS}results.json"));
    let (s3, _) = store(&objects, &[]);
    let mocks = Mocks {
        s3,
        ..Mocks::default()
    };
    let swept = handle(&mocks.env(), request(1)).await.unwrap();
    assert_eq!(swept["rerun"], true);
    assert_eq!(swept["failed"], json!([1]));
    assert_eq!(
        swept["index"],
        format!("s3://spotstep-bucket/{LOGS}results.json")
    );
}

#[tokio::test]
async fn the_plan_gives_lane_zero_the_run_instance_of_this_round_only() {
    // Two shards kept, shard 0 done: one lane (min(instances 3, 1 left)).
    let list = format!("{LOGS}shards.json");
    let done = format!("{LOGS}done/0");
    let run_instance =
        json!({"attempt": 1, "round": 1, "round_attempts": 1, "instance_id": "i-run"});
    for (redrive_count, adopt) in [(1, json!("i-run")), (2, Value::Null)] {
        let (rules, _) = store(
            &[
                (list.as_str(), "[{\"a\":1},{\"a\":2}]"),
                (done.as_str(), ""),
            ],
            &[],
        );
        let mocks = Mocks {
            s3: rules,
            ..Mocks::default()
        };
        let out = handle(
            &mocks.env(),
            json!({
                "fanout": "plan", "run": run_json(), "job": job_json(),
                "step": {"name": "sweep", "kind": "workload", "timeout_seconds": 60,
                         "fan_out": {"shards": "shards.json", "instances": 3}},
                "instance": run_instance, "redrive_count": redrive_count,
            }),
        )
        .await
        .unwrap();
        assert_eq!(out["lanes"], json!([0]), "{out}");
        // Always present (the lanes' JSONPath reads it): the instance, or null.
        let adopted = out.get("adopt").expect("adopt is always present");
        assert_eq!(
            adopted.get("instance_id").unwrap_or(adopted),
            &adopt,
            "{out}"
        );
    }
}
