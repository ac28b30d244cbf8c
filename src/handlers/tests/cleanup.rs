//! cleanup against mocked AWS.

use super::*;
use crate::handlers::cleanup::handle;
use aws_sdk_ec2::operation::terminate_instances::{
    TerminateInstancesInput, TerminateInstancesOutput,
};
use aws_sdk_s3::operation::delete_objects::{DeleteObjectsInput, DeleteObjectsOutput};
use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2Input, ListObjectsV2Output};
use aws_sdk_s3::types::Object;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_ssm::operation::cancel_command::{CancelCommandInput, CancelCommandOutput};
use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
use aws_sdk_ssm::types::{Command, CommandStatus};

/// GetExecutionHistory with no events: the history names no run, so cleanup writes no
/// ledger record (the ledger's own tests give it a history).
fn empty_history() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_sfn::Client::get_execution_history).then_output(|| {
        aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput::builder()
            .set_events(Some(vec![]))
            .build()
            .unwrap()
    })
}

fn run_tags(id: &str) -> Instance {
    instance(
        id,
        InstanceStateName::Running,
        &[
            ("spotstep:round", "0"),
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-1"),
            ("spotstep:execution", &fixtures::run().execution),
            ("spotstep:max-runtime", "1800"),
        ],
    )
}

struct Recorded {
    terminated: Arc<Mutex<Vec<TerminateInstancesInput>>>,
    listed: Arc<Mutex<Vec<ListObjectsV2Input>>>,
    deleted: Arc<Mutex<Vec<DeleteObjectsInput>>>,
}

/// EC2 answers with `instances`; S3 lists the staging object plus a key outside it.
fn mocks(instances: Vec<Instance>) -> (Mocks, Recorded) {
    let (terminated, record_terminate) = recorder::<TerminateInstancesInput>();
    let (listed, record_list) = recorder::<ListObjectsV2Input>();
    let (deleted, record_delete) = recorder::<DeleteObjectsInput>();
    let mocks = Mocks {
        ec2: vec![
            describe_instances(instances),
            mock!(aws_sdk_ec2::Client::terminate_instances)
                .match_requests(record_terminate)
                .then_output(|| TerminateInstancesOutput::builder().build()),
        ],
        s3: vec![
            mock!(aws_sdk_s3::Client::list_objects_v2)
                .match_requests(record_list)
                .then_output(|| {
                    ListObjectsV2Output::builder()
                        .contents(Object::builder().key("tmp/demo/run-1/config.yaml").build())
                        .contents(Object::builder().key("tmp/demo/run-10/config.yaml").build())
                        .build()
                }),
            mock!(aws_sdk_s3::Client::delete_objects)
                .match_requests(record_delete)
                .then_output(|| DeleteObjectsOutput::builder().build()),
        ],
        sfn: vec![empty_history()],
        ..Mocks::default()
    };
    (
        mocks,
        Recorded {
            terminated,
            listed,
            deleted,
        },
    )
}

/// The rule's event: the fixture run's execution ended with `status`.
fn status_change(status: &str) -> Value {
    json!({"detail-type": "Step Functions Execution Status Change",
           "detail": {"executionArn": fixtures::run().execution, "status": status}})
}

