//! The errors every spotstep function can end with.
//!
//! Each variant maps to one stable `error_type` name (see [`Error::name`]): the state
//! machine's `Retry` and `Catch` clauses match on these names, and the README's error table
//! documents them. The message says what happened and what to do.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

/// Everything a spotstep function can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: unknown job or mode, unsafe run id, wrong field type.
    #[error("{0}")]
    InvalidInput(String),
    /// Another execution of the same job is running.
    #[error("{0}")]
    ConcurrentRun(String),
    /// The job's config source does not exist.
    #[error("{0}")]
    ConfigMissing(String),
    /// Every instance type x subnet pool answered with a capacity error.
    #[error("{0}")]
    NoCapacity(String),
    /// EC2 refused the launch for a reason other than capacity (quota, parameters, rights).
    #[error("{0}")]
    LaunchRejected(String),
    /// The run used up its launches in this round (initial launch plus relaunches).
    #[error("{0}")]
    RelaunchLimit(String),
    /// The instance is running but its SSM agent is not online yet (retryable).
    #[error("{0}")]
    AgentNotOnline(String),
    /// The instance is gone, and not because of a spot reclaim.
    #[error("{0}")]
    InstanceLost(String),
    /// The instance was reclaimed by EC2 spot.
    #[error("{0}")]
    InstanceReclaimed(String),
    /// The step's command has not finished yet (retryable; the state machine polls with it).
    #[error("{0}")]
    StillRunning(String),
    /// The step's command ended without success.
    #[error("{0}")]
    StepFailed(String),
    /// A fan-out step ended with more failed shards than its `max_failed_shards`.
    #[error("{0}")]
    ShardsFailed(String),
    /// An AWS API throttled the call (retryable).
    #[error("{0}")]
    Throttled(String),
    /// A deployment setting (environment variable) is missing or malformed.
    #[error("{0}")]
    Misconfigured(String),
    /// An AWS call failed for a reason spotstep does not classify further.
    #[error("{0}")]
    AwsError(String),
}

impl Error {
    /// Every stable error name, in the order of the README's table.
    pub const NAMES: [&'static str; 15] = [
        "InvalidInput",
        "ConcurrentRun",
        "ConfigMissing",
        "NoCapacity",
        "LaunchRejected",
        "RelaunchLimit",
        "AgentNotOnline",
        "InstanceLost",
        "InstanceReclaimed",
        "StillRunning",
        "StepFailed",
        "ShardsFailed",
        "Throttled",
        "Misconfigured",
        "AwsError",
    ];

    /// The stable `error_type` the state machine matches on.
    pub fn name(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::ConcurrentRun(_) => "ConcurrentRun",
            Error::ConfigMissing(_) => "ConfigMissing",
            Error::NoCapacity(_) => "NoCapacity",
            Error::LaunchRejected(_) => "LaunchRejected",
            Error::RelaunchLimit(_) => "RelaunchLimit",
            Error::AgentNotOnline(_) => "AgentNotOnline",
            Error::InstanceLost(_) => "InstanceLost",
            Error::InstanceReclaimed(_) => "InstanceReclaimed",
            Error::StillRunning(_) => "StillRunning",
            Error::StepFailed(_) => "StepFailed",
            Error::ShardsFailed(_) => "ShardsFailed",
            Error::Throttled(_) => "Throttled",
            Error::Misconfigured(_) => "Misconfigured",
            Error::AwsError(_) => "AwsError",
        }
    }

    /// Classifies a failed AWS SDK call: throttling is retryable, the rest is `AwsError`.
    /// `what` names the call and its target for the message.
    pub fn from_sdk<E, R>(
        what: &str,
        err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().unwrap_or("");
        let detail = match err.message() {
            Some(message) => format!("{code}: {message}"),
            None => format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
        };
        if is_throttling(code) {
            Error::Throttled(format!(
                "{what} was throttled ({detail}); the state machine retries it"
            ))
        } else {
            Error::AwsError(format!("{what} failed: {detail}"))
        }
    }
}

/// Error codes AWS uses for throttling across EC2, SSM, S3 and Step Functions.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
    )
}

impl From<Error> for Diagnostic {
    fn from(err: Error) -> Diagnostic {
        Diagnostic {
            error_type: err.name().to_string(),
            error_message: err.to_string(),
        }
    }
}

/// Shorthand for results of spotstep operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Error> {
        let m = String::new;
        vec![
            Error::InvalidInput(m()),
            Error::ConcurrentRun(m()),
            Error::ConfigMissing(m()),
            Error::NoCapacity(m()),
            Error::LaunchRejected(m()),
            Error::RelaunchLimit(m()),
            Error::AgentNotOnline(m()),
            Error::InstanceLost(m()),
            Error::InstanceReclaimed(m()),
            Error::StillRunning(m()),
            Error::StepFailed(m()),
            Error::ShardsFailed(m()),
            Error::Throttled(m()),
            Error::Misconfigured(m()),
            Error::AwsError(m()),
        ]
    }

    #[test]
    fn every_variant_has_its_listed_name() {
        let names: Vec<&str> = all().iter().map(Error::name).collect();
        assert_eq!(names, Error::NAMES);
    }

    #[test]
    fn diagnostic_carries_stable_name_and_message() {
        let d = Diagnostic::from(Error::StepFailed("step deps failed".into()));
        assert_eq!(d.error_type, "StepFailed");
        assert_eq!(d.error_message, "step deps failed");
    }

    #[test]
    fn throttling_codes_are_recognised() {
        assert!(is_throttling("RequestLimitExceeded"));
        assert!(is_throttling("ThrottlingException"));
        assert!(!is_throttling("InvalidInstanceId"));
    }

    #[test]
    fn readme_documents_every_error_name() {
        let readme = include_str!("../README.md");
        for name in Error::NAMES {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "README.md error table lacks {name}"
            );
        }
    }
}
