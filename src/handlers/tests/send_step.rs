//! send-step against mocked AWS.

use super::*;
use crate::handlers::send_step::handle;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::put_object::{PutObjectInput, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
use aws_sdk_ssm::operation::send_command::{SendCommandError, SendCommandInput, SendCommandOutput};
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};

fn input(redrive_count: u32) -> Value {
    json!({
        "run": run_json(), "job": job_json(), "instance": launch_json(), "redrive_count": redrive_count,
        "step": {"name": "quoting", "kind": "workload", "timeout_seconds": 5400, "script": "echo 'it'\\''s'\n"},
        "task_token": "token-now"
    })
}

/// The marker an earlier try of round 0 left: on `instance_id`, with its command when it
/// recorded one.
fn earlier(instance_id: &str, command: Option<(&str, &str)>) -> Value {
    let mut launch = launch_json();
    launch["instance_id"] = json!(instance_id);
    json!({
        "run": run_json(), "job": job_json(), "instance": launch,
        "step": {"name": "quoting", "kind": "workload", "timeout_seconds": 5400},
        "round": 0, "task_token": "token-before",
        "command": command.map(|(id, sent_at)| json!({
            "command_id": id, "step": "quoting", "instance_id": instance_id, "round": 0,
            "sent_at": sent_at, "output_prefix": "s3://spotstep-bucket/logs/demo/run-1/quoting"
        })),
    })
}

/// Each PutObject's key and JSON body.
type Puts = Arc<Mutex<Vec<(String, Value)>>>;

/// S3 holding `marker` (or nothing) at the send marker's key; records every PutObject.
fn marker(existing: Option<Value>) -> (Vec<Rule>, Puts) {
    let put: Puts = Arc::default();
    let sink = put.clone();
    let record = move |r: &PutObjectInput| {
        let body = serde_json::from_slice(r.body().bytes().unwrap()).unwrap();
        sink.lock()
            .unwrap()
            .push((r.key().unwrap_or_default().to_string(), body));
        true
    };
    let get = match existing {
        Some(body) => mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.key() == Some("tmp/demo/run-1/sent/quoting.round-0"))
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(body.to_string().into_bytes()))
                    .build()
            }),
        None => mock!(aws_sdk_s3::Client::get_object).then_error(|| {
            GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build())
        }),
    };
    let rules = vec![
        get,
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(record)
            .then_output(|| PutObjectOutput::builder().build()),
    ];
    (rules, put)
}

fn put_bodies(put: &Puts) -> Vec<Value> {
    put.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
}

/// SendCommand answers `command_id`; `record` sees each request.
fn send_answers(
    command_id: &'static str,
    record: impl Fn(&SendCommandInput) -> bool + Send + Sync + 'static,
) -> Rule {
    mock!(aws_sdk_ssm::Client::send_command)
        .match_requests(record)
        .then_output(move || {
            SendCommandOutput::builder()
                .command(Command::builder().command_id(command_id).build())
                .build()
        })
}

fn invocation_is(status: CommandInvocationStatus) -> Rule {
    mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(move || {
        GetCommandInvocationOutput::builder()
            .status(status.clone())
            .status_details(status.as_str())
            .response_code(if status == CommandInvocationStatus::Success {
                0
            } else {
                -1
            })
            .build()
    })
}

/// A send found reused: SSM lists `commands`, records any SendCommand (`record`: there must be
/// none), and shows the command still running on a running instance.
fn reused_while_running(
    commands: Vec<Command>,
    record: impl Fn(&SendCommandInput) -> bool + Send + Sync + 'static,
) -> Mocks {
    Mocks {
        ssm: vec![
            listed(commands),
            mock!(aws_sdk_ssm::Client::send_command)
                .match_requests(record)
                .then_output(|| SendCommandOutput::builder().build()),
            invocation_is(CommandInvocationStatus::InProgress),
        ],
        ec2: vec![describe_instances(vec![instance(
            "i-1",
            InstanceStateName::Running,
            &[],
        )])],
        ..Mocks::default()
    }
}

fn listed(commands: Vec<Command>) -> Rule {
    mock!(aws_sdk_ssm::Client::list_commands).then_output(move || {
        ListCommandsOutput::builder()
            .set_commands(Some(commands.clone()))
            .build()
    })
}

