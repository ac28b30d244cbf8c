//! launch against mocked AWS.

use super::*;
use crate::handlers::launch::handle;
use aws_sdk_ec2::operation::run_instances::{
    RunInstancesError, RunInstancesInput, RunInstancesOutput,
};
use aws_sdk_s3::operation::copy_object::{CopyObjectInput, CopyObjectOutput};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::Object;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
use aws_sdk_sfn::types::{ExecutionListItem, ExecutionStatus};
use base64::Engine;

fn input() -> Value {
    json!({"run": run_json(), "job": job_json(), "previous": {"attempt": 0, "round": 0, "round_attempts": 0}, "redrive_count": 0})
}

fn no_other_executions() -> Rule {
    mock!(aws_sdk_sfn::Client::list_executions).then_output(|| {
        ListExecutionsOutput::builder()
            .set_executions(Some(vec![]))
            .build()
            .unwrap()
    })
}

/// ListExecutions answers with one other running execution of the job.
fn running_elsewhere(name: &'static str, started: i64) -> Rule {
    mock!(aws_sdk_sfn::Client::list_executions).then_output(move || {
        ListExecutionsOutput::builder()
            .executions(
                ExecutionListItem::builder()
                    .execution_arn(format!(
                        "arn:aws:states:us-east-1:123456789012:execution:spotstep-demo:{name}"
                    ))
                    .state_machine_arn(
                        "arn:aws:states:us-east-1:123456789012:stateMachine:spotstep-demo",
                    )
                    .name(name)
                    .status(ExecutionStatus::Running)
                    .start_date(DateTime::from_secs(started))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    })
}

/// No run lock is held.
fn no_lock() -> Rule {
    mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.prefix() == Some("locks/demo"))
        .then_output(|| ListObjectsV2Output::builder().build())
}

/// The run lock is written (only if absent).
fn lock_taken() -> Rule {
    mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| r.key() == Some("locks/demo") && r.if_none_match() == Some("*"))
        .then_output(|| PutObjectOutput::builder().build())
}

fn config_exists() -> Rule {
    mock!(aws_sdk_s3::Client::head_object).then_output(|| HeadObjectOutput::builder().build())
}

fn run_instances_ok() -> Rule {
    mock!(aws_sdk_ec2::Client::run_instances)
        .match_requests(|r| r.subnet_id() == Some("subnet-b"))
        .then_output(|| {
            RunInstancesOutput::builder()
                .instances(instance("i-new", InstanceStateName::Pending, &[]))
                .build()
        })
}

fn no_capacity_in_subnet_a() -> Rule {
    mock!(aws_sdk_ec2::Client::run_instances)
        .match_requests(|r| r.subnet_id() == Some("subnet-a"))
        .then_error(|| RunInstancesError::generic(meta("InsufficientInstanceCapacity")))
}

