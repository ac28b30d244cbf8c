//! The intervals of a state machine: retry schedules, waits and their bounds, production's
//! and the emulator's.

use crate::checkpoint::CheckpointTiming;
use crate::manifest::{JobSpec, StepSpec};

/// Slack past the delivery margin and the step timeout before a waiting state times out, so
/// that SSM's `executionTimeout` always ends the command first (production).
pub const WAIT_SLACK_SECONDS: u64 = 120;

/// How long the fallback poll (after a waiting state timed out) retries `StillRunning`.
pub const FALLBACK_POLL_SECONDS: u64 = 300;

/// The largest `MaxAttempts` Step Functions accepts.
pub const MAX_ATTEMPTS_LIMIT: u64 = 99_999_999;

/// The `MaxAttempts` of a sent step's "agent not registered yet" retry.
pub const SEND_AGENT_ATTEMPTS: u64 = 6;

/// An exponential retry schedule: `IntervalSeconds * BackoffRate^k`, capped at
/// `MaxDelaySeconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub interval_seconds: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: u64,
}

impl Backoff {
    /// The delay before retry `k` (0-based), rounded down to whole seconds: rounding down
    /// can only make [`poll_attempts`] ask for more attempts, never fewer.
    pub fn delay(&self, k: u64) -> u64 {
        let exponent = i32::try_from(k).unwrap_or(i32::MAX);
        let delay = self.interval_seconds as f64 * self.backoff_rate.powi(exponent);
        (delay.floor() as u64).min(self.max_delay_seconds)
    }

    /// The smallest `MaxAttempts` whose retry delays add up to at least `seconds`.
    pub fn attempts_covering(&self, seconds: u64) -> u64 {
        let mut attempts = 0;
        let mut covered = 0;
        while covered < seconds && attempts < MAX_ATTEMPTS_LIMIT {
            covered += self.delay(attempts);
            attempts += 1;
        }
        attempts.max(1)
    }
}

/// How long `Launch` keeps retrying `NoCapacity` before the execution fails (production);
/// the execution timeout includes it, so waiting for capacity never eats into the run's own
/// time.
pub const CAPACITY_WAIT_SECONDS: u64 = 3600;

/// The intervals of a job's state machine: production, or fast ones for the emulator.
/// Both give the same states and transitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// `Wait for agent`: `AgentNotOnline` retried every this many seconds...
    pub agent_interval_seconds: u64,
    /// ...this many times.
    pub agent_max_attempts: u64,
    /// `<step>: poll` (the fallback after a wait timed out): the `StillRunning` schedule.
    pub poll: Backoff,
    /// `Launch`: the `NoCapacity` schedule (no pool had spot capacity: wait and ask again)...
    pub capacity: Backoff,
    /// ...covering this many seconds.
    pub capacity_wait_seconds: u64,
    /// `<step>: send`: how long past the delivery bound and the step timeout it waits for
    /// its token before the fallback poll.
    pub wait_slack_seconds: u64,
    /// `Relaunch: pause`: seconds between cleaning up a lost instance and launching anew.
    pub relaunch_pause_seconds: u64,
    /// The transient retry on every Task (with `JitterStrategy: FULL`).
    pub transient_interval_seconds: u64,
    pub transient_max_attempts: u64,
    pub transient_backoff_rate: f64,
    /// The checkpointed steps' upload interval, grace and notice poll.
    pub checkpoint: CheckpointTiming,
}

impl Timing {
    /// Production: about 3 minutes for the agent, polls from 10 s growing to 2 minutes.
    pub fn production() -> Timing {
        Timing {
            agent_interval_seconds: 10,
            agent_max_attempts: 18,
            poll: Backoff {
                interval_seconds: 10,
                backoff_rate: 1.5,
                max_delay_seconds: 120,
            },
            capacity: Backoff {
                interval_seconds: 60,
                backoff_rate: 2.0,
                max_delay_seconds: 600,
            },
            capacity_wait_seconds: CAPACITY_WAIT_SECONDS,
            wait_slack_seconds: WAIT_SLACK_SECONDS,
            relaunch_pause_seconds: 20,
            transient_interval_seconds: 2,
            transient_max_attempts: 6,
            transient_backoff_rate: 2.0,
            checkpoint: CheckpointTiming::PRODUCTION,
        }
    }

