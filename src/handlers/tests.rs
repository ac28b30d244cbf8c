//! Handler tests against mocked AWS clients (`aws-smithy-mocks`): every success and error
//! path, asserting the requests each handler sends.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{
    Instance, InstanceState, InstanceStateName, Placement, Reservation, StateReason, Tag,
};
use aws_smithy_mocks::{mock, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::*;
use crate::env::{Clock, Env, Settings};
use crate::run::fixtures;

macro_rules! client {
    ($krate:ident, $rules:expr) => {{
        let mut interceptor =
            aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in $rules.iter() {
            interceptor = interceptor.with_rule(rule);
        }
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version($krate::config::BehaviorVersion::latest())
                .region($krate::config::Region::new("us-east-1"))
                .credentials_provider($krate::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .retry_config($krate::config::retry::RetryConfig::disabled())
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}

#[derive(Default)]
struct Mocks {
    ec2: Vec<Rule>,
    s3: Vec<Rule>,
    ssm: Vec<Rule>,
    sfn: Vec<Rule>,
}

const NOW: i64 = 1_795_856_400; // 2026-11-28T09:00:00Z

fn settings() -> Settings {
    Settings {
        bucket: "spotstep-bucket".into(),
        region: "us-east-1".into(),
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        security_group: "sg-1".into(),
        instance_profile: "spotstep-instance".into(),
        image_id: "ami-123".into(),
        log_group: "/spotstep/steps".into(),
        delivery_timeout_seconds: 300,
        registration_grace_seconds: 300,
        sweep_grace_seconds: 1800,
    }
}

impl Mocks {
    fn env(&self) -> Env {
        Env {
            ec2: client!(aws_sdk_ec2, self.ec2),
            s3: client!(aws_sdk_s3, self.s3),
            ssm: client!(aws_sdk_ssm, self.ssm),
            sfn: client!(aws_sdk_sfn, self.sfn),
            settings: settings(),
            clock: Clock::Fixed(OffsetDateTime::from_unix_timestamp(NOW).unwrap()),
        }
    }
}

/// Records the inputs a mock rule saw.
fn recorder<T: Clone + Send + 'static>() -> (
    Arc<Mutex<Vec<T>>>,
    impl Fn(&T) -> bool + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |req: &T| {
        sink.lock().unwrap().push(req.clone());
        true
    })
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (mocked)"))
        .build()
}

fn instance(id: &str, state: InstanceStateName, tags: &[(&str, &str)]) -> Instance {
    Instance::builder()
        .instance_id(id)
        .state(InstanceState::builder().name(state).build())
        .placement(Placement::builder().availability_zone("us-east-1a").build())
        .launch_time(DateTime::from_secs(NOW - 600))
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

fn describe_instances(instances: Vec<Instance>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_instances).then_output(move || {
        aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder()
            .reservations(
                Reservation::builder()
                    .set_instances(Some(instances.clone()))
                    .build(),
            )
            .build()
    })
}

fn terminated_by(reason: &str) -> Instance {
    Instance::builder()
        .instance_id("i-1")
        .state(
            InstanceState::builder()
                .name(InstanceStateName::Terminated)
                .build(),
        )
        .state_reason(StateReason::builder().code(reason).build())
        .build()
}

fn job_json() -> Value {
    serde_json::to_value(fixtures::job()).unwrap()
}

fn run_json() -> Value {
    serde_json::to_value(fixtures::run()).unwrap()
}

fn launch_json() -> Value {
    json!({"attempt": 1, "round": 0, "round_attempts": 1, "instance_id": "i-1", "instance_type": "t3.micro"})
}

// ---------------------------------------------------------------- launch

mod launch_tests {
    use super::*;
    use aws_sdk_ec2::operation::run_instances::{
        RunInstancesError, RunInstancesInput, RunInstancesOutput,
    };
    use aws_sdk_s3::operation::copy_object::{CopyObjectInput, CopyObjectOutput};
    use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
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
                config_exists(),
                mock!(aws_sdk_s3::Client::copy_object)
                    .match_requests(record_copy)
                    .then_output(|| CopyObjectOutput::builder().build()),
            ],
            sfn: vec![no_other_executions()],
            ..Mocks::default()
        };
        let launch = launch::handle(&mocks.env(), input()).await.unwrap();
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
            Some(crate::naming::client_token(&fixtures::run().execution, 1, 1).as_str())
        );
        assert_ne!(runs[0].client_token(), r.client_token());
        let tags: Vec<(String, String)> = r.tag_specifications()[0]
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect();
        for expected in [
            ("Name", "spotstep-demo-20261128"),
            ("spotstep:job", "demo"),
            ("spotstep:run-id", "run-1"),
            ("spotstep:execution", fixtures::run().execution.as_str()),
            ("spotstep:attempt", "1"),
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
            let err = launch::handle(&mocks.env(), input).await.unwrap_err();
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
        let err = launch::handle(&mocks.env(), input()).await.unwrap_err();
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
        let err = launch::handle(&mocks.env(), redriven).await.unwrap_err();
        assert_eq!(err.name(), "ConcurrentRun");
        assert!(err.to_string().contains("`newer`"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_config_launches_nothing() {
        let mocks = Mocks {
            s3: vec![mock!(aws_sdk_s3::Client::head_object).then_error(|| {
                HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
            })],
            sfn: vec![no_other_executions()],
            ..Mocks::default()
        };
        let err = launch::handle(&mocks.env(), input()).await.unwrap_err();
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
                mock!(aws_sdk_ec2::Client::run_instances).then_error(|| {
                    RunInstancesError::generic(meta("InsufficientInstanceCapacity"))
                }),
            ],
            s3: vec![
                config_exists(),
                mock!(aws_sdk_s3::Client::copy_object)
                    .match_requests(record_copy)
                    .then_output(|| CopyObjectOutput::builder().build()),
            ],
            sfn: vec![no_other_executions()],
            ..Mocks::default()
        };
        let err = launch::handle(&mocks.env(), input()).await.unwrap_err();
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
            s3: vec![config_exists()],
            sfn: vec![no_other_executions()],
            ..Mocks::default()
        };
        let err = launch::handle(&mocks.env(), input()).await.unwrap_err();
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
                config_exists(),
                mock!(aws_sdk_s3::Client::copy_object)
                    .then_output(|| CopyObjectOutput::builder().build()),
            ],
            sfn: vec![no_other_executions()],
            ..Mocks::default()
        };
        let launch = launch::handle(&mocks.env(), input()).await.unwrap();
        assert_eq!(launch.instance_id, "i-earlier");
        assert!(runs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn relaunches_are_bounded_per_round() {
        let mut input = input();
        input["previous"] =
            json!({"attempt": 2, "round": 0, "round_attempts": 2, "instance_id": "i-2"});
        let err = launch::handle(&Mocks::default().env(), input)
            .await
            .unwrap_err();
        assert_eq!(err.name(), "RelaunchLimit");
    }
}