fn deleted_keys(r: &Recorded) -> Vec<String> {
    r.deleted
        .lock()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d.delete()
                .unwrap()
                .objects()
                .iter()
                .map(|o| o.key().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn end_of_run(mocks: &Mocks) -> crate::handlers::cleanup::Report {
    handle(
        &mocks.env(),
        json!({"action": "end-of-run", "run": run_json()}),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn end_of_run_terminates_the_run_and_deletes_only_its_staging() {
    let (mocks, rec) = mocks(vec![run_tags("i-1")]);
    let report = end_of_run(&mocks).await;
    assert_eq!(report.terminated, ["i-1"]);
    assert_eq!(report.deleted_objects, 1);
    assert_eq!(rec.terminated.lock().unwrap()[0].instance_ids(), ["i-1"]);
    assert_eq!(
        rec.listed.lock().unwrap()[0].prefix(),
        Some("tmp/demo/run-1/")
    );
    assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
}

#[tokio::test]
async fn end_of_run_with_nothing_left_is_fine() {
    let (mocks, rec) = mocks(vec![]);
    let report = end_of_run(&mocks).await;
    assert!(report.terminated.is_empty());
    assert!(rec.terminated.lock().unwrap().is_empty());
}

#[tokio::test]
async fn end_of_run_meeting_an_aws_error_still_succeeds_and_says_so() {
    let mocks = Mocks {
        ec2: vec![
            describe_instances(vec![run_tags("i-1")]),
            mock!(aws_sdk_ec2::Client::terminate_instances).then_error(|| {
                aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError::generic(meta(
                    "UnauthorizedOperation",
                ))
            }),
        ],
        s3: vec![mock!(aws_sdk_s3::Client::list_objects_v2).then_error(|| {
            aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error::generic(meta(
                "AccessDenied",
            ))
        })],
        sfn: vec![empty_history()],
        ..Mocks::default()
    };
    let report = end_of_run(&mocks).await;
    assert_eq!(report.action, "end-of-run");
    let incomplete = report.incomplete.join("\n");
    assert!(incomplete.contains("UnauthorizedOperation"), "{incomplete}");
    assert!(incomplete.contains("AccessDenied"), "{incomplete}");
    assert!(incomplete.contains("the hourly sweep"), "{incomplete}");
}

fn step_failed(redrive_count: u32) -> Value {
    json!({
        "action": "step-failed", "run": run_json(), "job": job_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120},
        "failure": {"Error": "StepFailed", "Cause": "{\"errorType\":\"StepFailed\",\"errorMessage\":\"step `slow` failed: exit code 3\"}"},
        "redrive_count": redrive_count
    })
}

/// The run's send markers: step `slow`'s of round `round`, or none (the staging is gone).
fn with_marker(mocks: &mut Mocks, round: Option<u32>) {
    let key = format!("tmp/demo/run-1/sent/slow.round-{}", round.unwrap_or(0));
    let marker = json!({
        "run": run_json(), "job": job_json(), "instance": launch_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120},
        "round": round.unwrap_or(0), "task_token": "t", "answer": "StepFailed",
    })
    .to_string();
    let listed_key = key.clone();
    let rules = vec![
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.prefix() == Some("tmp/demo/run-1/sent/"))
            .then_output(move || {
                let mut out = ListObjectsV2Output::builder();
                if round.is_some() {
                    out = out.contents(Object::builder().key(listed_key.clone()).build());
                }
                out.build()
            }),
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(move |r| r.key() == Some(key.as_str()))
            .then_output(move || {
                aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from(
                        marker.clone().into_bytes(),
                    ))
                    .build()
            }),
    ];
    mocks.s3.splice(0..0, rules);
}

#[tokio::test]
async fn a_failed_step_cleans_up_and_fails_with_its_own_error() {
    let (mut mocks, rec) = mocks(vec![run_tags("i-1")]);
    with_marker(&mut mocks, Some(0));
    let err = handle(&mocks.env(), step_failed(0)).await.unwrap_err();
    assert_eq!(err.name(), "StepFailed");
    assert_eq!(err.to_string(), "step `slow` failed: exit code 3");
    assert_eq!(rec.terminated.lock().unwrap()[0].instance_ids(), ["i-1"]);
    assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
}

#[tokio::test]
async fn a_redriven_failed_step_lets_the_run_resume() {
    for marker in [Some(0), None] {
        let (mut mocks, rec) = mocks(vec![run_tags("i-1")]);
        with_marker(&mut mocks, marker);
        let report = handle(&mocks.env(), step_failed(1)).await.unwrap();
        assert!(report.resumed, "{marker:?}");
        assert!(rec.terminated.lock().unwrap().is_empty());
    }
}

#[test]
fn a_step_failed_pass_is_a_redrive_only_past_the_round_sent() {
    use crate::handlers::cleanup::redriven;
    assert!(!redriven(0, Some(0)), "the first pass of round 0");
    assert!(
        !redriven(0, None),
        "round 0 with no marker is still a first pass"
    );
    assert!(redriven(1, Some(0)));
    assert!(redriven(1, None), "the first pass deleted the staging");
    assert!(
        !redriven(1, Some(1)),
        "sent again in round 1 and failed again"
    );
    assert!(redriven(2, Some(1)));
}

