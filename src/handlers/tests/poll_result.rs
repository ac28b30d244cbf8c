//! poll-result against mocked AWS: deciding a step, the fallback poll, events and the
//! reconciler answering the waiting token.

use super::*;
use crate::handlers::poll_result::{decide, handle, Polled};
use crate::records::Command;
use crate::waiting::SendMarker;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectInput, GetObjectOutput};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::operation::put_object::{PutObjectInput, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_ssm::operation::get_command_invocation::{
    GetCommandInvocationError, GetCommandInvocationOutput,
};
use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;

const MARKER_KEY: &str = "tmp/demo/run-1/sent/slow.round-0";

fn command(sent_at: &str) -> Command {
    serde_json::from_value(
        json!({"command_id": "cmd-1", "step": "slow", "instance_id": "i-1", "round": 0,
        "sent_at": sent_at, "output_prefix": "s3://spotstep-bucket/logs/demo/run-1/slow"}),
    )
    .unwrap()
}

fn send_marker(command: Option<Command>, answer: &str) -> SendMarker {
    SendMarker {
        run: fixtures::run(),
        job: fixtures::job(),
        instance: serde_json::from_value(launch_json()).unwrap(),
        step: serde_json::from_value(
            json!({"name": "slow", "kind": "workload", "timeout_seconds": 120, "heartbeats": ["demo-slow"]}),
        )
        .unwrap(),
        round: 0,
        task_token: "token-1".into(),
        command,
        answer: answer.into(),
        slot: None,
    }
}

/// Each PutObject's key and body.
type Puts = Arc<Mutex<Vec<(String, String)>>>;

/// S3 holding `marker` as the run's one send marker; records every PutObject.
fn staged(marker: &SendMarker) -> (Vec<Rule>, Puts) {
    let puts: Puts = Arc::default();
    let sink = puts.clone();
    let record = move |r: &PutObjectInput| {
        let body = String::from_utf8(r.body().bytes().unwrap().to_vec()).unwrap();
        sink.lock()
            .unwrap()
            .push((r.key().unwrap_or_default().to_string(), body));
        true
    };
    let text = marker.to_json();
    let rules = vec![
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.prefix() == Some("tmp/demo/run-1/sent/"))
            .then_output(|| {
                ListObjectsV2Output::builder()
                    .contents(aws_sdk_s3::types::Object::builder().key(MARKER_KEY).build())
                    .build()
            }),
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.key() == Some(MARKER_KEY))
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(text.clone().into_bytes()))
                    .build()
            }),
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(record)
            .then_output(|| PutObjectOutput::builder().build()),
    ];
    (rules, puts)
}

/// The run's tags on its instance (with the stack's, added by `instance`).
const RUN_TAGS: [(&str, &str); 2] = [("spotstep:job", "demo"), ("spotstep:run-id", "run-1")];

/// The run's instance, tagged with its run and this stack.
fn run_instance(state: InstanceStateName) -> Rule {
    describe_instances(vec![instance("i-1", state, &RUN_TAGS)])
}

fn event(kind: &str, detail: Value) -> Value {
    json!({"version": "0", "id": "e-1", "detail-type": kind, "source": "aws.ssm", "detail": detail})
}

fn command_ended() -> Value {
    event(
        crate::waiting::events::COMMAND_INVOCATION,
        json!({"command-id": "cmd-1", "instance-id": "i-1", "status": "Success"}),
    )
}

