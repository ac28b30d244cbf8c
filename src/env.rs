//! What a function runs with: the AWS clients, the deployment settings and the clock.
//!
//! Settings are deployment values (account-specific), read from environment variables that
//! `template.yaml` sets; a job manifest never holds them.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use time::OffsetDateTime;

use crate::error::{Error, Result};

/// The deployment settings, from `SPOTSTEP_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `SPOTSTEP_BUCKET`: staging (`tmp/`), step output (`logs/`) and health logs (`health/`).
    pub bucket: String,
    /// `AWS_REGION`.
    pub region: String,
    /// `SPOTSTEP_SUBNETS`: comma-separated subnet ids, one per availability zone.
    pub subnets: Vec<String>,
    /// `SPOTSTEP_LAUNCH_TEMPLATE`: the stack's launch template id (security group, shutdown
    /// behaviour, metadata options, the watchdog) every fleet request names.
    pub launch_template: String,
    /// `SPOTSTEP_INSTANCE_PROFILE`: instance profile name or ARN for the instances.
    pub instance_profile: String,
    /// `SPOTSTEP_IMAGE_ID`: an AMI id, or `resolve:ssm:<public parameter>`.
    pub image_id: String,
    /// `SPOTSTEP_LOG_GROUP`: CloudWatch log group for step output (empty: S3 only).
    pub log_group: String,
    /// `SPOTSTEP_TOPIC`: the SNS topic cleanup tells of an execution that ended without
    /// success (empty: no notification).
    pub topic: String,
    /// `SPOTSTEP_STACK`: the deployment's stack name. Every instance is tagged with it, and
    /// cleanup and the sweep touch only instances that carry it (IAM is conditioned on it).
    pub stack: String,
    /// `SPOTSTEP_REGISTRATION_GRACE`: how long `InvocationDoesNotExist` after a send counts as
    /// "not registered yet", default 300.
    pub registration_grace_seconds: i64,
    /// `SPOTSTEP_SWEEP_GRACE`: how far past its max runtime the sweep lets an instance run,
    /// default 1800.
    pub sweep_grace_seconds: i64,
}

impl Settings {
    /// Reads the settings from a map of environment variables.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Settings> {
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let number = |k: &str, default: i64| -> Result<i64> {
            match vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Misconfigured(format!("{k}=`{v}` is not a positive number of seconds"))
                }),
            }
        };
        Ok(Settings {
            bucket: get("SPOTSTEP_BUCKET"),
            region: get("AWS_REGION"),
            subnets: get("SPOTSTEP_SUBNETS")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            launch_template: get("SPOTSTEP_LAUNCH_TEMPLATE"),
            instance_profile: get("SPOTSTEP_INSTANCE_PROFILE"),
            image_id: get("SPOTSTEP_IMAGE_ID"),
            log_group: get("SPOTSTEP_LOG_GROUP"),
            stack: get("SPOTSTEP_STACK"),
            topic: get("SPOTSTEP_TOPIC"),
            registration_grace_seconds: number("SPOTSTEP_REGISTRATION_GRACE", 300)?,
            sweep_grace_seconds: number("SPOTSTEP_SWEEP_GRACE", 1800)?,
        })
    }

    /// Checks that the settings a function needs are present.
    pub fn require(&self, needs: &[Need]) -> Result<()> {
        let missing: Vec<&str> = needs
            .iter()
            .filter(|n| match n {
                Need::Bucket => self.bucket.is_empty(),
                Need::Region => self.region.is_empty(),
                Need::Stack => self.stack.is_empty(),
                Need::Launch => {
                    self.subnets.is_empty()
                        || self.launch_template.is_empty()
                        || self.image_id.is_empty()
                }
            })
            .map(|n| n.vars())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Misconfigured(format!(
                "missing deployment setting(s): {} (set them as the function's environment; see template.yaml)",
                missing.join(", ")
            )))
        }
    }
}

/// A group of settings a function needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Bucket,
    Region,
    Stack,
    Launch,
}

impl Need {
    fn vars(self) -> &'static str {
        match self {
            Need::Bucket => "SPOTSTEP_BUCKET",
            Need::Region => "AWS_REGION",
            Need::Stack => "SPOTSTEP_STACK",
            Need::Launch => "SPOTSTEP_SUBNETS, SPOTSTEP_LAUNCH_TEMPLATE, SPOTSTEP_IMAGE_ID",
        }
    }
}

/// The clock: the system's, or a fixed instant in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    System,
    Fixed(OffsetDateTime),
}

impl Clock {
    pub fn now(self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Fixed(t) => t,
        }
    }

    /// Waits `seconds` on the system clock; a fixed clock (tests) does not wait.
    pub async fn pause(self, seconds: u64) {
        if self == Clock::System {
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
        }
    }
}