#[tokio::test]
async fn execution_status_change_cancels_and_terminates() {
    let (mut mocks, rec) = mocks(vec![run_tags("i-1")]);
    mocks.sfn.push(execution_is(ExecutionStatus::Aborted, 0));
    let (cancelled, record_cancel) = recorder::<CancelCommandInput>();
    mocks.ssm = vec![
        mock!(aws_sdk_ssm::Client::list_commands).then_output(|| {
            ListCommandsOutput::builder()
                .commands(
                    Command::builder()
                        .command_id("cmd-live")
                        .status(CommandStatus::InProgress)
                        .build(),
                )
                .commands(
                    Command::builder()
                        .command_id("cmd-done")
                        .status(CommandStatus::Success)
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_ssm::Client::cancel_command)
            .match_requests(record_cancel)
            .then_output(|| CancelCommandOutput::builder().build()),
    ];
    let event = json!({
        "version": "0", "id": "e-1", "source": "aws.states", "account": "123456789012",
        "detail-type": "Step Functions Execution Status Change", "time": "2026-11-28T10:00:00Z",
        "region": "us-east-1", "resources": [fixtures::run().execution],
        "detail": {"executionArn": fixtures::run().execution, "status": "ABORTED", "name": "run-1"}
    });
    let report = handle(&mocks.env(), event).await.unwrap();
    assert_eq!(report.cancelled_commands, ["cmd-live"]);
    assert_eq!(cancelled.lock().unwrap()[0].command_id(), Some("cmd-live"));
    assert_eq!(report.terminated, ["i-1"]);
    assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
}

#[tokio::test]
async fn execution_ended_deletes_the_staging_of_runs_whose_instances_are_gone() {
    let gone = Instance::builder()
        .instance_id("i-gone")
        .state(
            InstanceState::builder()
                .name(InstanceStateName::Terminated)
                .build(),
        )
        .tags(stack_tag())
        .tags(Tag::builder().key("spotstep:job").value("demo").build())
        .tags(Tag::builder().key("spotstep:run-id").value("run-1").build())
        .tags(
            Tag::builder()
                .key("spotstep:execution")
                .value(fixtures::run().execution)
                .build(),
        )
        .build();
    let (mut mocks, rec) = mocks(vec![gone]);
    mocks.sfn.push(execution_is(ExecutionStatus::Failed, 0));
    mocks.ssm = vec![mock!(aws_sdk_ssm::Client::list_commands)
        .then_output(|| ListCommandsOutput::builder().build())];
    let event = status_change("FAILED");
    let report = handle(&mocks.env(), event).await.unwrap();
    assert!(report.terminated.is_empty());
    assert!(rec.terminated.lock().unwrap().is_empty());
    assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
}

#[tokio::test]
async fn a_succeeded_execution_needs_nothing() {
    let event = json!({"detail-type": "Step Functions Execution Status Change",
                       "detail": {"executionArn": "arn:x", "status": "SUCCEEDED"}});
    let report = handle(&Mocks::default().env(), event).await.unwrap();
    assert!(report.terminated.is_empty());
}

#[tokio::test]
async fn sweep_reaps_finished_executions_and_overdue_instances_only() {
    let old = Instance::builder()
        .instance_id("i-overdue")
        .state(
            InstanceState::builder()
                .name(InstanceStateName::Running)
                .build(),
        )
        .launch_time(DateTime::from_secs(NOW - 1800 - 1800 - 60))
        .tags(stack_tag())
        .tags(Tag::builder().key("spotstep:job").value("demo").build())
        .tags(
            Tag::builder()
                .key("spotstep:run-id")
                .value("run-old")
                .build(),
        )
        .tags(
            Tag::builder()
                .key("spotstep:execution")
                .value("arn:live")
                .build(),
        )
        .tags(
            Tag::builder()
                .key("spotstep:max-runtime")
                .value("1800")
                .build(),
        )
        .build();
    let live = instance(
        "i-live",
        InstanceStateName::Running,
        &[
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-live"),
            ("spotstep:execution", "arn:live"),
            ("spotstep:max-runtime", "1800"),
        ],
    );
    let orphan = instance(
        "i-orphan",
        InstanceStateName::Running,
        &[
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-gone"),
            ("spotstep:execution", "arn:gone"),
            ("spotstep:max-runtime", "1800"),
        ],
    );
    let foreign = foreign_instance(
        "i-foreign",
        InstanceStateName::Running,
        &[
            ("spotstep:stack", "another-stack"),
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-gone"),
            ("spotstep:execution", "arn:gone"),
        ],
    );
    let no_execution = instance(
        "i-no-execution",
        InstanceStateName::Running,
        &[("spotstep:job", "demo"), ("spotstep:max-runtime", "1800")],
    );
    let (terminated, record_terminate) = recorder::<TerminateInstancesInput>();
    let all = vec![old, live, orphan, foreign, no_execution];
    let mocks = Mocks {
        ec2: vec![
            mock!(aws_sdk_ec2::Client::describe_instances).then_output(move || {
                aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder()
                    .reservations(
                        Reservation::builder()
                            .set_instances(Some(all.clone()))
                            .build(),
                    )
                    .build()
            }),
            mock!(aws_sdk_ec2::Client::terminate_instances)
                .match_requests(record_terminate)
                .then_output(|| TerminateInstancesOutput::builder().build()),
        ],
        sfn: vec![
            empty_history(),
            mock!(aws_sdk_sfn::Client::describe_execution)
                .match_requests(|r| r.execution_arn() == Some("arn:live"))
                .then_output(|| {
                    DescribeExecutionOutput::builder()
                        .execution_arn("arn:live")
                        .state_machine_arn("arn:sm")
                        .status(ExecutionStatus::Running)
                        .start_date(DateTime::from_secs(NOW - 100))
                        .build()
                        .unwrap()
                }),
            mock!(aws_sdk_sfn::Client::describe_execution).then_error(|| {
                DescribeExecutionError::ExecutionDoesNotExist(
                    aws_sdk_sfn::types::error::ExecutionDoesNotExist::builder().build(),
                )
            }),
        ],
        s3: vec![mock!(aws_sdk_s3::Client::list_objects_v2)
            .then_output(|| ListObjectsV2Output::builder().build())],
        ..Mocks::default()
    };
    let report = handle(&mocks.env(), json!({"action": "sweep"}))
        .await
        .unwrap();
    let terminated: Vec<String> = terminated
        .lock()
        .unwrap()
        .iter()
        .flat_map(|t| t.instance_ids().to_vec())
        .collect();
    assert!(
        terminated.contains(&"i-overdue".to_string()),
        "{terminated:?}"
    );
    assert!(
        terminated.contains(&"i-orphan".to_string()),
        "{terminated:?}"
    );
    assert!(
        !terminated.contains(&"i-live".to_string()),
        "{terminated:?}"
    );
    assert!(
        !terminated.contains(&"i-foreign".to_string()),
        "another stack's instance: {terminated:?}"
    );
    assert!(
        !terminated.contains(&"i-no-execution".to_string()),
        "no execution tag but younger than its budget: {terminated:?}"
    );
    assert_eq!(report.action, "sweep");
}

#[tokio::test]
async fn unknown_shapes_are_invalid_input() {
    for input in [
        json!({"action": "explode"}),
        json!({"detail-type": "EC2 Instance State-change Notification"}),
        json!(42),
    ] {
        let err = handle(&Mocks::default().env(), input).await.unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
    }
}

#[tokio::test]
async fn a_late_status_change_leaves_a_redriven_execution_alone() {
    let (mut mocks, rec) = mocks(vec![run_tags("i-1")]);
    mocks.sfn.push(execution_is(ExecutionStatus::Running, 1));
    let event = status_change("ABORTED");
    let report = handle(&mocks.env(), event).await.unwrap();
    assert!(report.action.contains("running again"), "{}", report.action);
    assert!(rec.terminated.lock().unwrap().is_empty());
    assert!(rec.deleted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_status_change_touches_only_rounds_up_to_the_described_one() {
    let newer = instance(
        "i-round-1",
        InstanceStateName::Running,
        &[
            ("spotstep:round", "1"),
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-1"),
            ("spotstep:execution", &fixtures::run().execution),
        ],
    );
    let (mut mocks, rec) = mocks(vec![run_tags("i-1"), newer]);
    mocks.sfn.push(execution_is(ExecutionStatus::Failed, 0));
    mocks.ssm = vec![mock!(aws_sdk_ssm::Client::list_commands)
        .then_output(|| ListCommandsOutput::builder().build())];
    let event = status_change("FAILED");
    let report = handle(&mocks.env(), event).await.unwrap();
    assert_eq!(report.terminated, ["i-1"]);
    assert_eq!(rec.terminated.lock().unwrap()[0].instance_ids(), ["i-1"]);
}

fn relaunch(lost: &str, redrive_count: u32, instance: Value) -> Value {
    json!({
        "action": "relaunch", "run": run_json(), "instance": instance,
        "lost": {"Error": lost, "Cause": format!("{{\"errorType\":\"{lost}\",\"errorMessage\":\"instance i-1 is gone: the instance is terminated (Client.UserInitiatedShutdown)\"}}")},
        "resume_at": "slow", "redrive_count": redrive_count
    })
}

#[tokio::test]
async fn only_a_spot_reclaim_relaunches_by_itself() {
    let (mocks, _) = mocks(vec![]);
    let lost = mocks.env();
    let err = handle(&lost, relaunch("InstanceLost", 0, launch_json()))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InstanceLost");
    let message = err.to_string();
    assert!(
        message.contains("Client.UserInitiatedShutdown"),
        "{message}"
    );
    assert!(message.contains("resumes at step `slow`"), "{message}");
    let reclaimed = handle(&lost, relaunch("InstanceReclaimed", 0, launch_json()))
        .await
        .unwrap();
    assert_eq!(reclaimed.action, "relaunch");
    let redriven = handle(&lost, relaunch("InstanceLost", 1, launch_json()))
        .await
        .unwrap();
    assert_eq!(redriven.action, "relaunch");
}

#[tokio::test]
async fn relaunch_terminates_only_an_instance_whose_tags_name_this_run() {
    let stranger = instance(
        "i-stranger",
        InstanceStateName::Running,
        &[("spotstep:job", "other"), ("spotstep:run-id", "run-9")],
    );
    let (mut mocks, rec) = mocks(vec![]);
    mocks.ec2[0] = mock!(aws_sdk_ec2::Client::describe_instances)
        .match_requests(|r| r.instance_ids() == ["i-stranger"])
        .then_output(move || {
            aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(stranger.clone()).build())
                .build()
        });
    mocks.ec2.push(describe_instances(vec![]));
    let record =
        json!({"attempt": 1, "round": 0, "round_attempts": 1, "instance_id": "i-stranger"});
    let report = handle(&mocks.env(), relaunch("InstanceReclaimed", 0, record))
        .await
        .unwrap();
    assert!(report.terminated.is_empty(), "{:?}", report.terminated);
    assert!(rec
        .terminated
        .lock()
        .unwrap()
        .iter()
        .all(|t| t.instance_ids().is_empty()));
}

#[tokio::test]
async fn a_just_launched_instance_ec2_does_not_show_yet_is_terminated_once_it_does() {
    let (terminated, record_terminate) = recorder::<TerminateInstancesInput>();
    let not_found = || {
        aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError::generic(meta(
            "InvalidInstanceID.NotFound",
        ))
    };
    let mocks = Mocks {
        ec2: vec![
            mock!(aws_sdk_ec2::Client::describe_instances)
                .match_requests(|r| !r.instance_ids().is_empty())
                .then_error(|| {
                    aws_sdk_ec2::operation::describe_instances::DescribeInstancesError::generic(
                        meta("InvalidInstanceID.NotFound"),
                    )
                }),
            describe_instances(vec![]),
            mock!(aws_sdk_ec2::Client::terminate_instances)
                .match_requests(record_terminate)
                .sequence()
                .error(not_found)
                .times(2)
                .output(|| TerminateInstancesOutput::builder().build())
                .build(),
        ],
        ..Mocks::default()
    };
    let record = json!({"attempt": 1, "round": 0, "round_attempts": 1, "instance_id": "i-new",
                        "launched_at": "2026-11-28T08:59:50Z"});
    let report = handle(&mocks.env(), relaunch("InstanceReclaimed", 0, record))
        .await
        .unwrap();
    assert_eq!(report.terminated, ["i-new"]);
    let tries: Vec<Vec<String>> = terminated
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.instance_ids().to_vec())
        .filter(|ids| !ids.is_empty())
        .collect();
    assert_eq!(tries.len(), 3, "{tries:?}");
}

#[tokio::test]
async fn an_ended_execution_is_told_with_its_failed_state_error_and_cause() {
    use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
    use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType, StateEnteredEventDetails};
    use aws_sdk_sns::operation::publish::{PublishInput, PublishOutput};
    let (mut mocks, _) = mocks(vec![run_tags("i-1")]);
    mocks.ssm = vec![mock!(aws_sdk_ssm::Client::list_commands)
        .then_output(|| ListCommandsOutput::builder().build())];
    mocks.sfn = vec![
        mock!(aws_sdk_sfn::Client::describe_execution).then_output(|| {
            DescribeExecutionOutput::builder()
                .execution_arn(fixtures::run().execution)
                .state_machine_arn("arn:sm")
                .status(ExecutionStatus::Failed)
                .start_date(DateTime::from_secs(NOW - 100))
                .error("StepFailed")
                .cause(r#"{"errorType":"StepFailed","errorMessage":"step `slow` failed: exit code 3\nslow: boom"}"#)
                .build()
                .unwrap()
        }),
        mock!(aws_sdk_sfn::Client::get_execution_history).then_output(|| {
            let entered = |id: i64, name: &str| {
                HistoryEvent::builder()
                    .id(id)
                    .timestamp(DateTime::from_secs(NOW - 50 + id))
                    .r#type(HistoryEventType::TaskStateEntered)
                    .state_entered_event_details(
                        StateEnteredEventDetails::builder().name(name).build().unwrap(),
                    )
                    .build()
                    .unwrap()
            };
            GetExecutionHistoryOutput::builder()
                .events(entered(1, "slow: poll"))
                .events(entered(2, "slow: failed"))
                .build()
                .unwrap()
        }),
    ];
    let (published, record) = recorder::<PublishInput>();
    mocks.sns = vec![mock!(aws_sdk_sns::Client::publish)
        .match_requests(record)
        .then_output(|| PublishOutput::builder().build())];
    let mut env = mocks.env();
    env.settings.topic = "arn:aws:sns:us-east-1:123456789012:spotstep".into();
    let event = status_change("FAILED");
    let report = handle(&env, event).await.unwrap();
    assert!(report.notified);
    assert_eq!(report.terminated, ["i-1"], "cleaned up first");
    let published = published.lock().unwrap();
    let message = published[0].message().unwrap();
    assert_eq!(
        published[0].topic_arn(),
        Some("arn:aws:sns:us-east-1:123456789012:spotstep")
    );
    assert_eq!(
        published[0].subject(),
        Some("spotstep spotstep-demo: run-1 FAILED at slow: failed")
    );
    assert!(
        message.contains("Failed state: slow: failed\nError: StepFailed\n"),
        "{message}"
    );
    assert!(
        message.contains("    step `slow` failed: exit code 3\n    slow: boom\n"),
        "{message}"
    );
    assert!(
        message.contains("redrive-execution --execution-arn arn:aws:states"),
        "{message}"
    );
}

#[test]
fn the_sweep_spares_what_a_running_execution_uses_and_never_its_staging() {
    use crate::handlers::cleanup::{sweep_rule, ExecutionSeen, Swept};
    let running = |round| ExecutionSeen::Running { round };
    let table = [
        // (execution, instance round, in use, over budget) -> what the sweep does
        (
            (ExecutionSeen::Ended, 0, false, false),
            Swept::Run { staging: true },
        ),
        ((running(1), 0, false, false), Swept::Instance),
        // A redrive resumed on its round-0 instance: kept, whatever its tag says.
        ((running(1), 0, true, false), Swept::Keep),
        ((running(1), 1, false, false), Swept::Keep),
        // Past its budget: terminated, but the running execution keeps its staging.
        ((running(1), 0, true, true), Swept::Run { staging: false }),
        ((running(0), 0, false, true), Swept::Run { staging: false }),
        ((ExecutionSeen::Unknown, 0, false, false), Swept::Keep),
        (
            (ExecutionSeen::Unknown, 0, false, true),
            Swept::Run { staging: false },
        ),
    ];
    for ((seen, round, in_use, over), expected) in table {
        assert_eq!(
            sweep_rule(seen, round, in_use, over),
            expected,
            "{seen:?} {round} {in_use} {over}"
        );
    }
}

#[tokio::test]
async fn an_instance_ec2_does_not_know_is_not_taken_as_terminated_and_spares_the_others() {
    use aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError;
    let (mut mocks, rec) = mocks(vec![run_tags("i-1"), run_tags("i-2")]);
    // One unknown id refuses the whole batch; alone, i-2 is unknown and i-1 terminates.
    let unknown = |r: &TerminateInstancesInput| r.instance_ids().contains(&"i-2".to_string());
    mocks.ec2.insert(
        1,
        mock!(aws_sdk_ec2::Client::terminate_instances)
            .match_requests(unknown)
            .then_error(|| TerminateInstancesError::generic(meta("InvalidInstanceID.NotFound"))),
    );
    let report = end_of_run(&mocks).await;
    assert_eq!(report.terminated, ["i-1"]);
    assert_eq!(
        rec.terminated
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.instance_ids().to_vec())
            .collect::<Vec<_>>(),
        [vec!["i-1".to_string()]]
    );
}

/// The end of a run writes its ledger record: read from the history (the run, its launch,
/// a step), priced with the spot price history of the instance's type and zone over its
/// lifetime, at `runs/<job>/<run_id>.json`.
#[tokio::test]
async fn the_end_of_a_run_writes_its_ledger_record() {
    use aws_sdk_ec2::operation::describe_spot_price_history::{
        DescribeSpotPriceHistoryInput, DescribeSpotPriceHistoryOutput,
    };
    use aws_sdk_ec2::types::SpotPrice;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::operation::put_object::{PutObjectInput, PutObjectOutput};
    use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
    use aws_sdk_sfn::types::{
        HistoryEvent, HistoryEventType, StateEnteredEventDetails, StateExitedEventDetails,
    };
    let launched = NOW - 600;
    let (mut mocks, _) = mocks(vec![]);
    mocks.sfn = vec![mock!(aws_sdk_sfn::Client::get_execution_history).then_output(move || {
        let event = |id: i64, at: i64, kind: HistoryEventType| {
            HistoryEvent::builder()
                .id(id)
                .timestamp(DateTime::from_secs(at))
                .r#type(kind)
        };
        let exited = |id: i64, at: i64, name: &str, output: Value| {
            event(id, at, HistoryEventType::TaskStateExited)
                .state_exited_event_details(
                    StateExitedEventDetails::builder()
                        .name(name)
                        .output(output.to_string())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let entered = |id: i64, at: i64, name: &str| {
            event(id, at, HistoryEventType::TaskStateEntered)
                .state_entered_event_details(
                    StateEnteredEventDetails::builder().name(name).build().unwrap(),
                )
                .build()
                .unwrap()
        };
        GetExecutionHistoryOutput::builder()
            .events(event(1, launched - 5, HistoryEventType::ExecutionStarted).build().unwrap())
            .events(exited(2, launched - 5, "Name the run", json!({"run": run_json(), "job": job_json()})))
            .events(entered(3, launched - 4, "Launch"))
            .events(exited(4, launched, "Launch", json!({"launch": {"instance_id": "i-1",
                "instance_type": "t3.micro", "availability_zone": "us-east-1a", "market": "spot",
                "launched_at": crate::env::rfc3339(OffsetDateTime::from_unix_timestamp(launched).unwrap())}})))
            .events(entered(5, launched + 10, "prepare: send"))
            .events(exited(6, launched + 70, "prepare: send", json!({"result": {"step": "prepare",
                "status": "Success", "exit_code": 0}})))
            .events(entered(7, NOW - 1, "Finish"))
            .build()
            .unwrap()
    })];
    let (asked, record_asked) = recorder::<DescribeSpotPriceHistoryInput>();
    mocks.ec2.push(
        mock!(aws_sdk_ec2::Client::describe_spot_price_history)
            .match_requests(record_asked)
            .then_output(move || {
                let price = |at: i64, usd: &str| {
                    SpotPrice::builder()
                        .timestamp(DateTime::from_secs(at))
                        .spot_price(usd)
                        .build()
                };
                DescribeSpotPriceHistoryOutput::builder()
                    .spot_price_history(price(launched + 300, "0.0720"))
                    .spot_price_history(price(launched - 9000, "0.0360"))
                    .build()
            }),
    );
    type Puts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let put: Puts = Arc::default();
    let sink = put.clone();
    let record_put = move |r: &PutObjectInput| {
        let body = r.body().bytes().unwrap_or_default().to_vec();
        let key = r.key().unwrap_or_default().to_string();
        sink.lock().unwrap().push((key, body));
        true
    };
    mocks
        .s3
        .push(mock!(aws_sdk_s3::Client::get_object).then_error(|| {
            GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build())
        }));
    mocks.s3.push(
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(record_put)
            .then_output(|| PutObjectOutput::builder().build()),
    );
    let report = end_of_run(&mocks).await;
    assert!(report.incomplete.is_empty(), "{:?}", report.incomplete);
    let asked = asked.lock().unwrap();
    assert_eq!(asked[0].availability_zone(), Some("us-east-1a"));
    assert_eq!(asked[0].product_descriptions(), ["Linux/UNIX"]);
    assert_eq!(asked[0].start_time().map(|t| t.secs()), Some(launched));
    assert_eq!(asked[0].end_time().map(|t| t.secs()), Some(NOW));
    let put = put.lock().unwrap();
    assert_eq!(put[0].0, "runs/demo/run-1.json");
    let record: crate::ledger::Record = serde_json::from_slice(&put[0].1).unwrap();
    assert_eq!(
        (record.status.as_str(), record.run_id.as_str()),
        ("SUCCEEDED", "run-1")
    );
    assert_eq!(record.steps[0].name, "prepare");
    assert_eq!(record.steps[0].exit_code, Some(0));
    let instance = &record.instances[0];
    assert_eq!(
        (instance.instance_id.as_str(), instance.ended_why.as_str()),
        ("i-1", "end of run")
    );
    // 300 s at 0.036, then 300 s at 0.072 (launched 600 s before the cleanup).
    let cost = instance.cost.clone().unwrap();
    assert_eq!(cost.billed_seconds, 600);
    assert_eq!(
        cost.instance_usd,
        Some(crate::cost::round((300.0 * 0.036 + 300.0 * 0.072) / 3600.0))
    );
    assert_eq!(report.cost, record.cost.line());
    assert!(report.cost.starts_with("$0.0"), "{}", report.cost);
}

#[tokio::test]
async fn lane_zero_ends_its_lane_instances_but_never_the_run_instance_it_adopted() {
    let lane_end = |keep: Value| {
        json!({"action": "lane-end", "run": run_json(), "instance": launch_json(),
               "lane": {"step": "sweep", "index": 0}, "keep": keep})
    };
    for (keep, terminated) in [
        (launch_json(), Vec::<String>::new()),
        (Value::Null, vec!["i-1".to_string()]),
    ] {
        let (mut mocks, rec) = mocks(vec![]);
        // By id: the run's instance i-1 (running, no lane tag); by the lane's tags: none.
        mocks.ec2[0] = mock!(aws_sdk_ec2::Client::describe_instances)
            .match_requests(|r| r.instance_ids() == ["i-1"])
            .then_output(|| {
                aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder()
                    .reservations(Reservation::builder().instances(run_tags("i-1")).build())
                    .build()
            });
        mocks.ec2.push(describe_instances(vec![]));
        let report = handle(&mocks.env(), lane_end(keep.clone())).await.unwrap();
        assert_eq!(report.action, "lane-end");
        assert_eq!(report.terminated, terminated, "keep: {keep}");
        let asked: Vec<String> = rec
            .terminated
            .lock()
            .unwrap()
            .iter()
            .flat_map(|t| t.instance_ids().to_vec())
            .collect();
        assert_eq!(asked, terminated, "keep: {keep}");
    }
}
