//! The records that travel through the state machine: the run, the launch, the command.
//!
//! The state machine builds [`Run`] from the execution's input (merged over the job's
//! defaults) and the context object; the functions check it when they parse their input
//! ([`crate::input`]) and return [`Launch`] and [`Command`] records that later states pass
//! back.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::input::Checked;
use crate::manifest::JobSpec;
use crate::naming;

/// One execution of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The job the caller asked for (must be this state machine's job).
    pub job: String,
    /// The execution name: restricted so it can name S3 prefixes.
    pub run_id: String,
    /// The execution ARN.
    pub execution: String,
    /// The execution's start time (RFC 3339).
    pub started_at: String,
    /// `YYYY-MM-DD` of the execution's start, stamped once for the whole run.
    pub run_date: String,
    pub mode: String,
    pub preflight: bool,
    pub branch: String,
    /// A pinned instance type, or empty to use the job's list.
    #[serde(default)]
    pub instance_type: String,
}

impl Run {
    /// Checks the run against its job: job name and mode, then [`Run::check`].
    pub fn validate(&self, job: &JobSpec) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidInput(m));
        if self.job != job.name {
            return invalid(format!(
                "unknown job `{}`: this state machine runs job `{}`; start the state machine of that job instead",
                self.job, job.name
            ));
        }
        naming::check_run_id(&self.run_id).map_err(Error::InvalidInput)?;
        if !job.modes.contains_key(&self.mode) {
            return invalid(format!(
                "unknown mode `{}` for job `{}`: use one of {}",
                self.mode,
                job.name,
                job.mode_names()
            ));
        }
        self.check()?;
        if !self.instance_type.is_empty() && !job.instance_types.contains(&self.instance_type) {
            return invalid(format!(
                "instance_type `{}` is not one of job `{}`'s instance_types ({}); pin one of them, \
                 or add it to the job manifest (and the template's allowed types)",
                self.instance_type,
                job.name,
                job.instance_types.join(", ")
            ));
        }
        Ok(())
    }

    /// Checks what the run says about itself, where no job spec travels with it: job name,
    /// run id (it names S3 prefixes), branch, pinned type, date.
    pub fn check(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidInput(m));
        naming::check_name(&self.job).map_err(|e| Error::InvalidInput(format!("job: {e}")))?;
        naming::check_run_id(&self.run_id).map_err(Error::InvalidInput)?;
        naming::check_branch(&self.branch)
            .map_err(|e| Error::InvalidInput(format!("branch: {e}")))?;
        if !self.instance_type.is_empty() {
            naming::check_instance_type(&self.instance_type)
                .map_err(|e| Error::InvalidInput(format!("instance_type: {e}")))?;
        }
        let date_ok = self.run_date.len() == 10
            && self.run_date.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if !date_ok {
            return invalid(format!("run_date `{}` is not YYYY-MM-DD", self.run_date));
        }
        Ok(())
    }

    /// The run's staging prefix.
    pub fn staging_prefix(&self) -> String {
        naming::staging_prefix(&self.job, &self.run_id)
    }
}

/// A run that travels without its job spec (cleanup's shapes) checks what it says about
/// itself.
impl Checked for Run {
    fn check(&self) -> Result<()> {
        Run::check(self)
    }
}

/// One capacity pool asked during a launch, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTried {
    pub instance_type: String,
    pub subnet_id: String,
    pub market: String,
    /// The error code, or empty where the pool launched the instance.
    pub error: String,
}

/// The instance a run is on, and how many launches the run has used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// Launches in the whole execution (also makes client tokens unique).
    pub attempt: u32,
    /// The redrive round (`$$.Execution.RedriveCount`) these launches belong to.
    pub round: u32,
    /// Launches in this round; bounded by the job's `max_attempts`.
    pub round_attempts: u32,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub instance_type: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default)]
    pub subnet_id: String,
    #[serde(default)]
    pub market: String,
    #[serde(default)]
    pub pools_tried: Vec<PoolTried>,
    /// When EC2 launched the instance (RFC 3339; empty when unknown).
    #[serde(default)]
    pub launched_at: String,
    /// Spot reclaims in the whole execution before this launch (apart from step retries and
    /// from `attempt`, which also counts a redrive's launch).
    #[serde(default)]
    pub reclaims: u32,
}

impl Launch {
    /// Seconds since the instance was launched, when the record knows.
    pub fn seconds_since_launch(&self, now: time::OffsetDateTime) -> Option<i64> {
        crate::env::parse_rfc3339(&self.launched_at).map(|t| (now - t).whole_seconds())
    }

    /// The reclaims before the launch after this one: one more than this launch's when that
    /// launch relaunches in the same round (only a spot reclaim relaunches by itself; any
    /// other loss fails the execution, and a redrive starts a new round).
    pub fn reclaims_before_next(&self, redrive_count: u32) -> u32 {
        if self.attempt == 0 || redrive_count > self.round {
            self.reclaims
        } else {
            self.reclaims + 1
        }
    }

    /// The counters (attempt, round, launches in the round) of the launch after this one,
    /// or `RelaunchLimit` when the round is used up.
    ///
    /// A redrive starts a new round (its count is higher than the previous launch's), so the
    /// operator's redrive always gets a fresh budget, while reclaims inside one round are bounded.
    pub fn next_attempt(&self, redrive_count: u32, max_attempts: u32) -> Result<(u32, u32, u32)> {
        let attempt = self.attempt + 1;
        let round_attempts = if redrive_count > self.round {
            1
        } else {
            self.round_attempts + 1
        };
        if round_attempts > max_attempts {
            return Err(Error::RelaunchLimit(format!(
                "the run has used its {max_attempts} launch(es) (the instance was lost each time); \
                 look at why the instances were lost (spot reclaims: try other instance types or on-demand fallback), \
                 then redrive the execution to try again"
            )));
        }
        Ok((attempt, redrive_count.max(self.round), round_attempts))
    }
}