#[tokio::test]
async fn launches_in_the_next_pool_and_stages_the_config() {
    let (runs, record_run) = recorder::<RunInstancesInput>();
    let (copies, record_copy) = recorder::<CopyObjectInput>();
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![]),
            mock!(aws_sdk_ec2::Client::run_instances)
                .match_requests(move |r| !record_run(r))
                .then_output(|| RunInstancesOutput::builder().build()),
            no_capacity_in_subnet_a(),
            run_instances_ok(),
        ],
        s3: vec![
            no_lock(),
            lock_taken(),
            config_exists(),
            mock!(aws_sdk_s3::Client::copy_object)
                .match_requests(record_copy)
                .then_output(|| CopyObjectOutput::builder().build()),
        ],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-new");
    assert_eq!(launch.instance_type, "t3.micro");
    assert_eq!(launch.subnet_id, "subnet-b");
    assert_eq!(launch.market, "spot");
    assert_eq!(
        (launch.attempt, launch.round, launch.round_attempts),
        (1, 0, 1)
    );
    assert_eq!(launch.pools_tried.len(), 2);
    assert_eq!(launch.pools_tried[0].error, "InsufficientInstanceCapacity");
    assert_eq!(launch.pools_tried[1].error, "");

    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 2);
    let r = &runs[1];
    assert_eq!(r.image_id(), Some("ami-123"));
    assert_eq!(r.security_group_ids(), ["sg-1"]);
    assert_eq!(r.min_count(), Some(1));
    assert_eq!(r.max_count(), Some(1));
    assert_eq!(
        r.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );
    let ebs = r.block_device_mappings()[0].ebs().unwrap();
    assert_eq!((ebs.volume_size(), ebs.encrypted()), (Some(8), Some(true)));
    assert_eq!(ebs.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(
        r.instance_initiated_shutdown_behavior().map(|b| b.as_str()),
        Some("terminate")
    );
    let spot = r.instance_market_options().unwrap();
    assert_eq!(spot.market_type().map(|m| m.as_str()), Some("spot"));
    let opts = spot.spot_options().unwrap();
    assert_eq!(
        opts.spot_instance_type().map(|t| t.as_str()),
        Some("one-time")
    );
    assert_eq!(
        opts.instance_interruption_behavior().map(|b| b.as_str()),
        Some("terminate")
    );
    assert_eq!(
        r.iam_instance_profile().and_then(|p| p.name()),
        Some("spotstep-instance")
    );
    assert_eq!(
        r.client_token(),
        Some(crate::naming::client_token(&fixtures::run().execution, 1, 1, 0).as_str())
    );
    assert_ne!(runs[0].client_token(), r.client_token());
    let tags: Vec<(String, String)> = r.tag_specifications()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    let keys: std::collections::BTreeSet<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        crate::naming::tags::ALL
            .into_iter()
            .filter(|k| *k != crate::naming::tags::LANE)
            .collect(),
        "the template's IAM allows these keys (and a sweep lane's)"
    );
    for expected in [
        ("Name", "spotstep-demo-20261128"),
        ("spotstep:job", "demo"),
        ("spotstep:run-id", "run-1"),
        ("spotstep:execution", fixtures::run().execution.as_str()),
        ("spotstep:attempt", "1"),
        ("spotstep:round", "0"),
        ("spotstep:stack", "spotstep-test"),
        ("spotstep:max-runtime", "1800"),
    ] {
        assert!(
            tags.contains(&(expected.0.to_string(), expected.1.to_string())),
            "missing tag {expected:?}"
        );
    }
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(r.user_data().unwrap())
        .unwrap();
    let user_data = String::from_utf8(user_data).unwrap();
    assert!(user_data.contains(
        "systemd-run --unit=spotstep-boot-watchdog --on-active=1800s /usr/sbin/shutdown -h now"
    ));

    let copies = copies.lock().unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].copy_source(), Some("cfg-bucket/demo/config.yaml"));
    assert_eq!(copies[0].bucket(), Some("spotstep-bucket"));
    assert_eq!(copies[0].key(), Some("tmp/demo/run-1/config.yaml"));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let mocks = Mocks::default();
    for (change, expected) in [
        (json!({"mode": "nope"}), "unknown mode `nope`"),
        (json!({"run_id": "../../etc"}), "unsafe"),
        (json!({"job": "data-weekly"}), "unknown job `data-weekly`"),
        (json!({"preflight": "yes"}), "malformed launch input"),
    ] {
        let mut input = input();
        for (k, v) in change.as_object().unwrap() {
            input["run"][k] = v.clone();
        }
        let err = handle(&mocks.env(), input).await.unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn a_second_concurrent_run_is_refused() {
    let mocks = Mocks {
        sfn: vec![running_elsewhere("earlier", NOW - 3600)],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "ConcurrentRun");
    assert!(
        err.to_string()
            .contains("already running as execution `earlier`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_redrive_is_refused_while_a_newer_run_is_running() {
    let mut redriven = input();
    redriven["previous"] =
        json!({"attempt": 1, "round": 0, "round_attempts": 1, "instance_id": "i-old"});
    redriven["redrive_count"] = json!(1);
    let mocks = Mocks {
        sfn: vec![running_elsewhere("newer", NOW + 3600)],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), redriven).await.unwrap_err();
    assert_eq!(err.name(), "ConcurrentRun");
    assert!(err.to_string().contains("`newer`"), "{err}");
}

#[tokio::test]
async fn a_missing_config_launches_nothing() {
    let mocks = Mocks {
        s3: vec![
            no_lock(),
            lock_taken(),
            mock!(aws_sdk_s3::Client::head_object).then_error(|| {
                HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
            }),
        ],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "ConfigMissing");
    assert!(
        err.to_string()
            .contains("s3://cfg-bucket/demo/config.yaml does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn no_capacity_anywhere_stages_nothing() {
    let (copies, record_copy) = recorder::<CopyObjectInput>();
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![]),
            mock!(aws_sdk_ec2::Client::run_instances)
                .then_error(|| RunInstancesError::generic(meta("InsufficientInstanceCapacity"))),
        ],
        s3: vec![
            no_lock(),
            lock_taken(),
            config_exists(),
            mock!(aws_sdk_s3::Client::copy_object)
                .match_requests(record_copy)
                .then_output(|| CopyObjectOutput::builder().build()),
        ],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "NoCapacity");
    assert!(err.to_string().contains("4 pool(s)"), "{err}");
    assert!(copies.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_rejected_launch_stops_at_once() {
    let (runs, record_run) = recorder::<RunInstancesInput>();
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![]),
            mock!(aws_sdk_ec2::Client::run_instances)
                .match_requests(record_run)
                .then_error(|| RunInstancesError::generic(meta("InvalidParameterValue"))),
        ],
        s3: vec![no_lock(), lock_taken(), config_exists()],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "LaunchRejected");
    assert!(err.to_string().contains("InvalidParameterValue"), "{err}");
    assert_eq!(runs.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retried_launch_finds_its_instance_instead_of_starting_another() {
    let (runs, record_run) = recorder::<RunInstancesInput>();
    let execution = fixtures::run().execution;
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![instance(
                "i-earlier",
                InstanceStateName::Running,
                &[
                    ("spotstep:execution", &execution),
                    ("spotstep:attempt", "1"),
                ],
            )]),
            mock!(aws_sdk_ec2::Client::run_instances)
                .match_requests(record_run)
                .then_output(|| RunInstancesOutput::builder().build()),
        ],
        s3: vec![
            no_lock(),
            lock_taken(),
            config_exists(),
            mock!(aws_sdk_s3::Client::copy_object)
                .then_output(|| CopyObjectOutput::builder().build()),
        ],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-earlier");
    assert!(runs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_try_after_a_launch_that_terminated_itself_gets_a_new_client_token() {
    let (runs, record_run) = recorder::<RunInstancesInput>();
    let execution = fixtures::run().execution;
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![instance(
                "i-self-terminated",
                InstanceStateName::Terminated,
                &[
                    ("spotstep:execution", &execution),
                    ("spotstep:attempt", "1"),
                ],
            )]),
            mock!(aws_sdk_ec2::Client::run_instances)
                .match_requests(record_run)
                .then_output(|| {
                    RunInstancesOutput::builder()
                        .instances(instance("i-new", InstanceStateName::Pending, &[]))
                        .build()
                }),
        ],
        s3: vec![
            no_lock(),
            lock_taken(),
            config_exists(),
            mock!(aws_sdk_s3::Client::copy_object)
                .then_output(|| CopyObjectOutput::builder().build()),
        ],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-new");
    let runs = runs.lock().unwrap();
    assert_eq!(
        runs[0].client_token(),
        Some(crate::naming::client_token(&execution, 1, 0, 1).as_str()),
        "EC2 would answer the first token with the terminated instance"
    );
    assert_ne!(
        runs[0].client_token(),
        Some(crate::naming::client_token(&execution, 1, 0, 0).as_str())
    );
}