/// A client built on its first use, not before: a function's init then asks for work without
/// constructing the SDK clients, and an invocation builds only the clients it calls. (The TLS
/// root store is still read at init, by `aws_config::load_from_env`; see BENCHMARKS.md.)
/// Derefs to the client, so `env.ec2.describe_instances()` and `&env.ec2` as
/// `&aws_sdk_ec2::Client` work.
pub struct Lazy<C>(Arc<LazyLock<C, Box<dyn FnOnce() -> C + Send>>>);

impl<C> Lazy<C> {
    /// A client `make` builds on first use.
    pub fn new(make: impl FnOnce() -> C + Send + 'static) -> Lazy<C> {
        Lazy(Arc::new(LazyLock::new(Box::new(make))))
    }
}

impl<C: Send + 'static> From<C> for Lazy<C> {
    /// A client already built (tests).
    fn from(client: C) -> Lazy<C> {
        Lazy::new(move || client)
    }
}

impl<C> Deref for Lazy<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> Clone for Lazy<C> {
    fn clone(&self) -> Lazy<C> {
        Lazy(self.0.clone())
    }
}

impl<C> fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match LazyLock::get(&self.0) {
            Some(_) => f.write_str("Lazy(built)"),
            None => f.write_str("Lazy(not built yet)"),
        }
    }
}

/// Everything a handler works with.
#[derive(Debug, Clone)]
pub struct Env {
    pub ec2: Lazy<aws_sdk_ec2::Client>,
    pub s3: Lazy<aws_sdk_s3::Client>,
    pub ssm: Lazy<aws_sdk_ssm::Client>,
    pub sfn: Lazy<aws_sdk_sfn::Client>,
    pub sns: Lazy<aws_sdk_sns::Client>,
    pub settings: Settings,
    pub clock: Clock,
}

impl Env {
    /// Reads the configuration as in production: the default credential and region chain,
    /// and `AWS_ENDPOINT_URL` (an emulator) honoured, with path-style S3 there. The clients
    /// are built on their first use ([`Lazy`]).
    pub async fn from_environment() -> Result<Env> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let config = aws_config::load_from_env().await;
        let mut settings = Settings::from_vars(&vars)?;
        if settings.region.is_empty() {
            settings.region = config.region().map(|r| r.to_string()).unwrap_or_default();
        }
        let emulated = vars
            .get("AWS_ENDPOINT_URL")
            .is_some_and(|v| !v.trim().is_empty());
        fn client<C: 'static>(
            config: &aws_config::SdkConfig,
            make: fn(&aws_config::SdkConfig) -> C,
        ) -> Lazy<C> {
            let config = config.clone();
            Lazy::new(move || make(&config))
        }
        let s3_config = config.clone();
        Ok(Env {
            ec2: client(&config, aws_sdk_ec2::Client::new),
            s3: Lazy::new(move || {
                aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&s3_config)
                        .force_path_style(emulated)
                        .build(),
                )
            }),
            ssm: client(&config, aws_sdk_ssm::Client::new),
            sfn: client(&config, aws_sdk_sfn::Client::new),
            sns: client(&config, aws_sdk_sns::Client::new),
            settings,
            clock: Clock::System,
        })
    }
}

/// Formats an instant as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 instant.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_with_defaults() {
        let s = Settings::from_vars(&vars(&[
            ("SPOTSTEP_BUCKET", "b"),
            ("SPOTSTEP_SUBNETS", "subnet-a, subnet-b,,"),
            ("AWS_REGION", "us-east-1"),
        ]))
        .unwrap();
        assert_eq!(s.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(s.stack, "");
        assert_eq!(s.registration_grace_seconds, 300);
        assert_eq!(s.sweep_grace_seconds, 1800);
        s.require(&[Need::Bucket, Need::Region]).unwrap();
        let err = s.require(&[Need::Launch]).unwrap_err();
        assert_eq!(err.name(), "Misconfigured");
        assert!(
            err.to_string().contains("SPOTSTEP_LAUNCH_TEMPLATE"),
            "{err}"
        );
    }

    #[test]
    fn bad_numbers_are_misconfigured() {
        let err = Settings::from_vars(&vars(&[("SPOTSTEP_SWEEP_GRACE", "soon")])).unwrap_err();
        assert!(
            err.to_string().contains("SPOTSTEP_SWEEP_GRACE=`soon`"),
            "{err}"
        );
        let err = Settings::from_vars(&vars(&[("SPOTSTEP_SWEEP_GRACE", "-5")])).unwrap_err();
        assert_eq!(err.name(), "Misconfigured");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-28T09:00:00Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
