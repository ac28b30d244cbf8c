//! The Step Functions calls: a state machine's running executions, an execution's status.

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::error::{Error, Result};

/// A running execution, as far as the concurrency check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub arn: String,
    pub name: String,
    /// Start time, nanoseconds since the epoch.
    pub started_nanos: i128,
}

/// The executions of `state_machine` that are running now.
pub async fn running_executions(sfn: &Client, state_machine: &str) -> Result<Vec<Running>> {
    let out = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .status_filter(ExecutionStatus::Running)
        .send()
        .await
        .map_err(|e| Error::from_sdk("ListExecutions", &e))?;
    Ok(out
        .executions()
        .iter()
        .map(|e| Running {
            arn: e.execution_arn().to_string(),
            name: e.name().to_string(),
            started_nanos: e.start_date().as_nanos(),
        })
        .collect())
}

/// A state machine: its name and ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    pub name: String,
    pub arn: String,
}

/// Every state machine of the account and region (ListStateMachines, all pages).
pub async fn state_machines(sfn: &Client) -> Result<Vec<StateMachine>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = sfn
            .list_state_machines()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListStateMachines", &e))?;
        out.extend(page.state_machines().iter().map(|m| StateMachine {
            name: m.name().to_string(),
            arn: m.state_machine_arn().to_string(),
        }));
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(out),
        }
    }
}

/// Starts an execution of `state_machine` named `name` with `input` (JSON); returns its ARN.
/// A name already used by this state machine is `AwsError` naming `ExecutionAlreadyExists`.
pub async fn start(sfn: &Client, state_machine: &str, name: &str, input: &str) -> Result<String> {
    let out = sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .name(name)
        .input(input)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("StartExecution {name}"), &e))?;
    Ok(out.execution_arn().to_string())
}

/// An execution, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub arn: String,
    pub name: String,
    pub state_machine: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`, ...
    pub status: String,
    /// Epoch milliseconds.
    pub started_millis: i64,
    /// Epoch milliseconds; `None` while running.
    pub stopped_millis: Option<i64>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// How many times it was redriven (`redriveCount`): the current round.
    pub redrive_count: u32,
}

impl Execution {
    pub fn running(&self) -> bool {
        self.status == ExecutionStatus::Running.as_str()
    }
}

/// The execution `arn` now, or `None` when Step Functions does not know it.
pub async fn execution(sfn: &Client, arn: &str) -> Result<Option<Execution>> {
    match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => Ok(Some(Execution {
            arn: out.execution_arn().to_string(),
            name: out.name().unwrap_or_default().to_string(),
            state_machine: out.state_machine_arn().to_string(),
            status: out.status().as_str().to_string(),
            started_millis: out.start_date().to_millis().unwrap_or_default(),
            stopped_millis: out.stop_date().and_then(|d| d.to_millis().ok()),
            error: out.error().map(String::from),
            cause: out.cause().map(String::from),
            redrive_count: out.redrive_count().unwrap_or(0).max(0) as u32,
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk(&format!("DescribeExecution {arn}"), &e)),
    }
}

/// The most recent executions of `state_machine`, newest first, at most `max`.
pub async fn executions(sfn: &Client, state_machine: &str, max: usize) -> Result<Vec<Execution>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    while out.len() < max {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListExecutions", &e))?;
        out.extend(page.executions().iter().map(|e| Execution {
            arn: e.execution_arn().to_string(),
            name: e.name().to_string(),
            state_machine: e.state_machine_arn().to_string(),
            status: e.status().as_str().to_string(),
            started_millis: e.start_date().to_millis().unwrap_or_default(),
            stopped_millis: e.stop_date().and_then(|d| d.to_millis().ok()),
            error: None,
            cause: None,
            redrive_count: e.redrive_count().unwrap_or(0).max(0) as u32,
        }));
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.started_millis));
    out.truncate(max);
    Ok(out)
}

/// The state an execution was in when it ended (or is in): the last state its history
/// entered.
pub fn last_state_of(events: &[crate::progress::Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e.kind.ends_with("StateEntered"))
        .and_then(|e| e.state.clone())
}

/// The execution's history, oldest first (GetExecutionHistory, all pages), as
/// [`progress::Event`](crate::progress::Event)s.
pub async fn history(sfn: &Client, arn: &str) -> Result<Vec<crate::progress::Event>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(arn)
            .include_execution_data(true)
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk(&format!("GetExecutionHistory {arn}"), &e))?;
        out.extend(page.events().iter().map(event));
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(out),
        }
    }
}

fn event(e: &aws_sdk_sfn::types::HistoryEvent) -> crate::progress::Event {
    let pair = |error: Option<&str>, cause: Option<&str>| {
        (error.map(String::from), cause.map(String::from))
    };
    let failure = None
        .or(e
            .lambda_function_failed_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .lambda_function_timed_out_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .lambda_function_schedule_failed_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .lambda_function_start_failed_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .task_failed_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .task_timed_out_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .execution_failed_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .execution_timed_out_event_details()
            .map(|d| pair(d.error(), d.cause())))
        .or(e
            .execution_aborted_event_details()
            .map(|d| pair(d.error(), d.cause())));
    let (error, cause) = failure.unwrap_or_default();
    let exited = e.state_exited_event_details();
    let entered = e.state_entered_event_details();
    crate::progress::Event {
        kind: e.r#type().as_str().to_string(),
        at_millis: e.timestamp().to_millis().unwrap_or_default(),
        state: e
            .state_entered_event_details()
            .map(|d| d.name().to_string())
            .or(exited.map(|d| d.name().to_string())),
        output: exited
            .and_then(|d| d.output())
            .or(e.task_submitted_event_details().and_then(|d| d.output()))
            .map(String::from),
        input: entered.and_then(|d| d.input()).map(String::from),
        error,
        cause,
    }
}

/// Redrives a failed, timed out or aborted execution (RedriveExecution): its failed state
/// runs again. An endpoint that refuses it (an emulator without redrive, an execution that
/// cannot be redriven) is `AwsError` with its answer.
pub async fn redrive(sfn: &Client, arn: &str) -> Result<()> {
    sfn.redrive_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("RedriveExecution {arn}"), &e))?;
    Ok(())
}

/// What became of a task token's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The waiting state took it.
    Taken,
    /// The token was already answered or timed out (`TaskTimedOut`, `InvalidToken`,
    /// `TaskDoesNotExist`): an expected answer to a late or duplicated event.
    Stale(String),
}

/// Answers a waiting state: SendTaskSuccess with `output` (JSON), or SendTaskFailure with
/// `error` and `cause`.
pub async fn answer_task(
    sfn: &Client,
    token: &str,
    answer: &crate::waiting::Answer,
) -> Result<Delivered> {
    use crate::waiting::Answer;
    let sent = match answer {
        Answer::Success(output) => sfn
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| stale_or(e, "SendTaskSuccess")),
        Answer::Failure { error, cause } => sfn
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| stale_or(e, "SendTaskFailure")),
    };
    match sent {
        Ok(()) => Ok(Delivered::Taken),
        Err(Ok(code)) => Ok(Delivered::Stale(code)),
        Err(Err(e)) => Err(e),
    }
}

/// A SendTask* error: `Ok(code)` for a stale token, `Err` for anything else.
fn stale_or<E>(e: SdkError<E, HttpResponse>, what: &str) -> std::result::Result<String, Error>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e.code() {
        Some(code @ ("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist")) => Ok(code.to_string()),
        _ => Err(Error::from_sdk(what, &e)),
    }
}
