//! What an SSM command invocation's status means for the run.
//!
//! `Status` alone is not enough: `Delayed` and `Cancelling` are not terminal, `StatusDetails`
//! tells a delivery time-out from an execution time-out, and `ResponseCode` -1 means the
//! script never ran or the agent was lost.

/// The verdict on one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not finished: poll again.
    Running,
    /// Finished with exit code 0.
    Succeeded,
    /// Finished without success; check the instance first (a reclaim looks like a delivery
    /// time-out or a lost agent), then report the step as failed.
    Failed(Failure),
}

/// Why an invocation did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The script ran and exited non-zero.
    ExitCode,
    /// The script ran past the step's `executionTimeout` and was stopped.
    ExecutionTimedOut,
    /// The command was never delivered within its delivery time-out.
    DeliveryTimedOut,
    /// The script never ran, or the agent was lost while it ran (response code -1).
    AgentLost,
    /// Someone cancelled the command.
    Cancelled,
    /// SSM could not deliver the command (instance gone, wrong platform, no rights).
    Undeliverable,
    /// A status spotstep does not know.
    Unknown,
}

impl Failure {
    /// What to tell the operator about this kind of failure.
    pub fn hint(self) -> &'static str {
        match self {
            Failure::ExitCode => "the step's script exited non-zero; read its output below",
            Failure::ExecutionTimedOut => {
                "the step ran longer than its timeout_seconds and was stopped; raise the timeout in the job manifest if the work is legitimately longer"
            }
            Failure::DeliveryTimedOut => {
                "the command never reached the instance's SSM agent (agent stopped or instance unreachable)"
            }
            Failure::AgentLost => "the script never ran or the SSM agent was lost while it ran",
            Failure::Cancelled => "the command was cancelled (by an operator or by cleanup)",
            Failure::Undeliverable => "SSM could not deliver the command to the instance",
            Failure::Unknown => "SSM reported a status spotstep does not know",
        }
    }
}

/// Classifies `Status`, `StatusDetails` and `ResponseCode` of a `GetCommandInvocation`.
pub fn classify(status: &str, details: &str, response_code: i32) -> Verdict {
    match status {
        "Pending" | "InProgress" | "Delayed" | "Cancelling" => Verdict::Running,
        "Success" => Verdict::Succeeded,
        "Failed" if response_code == -1 => Verdict::Failed(Failure::AgentLost),
        "Failed" => Verdict::Failed(match unspaced(details).as_str() {
            "Undeliverable" | "InvalidPlatform" | "AccessDenied" | "Terminated" => {
                Failure::Undeliverable
            }
            _ => Failure::ExitCode,
        }),
        "TimedOut" => Verdict::Failed(match unspaced(details).as_str() {
            "DeliveryTimedOut" => Failure::DeliveryTimedOut,
            "ExecutionTimedOut" => Failure::ExecutionTimedOut,
            _ if response_code == -1 => Failure::AgentLost,
            _ => Failure::ExecutionTimedOut,
        }),
        "Cancelled" => Verdict::Failed(Failure::Cancelled),
        _ => Verdict::Failed(Failure::Unknown),
    }
}

/// `StatusDetails` without spaces: `GetCommandInvocation` documents `Delivery Timed Out`,
/// other SSM references (and events) spell `DeliveryTimedOut`; both mean the same.
fn unspaced(details: &str) -> String {
    details.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The last `n` lines of `text` (all of it when shorter).
pub fn tail_lines(text: &str, n: usize) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let start = trimmed
        .char_indices()
        .rev()
        .filter(|&(_, c)| c == '\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if n == 0 {
        String::new()
    } else {
        trimmed[start..].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_detail() {
        use Failure::*;
        let table: [(&str, &str, i32, Verdict); 16] = [
            ("Pending", "Pending", -1, Verdict::Running),
            ("InProgress", "InProgress", -1, Verdict::Running),
            ("Delayed", "Delayed", -1, Verdict::Running),
            ("Cancelling", "Cancelling", -1, Verdict::Running),
            ("Success", "Success", 0, Verdict::Succeeded),
            ("Failed", "Failed", 3, Verdict::Failed(ExitCode)),
            ("Failed", "Failed", -1, Verdict::Failed(AgentLost)),
            ("Failed", "Undeliverable", 0, Verdict::Failed(Undeliverable)),
            (
                "Failed",
                "Invalid Platform",
                0,
                Verdict::Failed(Undeliverable),
            ),
            ("Failed", "Access Denied", 0, Verdict::Failed(Undeliverable)),
            ("Failed", "Terminated", 0, Verdict::Failed(Undeliverable)),
            (
                "TimedOut",
                "Delivery Timed Out",
                -1,
                Verdict::Failed(DeliveryTimedOut),
            ),
            (
                "TimedOut",
                "Execution Timed Out",
                124,
                Verdict::Failed(ExecutionTimedOut),
            ),
            (
                "TimedOut",
                "Execution Timed Out",
                -1,
                Verdict::Failed(ExecutionTimedOut),
            ),
            ("Cancelled", "Cancelled", -1, Verdict::Failed(Cancelled)),
            ("Exploded", "", 0, Verdict::Failed(Unknown)),
        ];
        for (status, details, code, verdict) in table {
            assert_eq!(
                classify(status, details, code),
                verdict,
                "{status}/{details}/{code}"
            );
        }
    }

    #[test]
    fn status_details_match_with_and_without_spaces() {
        use Failure::*;
        let table = [
            ("Delivery Timed Out", -1, DeliveryTimedOut),
            ("DeliveryTimedOut", -1, DeliveryTimedOut),
            ("Execution Timed Out", -1, ExecutionTimedOut),
            ("ExecutionTimedOut", -1, ExecutionTimedOut),
            ("Execution Timed Out", 124, ExecutionTimedOut),
            ("ExecutionTimedOut", 124, ExecutionTimedOut),
        ];
        for (details, code, failure) in table {
            assert_eq!(
                classify("TimedOut", details, code),
                Verdict::Failed(failure),
                "{details}/{code}"
            );
        }
        for details in [
            "Invalid Platform",
            "InvalidPlatform",
            "Access Denied",
            "AccessDenied",
        ] {
            assert_eq!(
                classify("Failed", details, 0),
                Verdict::Failed(Undeliverable),
                "{details}"
            );
        }
    }

    #[test]
    fn every_failure_has_a_hint() {
        for f in [
            Failure::ExitCode,
            Failure::ExecutionTimedOut,
            Failure::DeliveryTimedOut,
            Failure::AgentLost,
            Failure::Cancelled,
            Failure::Undeliverable,
            Failure::Unknown,
        ] {
            assert!(!f.hint().is_empty());
        }
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail_lines("", 3), "");
        assert_eq!(tail_lines("x\n", 0), "");
        let big: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let t = tail_lines(&big, 40);
        assert!(t.starts_with("line 61\n") && t.ends_with("line 100"));
        assert_eq!(t.lines().count(), 40);
    }
}