// ---------------------------------------------------------------- wait-online

mod wait_online_tests {
    use super::*;
    use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
    use aws_sdk_ssm::types::{InstanceInformation, PingStatus};

    fn input() -> Value {
        json!({"run": run_json(), "instance": launch_json()})
    }

    fn agent(status: Option<PingStatus>) -> Rule {
        mock!(aws_sdk_ssm::Client::describe_instance_information).then_output(move || {
            let list = status.clone().map(|s| {
                InstanceInformation::builder()
                    .instance_id("i-1")
                    .ping_status(s)
                    .agent_version("3.3")
                    .build()
            });
            DescribeInstanceInformationOutput::builder()
                .set_instance_information_list(list.map(|i| vec![i]))
                .build()
        })
    }

    #[tokio::test]
    async fn online_agent() {
        let mocks = Mocks {
            ssm: vec![agent(Some(PingStatus::Online))],
            ..Mocks::default()
        };
        let online = wait_online::handle(&mocks.env(), input()).await.unwrap();
        assert_eq!(online.instance_id, "i-1");
        assert_eq!(online.agent_version, "3.3");
    }

    #[tokio::test]
    async fn booting_instance_is_retryable() {
        for status in [None, Some(PingStatus::ConnectionLost)] {
            let mocks = Mocks {
                ssm: vec![agent(status)],
                ec2: vec![describe_instances(vec![instance(
                    "i-1",
                    InstanceStateName::Running,
                    &[],
                )])],
                ..Mocks::default()
            };
            let err = wait_online::handle(&mocks.env(), input())
                .await
                .unwrap_err();
            assert_eq!(err.name(), "AgentNotOnline");
        }
    }

