//! launch: validate the run, refuse a concurrent one (the job's run lock, [`lock`]), launch
//! one spot instance with one `instant` fleet request over all the capacity pools
//! ([`fleet`]), and stage the job's config for it.

use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::ec2::{self, Started};
use crate::aws::{s3, sfn};
use crate::capacity::{self, Market};
use crate::env::{parse_rfc3339, rfc3339, Env, Need};
use crate::error::{Error, Result};
use crate::fanout::Lane;
use crate::fleet::{self, FleetAnswer, FleetRequest, Outcome};
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
    let reclaims = previous.reclaims_before_next(redrive_count);
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

    let earlier =
        ec2::earlier_tries(env.ec2().await, &run.execution, attempt, lane_id.as_deref()).await?;
    let mut launch = match earlier.live {
        Some(found) => launch_record(found, Vec::new()),
        None => {
            let this = Attempt {
                number: attempt,
                round,
                generation: earlier.ended,
                reclaims,
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
    launch.reclaims = reclaims;

    if let Err(e) = stage_config(env, &run, &config_bucket, &config_key).await {
        warn!(instance_id = %launch.instance_id, "staging the config failed; terminating the new instance");
        ec2::terminate_launched(env.ec2().await, &launch.instance_id, env.clock).await?;
        return Err(e);
    }
    info!(
        instance_id = %launch.instance_id,
        instance_type = %launch.instance_type,
        market = %launch.market,
        attempt,
        reclaims,
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
    let running = sfn::running_executions(env.sfn().await, &machine).await?;
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
    if s3::exists(env.s3().await, bucket, key).await? {
        return Ok(());
    }
    Err(Error::ConfigMissing(format!(
        "the job's config s3://{bucket}/{key} does not exist; nothing was launched. \
         Upload it (or fix config_source in the job manifest) and start the run again"
    )))
}

async fn stage_config(env: &Env, run: &Run, bucket: &str, key: &str) -> Result<()> {
    let target = naming::staging_config_key(&run.job, &run.run_id);
    s3::copy(env.s3().await, bucket, key, &env.settings.bucket, &target).await
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
    /// Spot reclaims in the run so far (the job's `on_demand_after_reclaims` reads it).
    reclaims: u32,
    /// The sweep lane's id, for a lane's instance.
    lane: Option<String>,
}

async fn launch_instance(env: &Env, run: &Run, job: &JobSpec, attempt: &Attempt) -> Result<Launch> {
    let pinned = Some(run.instance_type.as_str()).filter(|t| !t.is_empty());
    let pools = capacity::plan_after_reclaims(
        &job.instance_types,
        pinned,
        &env.settings.subnets,
        job.on_demand_fallback,
        attempt.reclaims,
        job.on_demand_after_reclaims,
    );
    let mut tried: Vec<PoolTried> = Vec::new();
    for (market, overrides) in fleet::requests_of(&pools) {
        let mut request = FleetRequest {
            launch_template: env.settings.launch_template.clone(),
            market,
            overrides,
            image_id: env.settings.image_id.clone(),
            root_volume_gb: job.root_volume_gb,
            instance_profile: env.settings.instance_profile.clone(),
            tags: instance_tags(env, run, job, attempt),
            client_token: String::new(),
        };
        request.client_token =
            fleet::client_token(&run.execution, attempt.number, attempt.generation, &request);
        let answer = send_fleet(env, &request).await?;
        for error in &answer.errors {
            info!(instance_type = %error.instance_type, subnet = %error.subnet_id, market = market.as_str(), code = %error.code, message = %error.message, "fleet error");
        }
        tried.extend(pools_tried(&request, &answer));
        match fleet::read(&answer) {
            Outcome::Started(started) => {
                // The zone and launch time, which the fleet's answer may not carry; best
                // effort (EC2 may not show the instance yet: the record then has no zone).
                let shown = ec2::describe(env.ec2().await, &started.instance_id)
                    .await
                    .ok()
                    .flatten()
                    .as_ref()
                    .map(Started::of)
                    .unwrap_or_default();
                return Ok(launch_record(
                    Started {
                        instance_id: started.instance_id,
                        instance_type: started.instance_type,
                        availability_zone: if started.availability_zone.is_empty() {
                            shown.availability_zone
                        } else {
                            started.availability_zone
                        },
                        subnet_id: started.subnet_id,
                        spot: started.spot,
                        launched_at: shown.launched_at,
                    },
                    tried,
                ));
            }
            // send_fleet answers Throttled with an error, never with an answer.
            Outcome::NoCapacity | Outcome::Throttled => {
                info!(
                    market = market.as_str(),
                    "no capacity in any pool of the fleet request"
                );
            }
            Outcome::Quota(_) if market == Market::Spot && job.on_demand_fallback => {
                info!("spot quota reached; the on-demand request follows");
            }
            Outcome::Quota(e) | Outcome::Rejected(e) => {
                return Err(Error::LaunchRejected(fleet::rejected_message(&e, market)));
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

/// Sends a fleet request, and again (same request, same token: idempotent) after each
/// pause while EC2 answers only `RequestLimitExceeded`; `Throttled` after the last pause.
async fn send_fleet(env: &Env, request: &FleetRequest) -> Result<FleetAnswer> {
    let mut pauses = fleet::THROTTLE_PAUSES_SECONDS.into_iter();
    loop {
        let answer = ec2::create_fleet(env.ec2().await, request).await?;
        if fleet::read(&answer) != Outcome::Throttled {
            return Ok(answer);
        }
        let Some(pause) = pauses.next() else {
            return Err(Error::Throttled(format!(
                "CreateFleet ({}) answered RequestLimitExceeded {} times; the state machine retries it",
                request.market.as_str(),
                fleet::THROTTLE_PAUSES_SECONDS.len() + 1
            )));
        };
        warn!(
            market = request.market.as_str(),
            pause, "CreateFleet answered RequestLimitExceeded; sending it again"
        );
        env.clock.pause(pause).await;
    }
}

/// Every pool of a request with what the answer said of it (empty: no error named it).
fn pools_tried(request: &FleetRequest, answer: &FleetAnswer) -> Vec<PoolTried> {
    request
        .overrides
        .iter()
        .map(|o| PoolTried {
            instance_type: o.instance_type.clone(),
            subnet_id: o.subnet_id.clone(),
            market: request.market.as_str().to_string(),
            error: answer
                .errors
                .iter()
                .find(|e| e.instance_type == o.instance_type && e.subnet_id == o.subnet_id)
                .or_else(|| answer.errors.iter().find(|e| e.instance_type.is_empty()))
                .map(|e| e.code.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// The instance's tags: the run's names, the stack, and the max runtime the launch
/// template's watchdog reads from the instance metadata at boot.
fn instance_tags(env: &Env, run: &Run, job: &JobSpec, attempt: &Attempt) -> Vec<(String, String)> {
    [
        (
            tags::NAME,
            naming::instance_name(&job.instance_name_prefix, &run.run_date),
        ),
        (tags::JOB, job.name.clone()),
        (tags::RUN_ID, run.run_id.clone()),
        (tags::EXECUTION, run.execution.clone()),
        (tags::ATTEMPT, attempt.number.to_string()),
        (tags::ROUND, attempt.round.to_string()),
        (tags::STACK, env.settings.stack.clone()),
        (tags::MAX_RUNTIME, job.max_runtime_seconds.to_string()),
    ]
    .into_iter()
    .chain(attempt.lane.clone().map(|lane| (tags::LANE, lane)))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
