//! poll-result against mocked AWS.

use super::*;
use crate::handlers::poll_result::handle;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectInput, GetObjectOutput};
use aws_sdk_ssm::operation::get_command_invocation::{
    GetCommandInvocationError, GetCommandInvocationOutput,
};
use aws_sdk_ssm::types::CommandInvocationStatus;

fn input(sent_at: &str) -> Value {
    json!({
        "run": run_json(), "job": job_json(), "instance": launch_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120, "heartbeats": ["demo-slow"]},
        "command": {"command_id": "cmd-1", "step": "slow", "instance_id": "i-1", "round": 0,
                    "sent_at": sent_at, "output_prefix": "s3://spotstep-bucket/logs/demo/run-1/slow"}
    })
}

fn invocation(status: CommandInvocationStatus, details: &str, code: i32) -> Rule {
    let details = details.to_string();
    mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(move || {
        GetCommandInvocationOutput::builder()
            .status(status.clone())
            .status_details(details.clone())
            .response_code(code)
            .standard_output_content("head line 1\nhead line 2\n")
            .execution_start_date_time("2026-11-28T08:50:00.000Z")
            .execution_end_date_time("2026-11-28T08:58:20.000Z")
            .build()
    })
}

fn running_instance() -> Rule {
    describe_instances(vec![instance("i-1", InstanceStateName::Running, &[])])
}

#[tokio::test]
async fn not_registered_yet_is_still_running_then_a_failure() {
    let missing = || {
        GetCommandInvocationError::InvocationDoesNotExist(
            aws_sdk_ssm::types::error::InvocationDoesNotExist::builder().build(),
        )
    };
    let mocks = Mocks {
        ssm: vec![mock!(aws_sdk_ssm::Client::get_command_invocation).then_error(missing)],
        ec2: vec![running_instance()],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "StillRunning");
    let err = handle(&mocks.env(), input("2026-11-28T08:00:00Z"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "StepFailed");
    assert!(err.to_string().contains("never registered"), "{err}");
}

#[tokio::test]
async fn unfinished_statuses_are_still_running() {
    for status in [
        CommandInvocationStatus::Pending,
        CommandInvocationStatus::InProgress,
        CommandInvocationStatus::Delayed,
        CommandInvocationStatus::Cancelling,
    ] {
        let mocks = Mocks {
            ssm: vec![invocation(status.clone(), status.as_str(), -1)],
            ec2: vec![running_instance()],
            ..Mocks::default()
        };
        let err = handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "StillRunning", "{status:?}");
    }
}

#[tokio::test]
async fn a_reclaim_is_reported_whether_running_or_timed_out() {
    for (status, details) in [
        (CommandInvocationStatus::InProgress, "InProgress"),
        (CommandInvocationStatus::TimedOut, "Delivery Timed Out"),
    ] {
        let mocks = Mocks {
            ssm: vec![invocation(status, details, -1)],
            ec2: vec![describe_instances(vec![terminated_by(
                "Server.SpotInstanceTermination",
            )])],
            ..Mocks::default()
        };
        let err = handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InstanceReclaimed", "{details}");
    }
}

#[tokio::test]
async fn success_reports_duration_and_full_output() {
    let mocks = Mocks {
        ssm: vec![invocation(CommandInvocationStatus::Success, "Success", 0)],
        ..Mocks::default()
    };
    let result = handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
        .await
        .unwrap();
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.duration_seconds, 500);
    assert_eq!(
        result.output,
        "s3://spotstep-bucket/logs/demo/run-1/slow/cmd-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout"
    );
}

#[tokio::test]
async fn a_failed_step_ends_with_the_real_tail_of_its_output() {
    let (gets, record) = recorder::<GetObjectInput>();
    let output: String = (1..=100).map(|i| format!("output line {i}\n")).collect();
    let mocks = Mocks {
        ssm: vec![invocation(CommandInvocationStatus::Failed, "Failed", 3)],
        ec2: vec![running_instance()],
        s3: vec![mock!(aws_sdk_s3::Client::get_object)
            .match_requests(record)
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from(
                        output.clone().into_bytes(),
                    ))
                    .build()
            })],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "StepFailed");
    let message = err.to_string();
    assert!(
        message.starts_with("step `slow` failed: status Failed (Failed), exit code 3"),
        "{message}"
    );
    assert!(message.contains("redrive"), "{message}");
    let tail = message
        .split("--- last 40 lines of output ---\n")
        .nth(1)
        .unwrap();
    assert_eq!(tail.lines().count(), 40);
    assert!(
        tail.starts_with("output line 61\n") && tail.ends_with("output line 100"),
        "{tail}"
    );
    let gets = gets.lock().unwrap();
    assert_eq!(
        gets[0].key(),
        Some("logs/demo/run-1/slow/cmd-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout")
    );
    assert_eq!(gets[0].range(), Some("bytes=-65536"));
}

#[tokio::test]
async fn unreadable_output_falls_back_to_the_head_and_says_so() {
    let mocks = Mocks {
        ssm: vec![invocation(
            CommandInvocationStatus::TimedOut,
            "Execution Timed Out",
            124,
        )],
        ec2: vec![running_instance()],
        s3: vec![mock!(aws_sdk_s3::Client::get_object).then_error(|| {
            GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build())
        })],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ran longer than its timeout_seconds"),
        "{message}"
    );
    assert!(message.contains("could not be read from S3"), "{message}");
    assert!(message.ends_with("head line 1\nhead line 2"), "{message}");
}
