//! launch: validate the run, refuse a concurrent one, launch one spot instance across the
//! capacity pools, and stage the job's config for it.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, MarketType, ResourceType, ShutdownBehavior,
    SpotInstanceType, SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::capacity::{self, LaunchAnswer, Market, Pool};
use crate::ec2;
use crate::env::{parse_rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::manifest::JobSpec;
use crate::naming::{self, tags};
use crate::run::{next_attempt, parse, Launch, PoolTried, Run};
use crate::telemetry;

/// What the state machine passes to launch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub run: Run,
    pub job: JobSpec,
    /// The previous launch record (all zero before the first launch).
    #[serde(default)]
    pub previous: Launch,
    /// `$$.Execution.RedriveCount`.
    #[serde(default)]
    pub redrive_count: u32,
}

/// Handles one launch request.
pub async fn handle(env: &Env, input: Value) -> Result<Launch> {
    let input: Input = parse("launch input", input)?;
    let Input {
        run,
        job,
        previous,
        redrive_count,
    } = input;
    run.validate(&job)?;
    let (attempt, round, round_attempts) =
        next_attempt(&previous, redrive_count, job.max_attempts)?;
    let redriven = redrive_count > previous.round;
    let first = previous.attempt == 0 || redriven;
    if first {
        refuse_concurrent(env, &run, redriven).await?;
    }
    env.settings.require(&[Need::Bucket, Need::Launch])?;
    let (config_bucket, config_key) =
        naming::parse_s3_uri(&job.config_source).map_err(Error::InvalidInput)?;
    check_config(env, &config_bucket, &config_key).await?;

    let mut launch = match existing_instance(env, &run, attempt).await? {
        Some(found) => found,
        None => launch_instance(env, &run, &job, attempt).await?,
    };
    launch.attempt = attempt;
    launch.round = round;
    launch.round_attempts = round_attempts;

    if let Err(e) = stage_config(env, &run, &config_bucket, &config_key).await {
        warn!(instance_id = %launch.instance_id, "staging the config failed; terminating the new instance");
        ec2::terminate(&env.ec2, std::slice::from_ref(&launch.instance_id)).await?;
        return Err(e);
    }
    if round_attempts > 1 {
        telemetry::emit_count(
            "AlphaEngine",
            "SpotInterruptionRetry",
            ("Process", &job.name),
            env.clock.now(),
        );
    }
    info!(
        instance_id = %launch.instance_id,
        instance_type = %launch.instance_type,
        market = %launch.market,
        attempt,
        "launched"
    );
    Ok(launch)
}

/// `ConcurrentRun` when another execution of the same state machine started before this one
/// and is still running.
/// A redriven run is always the newcomer: any other running execution refuses it.
async fn refuse_concurrent(env: &Env, run: &Run, redriven: bool) -> Result<()> {
    let Some(machine) = naming::state_machine_arn(&run.execution) else {
        return Err(Error::InvalidInput(format!(
            "execution `{}` is not a Step Functions execution ARN",
            run.execution
        )));
    };
    let ours = parse_rfc3339(&run.started_at).map(|t| t.unix_timestamp_nanos());
    let out = env
        .sfn
        .list_executions()
        .state_machine_arn(&machine)
        .status_filter(ExecutionStatus::Running)
        .send()
        .await
        .map_err(|e| Error::from_sdk("ListExecutions", &e))?;
    let earlier = out.executions().iter().find(|other| {
        if other.execution_arn() == run.execution {
            return false;
        }
        let theirs = other.start_date().as_nanos();
        match ours {
            _ if redriven => true,
            Some(ours) => theirs < ours || theirs == ours && other.name() < run.run_id.as_str(),
            None => true,
        }
    });
    match earlier {
        Some(other) => Err(Error::ConcurrentRun(format!(
            "job `{}` is already running as execution `{}`; nothing was launched. \
             Wait for it to finish (or stop it) before starting another run",
            run.job,
            other.name()
        ))),
        None => Ok(()),
    }
}

async fn check_config(env: &Env, bucket: &str, key: &str) -> Result<()> {
    match env.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_not_found())
                || e.code() == Some("NotFound") =>
        {
            Err(Error::ConfigMissing(format!(
                "the job's config s3://{bucket}/{key} does not exist; nothing was launched. \
                 Upload it (or fix config_source in the job manifest) and start the run again"
            )))
        }
        Err(e) => Err(Error::from_sdk(
            &format!("HeadObject s3://{bucket}/{key}"),
            &e,
        )),
    }
}

async fn stage_config(env: &Env, run: &Run, bucket: &str, key: &str) -> Result<()> {
    let target = naming::staging_config_key(&run.job, &run.run_id);
    env.s3
        .copy_object()
        .copy_source(format!("{bucket}/{key}"))
        .bucket(&env.settings.bucket)
        .key(&target)
        .send()
        .await
        .map_err(|e| {
            Error::from_sdk(
                &format!("CopyObject to s3://{}/{target}", env.settings.bucket),
                &e,
            )
        })?;
    Ok(())
}

/// An instance an earlier try of this same launch already started (found by its tags).
async fn existing_instance(env: &Env, run: &Run, attempt: u32) -> Result<Option<Launch>> {
    let attempt = attempt.to_string();
    let found = ec2::tagged_instances(
        &env.ec2,
        &[(tags::EXECUTION, &run.execution), (tags::ATTEMPT, &attempt)],
    )
    .await?;
    Ok(found.first().map(|i| Launch {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        subnet_id: i.subnet_id().unwrap_or_default().to_string(),
        market: if i.instance_lifecycle().is_some() {
            "spot"
        } else {
            "on-demand"
        }
        .to_string(),
        ..Launch::default()
    }))
}