#[tokio::test]
async fn sends_with_execution_timeout_and_output_locations() {
    let (sent, record) = recorder::<SendCommandInput>();
    let (s3, put) = marker(None);
    let mocks = Mocks {
        s3,
        ssm: vec![listed(vec![]), send_answers("cmd-1", record)],
        ..Mocks::default()
    };
    let command = handle(&mocks.env(), input(0)).await.unwrap();
    assert_eq!(command.command_id, "cmd-1");
    assert_eq!(
        command.output_prefix,
        "s3://spotstep-bucket/logs/demo/run-1/quoting"
    );
    assert!(!command.reused);
    assert_eq!(command.sent_at, "2026-11-28T09:00:00Z");

    let sent = sent.lock().unwrap();
    let req = &sent[0];
    assert_eq!(req.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(req.instance_ids(), ["i-1"]);
    let params = req.parameters().unwrap();
    assert_eq!(params["executionTimeout"], ["5400"]);
    assert_eq!(
        req.timeout_seconds(),
        Some(300),
        "delivery bound, not the step timeout"
    );
    assert_eq!(req.output_s3_bucket_name(), Some("spotstep-bucket"));
    assert_eq!(req.output_s3_key_prefix(), Some("logs/demo/run-1/quoting"));
    assert_eq!(
        req.cloud_watch_output_config()
            .and_then(|c| c.cloud_watch_log_group_name()),
        Some("/spotstep/steps")
    );
    assert_eq!(
        req.comment(),
        Some(crate::naming::command_comment("run-1", "quoting", 0).as_str())
    );
    let commands = &params["commands"];
    assert!(
        commands.iter().all(|l| !l.contains("it's")),
        "the body never crosses SSM in clear"
    );
    let marks = put_bodies(&put);
    assert_eq!(
        marks.len(),
        2,
        "marked before the send, completed after: {marks:?}"
    );
    assert_eq!(marks[0]["command"], Value::Null);
    assert_eq!(marks[0]["instance"]["instance_id"], "i-1");
    assert_eq!(marks[0]["task_token"], "token-now");
    assert_eq!(
        marks[0]["step"].get("script"),
        None,
        "the marker holds no script"
    );
    assert_eq!(marks[1]["command"]["command_id"], "cmd-1");
    assert_eq!(marks[1]["task_token"], "token-now");
    assert_eq!(
        put.lock().unwrap()[0].0,
        "tmp/demo/run-1/sent/quoting.round-0"
    );
}

#[tokio::test]
async fn a_checkpointed_step_records_the_checkpoint_it_resumes_from() {
    let (mut s3, _) = marker(None);
    // The runner's marker of its last upload, 42 s before the send (the clock's now).
    s3.insert(
        0,
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.key() == Some("checkpoints/demo/run-1/quoting.marker"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(
                        br#"{"saved_at":1795856358,"reason":"notice","complete":true}"#,
                    ))
                    .build()
            }),
    );
    let (_, record) = recorder::<SendCommandInput>();
    let mocks = Mocks {
        s3,
        ssm: vec![listed(vec![]), send_answers("cmd-1", record)],
        ..Mocks::default()
    };
    let mut checkpointed = input(0);
    checkpointed["step"]["checkpoint"] =
        json!({"dir": "ckpt", "every_seconds": 300, "grace_seconds": 60, "poll_seconds": 5});
    let command = handle(&mocks.env(), checkpointed).await.unwrap();
    let restored = command.checkpoint.expect("the checkpoint is recorded");
    assert_eq!(
        (
            restored.age_seconds,
            restored.reason.as_str(),
            restored.complete
        ),
        (42, "notice", true)
    );
    assert_eq!(restored.saved_at, "2026-11-28T08:59:18Z");
    // A first send finds no marker: nothing to resume from.
    let (s3, _) = marker(None);
    let (_, record) = recorder::<SendCommandInput>();
    let mocks = Mocks {
        s3,
        ssm: vec![listed(vec![]), send_answers("cmd-1", record)],
        ..Mocks::default()
    };
    let mut first = input(0);
    first["step"]["checkpoint"] = json!({"dir": "ckpt", "every_seconds": 300, "grace_seconds": 60});
    assert_eq!(handle(&mocks.env(), first).await.unwrap().checkpoint, None);
}

#[tokio::test]
async fn a_retry_right_after_a_send_finds_its_marker_while_ssm_lists_nothing() {
    let (sent, record) = recorder::<SendCommandInput>();
    let (s3, put) = marker(Some(earlier(
        "i-1",
        Some(("cmd-1", "2026-11-28T08:59:58Z")),
    )));
    let mocks = Mocks {
        s3,
        ..reused_while_running(vec![], record)
    };
    let command = handle(&mocks.env(), input(0)).await.unwrap();
    assert_eq!(command.command_id, "cmd-1");
    assert!(command.reused);
    assert_eq!(command.sent_at, "2026-11-28T08:59:58Z");
    assert!(
        sent.lock().unwrap().is_empty(),
        "the script must not run twice"
    );
    let marks = put_bodies(&put);
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(
        marks[0]["task_token"], "token-now",
        "the retry's own token waits now"
    );
    assert_eq!(marks[0]["command"]["command_id"], "cmd-1");
}

