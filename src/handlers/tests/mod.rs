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

use crate::env::{Clients, Clock, Env, Settings};
use crate::records::fixtures;

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
pub(crate) struct Mocks {
    pub ec2: Vec<Rule>,
    pub s3: Vec<Rule>,
    pub ssm: Vec<Rule>,
    pub sfn: Vec<Rule>,
    pub sns: Vec<Rule>,
}

const NOW: i64 = 1_795_856_400; // 2026-11-28T09:00:00Z

fn settings() -> Settings {
    Settings {
        bucket: "spotstep-bucket".into(),
        region: "us-east-1".into(),
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        launch_template: "lt-1".into(),
        instance_profile: "spotstep-instance".into(),
        image_id: "ami-123".into(),
        log_group: "/spotstep/steps".into(),
        stack: "spotstep-test".into(),
        topic: String::new(),
        registration_grace_seconds: 300,
        sweep_grace_seconds: 1800,
    }
}

impl Mocks {
    pub fn env(&self) -> Env {
        let clients = Clients::built(
            client!(aws_sdk_ec2, self.ec2),
            client!(aws_sdk_s3, self.s3),
            client!(aws_sdk_ssm, self.ssm),
            client!(aws_sdk_sfn, self.sfn),
            client!(aws_sdk_sns, self.sns),
        );
        let mut env = Env::new(clients, settings());
        env.clock = Clock::Fixed(OffsetDateTime::from_unix_timestamp(NOW).unwrap());
        env
    }
}

/// Records the inputs a mock rule saw.
pub(crate) fn recorder<T: Clone + Send + 'static>() -> (
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

pub(crate) fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (mocked)"))
        .build()
}

/// The stack tag every instance of the test deployment carries.
const STACK: (&str, &str) = ("spotstep:stack", "spotstep-test");

fn stack_tag() -> Tag {
    Tag::builder().key(STACK.0).value(STACK.1).build()
}

/// An instance of this stack with `tags`.
fn instance(id: &str, state: InstanceStateName, tags: &[(&str, &str)]) -> Instance {
    foreign_instance(id, state, &[tags, &[STACK]].concat())
}

/// An instance with exactly `tags` (no stack tag unless given).
fn foreign_instance(id: &str, state: InstanceStateName, tags: &[(&str, &str)]) -> Instance {
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

/// DescribeExecution answers `status` with `redrive_count`.
fn execution_is(status: aws_sdk_sfn::types::ExecutionStatus, redrive_count: i32) -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution).then_output(move || {
        aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput::builder()
            .execution_arn(fixtures::run().execution)
            .state_machine_arn("arn:sm")
            .status(status.clone())
            .redrive_count(redrive_count)
            .start_date(DateTime::from_secs(NOW - 100))
            .build()
            .unwrap()
    })
}

/// SendTaskSuccess taking every answer; the requests it saw.
fn task_successes() -> (
    Arc<Mutex<Vec<aws_sdk_sfn::operation::send_task_success::SendTaskSuccessInput>>>,
    Rule,
) {
    use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessInput, SendTaskSuccessOutput};
    let (seen, record) = recorder::<SendTaskSuccessInput>();
    let rule = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(record)
        .then_output(|| SendTaskSuccessOutput::builder().build());
    (seen, rule)
}

/// SendTaskFailure taking every answer; the requests it saw.
fn task_failures() -> (
    Arc<Mutex<Vec<aws_sdk_sfn::operation::send_task_failure::SendTaskFailureInput>>>,
    Rule,
) {
    use aws_sdk_sfn::operation::send_task_failure::{SendTaskFailureInput, SendTaskFailureOutput};
    let (seen, record) = recorder::<SendTaskFailureInput>();
    let rule = mock!(aws_sdk_sfn::Client::send_task_failure)
        .match_requests(record)
        .then_output(|| SendTaskFailureOutput::builder().build());
    (seen, rule)
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

mod cleanup;
mod fanout;
mod launch;
mod poll_result;
mod send_step;
mod wait_online;