async fn launch_instance(env: &Env, run: &Run, job: &JobSpec, attempt: u32) -> Result<Launch> {
    let pinned = Some(run.instance_type.as_str()).filter(|t| !t.is_empty());
    let pools = capacity::plan(
        &job.instance_types,
        pinned,
        &env.settings.subnets,
        job.on_demand_fallback,
    );
    let mut tried: Vec<PoolTried> = Vec::new();
    let mut spot_quota_hit = false;
    for (index, pool) in pools.iter().enumerate() {
        if spot_quota_hit && pool.market == Market::Spot {
            continue;
        }
        let request = run_instances(env, run, job, pool, attempt, index);
        match request.send().await {
            Ok(out) => {
                let instance = out.instances().first().ok_or_else(|| {
                    Error::AwsError("RunInstances answered without an instance".to_string())
                })?;
                tried.push(pool_tried(pool, ""));
                return Ok(Launch {
                    instance_id: instance.instance_id().unwrap_or_default().to_string(),
                    instance_type: pool.instance_type.clone(),
                    availability_zone: instance
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or_default()
                        .to_string(),
                    subnet_id: pool.subnet_id.clone(),
                    market: pool.market.as_str().to_string(),
                    pools_tried: tried,
                    ..Launch::default()
                });
            }
            Err(e) => {
                let code = e.code().unwrap_or("Unknown").to_string();
                if crate::error::is_throttling(&code) {
                    return Err(Error::from_sdk("RunInstances", &e));
                }
                tried.push(pool_tried(pool, &code));
                match capacity::classify_launch_error(&code) {
                    LaunchAnswer::NoCapacity => {
                        info!(instance_type = %pool.instance_type, subnet = %pool.subnet_id, %code, "no capacity in pool");
                    }
                    LaunchAnswer::Quota
                        if pool.market == Market::Spot && job.on_demand_fallback =>
                    {
                        spot_quota_hit = true;
                    }
                    LaunchAnswer::Quota | LaunchAnswer::Rejected => {
                        return Err(Error::LaunchRejected(format!(
                            "EC2 rejected the launch of {} in {} ({}): {code}: {}; nothing is running. \
                             Fix the deployment settings or the job manifest, then redrive",
                            pool.instance_type,
                            pool.subnet_id,
                            pool.market.as_str(),
                            e.message().unwrap_or("no message")
                        )));
                    }
                }
            }
        }
    }
    Err(Error::NoCapacity(format!(
        "no capacity in any of the {} pool(s) tried ({}); nothing is running. \
         Redrive later, or add instance types, subnets or the on-demand fallback to the job",
        tried.len(),
        tried
            .iter()
            .map(|p| format!(
                "{}@{}/{}: {}",
                p.instance_type, p.subnet_id, p.market, p.error
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn pool_tried(pool: &Pool, error: &str) -> PoolTried {
    PoolTried {
        instance_type: pool.instance_type.clone(),
        subnet_id: pool.subnet_id.clone(),
        market: pool.market.as_str().to_string(),
        error: error.to_string(),
    }
}

/// The user data: arms the max-runtime watchdog at boot, before anything else runs.
pub fn user_data(max_runtime_seconds: u64) -> String {
    let script = format!(
        "#!/bin/bash\n# spotstep watchdog: the instance shuts down (and so terminates) after its max runtime\n\
         systemd-run --unit=spotstep-boot-watchdog --on-active={max_runtime_seconds}s /usr/sbin/shutdown -h now \
         || shutdown -h +{}\n",
        max_runtime_seconds.div_ceil(60)
    );
    base64::engine::general_purpose::STANDARD.encode(script)
}

fn run_instances(
    env: &Env,
    run: &Run,
    job: &JobSpec,
    pool: &Pool,
    attempt: u32,
    index: usize,
) -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
    let s = &env.settings;
    let instance_tags: Vec<Tag> = [
        (
            tags::NAME,
            naming::instance_name(&job.instance_name_prefix, &run.run_date),
        ),
        (tags::JOB, job.name.clone()),
        (tags::RUN_ID, run.run_id.clone()),
        (tags::EXECUTION, run.execution.clone()),
        (tags::ATTEMPT, attempt.to_string()),
        (tags::MAX_RUNTIME, job.max_runtime_seconds.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| Tag::builder().key(k).value(v).build())
    .collect();
    let profile = if s.instance_profile.starts_with("arn:") {
        IamInstanceProfileSpecification::builder()
            .arn(&s.instance_profile)
            .build()
    } else {
        IamInstanceProfileSpecification::builder()
            .name(&s.instance_profile)
            .build()
    };
    let mut request = env
        .ec2
        .run_instances()
        .image_id(&s.image_id)
        .instance_type(InstanceType::from(pool.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .subnet_id(&pool.subnet_id)
        .security_group_ids(&s.security_group)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(job.root_volume_gb as i32)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .user_data(user_data(job.max_runtime_seconds))
        .client_token(naming::client_token(&run.execution, attempt, index))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(instance_tags.clone()))
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(instance_tags))
                .build(),
        );
    if !s.instance_profile.is_empty() {
        request = request.iam_instance_profile(profile);
    }
    if pool.market == Market::Spot {
        request = request.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        );
    }
    request
}