#[tokio::test]
async fn a_retried_send_whose_command_already_ended_answers_its_own_token() {
    let (s3, _) = marker(Some(earlier(
        "i-1",
        Some(("cmd-1", "2026-11-28T08:59:58Z")),
    )));
    let (answered, answering) = task_successes();
    let mocks = Mocks {
        s3,
        ssm: vec![invocation_is(CommandInvocationStatus::Success)],
        sfn: vec![answering],
        ..Mocks::default()
    };
    handle(&mocks.env(), input(0)).await.unwrap();
    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].task_token(), Some("token-now"));
}

#[tokio::test]
async fn a_marker_of_another_instance_does_not_stop_the_send() {
    let (sent, record) = recorder::<SendCommandInput>();
    let (s3, _) = marker(Some(earlier(
        "i-before-the-reclaim",
        Some(("cmd-old", "2026-11-28T08:00:00Z")),
    )));
    let mocks = Mocks {
        s3,
        ssm: vec![listed(vec![]), send_answers("cmd-new", record)],
        ..Mocks::default()
    };
    let command = handle(&mocks.env(), input(0)).await.unwrap();
    assert_eq!(command.command_id, "cmd-new");
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retried_send_finds_the_earlier_command() {
    let (sent, record) = recorder::<SendCommandInput>();
    let comment = crate::naming::command_comment("run-1", "quoting", 0);
    // An earlier try marked the send and died before recording its command.
    let (s3, _) = marker(Some(earlier("i-1", None)));
    let mocks = Mocks {
        s3,
        ..reused_while_running(
            vec![
                Command::builder()
                    .command_id("cmd-other")
                    .comment("someone else")
                    .build(),
                Command::builder()
                    .command_id("cmd-earlier")
                    .comment(comment)
                    .requested_date_time(DateTime::from_secs(NOW - 30))
                    .build(),
            ],
            record,
        )
    };
    let command = handle(&mocks.env(), input(0)).await.unwrap();
    assert_eq!(command.command_id, "cmd-earlier");
    assert!(command.reused);
    assert_eq!(command.sent_at, "2026-11-28T08:59:30Z");
    assert!(
        sent.lock().unwrap().is_empty(),
        "the script must not run twice"
    );
}

#[tokio::test]
async fn a_redrive_round_sends_again() {
    let (sent, record) = recorder::<SendCommandInput>();
    let (s3, _) = marker(None);
    let mocks = Mocks {
        s3,
        ssm: vec![
            listed(vec![Command::builder()
                .command_id("cmd-round-0")
                .comment(crate::naming::command_comment("run-1", "quoting", 0))
                .build()]),
            send_answers("cmd-round-1", record),
        ],
        ..Mocks::default()
    };
    let command = handle(&mocks.env(), input(1)).await.unwrap();
    assert_eq!(command.command_id, "cmd-round-1");
    assert_eq!(command.round, 1);
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unregistered_agent_or_gone_instance() {
    let invalid = || {
        SendCommandError::InvalidInstanceId(
            aws_sdk_ssm::types::error::InvalidInstanceId::builder().build(),
        )
    };
    let running = Mocks {
        s3: marker(None).0,
        ssm: vec![
            listed(vec![]),
            mock!(aws_sdk_ssm::Client::send_command).then_error(invalid),
        ],
        ec2: vec![describe_instances(vec![instance(
            "i-1",
            InstanceStateName::Running,
            &[],
        )])],
        ..Mocks::default()
    };
    assert_eq!(
        handle(&running.env(), input(0)).await.unwrap_err().name(),
        "AgentNotOnline"
    );
    let gone = Mocks {
        s3: marker(None).0,
        ssm: vec![
            listed(vec![]),
            mock!(aws_sdk_ssm::Client::send_command).then_error(invalid),
        ],
        ec2: vec![describe_instances(vec![terminated_by(
            "Client.UserInitiatedShutdown",
        )])],
        ..Mocks::default()
    };
    let err = handle(&gone.env(), input(0)).await.unwrap_err();
    assert_eq!(err.name(), "InstanceLost");
    assert!(
        err.to_string().contains("Client.UserInitiatedShutdown"),
        "{err}"
    );
}
