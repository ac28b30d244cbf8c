//! launch against mocked AWS.

use super::*;
use crate::handlers::launch::handle;
use aws_sdk_ec2::operation::create_fleet::{CreateFleetError, CreateFleetInput, CreateFleetOutput};
use aws_sdk_ec2::types::{
    CreateFleetError as FleetAnswerError, CreateFleetInstance, FleetLaunchTemplateOverrides,
    InstanceLifecycle, InstanceType, LaunchTemplateAndOverridesResponse,
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
use std::sync::atomic::{AtomicUsize, Ordering};

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

fn pool(instance_type: &str, subnet: &str) -> LaunchTemplateAndOverridesResponse {
    LaunchTemplateAndOverridesResponse::builder()
        .overrides(
            FleetLaunchTemplateOverrides::builder()
                .instance_type(InstanceType::from(instance_type))
                .subnet_id(subnet)
                .build(),
        )
        .build()
}

/// A CreateFleet answer's error entry for one pool (or, without a pool, the request).
fn fleet_error(code: &str, at: Option<(&str, &str)>) -> FleetAnswerError {
    FleetAnswerError::builder()
        .set_launch_template_and_overrides(at.map(|(t, s)| pool(t, s)))
        .lifecycle(InstanceLifecycle::Spot)
        .error_code(code)
        .error_message(format!("{code} (mocked)"))
        .build()
}

/// A CreateFleet answer: `started` (instance id, type, subnet, lifecycle) and `errors`.
fn fleet_answer(
    started: Option<(&str, &str, &str, InstanceLifecycle)>,
    errors: Vec<FleetAnswerError>,
) -> CreateFleetOutput {
    let mut out = CreateFleetOutput::builder()
        .fleet_id("fleet-1")
        .set_errors(Some(errors));
    if let Some((id, t, s, lifecycle)) = started {
        out = out.instances(
            CreateFleetInstance::builder()
                .launch_template_and_overrides(pool(t, s))
                .lifecycle(lifecycle)
                .instance_ids(id)
                .instance_type(InstanceType::from(t))
                .build(),
        );
    }
    out.build()
}

/// The answer of the first test: t3.micro in subnet-a has no capacity, t3.small in
/// subnet-b started `i-new`.
fn errors_and_an_instance() -> CreateFleetOutput {
    fleet_answer(
        Some(("i-new", "t3.small", "subnet-b", InstanceLifecycle::Spot)),
        vec![fleet_error(
            "InsufficientInstanceCapacity",
            Some(("t3.micro", "subnet-a")),
        )],
    )
}

/// Only errors: one per pool of the demo job (2 types x 2 subnets).
fn only_errors(code: &'static str) -> CreateFleetOutput {
    let mut errors = Vec::new();
    for t in ["t3.micro", "t3.small"] {
        for s in ["subnet-a", "subnet-b"] {
            errors.push(fleet_error(code, Some((t, s))));
        }
    }
    fleet_answer(None, errors)
}

fn copies_taken() -> (Arc<Mutex<Vec<CopyObjectInput>>>, Rule) {
    let (copies, record_copy) = recorder::<CopyObjectInput>();
    let rule = mock!(aws_sdk_s3::Client::copy_object)
        .match_requests(record_copy)
        .then_output(|| CopyObjectOutput::builder().build());
    (copies, rule)
}

/// Mocks for one launch whose CreateFleet answers come from `answer` (called with the
/// number of the call, from 0); the CreateFleet requests it saw and the config copies.
#[allow(clippy::type_complexity)]
fn launch_mocks(
    answer: impl Fn(usize) -> Result<CreateFleetOutput, CreateFleetError> + Send + Sync + 'static,
    earlier: Vec<Instance>,
) -> (
    Mocks,
    Arc<Mutex<Vec<CreateFleetInput>>>,
    Arc<Mutex<Vec<CopyObjectInput>>>,
) {
    let (fleets, record_fleet) = recorder::<CreateFleetInput>();
    let (copies, copy_rule) = copies_taken();
    let calls = Arc::new(AtomicUsize::new(0));
    let mocks = Mocks {
        ec2: vec![
            mock!(aws_sdk_ec2::Client::describe_instances)
                .match_requests(|r| !r.instance_ids().is_empty())
                .then_output(|| {
                    aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder()
                        .reservations(
                            Reservation::builder()
                                .instances(instance("i-new", InstanceStateName::Pending, &[]))
                                .build(),
                        )
                        .build()
                }),
            describe_instances(earlier),
            mock!(aws_sdk_ec2::Client::create_fleet)
                .match_requests(move |r| !record_fleet(r))
                .then_output(|| CreateFleetOutput::builder().build()),
            mock!(aws_sdk_ec2::Client::create_fleet).then_compute_response(move |_| {
                match answer(calls.fetch_add(1, Ordering::SeqCst)) {
                    Ok(out) => aws_smithy_mocks::MockResponse::Output(out),
                    Err(e) => aws_smithy_mocks::MockResponse::Error(e),
                }
            }),
        ],
        s3: vec![no_lock(), lock_taken(), config_exists(), copy_rule],
        sfn: vec![no_other_executions()],
        ..Mocks::default()
    };
    (mocks, fleets, copies)
}

#[tokio::test]
async fn one_fleet_request_over_every_pool_takes_the_instance_beside_the_errors() {
    let (mocks, fleets, copies) = launch_mocks(|_| Ok(errors_and_an_instance()), vec![]);
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-new");
    assert_eq!(launch.instance_type, "t3.small");
    assert_eq!(launch.subnet_id, "subnet-b");
    assert_eq!(
        launch.availability_zone, "us-east-1a",
        "from DescribeInstances"
    );
    assert_eq!(launch.market, "spot");
    assert_eq!(
        (launch.attempt, launch.round, launch.round_attempts),
        (1, 0, 1)
    );
    let tried: Vec<(String, String)> = launch
        .pools_tried
        .iter()
        .map(|p| {
            (
                format!("{}@{}", p.instance_type, p.subnet_id),
                p.error.clone(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        [
            (
                "t3.micro@subnet-a".into(),
                "InsufficientInstanceCapacity".into()
            ),
            ("t3.micro@subnet-b".into(), String::new()),
            ("t3.small@subnet-a".into(), String::new()),
            ("t3.small@subnet-b".into(), String::new()),
        ]
    );

    let r = {
        let fleets = fleets.lock().unwrap();
        assert_eq!(fleets.len(), 1, "one request, not one per pool");
        fleets[0].clone()
    };
    assert_eq!(r.r#type().map(|t| t.as_str()), Some("instant"));
    let capacity = r.target_capacity_specification().unwrap();
    assert_eq!(capacity.total_target_capacity(), Some(1));
    assert_eq!(
        capacity.default_target_capacity_type().map(|t| t.as_str()),
        Some("spot")
    );
    let spot = r.spot_options().unwrap();
    assert_eq!(
        spot.allocation_strategy().map(|s| s.as_str()),
        Some("price-capacity-optimized")
    );
    assert_eq!(
        spot.instance_interruption_behavior().map(|b| b.as_str()),
        Some("terminate")
    );
    let config = &r.launch_template_configs()[0];
    let template = config.launch_template_specification().unwrap();
    assert_eq!(template.launch_template_id(), Some("lt-1"));
    assert_eq!(template.version(), Some("$Latest"));
    let pools: Vec<String> = config
        .overrides()
        .iter()
        .map(|o| {
            format!(
                "{}@{}",
                o.instance_type().unwrap().as_str(),
                o.subnet_id().unwrap()
            )
        })
        .collect();
    assert_eq!(
        pools,
        [
            "t3.micro@subnet-a",
            "t3.micro@subnet-b",
            "t3.small@subnet-a",
            "t3.small@subnet-b"
        ]
    );
    for o in config.overrides() {
        assert_eq!(o.image_id(), Some("ami-123"));
        assert_eq!(
            o.iam_instance_profile().and_then(|p| p.name()),
            Some("spotstep-instance")
        );
        let ebs = o.block_device_mappings()[0].ebs().unwrap();
        assert_eq!((ebs.volume_size(), ebs.encrypted()), (Some(8), Some(true)));
        assert_eq!(ebs.volume_type().map(|t| t.as_str()), Some("gp3"));
    }
    assert_eq!(
        r.tag_specifications()[0]
            .resource_type()
            .map(|t| t.as_str()),
        Some("instance")
    );
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
            "missing tag {expected:?} (the watchdog reads spotstep:max-runtime)"
        );
    }
    let token = r.client_token().unwrap().to_string();

    let (again, fleets_again, _) = launch_mocks(|_| Ok(errors_and_an_instance()), vec![]);
    handle(&again.env(), input()).await.unwrap();
    assert_eq!(
        fleets_again.lock().unwrap()[0].client_token(),
        Some(token.as_str()),
        "a retry with the same parameters is idempotent"
    );
    let mut bigger = input();
    bigger["job"]["root_volume_gb"] = json!(16);
    let (changed, fleets_changed, _) = launch_mocks(|_| Ok(errors_and_an_instance()), vec![]);
    handle(&changed.env(), bigger).await.unwrap();
    assert_ne!(
        fleets_changed.lock().unwrap()[0].client_token(),
        Some(token.as_str()),
        "a changed request gets a new token (no IdempotentParameterMismatch)"
    );

    let copies = copies.lock().unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].copy_source(), Some("cfg-bucket/demo/config.yaml"));
    assert_eq!(copies[0].bucket(), Some("spotstep-bucket"));
    assert_eq!(copies[0].key(), Some("tmp/demo/run-1/config.yaml"));
}

#[tokio::test]
async fn request_limit_exceeded_in_errors_is_sent_again_with_the_same_token() {
    let (mocks, fleets, _) = launch_mocks(
        |n| {
            Ok(if n < 2 {
                fleet_answer(None, vec![fleet_error("RequestLimitExceeded", None)])
            } else {
                errors_and_an_instance()
            })
        },
        vec![],
    );
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-new");
    let fleets = fleets.lock().unwrap();
    assert_eq!(fleets.len(), 3);
    assert!(fleets
        .iter()
        .all(|f| f.client_token() == fleets[0].client_token()));
}

#[tokio::test]
async fn a_fleet_throttled_every_time_is_throttled_after_its_pauses() {
    let (mocks, fleets, copies) = launch_mocks(
        |_| {
            Ok(fleet_answer(
                None,
                vec![fleet_error(
                    "RequestLimitExceeded",
                    Some(("t3.micro", "subnet-a")),
                )],
            ))
        },
        vec![],
    );
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "Throttled");
    assert_eq!(
        fleets.lock().unwrap().len(),
        crate::fleet::THROTTLE_PAUSES_SECONDS.len() + 1
    );
    assert!(copies.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unauthorized_is_a_rejected_launch_not_a_capacity_wait() {
    let in_errors = |_| {
        Ok(fleet_answer(
            None,
            vec![
                fleet_error(
                    "InsufficientInstanceCapacity",
                    Some(("t3.micro", "subnet-a")),
                ),
                fleet_error("UnauthorizedOperation", Some(("t3.small", "subnet-b"))),
            ],
        ))
    };
    let as_exception = |_| Err(CreateFleetError::generic(meta("UnauthorizedOperation")));
    for (mocks, fleets, copies) in [
        launch_mocks(in_errors, vec![]),
        launch_mocks(as_exception, vec![]),
    ] {
        let err = handle(&mocks.env(), input()).await.unwrap_err();
        assert_eq!(err.name(), "LaunchRejected");
        let message = err.to_string();
        assert!(message.contains("UnauthorizedOperation"), "{message}");
        assert!(message.contains("not allowed to launch"), "{message}");
        assert!(message.contains("not a capacity wait"), "{message}");
        assert_eq!(fleets.lock().unwrap().len(), 1);
        assert!(copies.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_on_demand_fallback_is_a_second_request_over_the_same_pools() {
    let mut fallback = input();
    fallback["job"]["on_demand_fallback"] = json!(true);
    let (mocks, fleets, _) = launch_mocks(
        |n| {
            Ok(if n == 0 {
                only_errors("InsufficientInstanceCapacity")
            } else {
                fleet_answer(
                    Some(("i-new", "t3.micro", "subnet-a", InstanceLifecycle::OnDemand)),
                    vec![],
                )
            })
        },
        vec![],
    );
    let launch = handle(&mocks.env(), fallback).await.unwrap();
    assert_eq!(launch.market, "on-demand");
    assert_eq!(launch.pools_tried.len(), 8);
    let fleets = fleets.lock().unwrap();
    let markets: Vec<&str> = fleets
        .iter()
        .map(|f| {
            f.target_capacity_specification()
                .and_then(|c| c.default_target_capacity_type())
                .unwrap()
                .as_str()
        })
        .collect();
    assert_eq!(markets, ["spot", "on-demand"]);
    assert_eq!(
        fleets[0].launch_template_configs()[0].overrides(),
        fleets[1].launch_template_configs()[0].overrides()
    );
    assert!(fleets[1].spot_options().is_none());
    assert_ne!(fleets[0].client_token(), fleets[1].client_token());
}

#[tokio::test]
async fn a_spot_quota_goes_to_on_demand_only_with_the_fallback() {
    let quota = |n: usize| {
        Ok(if n == 0 {
            fleet_answer(None, vec![fleet_error("VcpuLimitExceeded", None)])
        } else {
            fleet_answer(
                Some(("i-new", "t3.micro", "subnet-a", InstanceLifecycle::OnDemand)),
                vec![],
            )
        })
    };
    let (mocks, _, _) = launch_mocks(quota, vec![]);
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "LaunchRejected");
    assert!(err.to_string().contains("VcpuLimitExceeded"), "{err}");
    let mut fallback = input();
    fallback["job"]["on_demand_fallback"] = json!(true);
    let (mocks, _, _) = launch_mocks(quota, vec![]);
    assert_eq!(
        handle(&mocks.env(), fallback).await.unwrap().market,
        "on-demand"
    );
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
async fn no_capacity_anywhere_is_an_answer_with_only_errors_and_stages_nothing() {
    for code in [
        "InsufficientInstanceCapacity",
        "UnfulfillableCapacity",
        "MaxSpotInstanceCountExceeded",
    ] {
        let (mocks, fleets, copies) = launch_mocks(move |_| Ok(only_errors(code)), vec![]);
        let err = handle(&mocks.env(), input()).await.unwrap_err();
        assert_eq!(err.name(), "NoCapacity", "{code}");
        assert!(err.to_string().contains("4 pool(s)"), "{err}");
        assert!(err.to_string().contains(code), "{err}");
        assert_eq!(fleets.lock().unwrap().len(), 1);
        assert!(copies.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_rejected_launch_stops_at_once() {
    let (mocks, fleets, _) = launch_mocks(|_| Ok(only_errors("InvalidParameterValue")), vec![]);
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "LaunchRejected");
    assert!(err.to_string().contains("InvalidParameterValue"), "{err}");
    assert_eq!(fleets.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retried_launch_finds_its_instance_instead_of_starting_another() {
    let execution = fixtures::run().execution;
    let (mocks, fleets, _) = launch_mocks(
        |_| Ok(errors_and_an_instance()),
        vec![instance(
            "i-earlier",
            InstanceStateName::Running,
            &[
                ("spotstep:execution", &execution),
                ("spotstep:attempt", "1"),
            ],
        )],
    );
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-earlier");
    assert!(fleets.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_try_after_a_launch_that_terminated_itself_gets_a_new_client_token() {
    let execution = fixtures::run().execution;
    let (first, first_fleets, _) = launch_mocks(|_| Ok(errors_and_an_instance()), vec![]);
    handle(&first.env(), input()).await.unwrap();
    let (mocks, fleets, _) = launch_mocks(
        |_| Ok(errors_and_an_instance()),
        vec![instance(
            "i-self-terminated",
            InstanceStateName::Terminated,
            &[
                ("spotstep:execution", &execution),
                ("spotstep:attempt", "1"),
            ],
        )],
    );
    let launch = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(launch.instance_id, "i-new");
    assert_ne!(
        fleets.lock().unwrap()[0].client_token(),
        first_fleets.lock().unwrap()[0].client_token(),
        "EC2 would answer the first token with the terminated instance"
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