#[tokio::test]
async fn relaunches_are_bounded_per_round() {
    let mut input = input();
    input["previous"] =
        json!({"attempt": 2, "round": 0, "round_attempts": 2, "instance_id": "i-2"});
    let err = handle(&Mocks::default().env(), input).await.unwrap_err();
    assert_eq!(err.name(), "RelaunchLimit");
}

/// The run lock as another execution, `holder`, wrote it at `acquired_at`.
fn lock_held(holder: &'static str, acquired_at: &'static str) -> Vec<Rule> {
    vec![
        mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
            ListObjectsV2Output::builder()
                .contents(Object::builder().key("locks/demo").build())
                .build()
        }),
        mock!(aws_sdk_s3::Client::get_object).then_output(move || {
            let body = json!({
                "execution": format!("arn:aws:states:us-east-1:123456789012:execution:spotstep-demo:{holder}"),
                "run_id": holder,
                "acquired_at": acquired_at,
                "stale_after_seconds": 3600,
            });
            GetObjectOutput::builder()
                .e_tag("\"etag-1\"")
                .body(ByteStream::from(body.to_string().into_bytes()))
                .build()
        }),
    ]
}

fn holder_status(status: ExecutionStatus) -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution).then_output(move || {
        DescribeExecutionOutput::builder()
            .execution_arn("arn:aws:states:us-east-1:123456789012:execution:spotstep-demo:other")
            .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:spotstep-demo")
            .status(status.clone())
            .start_date(DateTime::from_secs(0))
            .build()
            .unwrap()
    })
}

