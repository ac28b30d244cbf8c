//! The Step Functions calls: a state machine's running executions, an execution's status.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;

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

/// An execution's status and redrive count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`, ...
    pub status: String,
    /// How many times it was redriven (`redriveCount`): the current round.
    pub redrive_count: u32,
}

impl Described {
    pub fn running(&self) -> bool {
        self.status == ExecutionStatus::Running.as_str()
    }
}

/// The execution's status now, or `None` when Step Functions does not know it.
pub async fn describe(sfn: &Client, execution: &str) -> Result<Option<Described>> {
    match sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
    {
        Ok(out) => Ok(Some(Described {
            status: out.status().as_str().to_string(),
            redrive_count: out.redrive_count().unwrap_or(0).max(0) as u32,
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("DescribeExecution {execution}"),
            &e,
        )),
    }
}
