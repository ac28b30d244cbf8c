//! launch: validate the run, refuse a concurrent one (the job's run lock, [`lock`]), launch
//! one spot instance across the capacity pools, and stage the job's config for it.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::ec2::{self, InstanceRequest, Launched, Started};
use crate::aws::{s3, sfn};
use crate::capacity::{self, LaunchAnswer, Market, Pool};
use crate::env::{parse_rfc3339, rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::fanout::Lane;
use crate::input::{parse, Checked};
use crate::lock;
use crate::manifest::JobSpec;
use crate::naming::{self, tags};
use crate::records::{Launch, PoolTried, Run};

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
    /// The sweep lane this launch is for (its instance is tagged `spotstep:lane`).
    #[serde(default)]
    pub lane: Option<Lane>,
}

impl Checked for Input {
    fn check(&self) -> Result<()> {
        self.run.validate(&self.job)
    }
}

/// Handles one launch request.
pub async fn handle(env: &Env, input: Value) -> Result<Launch> {
    let input: Input = parse("launch input", input)?;
    let Input {
        run,
        job,
        previous,
        redrive_count,
        lane,
    } = input;
    let lane_id = lane.as_ref().map(Lane::id);
    let (attempt, round, round_attempts) =
        previous.next_attempt(redrive_count, job.max_attempts)?;
    let redriven = redrive_count > previous.round;
    let first = previous.attempt == 0 || redriven;
    if first {
        refuse_concurrent(env, &run, redriven).await?;
    }
    env.settings
        .require(&[Need::Bucket, Need::Launch, Need::Stack])?;
    let stale_after = i64::try_from(job.max_runtime_seconds).unwrap_or(i64::MAX)
        + env.settings.sweep_grace_seconds;
    lock::take(env, &run, stale_after).await?;
    let (config_bucket, config_key) =
        naming::parse_s3_uri(&job.config_source).map_err(Error::InvalidInput)?;
    check_config(env, &config_bucket, &config_key).await?;

    let earlier = ec2::earlier_tries(&env.ec2, &run.execution, attempt, lane_id.as_deref()).await?;
    let mut launch = match earlier.live {
        Some(found) => launch_record(found, Vec::new()),
        None => {
            let this = Attempt {
                number: attempt,
                round,
                generation: earlier.ended,
                lane: lane_id.clone(),
            };
            launch_instance(env, &run, &job, &this).await?
        }
    };
    if launch.launched_at.is_empty() {
        launch.launched_at = rfc3339(env.clock.now());
    }
    launch.attempt = attempt;
    launch.round = round;
    launch.round_attempts = round_attempts;

    if let Err(e) = stage_config(env, &run, &config_bucket, &config_key).await {
        warn!(instance_id = %launch.instance_id, "staging the config failed; terminating the new instance");
        ec2::terminate_launched(&env.ec2, &launch.instance_id, env.clock).await?;
        return Err(e);
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
    let running = sfn::running_executions(&env.sfn, &machine).await?;
    let earlier = running.iter().find(|other| {
        if other.arn == run.execution {
            return false;
        }
        match ours {
            _ if redriven => true,
            Some(ours) => {
                other.started_nanos < ours
                    || other.started_nanos == ours && other.name.as_str() < run.run_id.as_str()
            }
            None => true,
        }
    });
    match earlier {
        Some(other) => Err(Error::ConcurrentRun(format!(
            "job `{}` is already running as execution `{}`; nothing was launched. \
             Wait for it to finish (or stop it) before starting another run",
            run.job, other.name
        ))),
        None => Ok(()),
    }
}

async fn check_config(env: &Env, bucket: &str, key: &str) -> Result<()> {
    if s3::exists(&env.s3, bucket, key).await? {
        return Ok(());
    }
    Err(Error::ConfigMissing(format!(
        "the job's config s3://{bucket}/{key} does not exist; nothing was launched. \
         Upload it (or fix config_source in the job manifest) and start the run again"
    )))
}

async fn stage_config(env: &Env, run: &Run, bucket: &str, key: &str) -> Result<()> {
    let target = naming::staging_config_key(&run.job, &run.run_id);
    s3::copy(&env.s3, bucket, key, &env.settings.bucket, &target).await
}

/// The launch record of an instance: where it runs and in which market.
fn launch_record(started: Started, pools_tried: Vec<PoolTried>) -> Launch {
    Launch {
        instance_id: started.instance_id,
        instance_type: started.instance_type,
        availability_zone: started.availability_zone,
        subnet_id: started.subnet_id,
        market: if started.spot {
            Market::Spot
        } else {
            Market::OnDemand
        }
        .as_str()
        .to_string(),
        pools_tried,
        launched_at: started.launched_at,
        ..Launch::default()
    }
}

/// The launch being made: its number in the execution, its redrive round, and how many of
/// its earlier tries ended (each needs a fresh client token).
struct Attempt {
    number: u32,
    round: u32,
    generation: usize,
    /// The sweep lane's id, for a lane's instance.
    lane: Option<String>,
}

async fn launch_instance(env: &Env, run: &Run, job: &JobSpec, attempt: &Attempt) -> Result<Launch> {
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
        let request = instance_request(env, run, job, pool, attempt, index);
        let (code, message) = match ec2::run_instance(&env.ec2, &request).await? {
            Launched::Started(started) => {
                tried.push(pool_tried(pool, ""));
                return Ok(launch_record(started, tried));
            }
            Launched::Refused { code, message } => (code, message),
        };
        tried.push(pool_tried(pool, &code));
        match capacity::classify_launch_error(&code) {
            LaunchAnswer::NoCapacity => {
                info!(instance_type = %pool.instance_type, subnet = %pool.subnet_id, %code, "no capacity in pool");
            }
            LaunchAnswer::Quota if pool.market == Market::Spot && job.on_demand_fallback => {
                spot_quota_hit = true;
            }
            LaunchAnswer::Quota | LaunchAnswer::Rejected => {
                return Err(Error::LaunchRejected(format!(
                    "EC2 rejected the launch of {} in {} ({}): {code}: {message}; nothing is running. \
                     Fix the deployment settings or the job manifest, then redrive",
                    pool.instance_type,
                    pool.subnet_id,
                    pool.market.as_str(),
                )));
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

/// The RunInstances request for one pool: the deployment's image, network and profile, the
/// job's volume and watchdog, the run's tags, an idempotency token per (execution, attempt,
/// pool).
fn instance_request(
    env: &Env,
    run: &Run,
    job: &JobSpec,
    pool: &Pool,
    attempt: &Attempt,
    index: usize,
) -> InstanceRequest {
    let s = &env.settings;
    InstanceRequest {
        image_id: s.image_id.clone(),
        instance_type: pool.instance_type.clone(),
        subnet_id: pool.subnet_id.clone(),
        security_group: s.security_group.clone(),
        instance_profile: s.instance_profile.clone(),
        root_volume_gb: job.root_volume_gb,
        user_data: user_data(job.max_runtime_seconds),
        client_token: naming::client_token(
            &match &attempt.lane {
                Some(lane) => format!("{}|lane {lane}", run.execution),
                None => run.execution.clone(),
            },
            attempt.number,
            index,
            attempt.generation,
        ),
        tags: [
            (
                tags::NAME,
                naming::instance_name(&job.instance_name_prefix, &run.run_date),
            ),
            (tags::JOB, job.name.clone()),
            (tags::RUN_ID, run.run_id.clone()),
            (tags::EXECUTION, run.execution.clone()),
            (tags::ATTEMPT, attempt.number.to_string()),
            (tags::ROUND, attempt.round.to_string()),
            (tags::STACK, s.stack.clone()),
            (tags::MAX_RUNTIME, job.max_runtime_seconds.to_string()),
        ]
        .into_iter()
        .chain(attempt.lane.clone().map(|lane| (tags::LANE, lane)))
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        spot: pool.market == Market::Spot,
    }
}
