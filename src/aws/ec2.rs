//! The EC2 calls: launching one instance (one `instant` fleet request), what became of an instance, which instances
//! belong to a run, terminating them.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetBlockDeviceMappingRequest, FleetEbsBlockDeviceRequest,
    FleetIamInstanceProfileSpecificationRequest, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, Instance, InstanceLifecycle, InstanceType,
    OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotInstanceInterruptionBehavior,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest, VolumeType,
};
use aws_sdk_ec2::Client;

use crate::capacity::Market;
use crate::env::{rfc3339, Clock};
use crate::error::{Error, Result};
use crate::fleet::{FleetAnswer, FleetError, FleetInstance, FleetRequest};
use crate::loss::{fate_since_launch, Fate, InstanceFacts};
use crate::naming::{self, tags};

/// Instance states that still cost money or may still run something.
pub const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// What EC2 says about `instance_id` and its spot request.
pub async fn facts(ec2: &Client, instance_id: &str) -> Result<InstanceFacts> {
    let instance = describe(ec2, instance_id).await?;
    let Some(instance) = instance else {
        return Ok(InstanceFacts::default());
    };
    let spot_status_code = match instance.spot_instance_request_id() {
        Some(request) => ec2
            .describe_spot_instance_requests()
            .spot_instance_request_ids(request)
            .send()
            .await
            .ok()
            .and_then(|out| {
                out.spot_instance_requests()
                    .first()
                    .and_then(|r| r.status())
                    .and_then(|s| s.code())
                    .map(String::from)
            }),
        None => None,
    };
    Ok(InstanceFacts {
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string()),
        state_reason_code: instance
            .state_reason()
            .and_then(|r| r.code())
            .map(String::from),
        state_transition_reason: instance.state_transition_reason().map(String::from),
        spot_status_code,
    })
}

/// `Ok` while the instance is usable (or, launched `seconds_since_launch` ago, not visible
/// yet); `InstanceReclaimed` or `InstanceLost` once it is not.
pub async fn ensure_alive(
    ec2: &Client,
    instance_id: &str,
    seconds_since_launch: Option<i64>,
) -> Result<()> {
    // Boxed: this future sits inside every handler's, deep enough to hit rustc's layout
    // recursion limit otherwise.
    let facts = Box::pin(facts(ec2, instance_id)).await?;
    match fate_since_launch(&facts, seconds_since_launch) {
        Fate::Alive => Ok(()),
        Fate::NotVisibleYet => {
            tracing::info!(instance_id, ?seconds_since_launch, "EC2 does not show the instance yet (eventual consistency after launch)");
            Ok(())
        }
        Fate::Gone { reclaim: true, detail } => Err(Error::InstanceReclaimed(format!(
            "instance {instance_id} was reclaimed by EC2 spot: {detail}; the state machine relaunches and resumes at this step"
        ))),
        Fate::Gone { reclaim: false, detail } => Err(Error::InstanceLost(format!(
            "instance {instance_id} is gone: {detail}; the state machine relaunches and resumes at this step"
        ))),
    }
}

/// The live instances carrying all of the given tags.
pub async fn tagged_instances(ec2: &Client, wanted: &[(&str, &str)]) -> Result<Vec<Instance>> {
    by_tags(ec2, wanted, true, "DescribeInstances by spotstep tags").await
}

/// The instances carrying all of `wanted` (EC2 filters by them; the tags are checked again
/// here), live ones only or in any state.
async fn by_tags(
    ec2: &Client,
    wanted: &[(&str, &str)],
    live_only: bool,
    what: &str,
) -> Result<Vec<Instance>> {
    let mut request = ec2.describe_instances();
    if live_only {
        request = request.filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        );
    }
    for (key, value) in wanted {
        request = request.filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(*value)
                .build(),
        );
    }
    let out = request
        .send()
        .await
        .map_err(|e| Error::from_sdk(what, &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| wanted.iter().all(|(k, v)| tag(i, k) == Some(*v)))
        .filter(|i| !live_only || is_live(i))
        .cloned()
        .collect())
}

