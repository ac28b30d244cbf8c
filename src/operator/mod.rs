//! What `spotstep`'s commands do, one module per command with its clap options next to it
//! (the command line itself is [`cli`](crate::cli)): the operator's commands, each one a
//! function over the AWS clients it reads (Step Functions; S3, SSM and CloudWatch Logs for
//! `logs`) and an output, so tests run them against mocked clients; the developer's
//! generators over the job folders; the shell completions.
//!
//! Here: what the AWS commands share, the clients and finding a state machine or an
//! execution.

pub mod asl;
pub mod completions;
pub mod contract;
pub mod cost;
pub mod follow;
pub mod graph;
pub mod logs;
pub mod redrive;
pub mod run;
pub mod runs;
pub mod shards;
pub mod watch;

pub use graph::graph;

use std::io::IsTerminal;
use std::time::Duration;

use aws_sdk_sfn::Client as Sfn;

use crate::aws::sfn;
use crate::cli::{exit, Target};
use crate::env::Env;
use crate::naming::check_run_id;

/// Why a command did nothing (or stopped): the message to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// A failure with [`exit::ERROR`].
    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::ERROR,
        }
    }

    /// A failure with [`exit::FAILED`]: the error of a generator (`asl`, `asl-all`,
    /// `contract`, `graph`).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::FAILED,
        }
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Failure {
        let text = e.to_string();
        let hint = if text.contains("credentials") {
            " (no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        } else {
            ""
        };
        Failure::error(format!("{text}{hint}"))
    }
}

fn io(e: std::io::Error) -> Failure {
    Failure::error(format!("cannot write the output: {e}"))
}

/// The operator's AWS configuration: the default credential and region chains, and the
/// SDK's default HTTPS client with the system's root store.
pub async fn config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::aws::https::system_roots_client())
        .load()
        .await
}

/// Checks that the default credential chain yields credentials, before any request: a
/// clear error instead of a dispatch failure.
pub async fn credentials(config: &aws_config::SdkConfig) -> Result<(), Failure> {
    use aws_sdk_sfn::config::ProvideCredentials;
    let Some(provider) = config.credentials_provider() else {
        return Err(Failure::error("no AWS credential provider is configured"));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| {
            Failure::error(format!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
             or run where a role is available ({})",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        ))
        })
}

/// What the AWS commands run against: the clients and clock, and how `watch` polls.
pub struct Aws {
    pub env: Env,
    pub how: watch::Watching,
}

impl Aws {
    /// Loads the configuration (the default chains, the system's root store), checks that
    /// there are credentials ([`credentials`]), then builds the clients from it; `watch`
    /// polls every 2 s and rewrites its running line in place when stdout is a terminal.
    pub async fn connect() -> Result<Aws, Failure> {
        let config = config().await;
        credentials(&config).await?;
        let env = Env::from_config(config)
            .await
            .map_err(|e| Failure::error(e.to_string()))?;
        Ok(Aws {
            env,
            how: watch::Watching {
                interval: Duration::from_secs(2),
                tty: std::io::stdout().is_terminal(),
            },
        })
    }
}

/// The console page of an execution (the region is the ARN's).
pub fn console_link(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    )
}

