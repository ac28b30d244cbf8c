//! What a function runs with: the AWS clients, the deployment settings and the clock.
//!
//! Settings are deployment values (account-specific), read from environment variables that
//! `template.yaml` sets; a job manifest never holds them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::aws::https;
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

/// The AWS side of an [`Env`]: the SDK configuration and one client per service, each made
/// on its first use and kept. A function's init does no AWS work at all (no credential chain,
/// no TLS setup): the first call to a service builds what it needs, and an invocation builds
/// only the clients it calls.
pub struct Clients {
    config: OnceCell<SdkConfig>,
    /// `AWS_ENDPOINT_URL` is set (an emulator): S3 is addressed path-style there.
    emulated: bool,
    ec2: OnceCell<aws_sdk_ec2::Client>,
    s3: OnceCell<aws_sdk_s3::Client>,
    ssm: OnceCell<aws_sdk_ssm::Client>,
    sfn: OnceCell<aws_sdk_sfn::Client>,
    sns: OnceCell<aws_sdk_sns::Client>,
    /// CloudWatch Logs: the operator's `spotstep logs` only.
    #[cfg(feature = "cli")]
    logs: OnceCell<aws_sdk_cloudwatchlogs::Client>,
}

impl Clients {
    /// Clients from the production configuration, loaded on first use: the default
    /// credential and region chain, `AWS_ENDPOINT_URL` honoured, and the HTTPS client that
    /// trusts the Amazon Trust Services roots compiled in ([`https`]).
    fn on_first_use(emulated: bool) -> Clients {
        Clients::with_config(OnceCell::new(), emulated)
    }

    /// Clients from a configuration already loaded (the operator's CLI).
    fn from_config(config: SdkConfig, emulated: bool) -> Clients {
        Clients::with_config(OnceCell::new_with(Some(config)), emulated)
    }

    fn with_config(config: OnceCell<SdkConfig>, emulated: bool) -> Clients {
        Clients {
            config,
            emulated,
            ec2: OnceCell::new(),
            s3: OnceCell::new(),
            ssm: OnceCell::new(),
            sfn: OnceCell::new(),
            sns: OnceCell::new(),
            #[cfg(feature = "cli")]
            logs: OnceCell::new(),
        }
    }

    /// Clients already built (the handler tests' mocks).
    #[cfg(test)]
    pub(crate) fn built(
        ec2: aws_sdk_ec2::Client,
        s3: aws_sdk_s3::Client,
        ssm: aws_sdk_ssm::Client,
        sfn: aws_sdk_sfn::Client,
        sns: aws_sdk_sns::Client,
    ) -> Clients {
        Clients {
            ec2: OnceCell::new_with(Some(ec2)),
            s3: OnceCell::new_with(Some(s3)),
            ssm: OnceCell::new_with(Some(ssm)),
            sfn: OnceCell::new_with(Some(sfn)),
            sns: OnceCell::new_with(Some(sns)),
            ..Clients::on_first_use(false)
        }
    }

    async fn config(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(https::client())
                    .load()
            })
            .await
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built = |made: bool| if made { "built" } else { "not built yet" };
        let mut clients = f.debug_struct("Clients");
        clients
            .field("config", &built(self.config.initialized()))
            .field("ec2", &built(self.ec2.initialized()))
            .field("s3", &built(self.s3.initialized()))
            .field("ssm", &built(self.ssm.initialized()))
            .field("sfn", &built(self.sfn.initialized()))
            .field("sns", &built(self.sns.initialized()));
        #[cfg(feature = "cli")]
        clients.field("logs", &built(self.logs.initialized()));
        clients.finish()
    }
}

/// `env.<service>().await`: the service's client, made from the configuration on its first use.
macro_rules! service_client {
    ($service:ident, $krate:ident) => {
        pub async fn $service(&self) -> &$krate::Client {
            let c = &self.clients;
            c.$service
                .get_or_init(|| async { $krate::Client::new(c.config().await) })
                .await
        }
    };
}

/// Everything a handler works with.
#[derive(Debug, Clone)]
pub struct Env {
    clients: Arc<Clients>,
    pub settings: Settings,
    pub clock: Clock,
}

impl Env {
    /// The environment of a function, as in production: the settings from `SPOTSTEP_*` and
    /// `AWS_REGION`, and the clients on their first use ([`Clients`]). Without `AWS_REGION`
    /// (never on Lambda) the configuration is loaded now, for the region of its chain.
    pub async fn from_environment() -> Result<Env> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let env = Env::new(
            Clients::on_first_use(emulated(&vars)),
            Settings::from_vars(&vars)?,
        );
        Env::with_chain_region(env).await
    }

    /// The operator's environment: clients from `config` (its own root store and chain).
    pub async fn from_config(config: SdkConfig) -> Result<Env> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let clients = Clients::from_config(config, emulated(&vars));
        Env::with_chain_region(Env::new(clients, Settings::from_vars(&vars)?)).await
    }

    /// An environment of `clients` and `settings` on the system clock.
    pub fn new(clients: Clients, settings: Settings) -> Env {
        Env {
            clients: Arc::new(clients),
            settings,
            clock: Clock::System,
        }
    }

    async fn with_chain_region(mut env: Env) -> Result<Env> {
        if env.settings.region.is_empty() {
            let config = env.clients.config().await;
            env.settings.region = config.region().map(|r| r.to_string()).unwrap_or_default();
        }
        Ok(env)
    }

    service_client!(ec2, aws_sdk_ec2);

    /// Path-style addressing on an emulator.
    pub async fn s3(&self) -> &aws_sdk_s3::Client {
        let c = &self.clients;
        c.s3.get_or_init(|| async {
            let config = aws_sdk_s3::config::Builder::from(c.config().await)
                .force_path_style(c.emulated)
                .build();
            aws_sdk_s3::Client::from_conf(config)
        })
        .await
    }

    service_client!(ssm, aws_sdk_ssm);
    service_client!(sfn, aws_sdk_sfn);
    service_client!(sns, aws_sdk_sns);
    #[cfg(feature = "cli")]
    service_client!(logs, aws_sdk_cloudwatchlogs);
}

fn emulated(vars: &HashMap<String, String>) -> bool {
    vars.get("AWS_ENDPOINT_URL")
        .is_some_and(|v| !v.trim().is_empty())
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

    fn loaded(region: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .build()
    }

    /// A function's init builds no client: each is made by its first call, and only it.
    #[tokio::test(flavor = "current_thread")]
    async fn clients_are_built_on_their_first_use_only() {
        let settings = Settings::from_vars(&vars(&[("AWS_REGION", "us-east-1")])).unwrap();
        let env = Env::new(Clients::from_config(loaded("us-east-1"), true), settings);
        let before = format!("{:?}", env.clients);
        assert!(before.contains(r#"s3: "not built yet""#), "{before}");
        assert!(env.s3().await.config().region().is_some());
        let after = format!("{:?}", env.clients);
        assert!(after.contains(r#"s3: "built""#), "{after}");
        assert!(after.contains(r#"ec2: "not built yet""#), "{after}");
        assert!(std::ptr::eq(env.s3().await, env.clone().s3().await));
    }

    /// Without `AWS_REGION` (never on Lambda) the region comes from the configuration's chain.
    #[tokio::test(flavor = "current_thread")]
    async fn the_region_falls_back_to_the_chain() {
        let settings = Settings::from_vars(&vars(&[])).unwrap();
        let env = Env::new(Clients::from_config(loaded("eu-west-3"), false), settings);
        let env = Env::with_chain_region(env).await.unwrap();
        assert_eq!(env.settings.region, "eu-west-3");
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