/// A step's command, as send-step recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub command_id: String,
    pub step: String,
    pub instance_id: String,
    /// The redrive round the command was sent in.
    pub round: u32,
    /// When the command was sent (RFC 3339).
    pub sent_at: String,
    /// Where SSM writes the full output: `s3://bucket/logs/<job>/<run_id>/<step>`.
    pub output_prefix: String,
    /// True when a retried send found the command it had already sent.
    #[serde(default)]
    pub reused: bool,
    /// The checkpoint the step resumes from, when its runner will find one (a relaunch
    /// after a reclaim, a redrive after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::Restored>,
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::manifest::{JobSpec, ModeSpec};

    pub fn job() -> JobSpec {
        JobSpec {
            name: "demo".into(),
            instance_name_prefix: "spotstep-demo".into(),
            instance_types: vec!["t3.micro".into(), "t3.small".into()],
            root_volume_gb: 8,
            max_runtime_seconds: 1800,
            config_source: "s3://cfg-bucket/demo/config.yaml".into(),
            on_demand_fallback: false,
            max_attempts: 2,
            on_demand_after_reclaims: None,
            delivery_timeout_seconds: 300,
            home: "/tmp".into(),
            preflight_flag: "--preflight-only".into(),
            env: [("DEMO_GREETING".to_string(), "it's".to_string())].into(),
            modes: [
                (
                    "all".to_string(),
                    ModeSpec {
                        steps: vec!["quoting".into(), "slow".into()],
                    },
                ),
                (
                    "quick".to_string(),
                    ModeSpec {
                        steps: vec!["quoting".into()],
                    },
                ),
            ]
            .into(),
            workload_steps: vec!["quoting".into(), "slow".into()],
            fan_out_steps: Vec::new(),
        }
    }

    pub fn run() -> Run {
        Run {
            job: "demo".into(),
            run_id: "run-1".into(),
            execution: "arn:aws:states:us-east-1:123456789012:execution:spotstep-demo:run-1".into(),
            started_at: "2026-11-28T09:00:00Z".into(),
            run_date: "2026-11-28".into(),
            mode: "all".into(),
            preflight: false,
            branch: "main".into(),
            instance_type: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{job, run};
    use super::*;

    #[test]
    fn reclaims_count_relaunches_in_a_round_not_redrives() {
        let first = Launch::default();
        assert_eq!(first.reclaims_before_next(0), 0);
        let launched = Launch {
            attempt: 1,
            round: 0,
            round_attempts: 1,
            ..Launch::default()
        };
        assert_eq!(launched.reclaims_before_next(0), 1, "a relaunch in round 0");
        let relaunched = Launch {
            attempt: 2,
            reclaims: 1,
            ..launched.clone()
        };
        assert_eq!(relaunched.reclaims_before_next(0), 2);
        assert_eq!(relaunched.reclaims_before_next(1), 1, "a redrive's launch");
    }

    #[test]
    fn a_good_run_validates() {
        run().validate(&job()).unwrap();
        let pinned = Run {
            instance_type: "t3.small".into(),
            ..run()
        };
        pinned.validate(&job()).unwrap();
    }

    #[test]
    fn bad_runs_are_refused_with_the_reason() {
        type Change = Box<dyn Fn(&mut Run)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.job = "other".into()), "unknown job `other`"),
            (Box::new(|r| r.run_id = "../x".into()), "unsafe"),
            (
                Box::new(|r| r.mode = "nope".into()),
                "unknown mode `nope` for job `demo`: use one of all, quick",
            ),
            (Box::new(|r| r.branch = "$(reboot)".into()), "branch"),
            (
                Box::new(|r| r.instance_type = "huge".into()),
                "instance_type",
            ),
            (Box::new(|r| r.run_date = "28/11/2026".into()), "run_date"),
            (
                Box::new(|r| r.instance_type = "p5.48xlarge".into()),
                "instance_type `p5.48xlarge` is not one of job `demo`'s instance_types (t3.micro, t3.small)",
            ),
        ];
        for (change, expected) in cases {
            let mut r = run();
            change(&mut r);
            let err = r.validate(&job()).unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn launch_budget_per_round() {
        let first = Launch::default();
        assert_eq!(first.next_attempt(0, 2).unwrap(), (1, 0, 1));
        let after_one = Launch {
            attempt: 1,
            round: 0,
            round_attempts: 1,
            ..Launch::default()
        };
        assert_eq!(after_one.next_attempt(0, 2).unwrap(), (2, 0, 2));
        let after_two = Launch {
            attempt: 2,
            round: 0,
            round_attempts: 2,
            ..Launch::default()
        };
        assert_eq!(
            after_two.next_attempt(0, 2).unwrap_err().name(),
            "RelaunchLimit"
        );
        assert_eq!(after_two.next_attempt(1, 2).unwrap(), (3, 1, 1));
        assert_eq!(first.next_attempt(0, 1).unwrap(), (1, 0, 1));
        let one = Launch {
            attempt: 1,
            round: 0,
            round_attempts: 1,
            ..Launch::default()
        };
        assert_eq!(one.next_attempt(0, 1).unwrap_err().name(), "RelaunchLimit");
    }
}