/// The ARN of `job`'s state machine: `--state-machine`, else the one named
/// `<stack>-<job>` (ListStateMachines).
pub async fn state_machine(client: &Sfn, target: &Target, job: &str) -> Result<String, Failure> {
    if let Some(arn) = &target.state_machine {
        return Ok(arn.clone());
    }
    let name = target.machine_name(job);
    let machines = sfn::state_machines(client).await?;
    machines
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.arn.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
            Failure::error(format!(
                "job `{job}` has no state machine `{name}` here (state machines: {}); deploy the stack, or pass --stack or --state-machine",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
}

/// The execution `reference` names: an execution ARN, or `<job>/<run-id>`.
pub async fn execution(
    client: &Sfn,
    target: &Target,
    reference: &str,
) -> Result<sfn::Execution, Failure> {
    let arn = if reference.starts_with("arn:") {
        reference.to_string()
    } else {
        let (job, run_id) = reference.split_once('/').ok_or_else(|| {
            Failure::error(format!(
                "`{reference}` is neither an execution ARN nor <job>/<run-id>"
            ))
        })?;
        check_run_id(run_id).map_err(Failure::error)?;
        let machine = state_machine(client, target, job).await?;
        format!(
            "{}:{run_id}",
            machine.replacen(":stateMachine:", ":execution:", 1)
        )
    };
    sfn::execution(client, &arn)
        .await?
        .ok_or_else(|| Failure::error(format!("no execution {arn}")))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::handlers::tests::{recorder, Mocks};
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::list_state_machines::ListStateMachinesOutput;
    use aws_sdk_sfn::types::{ExecutionStatus, StateMachineListItem, StateMachineType};
    use aws_smithy_mocks::mock;
    use aws_smithy_types::DateTime;

    pub const MACHINE: &str = "arn:aws:states:eu-west-1:123:stateMachine:spotstep-demo";
    pub const EXECUTION: &str = "arn:aws:states:eu-west-1:123:execution:spotstep-demo:r1";

    pub fn target() -> Target {
        Target {
            stack: "spotstep".into(),
            state_machine: None,
        }
    }

    pub fn machines() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_sfn::Client::list_state_machines).then_output(|| {
            let item = |name: &str| {
                StateMachineListItem::builder()
                    .name(name)
                    .state_machine_arn(format!("arn:aws:states:eu-west-1:123:stateMachine:{name}"))
                    .r#type(StateMachineType::Standard)
                    .creation_date(DateTime::from_secs(0))
                    .build()
                    .unwrap()
            };
            ListStateMachinesOutput::builder()
                .state_machines(item("spotstep-data-weekly"))
                .state_machines(item("spotstep-demo"))
                .build()
                .unwrap()
        })
    }

    #[test]
    fn console_links() {
        assert_eq!(
            console_link(EXECUTION),
            format!("https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{EXECUTION}")
        );
    }

    #[tokio::test]
    async fn an_execution_by_job_and_run_id_and_an_unknown_one() {
        let (seen, record) = recorder();
        let env = Mocks {
            sfn: vec![
                machines(),
                mock!(aws_sdk_sfn::Client::describe_execution)
                    .match_requests(|r| r.execution_arn() == Some(EXECUTION))
                    .then_output(|| {
                        DescribeExecutionOutput::builder()
                            .execution_arn(EXECUTION)
                            .state_machine_arn(MACHINE)
                            .name("r1")
                            .status(ExecutionStatus::Failed)
                            .start_date(DateTime::from_secs(100))
                            .build()
                            .unwrap()
                    }),
                mock!(aws_sdk_sfn::Client::describe_execution)
                    .match_requests(record)
                    .then_error(|| {
                        aws_sdk_sfn::operation::describe_execution::DescribeExecutionError::ExecutionDoesNotExist(
                            aws_sdk_sfn::types::error::ExecutionDoesNotExist::builder().build(),
                        )
                    }),
            ],
            ..Mocks::default()
        }
        .env();
        let e = execution(env.sfn().await, &target(), "demo/r1")
            .await
            .unwrap();
        assert_eq!((e.arn.as_str(), e.status.as_str()), (EXECUTION, "FAILED"));
        let f = execution(env.sfn().await, &target(), "demo/r2")
            .await
            .unwrap_err();
        assert_eq!(
            f.message,
            "no execution arn:aws:states:eu-west-1:123:execution:spotstep-demo:r2"
        );
        let asked: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(
                |r: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionInput| {
                    r.execution_arn().unwrap_or_default().to_string()
                },
            )
            .collect();
        assert_eq!(
            asked,
            ["arn:aws:states:eu-west-1:123:execution:spotstep-demo:r2"]
        );
        let f = execution(env.sfn().await, &target(), "demo/../x")
            .await
            .unwrap_err();
        assert!(f.message.contains("is unsafe"), "{}", f.message);
        let f = execution(env.sfn().await, &target(), "r1")
            .await
            .unwrap_err();
        assert!(f
            .message
            .contains("neither an execution ARN nor <job>/<run-id>"));
    }
}