#[tokio::test]
async fn a_start_that_finds_the_lock_held_by_a_running_execution_launches_nothing() {
    // ListExecutions (eventually consistent) does not show the holder yet; its lock does.
    let mocks = Mocks {
        sfn: vec![
            no_other_executions(),
            holder_status(ExecutionStatus::Running),
        ],
        s3: lock_held("other", "2026-11-28T08:59:00Z"),
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "ConcurrentRun");
    assert!(
        err.to_string()
            .contains("already running as execution `other`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_lock_whose_holder_describe_execution_does_not_know_yet_is_not_taken_over() {
    // DescribeExecution is eventually consistent: the holder took the lock a minute ago.
    let mocks = Mocks {
        sfn: vec![
            no_other_executions(),
            mock!(aws_sdk_sfn::Client::describe_execution).then_error(|| {
                DescribeExecutionError::ExecutionDoesNotExist(
                    aws_sdk_sfn::types::error::ExecutionDoesNotExist::builder().build(),
                )
            }),
        ],
        s3: lock_held("other", "2026-11-28T08:59:00Z"),
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "ConcurrentRun", "{err}");
}

#[tokio::test]
async fn a_stale_lock_is_taken_over_only_if_unchanged() {
    // (If-Match, If-None-Match) of each PutObject.
    let (puts, record_put) = recorder::<(Option<String>, Option<String>)>();
    let mut s3 = lock_held("other", "2026-11-28T08:59:00Z");
    // The takeover loses a race (412): read again, and the winner is running.
    s3.push(
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                record_put(&(
                    r.if_match().map(String::from),
                    r.if_none_match().map(String::from),
                ))
            })
            .then_error(|| PutObjectError::generic(meta("PreconditionFailed"))),
    );
    let mocks = Mocks {
        sfn: vec![
            no_other_executions(),
            mock!(aws_sdk_sfn::Client::describe_execution)
                .sequence()
                .output(|| {
                    DescribeExecutionOutput::builder()
                        .execution_arn("x")
                        .state_machine_arn("y")
                        .status(ExecutionStatus::Aborted)
                        .start_date(DateTime::from_secs(0))
                        .build()
                        .unwrap()
                })
                .times(1)
                .output(|| {
                    DescribeExecutionOutput::builder()
                        .execution_arn("x")
                        .state_machine_arn("y")
                        .status(ExecutionStatus::Running)
                        .start_date(DateTime::from_secs(0))
                        .build()
                        .unwrap()
                })
                .build(),
        ],
        s3,
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "ConcurrentRun", "{err}");
    let puts = puts.lock().unwrap();
    assert_eq!(*puts, [(Some("\"etag-1\"".to_string()), None)]);
}