    /// The emulator: second-scale intervals, same shape.
    pub fn local() -> Timing {
        Timing {
            agent_interval_seconds: 1,
            agent_max_attempts: 10,
            poll: Backoff {
                interval_seconds: 1,
                backoff_rate: 1.5,
                max_delay_seconds: 2,
            },
            capacity: Backoff {
                interval_seconds: 1,
                backoff_rate: 1.0,
                max_delay_seconds: 1,
            },
            capacity_wait_seconds: 2,
            wait_slack_seconds: 5,
            relaunch_pause_seconds: 1,
            transient_interval_seconds: 1,
            checkpoint: CheckpointTiming::LOCAL,
            ..Timing::production()
        }
    }
}

/// The step as this timing sends it: its checkpoint's intervals are the timing's.
pub fn timed_step(step: &StepSpec, timing: &Timing) -> StepSpec {
    StepSpec {
        checkpoint: step.checkpoint.as_ref().map(|c| timing.checkpoint.apply(c)),
        ..step.clone()
    }
}

/// The `TimeoutSeconds` of a step's waiting state: the job's delivery timeout (the same value
/// send-step gives SendCommand), the step's `executionTimeout`, and the timing's slack.
pub fn wait_seconds(job: &JobSpec, step: &StepSpec, timing: &Timing) -> u64 {
    job.delivery_timeout_seconds + step.timeout_seconds + timing.wait_slack_seconds
}

/// The smallest `MaxAttempts` whose retry delays add up to at least `seconds` under the
/// poll schedule of `timing`.
pub fn poll_attempts(seconds: u64, timing: &Timing) -> u64 {
    timing.poll.attempts_covering(seconds)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::StepKind;

    /// The seconds the first `attempts` retries wait.
    fn covered(poll: &Backoff, attempts: u64) -> u64 {
        (0..attempts).map(|k| poll.delay(k)).sum()
    }

    #[test]
    fn backoff_delays_are_capped_and_rounded_down() {
        let poll = Timing::production().poll;
        let delays: Vec<u64> = (0..9).map(|k| poll.delay(k)).collect();
        assert_eq!(delays, [10, 15, 22, 33, 50, 75, 113, 120, 120]);
        assert_eq!(covered(&poll, 3), 47);
        assert_eq!(covered(&poll, 0), 0);
    }

    #[test]
    fn poll_attempts_is_the_smallest_count_covering_the_seconds() {
        let production = Timing::production();
        assert_eq!(poll_attempts(10, &production), 1);
        assert_eq!(poll_attempts(11, &production), 2);
        assert_eq!(poll_attempts(25, &production), 2);
        assert_eq!(poll_attempts(26, &production), 3);
        assert_eq!(poll_attempts(0, &production), 1);
        for seconds in [30, 420, 1_000, 5_820, 7_620, 173_220] {
            let n = poll_attempts(seconds, &production);
            assert!(covered(&production.poll, n) >= seconds, "{seconds}");
            assert!(covered(&production.poll, n - 1) < seconds, "{seconds}");
        }
        let local = Timing::local();
        assert_eq!(local.poll.delay(0), 1);
        assert_eq!(local.poll.delay(1), 1);
        assert_eq!(local.poll.delay(2), 2);
        assert_eq!(poll_attempts(480, &local), 241);
    }

    #[test]
    fn a_ninety_minute_step_waits_its_timeout_plus_margins_then_polls_briefly() {
        let step = StepSpec {
            name: "long".into(),
            kind: StepKind::Workload,
            timeout_seconds: 5400,
            heartbeats: vec![],
            secrets: BTreeMap::new(),
            script: String::new(),
            checkpoint: None,
            fan_out: None,
        };
        let job = crate::records::fixtures::job();
        assert_eq!(wait_seconds(&job, &step, &Timing::production()), 5820);
        assert_eq!(wait_seconds(&job, &step, &Timing::local()), 5705);
        assert_eq!(
            poll_attempts(FALLBACK_POLL_SECONDS, &Timing::production()),
            7
        );
    }
}