/// Every instance an execution launched from this stack, in any state (terminated ones
/// too: after a relaunch limit all are gone but the staging is still there).
pub async fn instances_of_execution(
    ec2: &Client,
    execution: &str,
    stack: &str,
) -> Result<Vec<Instance>> {
    let wanted = [(tags::EXECUTION, execution), (tags::STACK, stack)];
    by_tags(ec2, &wanted, false, "DescribeInstances of an execution").await
}

/// The redrive round an instance was launched in (its `spotstep:round` tag; 0 when absent).
pub fn round_of(instance: &Instance) -> u32 {
    tag(instance, tags::ROUND)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether the instance is live (may still run something or cost money).
pub fn is_live(instance: &Instance) -> bool {
    instance
        .state()
        .and_then(|s| s.name())
        .is_some_and(|n| LIVE_STATES.contains(&n.as_str()))
}

/// All live instances this stack launched (any job).
pub async fn stack_instances(ec2: &Client, stack: &str) -> Result<Vec<Instance>> {
    let wanted = [(tags::STACK, stack)];
    by_tags(
        ec2,
        &wanted,
        true,
        "DescribeInstances of the stack's instances",
    )
    .await
}

/// Every instance this stack launched, in any state (a terminated one is still shown for
/// about an hour).
pub async fn stack_instances_any_state(ec2: &Client, stack: &str) -> Result<Vec<Instance>> {
    let wanted = [(tags::STACK, stack)];
    by_tags(
        ec2,
        &wanted,
        false,
        "DescribeInstances of the stack's instances",
    )
    .await
}

/// The (job, run id) an instance's tags name, when both are safe names: tags are input too
/// (anyone allowed to tag can write them), and a run id names an S3 prefix.
pub fn run_of(instance: &Instance) -> Option<(String, String)> {
    let job = tag(instance, tags::JOB)?;
    let run_id = tag(instance, tags::RUN_ID)?;
    (naming::check_name(job).is_ok() && naming::check_run_id(run_id).is_ok())
        .then(|| (job.to_string(), run_id.to_string()))
}

/// The value of tag `key` on an instance.
pub fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// How long [`terminate_launched`] waits between tries while EC2 does not show the instance.
pub const TERMINATE_PAUSES_SECONDS: [u64; 5] = [1, 2, 4, 8, 16];

/// Terminates one instance this run launched. EC2 may not show a just-launched instance yet
/// (`InvalidInstanceID.NotFound`): that is retried until EC2 confirms the terminate, never
/// taken as done. `Err` when EC2 still does not know it after every pause (the sweep then
/// finds it by its tags).
pub async fn terminate_launched(ec2: &Client, instance_id: &str, clock: Clock) -> Result<()> {
    for pause in TERMINATE_PAUSES_SECONDS {
        match ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(NOT_FOUND) => clock.pause(pause).await,
            Err(e) => {
                return Err(Error::from_sdk(
                    &format!("TerminateInstances {instance_id}"),
                    &e,
                ))
            }
        }
    }
    Err(Error::AwsError(format!(
        "EC2 still does not know instance {instance_id}, launched by this run, after {} s: \
         it could not be terminated now; the hourly sweep terminates it by its tags",
        TERMINATE_PAUSES_SECONDS.iter().sum::<u64>()
    )))
}

/// EC2's error code for an instance it does not know (yet, or any more).
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// Terminates the instances (none is fine); returns those EC2 did not know, which are not
/// terminated by this call. `InvalidInstanceID.NotFound` does not mean an instance was or
/// will be terminated (EC2 is eventually consistent), and one unknown id refuses the whole
/// batch: the others are then terminated one by one, and the unknown ones are left to be
/// confirmed later (the hourly sweep finds any that shows up by its tags).
pub async fn terminate(ec2: &Client, ids: &[String]) -> Result<Vec<String>> {
    let call = |ids: Vec<String>| ec2.terminate_instances().set_instance_ids(Some(ids)).send();
    let failed =
        |ids: &[String], e| Error::from_sdk(&format!("TerminateInstances {}", ids.join(",")), e);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match call(ids.to_vec()).await {
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.code() == Some(NOT_FOUND) && ids.len() > 1 => {}
        Err(e) if e.code() == Some(NOT_FOUND) => {
            tracing::warn!(instance_id = %ids[0], "EC2 does not know the instance; not taken as terminated, the sweep confirms it later");
            return Ok(ids.to_vec());
        }
        Err(e) => return Err(failed(ids, &e)),
    }
    let mut unknown = Vec::new();
    for id in ids {
        match call(vec![id.clone()]).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(NOT_FOUND) => {
                tracing::warn!(instance_id = %id, "EC2 does not know the instance; not taken as terminated, the sweep confirms it later");
                unknown.push(id.clone());
            }
            Err(e) => return Err(failed(std::slice::from_ref(id), &e)),
        }
    }
    Ok(unknown)
}