    #[tokio::test]
    async fn a_reclaimed_instance_is_reported_as_such() {
        let mocks = Mocks {
            ssm: vec![agent(None)],
            ec2: vec![describe_instances(vec![terminated_by(
                "Server.SpotInstanceTermination",
            )])],
            ..Mocks::default()
        };
        let err = wait_online::handle(&mocks.env(), input())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InstanceReclaimed");
        assert!(
            err.to_string().contains("Server.SpotInstanceTermination"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_vanished_instance_is_lost() {
        let mocks = Mocks {
            ssm: vec![agent(None)],
            ec2: vec![
                mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
                    aws_sdk_ec2::operation::describe_instances::DescribeInstancesError::generic(
                        meta("InvalidInstanceID.NotFound"),
                    )
                }),
            ],
            ..Mocks::default()
        };
        let err = wait_online::handle(&mocks.env(), input())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InstanceLost");
        assert!(err.to_string().contains("no longer knows"), "{err}");
    }
}

// ---------------------------------------------------------------- send-step

mod send_step_tests {
    use super::*;
    use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
    use aws_sdk_ssm::operation::send_command::{
        SendCommandError, SendCommandInput, SendCommandOutput,
    };
    use aws_sdk_ssm::types::Command;

    fn input(redrive_count: u32) -> Value {
        json!({
            "run": run_json(), "job": job_json(), "instance": launch_json(), "redrive_count": redrive_count,
            "step": {"name": "quoting", "kind": "workload", "timeout_seconds": 5400, "script": "echo 'it'\\''s'\n"}
        })
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
        let mocks = Mocks {
            ssm: vec![
                listed(vec![]),
                mock!(aws_sdk_ssm::Client::send_command)
                    .match_requests(record)
                    .then_output(|| {
                        SendCommandOutput::builder()
                            .command(Command::builder().command_id("cmd-1").build())
                            .build()
                    }),
            ],
            ..Mocks::default()
        };
        let command = send_step::handle(&mocks.env(), input(0)).await.unwrap();
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
    }