fn answered(polled: Polled) -> Vec<crate::handlers::poll_result::Answered> {
    match polled {
        Polled::Told { answered } => answered,
        Polled::Step(r) => panic!("a step result: {r:?}"),
        Polled::FanOut(v) => panic!("a fan-out answer: {v}"),
    }
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

/// `decide` on the fixture's step with its command sent at `sent_at`.
async fn decide_sent(
    mocks: &Mocks,
    sent_at: &str,
) -> crate::Result<crate::handlers::poll_result::StepResult> {
    let command = command(sent_at);
    decide(
        &mocks.env(),
        &send_marker(Some(command.clone()), ""),
        &command,
    )
    .await
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
    let err = decide_sent(&mocks, "2026-11-28T08:59:00Z")
        .await
        .unwrap_err();
    assert_eq!(err.name(), "StillRunning");
    let err = decide_sent(&mocks, "2026-11-28T08:00:00Z")
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
        let err = decide_sent(&mocks, "2026-11-28T08:59:00Z")
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
        let err = decide_sent(&mocks, "2026-11-28T08:59:00Z")
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
    let result = decide_sent(&mocks, "2026-11-28T08:49:00Z").await.unwrap();
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
    let err = decide_sent(&mocks, "2026-11-28T08:49:00Z")
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
    let err = decide_sent(&mocks, "2026-11-28T08:49:00Z")
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

#[tokio::test]
async fn the_fallback_poll_classifies_the_steps_last_send() {
    let (s3, _) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let mocks = Mocks {
        s3,
        ssm: vec![invocation(CommandInvocationStatus::Success, "Success", 0)],
        ..Mocks::default()
    };
    let input = json!({"run": run_json(), "job": job_json(), "instance": launch_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120}});
    match handle(&mocks.env(), input).await.unwrap() {
        Polled::Step(result) => assert_eq!(result.command_id, "cmd-1"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_fallback_poll_fails_a_step_that_was_never_sent() {
    let (s3, _) = staged(&send_marker(None, ""));
    let mocks = Mocks {
        s3,
        ssm: vec![listing(vec![])],
        ..Mocks::default()
    };
    let input = json!({"run": run_json(), "job": job_json(), "instance": launch_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120}});
    let err = handle(&mocks.env(), input).await.unwrap_err();
    assert_eq!(err.name(), "StepFailed");
    assert!(
        err.to_string()
            .contains("records no command and SSM lists none"),
        "{err}"
    );
}

#[tokio::test]
async fn the_fallback_poll_finds_a_sent_command_its_marker_missed() {
    // SendCommand answered, but send-step's completing write of the marker failed.
    let (s3, _) = staged(&send_marker(None, ""));
    let mocks = Mocks {
        s3,
        ssm: vec![
            listing(vec![(
                "cmd-1",
                crate::naming::command_comment("run-1", "slow", 0),
            )]),
            invocation(CommandInvocationStatus::Success, "Success", 0),
        ],
        ..Mocks::default()
    };
    let input = json!({"run": run_json(), "job": job_json(), "instance": launch_json(),
        "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120}});
    match handle(&mocks.env(), input).await.unwrap() {
        Polled::Step(result) => assert_eq!(result.command_id, "cmd-1"),
        other => panic!("{other:?}"),
    }
}

/// ListCommands on the instance: (command id, Comment) of each command.
fn listing(commands: Vec<(&'static str, String)>) -> Rule {
    mock!(aws_sdk_ssm::Client::list_commands).then_output(move || {
        ListCommandsOutput::builder()
            .set_commands(Some(
                commands
                    .iter()
                    .map(|(id, comment)| {
                        aws_sdk_ssm::types::Command::builder()
                            .command_id(*id)
                            .comment(comment.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build()
    })
}

#[tokio::test]
async fn a_command_ended_event_answers_the_waiting_token_and_records_it() {
    let (s3, puts) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let (sent, answering) = task_successes();
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ssm: vec![invocation(CommandInvocationStatus::Success, "Success", 0)],
        sfn: vec![answering],
        ..Mocks::default()
    };
    let answered = answered(handle(&mocks.env(), command_ended()).await.unwrap());
    assert_eq!(answered.len(), 1);
    assert_eq!(
        (answered[0].answer.as_str(), answered[0].taken),
        ("Succeeded", true)
    );
    let sent = sent.lock().unwrap();
    assert_eq!(sent[0].task_token(), Some("token-1"));
    let output: Value = serde_json::from_str(sent[0].output().unwrap()).unwrap();
    assert_eq!(output["command_id"], "cmd-1");
    assert_eq!(output["exit_code"], 0);
    let puts = puts.lock().unwrap();
    assert_eq!(puts[0].0, MARKER_KEY);
    let recorded = SendMarker::parse(&puts[0].1).unwrap();
    assert_eq!(recorded.answer, "Succeeded");
}

#[tokio::test]
async fn duplicate_and_foreign_events_answer_nothing() {
    // Already answered: no SendTask call at all (no sfn rule: a call would fail the test).
    let (s3, puts) = staged(&send_marker(
        Some(command("2026-11-28T08:49:00Z")),
        "Succeeded",
    ));
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ..Mocks::default()
    };
    assert!(answered(handle(&mocks.env(), command_ended()).await.unwrap()).is_empty());
    assert!(puts.lock().unwrap().is_empty());
    // Another command on the instance (an earlier step's late event): not this marker's.
    let (s3, _) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ..Mocks::default()
    };
    let other = event(
        crate::waiting::events::COMMAND_INVOCATION,
        json!({"command-id": "cmd-0", "instance-id": "i-1", "status": "Success"}),
    );
    assert!(answered(handle(&mocks.env(), other).await.unwrap()).is_empty());
    // An instance of another stack: its tags are not ours, S3 is not even read.
    let mocks = Mocks {
        ec2: vec![describe_instances(vec![foreign_instance(
            "i-1",
            InstanceStateName::Running,
            &[
                ("spotstep:job", "demo"),
                ("spotstep:run-id", "run-1"),
                ("spotstep:stack", "other"),
            ],
        )])],
        ..Mocks::default()
    };
    assert!(answered(handle(&mocks.env(), command_ended()).await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_stale_token_is_an_expected_answer() {
    let (s3, puts) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ssm: vec![invocation(CommandInvocationStatus::Success, "Success", 0)],
        sfn: vec![
            mock!(aws_sdk_sfn::Client::send_task_success).then_error(|| {
                SendTaskSuccessError::TaskTimedOut(
                    aws_sdk_sfn::types::error::TaskTimedOut::builder()
                        .meta(meta("TaskTimedOut"))
                        .build(),
                )
            }),
        ],
        ..Mocks::default()
    };
    let answered = answered(handle(&mocks.env(), command_ended()).await.unwrap());
    assert!(!answered[0].taken);
    assert!(
        puts.lock().unwrap().is_empty(),
        "a stale token changes no marker"
    );
}

#[tokio::test]
async fn a_spot_warning_fails_the_waiting_step_as_reclaimed() {
    let (s3, _) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let (sent, answering) = task_failures();
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        sfn: vec![answering],
        ..Mocks::default()
    };
    let warning = event(
        crate::waiting::events::SPOT_WARNING,
        json!({"instance-id": "i-1", "instance-action": "terminate"}),
    );
    handle(&mocks.env(), warning).await.unwrap();
    let sent = sent.lock().unwrap();
    assert_eq!(sent[0].error(), Some("InstanceReclaimed"));
    assert!(sent[0].cause().unwrap().contains("interruption warning"));
}

#[tokio::test]
async fn a_spot_warning_leaves_a_checkpointed_step_to_its_instances_end() {
    let mut marker = send_marker(Some(command("2026-11-28T08:49:00Z")), "");
    marker.step.checkpoint = Some(crate::checkpoint::CheckpointSpec {
        dir: "ckpt".into(),
        every_seconds: 300,
        grace_seconds: 60,
        poll_seconds: 5,
    });
    let (s3, puts) = staged(&marker);
    // No sfn rule: an answer would fail the test.
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ..Mocks::default()
    };
    let warning = event(
        crate::waiting::events::SPOT_WARNING,
        json!({"instance-id": "i-1", "instance-action": "terminate"}),
    );
    assert!(answered(handle(&mocks.env(), warning).await.unwrap()).is_empty());
    assert!(
        puts.lock().unwrap().is_empty(),
        "the marker is not answered"
    );
}

#[tokio::test]
async fn an_instance_going_away_fails_the_waiting_step_by_its_reason() {
    let (s3, _) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    let (sent, answering) = task_failures();
    let mut going = instance("i-1", InstanceStateName::Terminated, &RUN_TAGS);
    going.state_reason = terminated_by("Client.UserInitiatedShutdown").state_reason;
    let mocks = Mocks {
        s3,
        ec2: vec![describe_instances(vec![going])],
        sfn: vec![answering],
        ..Mocks::default()
    };
    let state = event(
        crate::waiting::events::INSTANCE_STATE,
        json!({"instance-id": "i-1", "state": "shutting-down"}),
    );
    handle(&mocks.env(), state).await.unwrap();
    assert_eq!(sent.lock().unwrap()[0].error(), Some("InstanceLost"));
}

#[tokio::test]
async fn an_event_before_the_marker_has_its_command_is_matched_by_comment() {
    let (s3, _) = staged(&send_marker(None, ""));
    let comment = crate::naming::command_comment("run-1", "slow", 0);
    let (sent, answering) = task_successes();
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ssm: vec![
            listing(vec![("cmd-1", comment)]),
            invocation(CommandInvocationStatus::Success, "Success", 0),
        ],
        sfn: vec![answering],
        ..Mocks::default()
    };
    handle(&mocks.env(), command_ended()).await.unwrap();
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_reconciler_answers_a_step_whose_event_was_lost() {
    let (mut s3, _) = staged(&send_marker(Some(command("2026-11-28T08:49:00Z")), ""));
    s3.push(mock!(aws_sdk_s3::Client::get_object).then_error(|| {
        GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build())
    }));
    let (sent, answering) = task_failures();
    let mocks = Mocks {
        s3,
        ec2: vec![run_instance(InstanceStateName::Running)],
        ssm: vec![invocation(CommandInvocationStatus::Failed, "Failed", 2)],
        sfn: vec![answering],
        ..Mocks::default()
    };
    let schedule = event(crate::waiting::events::SCHEDULED, json!({}));
    let answered = answered(handle(&mocks.env(), schedule).await.unwrap());
    assert_eq!(answered[0].answer, "StepFailed");
    let sent = sent.lock().unwrap();
    assert_eq!(sent[0].error(), Some("StepFailed"));
    assert!(sent[0].cause().unwrap().starts_with("step `slow` failed"));
}