/// An instance EC2 started (or an earlier try of the same launch had started).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    pub spot: bool,
    /// When EC2 launched it (RFC 3339; empty when EC2 did not say).
    pub launched_at: String,
}

impl Started {
    pub fn of(instance: &Instance) -> Started {
        Started {
            instance_id: instance.instance_id().unwrap_or_default().to_string(),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            availability_zone: instance
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            subnet_id: instance.subnet_id().unwrap_or_default().to_string(),
            spot: instance.instance_lifecycle().is_some(),
            launched_at: instance
                .launch_time()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                .map(rfc3339)
                .unwrap_or_default(),
        }
    }
}

/// Sends one `instant` fleet request (CreateFleet). An exception with an error code
/// (the request refused as a whole: permissions, throttling after the SDK's own retries)
/// is folded into the answer as an error without a pool, so that [`fleet::read`] judges
/// every refusal alike; only a failure without a code (network) is an `Err`.
pub async fn create_fleet(ec2: &Client, request: &FleetRequest) -> Result<FleetAnswer> {
    let spot = request.market == Market::Spot;
    let profile = (!request.instance_profile.is_empty()).then(|| {
        let p = FleetIamInstanceProfileSpecificationRequest::builder();
        if request.instance_profile.starts_with("arn:") {
            p.arn(&request.instance_profile).build()
        } else {
            p.name(&request.instance_profile).build()
        }
    });
    let overrides: Vec<FleetLaunchTemplateOverridesRequest> = request
        .overrides
        .iter()
        .map(|o| {
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(InstanceType::from(o.instance_type.as_str()))
                .subnet_id(&o.subnet_id)
                .image_id(&request.image_id)
                .block_device_mappings(
                    FleetBlockDeviceMappingRequest::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            FleetEbsBlockDeviceRequest::builder()
                                .volume_size(request.root_volume_gb as i32)
                                .volume_type(VolumeType::Gp3)
                                .encrypted(true)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .set_iam_instance_profile(profile.clone())
                .build()
        })
        .collect();
    let tags: Vec<Tag> = request
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let mut call = ec2
        .create_fleet()
        .r#type(FleetType::Instant)
        .client_token(&request.client_token)
        .launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_id(&request.launch_template)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides))
                .build(),
        )
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(1)
                .default_target_capacity_type(if spot {
                    DefaultTargetCapacityType::Spot
                } else {
                    DefaultTargetCapacityType::OnDemand
                })
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(tags))
                .build(),
        );
    call = if spot {
        call.spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .instance_interruption_behavior(SpotInstanceInterruptionBehavior::Terminate)
                .build(),
        )
    } else {
        call.on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                .build(),
        )
    };
    let out = match call.send().await {
        Ok(out) => out,
        Err(e) => {
            let Some(code) = e.code() else {
                return Err(Error::from_sdk("CreateFleet", &e));
            };
            return Ok(FleetAnswer {
                instances: Vec::new(),
                errors: vec![FleetError {
                    code: code.to_string(),
                    message: e.message().unwrap_or("no message").to_string(),
                    ..FleetError::default()
                }],
            });
        }
    };
    let pool = |lto: Option<&aws_sdk_ec2::types::LaunchTemplateAndOverridesResponse>| {
        let o = lto.and_then(|l| l.overrides());
        (
            o.and_then(|o| o.instance_type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            o.and_then(|o| o.subnet_id())
                .unwrap_or_default()
                .to_string(),
        )
    };
    let mut answer = FleetAnswer::default();
    for started in out.instances() {
        let (instance_type, subnet_id) = pool(started.launch_template_and_overrides());
        for id in started.instance_ids() {
            answer.instances.push(FleetInstance {
                instance_id: id.clone(),
                instance_type: started
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| instance_type.clone()),
                subnet_id: started
                    .subnet_id()
                    .map(String::from)
                    .unwrap_or_else(|| subnet_id.clone()),
                availability_zone: started.availability_zone().unwrap_or_default().to_string(),
                spot: started
                    .lifecycle()
                    .map_or(spot, |l| *l == InstanceLifecycle::Spot),
            });
        }
    }
    for error in out.errors() {
        let (instance_type, subnet_id) = pool(error.launch_template_and_overrides());
        answer.errors.push(FleetError {
            code: error.error_code().unwrap_or("Unknown").to_string(),
            message: error.error_message().unwrap_or("no message").to_string(),
            instance_type,
            subnet_id,
        });
    }
    Ok(answer)
}