    #[tokio::test]
    async fn a_retried_send_finds_the_earlier_command() {
        let (sent, record) = recorder::<SendCommandInput>();
        let comment = crate::naming::command_comment("run-1", "quoting", 0);
        let mocks = Mocks {
            ssm: vec![
                listed(vec![
                    Command::builder()
                        .command_id("cmd-other")
                        .comment("someone else")
                        .build(),
                    Command::builder()
                        .command_id("cmd-earlier")
                        .comment(comment)
                        .requested_date_time(DateTime::from_secs(NOW - 30))
                        .build(),
                ]),
                mock!(aws_sdk_ssm::Client::send_command)
                    .match_requests(record)
                    .then_output(|| SendCommandOutput::builder().build()),
            ],
            ..Mocks::default()
        };
        let command = send_step::handle(&mocks.env(), input(0)).await.unwrap();
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
        let mocks = Mocks {
            ssm: vec![
                listed(vec![Command::builder()
                    .command_id("cmd-round-0")
                    .comment(crate::naming::command_comment("run-1", "quoting", 0))
                    .build()]),
                mock!(aws_sdk_ssm::Client::send_command)
                    .match_requests(record)
                    .then_output(|| {
                        SendCommandOutput::builder()
                            .command(Command::builder().command_id("cmd-round-1").build())
                            .build()
                    }),
            ],
            ..Mocks::default()
        };
        let command = send_step::handle(&mocks.env(), input(1)).await.unwrap();
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
            send_step::handle(&running.env(), input(0))
                .await
                .unwrap_err()
                .name(),
            "AgentNotOnline"
        );
        let gone = Mocks {
            ssm: vec![
                listed(vec![]),
                mock!(aws_sdk_ssm::Client::send_command).then_error(invalid),
            ],
            ec2: vec![describe_instances(vec![terminated_by(
                "Client.UserInitiatedShutdown",
            )])],
            ..Mocks::default()
        };
        let err = send_step::handle(&gone.env(), input(0)).await.unwrap_err();
        assert_eq!(err.name(), "InstanceLost");
        assert!(
            err.to_string().contains("Client.UserInitiatedShutdown"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- poll-result

mod poll_result_tests {
    use super::*;
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
        let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "StillRunning");
        let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:00:00Z"))
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
            let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
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
            let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:59:00Z"))
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
        let result = poll_result::handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
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
        let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
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
        let err = poll_result::handle(&mocks.env(), input("2026-11-28T08:49:00Z"))
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
}

// ---------------------------------------------------------------- cleanup

mod cleanup_tests {
    use super::*;
    use aws_sdk_ec2::operation::terminate_instances::{
        TerminateInstancesInput, TerminateInstancesOutput,
    };
    use aws_sdk_s3::operation::delete_objects::{DeleteObjectsInput, DeleteObjectsOutput};
    use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2Input, ListObjectsV2Output};
    use aws_sdk_s3::types::Object;
    use aws_sdk_sfn::operation::describe_execution::{
        DescribeExecutionError, DescribeExecutionOutput,
    };
    use aws_sdk_sfn::types::ExecutionStatus;
    use aws_sdk_ssm::operation::cancel_command::{CancelCommandInput, CancelCommandOutput};
    use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
    use aws_sdk_ssm::types::{Command, CommandStatus};

    fn run_tags(id: &str) -> Instance {
        instance(
            id,
            InstanceStateName::Running,
            &[
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

    #[tokio::test]
    async fn end_of_run_terminates_the_run_and_deletes_only_its_staging() {
        let (mocks, rec) = mocks(vec![run_tags("i-1")]);
        let report = cleanup::handle(
            &mocks.env(),
            json!({"action": "end-of-run", "run": run_json()}),
        )
        .await
        .unwrap();
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
        let report = cleanup::handle(
            &mocks.env(),
            json!({"action": "end-of-run", "run": run_json()}),
        )
        .await
        .unwrap();
        assert!(report.terminated.is_empty());
        assert!(rec.terminated.lock().unwrap().is_empty());
    }

    fn step_failed(redrive_count: u32) -> Value {
        json!({
            "action": "step-failed", "run": run_json(), "job": job_json(),
            "step": {"name": "slow", "kind": "workload", "timeout_seconds": 120},
            "command": {"command_id": "cmd-1", "step": "slow", "instance_id": "i-1", "round": 0,
                        "sent_at": "2026-11-28T08:49:00Z", "output_prefix": "s3://b/logs/demo/run-1/slow"},
            "failure": {"Error": "StepFailed", "Cause": "{\"errorType\":\"StepFailed\",\"errorMessage\":\"step `slow` failed: exit code 3\"}"},
            "redrive_count": redrive_count
        })
    }

    #[tokio::test]
    async fn a_failed_step_cleans_up_and_fails_with_its_own_error() {
        let (mocks, rec) = mocks(vec![run_tags("i-1")]);
        let err = cleanup::handle(&mocks.env(), step_failed(0))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "StepFailed");
        assert_eq!(err.to_string(), "step `slow` failed: exit code 3");
        assert_eq!(rec.terminated.lock().unwrap()[0].instance_ids(), ["i-1"]);
        assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
    }

    #[tokio::test]
    async fn a_redriven_failed_step_lets_the_run_resume() {
        let (mocks, rec) = mocks(vec![run_tags("i-1")]);
        let report = cleanup::handle(&mocks.env(), step_failed(1)).await.unwrap();
        assert!(report.resumed);
        assert!(rec.terminated.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn execution_status_change_cancels_and_terminates() {
        let (mut mocks, rec) = mocks(vec![run_tags("i-1")]);
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
        let report = cleanup::handle(&mocks.env(), event).await.unwrap();
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
        mocks.ssm = vec![mock!(aws_sdk_ssm::Client::list_commands)
            .then_output(|| ListCommandsOutput::builder().build())];
        let event = json!({"detail-type": "Step Functions Execution Status Change",
                           "detail": {"executionArn": fixtures::run().execution, "status": "FAILED"}});
        let report = cleanup::handle(&mocks.env(), event).await.unwrap();
        assert!(report.terminated.is_empty());
        assert!(rec.terminated.lock().unwrap().is_empty());
        assert_eq!(deleted_keys(&rec), ["tmp/demo/run-1/config.yaml"]);
    }

    #[tokio::test]
    async fn a_succeeded_execution_needs_nothing() {
        let event = json!({"detail-type": "Step Functions Execution Status Change",
                           "detail": {"executionArn": "arn:x", "status": "SUCCEEDED"}});
        let report = cleanup::handle(&Mocks::default().env(), event)
            .await
            .unwrap();
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
        let (terminated, record_terminate) = recorder::<TerminateInstancesInput>();
        let all = vec![old, live, orphan];
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
        let report = cleanup::handle(&mocks.env(), json!({"action": "sweep"}))
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
        assert_eq!(report.action, "sweep");
    }

    #[tokio::test]
    async fn unknown_shapes_are_invalid_input() {
        for input in [
            json!({"action": "explode"}),
            json!({"detail-type": "EC2 Instance State-change Notification"}),
            json!(42),
        ] {
            let err = cleanup::handle(&Mocks::default().env(), input)
                .await
                .unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
        }
    }
}