/// What earlier tries of one launch (an execution's attempt) left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlierTries {
    /// An instance still live: the launch already happened.
    pub live: Option<Started>,
    /// How many of its instances ended (a try that terminated its own instance).
    pub ended: usize,
}

/// The instances an execution's attempt launched, live or ended, found by their tags.
pub async fn earlier_tries(
    ec2: &Client,
    execution: &str,
    attempt: u32,
    lane: Option<&str>,
) -> Result<EarlierTries> {
    let attempt = attempt.to_string();
    let wanted = [
        (tags::EXECUTION, execution),
        (tags::ATTEMPT, attempt.as_str()),
    ];
    let found = by_tags(
        ec2,
        &wanted,
        false,
        "DescribeInstances of this launch's earlier tries",
    )
    .await?;
    let mut tries = EarlierTries::default();
    // A sweep lane numbers its attempts on its own: only the same lane's (or, for the run's
    // own launch, no lane's) instances are this launch's tries.
    for instance in found.iter().filter(|i| tag(i, tags::LANE) == lane) {
        if is_live(instance) {
            tries.live.get_or_insert_with(|| Started::of(instance));
        } else {
            tries.ended += 1;
        }
    }
    Ok(tries)
}

/// One instance as EC2 shows it, or `None` when EC2 does not know it.
pub async fn describe(ec2: &Client, instance_id: &str) -> Result<Option<Instance>> {
    match ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .cloned()),
        Err(e) if e.code() == Some(NOT_FOUND) => Ok(None),
        Err(e) => Err(Error::from_sdk(
            &format!("DescribeInstances {instance_id}"),
            &e,
        )),
    }
}

/// The spot price history of `instance_type` in `availability_zone` ([`cost::SPOT_PRODUCT`])
/// from `from` to `to` (epoch seconds), all pages: the change in force at `from` and every
/// change inside the window, as DescribeSpotPriceHistory returns them.
///
/// [`cost::SPOT_PRODUCT`]: crate::cost::SPOT_PRODUCT
pub async fn spot_price_history(
    ec2: &Client,
    instance_type: &str,
    availability_zone: &str,
    from: i64,
    to: i64,
) -> Result<Vec<crate::cost::PricePoint>> {
    use aws_sdk_ec2::primitives::DateTime;
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ec2
            .describe_spot_price_history()
            .instance_types(InstanceType::from(instance_type))
            .availability_zone(availability_zone)
            .product_descriptions(crate::cost::SPOT_PRODUCT)
            .start_time(DateTime::from_secs(from))
            .end_time(DateTime::from_secs(to))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                Error::from_sdk(
                    &format!("DescribeSpotPriceHistory {instance_type} {availability_zone}"),
                    &e,
                )
            })?;
        for price in page.spot_price_history() {
            let (Some(at), Some(usd)) = (
                price.timestamp().map(|t| t.secs()),
                price.spot_price().and_then(|p| p.parse::<f64>().ok()),
            ) else {
                continue;
            };
            out.push(crate::cost::PricePoint {
                at,
                usd_per_hour: usd,
            });
        }
        match page.next_token().filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(out),
        }
    }
}
