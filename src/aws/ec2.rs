//! The EC2 calls: launching one instance, what became of an instance, which instances
//! belong to a run, terminating them.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    Instance, InstanceInterruptionBehavior, InstanceMarketOptionsRequest,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    MarketType, ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification, VolumeType,
};
use aws_sdk_ec2::Client;

use crate::error::{Error, Result};
use crate::loss::{fate, Fate, InstanceFacts};
use crate::naming::{self, tags};

/// Instance states that still cost money or may still run something.
pub const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// What EC2 says about `instance_id` and its spot request.
pub async fn facts(ec2: &Client, instance_id: &str) -> Result<InstanceFacts> {
    let described = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await;
    let instance = match described {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .cloned(),
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code())
                == Some("InvalidInstanceID.NotFound") =>
        {
            None
        }
        Err(e) => {
            return Err(Error::from_sdk(
                &format!("DescribeInstances {instance_id}"),
                &e,
            ))
        }
    };
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

/// `Ok` while the instance is usable; `InstanceReclaimed` or `InstanceLost` once it is not.
pub async fn ensure_alive(ec2: &Client, instance_id: &str) -> Result<()> {
    match fate(&facts(ec2, instance_id).await?) {
        Fate::Alive => Ok(()),
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
    let mut request = ec2.describe_instances().filters(
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
            .build(),
    );
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
        .map_err(|e| Error::from_sdk("DescribeInstances by spotstep tags", &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            let live = i.state().and_then(|s| s.name()).is_some_and(|n| {
                !matches!(
                    n,
                    InstanceStateName::Terminated | InstanceStateName::ShuttingDown
                )
            });
            live && wanted.iter().all(|(k, v)| tag(i, k) == Some(*v))
        })
        .cloned()
        .collect())
}

/// The (job, run id) pairs of every instance an execution launched, in any state (see
/// [`run_of`]).
pub async fn runs_of_execution(ec2: &Client, execution: &str) -> Result<Vec<(String, String)>> {
    let out = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::EXECUTION))
                .values(execution)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::from_sdk("DescribeInstances of an execution", &e))?;
    let mut runs: Vec<(String, String)> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| tag(i, tags::EXECUTION) == Some(execution))
        .filter_map(run_of)
        .collect();
    runs.sort();
    runs.dedup();
    Ok(runs)
}

/// All live instances spotstep launched (any job).
pub async fn spotstep_instances(ec2: &Client) -> Result<Vec<Instance>> {
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag-key").values(tags::JOB).build())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::from_sdk("DescribeInstances of spotstep instances", &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| tag(i, tags::JOB).is_some())
        .filter(|i| {
            i.state().and_then(|s| s.name()).is_some_and(|n| {
                !matches!(
                    n,
                    InstanceStateName::Terminated | InstanceStateName::ShuttingDown
                )
            })
        })
        .cloned()
        .collect())
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

/// Terminates the instances (none is fine). An instance EC2 no longer knows is not an error.
pub async fn terminate(ec2: &Client, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    match ec2
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code())
                == Some("InvalidInstanceID.NotFound") =>
        {
            Ok(())
        }
        Err(e) => Err(Error::from_sdk(
            &format!("TerminateInstances {}", ids.join(",")),
            &e,
        )),
    }
}

/// One instance to launch in one capacity pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRequest {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group: String,
    /// Instance profile name or ARN (empty: none).
    pub instance_profile: String,
    pub root_volume_gb: u32,
    /// Base64 user data.
    pub user_data: String,
    /// The idempotency token of this launch call.
    pub client_token: String,
    /// Tags of the instance and its volume.
    pub tags: Vec<(String, String)>,
    /// A one-time spot request that terminates on interruption; on-demand otherwise.
    pub spot: bool,
}

/// An instance EC2 started (or an earlier try of the same launch had started).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    pub spot: bool,
}

impl Started {
    fn of(instance: &Instance) -> Started {
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
        }
    }
}

/// What EC2 answered a launch in one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    Started(Started),
    /// EC2 refused this pool: its error code and message (capacity, quota, parameters).
    Refused {
        code: String,
        message: String,
    },
}

/// Launches one instance (RunInstances). Throttling is an error (`Throttled`); any other
/// refusal is [`Launched::Refused`] for the caller to classify.
pub async fn run_instance(ec2: &Client, request: &InstanceRequest) -> Result<Launched> {
    let tags: Vec<Tag> = request
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let mut call = ec2
        .run_instances()
        .image_id(&request.image_id)
        .instance_type(InstanceType::from(request.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .subnet_id(&request.subnet_id)
        .security_group_ids(&request.security_group)
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
                        .volume_size(request.root_volume_gb as i32)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .user_data(&request.user_data)
        .client_token(&request.client_token)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(tags.clone()))
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(tags))
                .build(),
        );
    if !request.instance_profile.is_empty() {
        let profile = IamInstanceProfileSpecification::builder();
        call = call.iam_instance_profile(if request.instance_profile.starts_with("arn:") {
            profile.arn(&request.instance_profile).build()
        } else {
            profile.name(&request.instance_profile).build()
        });
    }
    if request.spot {
        call = call.instance_market_options(
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
    match call.send().await {
        Ok(out) => {
            let instance = out.instances().first().ok_or_else(|| {
                Error::AwsError("RunInstances answered without an instance".to_string())
            })?;
            Ok(Launched::Started(Started {
                instance_type: request.instance_type.clone(),
                subnet_id: request.subnet_id.clone(),
                spot: request.spot,
                ..Started::of(instance)
            }))
        }
        Err(e) => {
            let code = e.code().unwrap_or("Unknown").to_string();
            if crate::error::is_throttling(&code) {
                return Err(Error::from_sdk("RunInstances", &e));
            }
            Ok(Launched::Refused {
                code,
                message: e.message().unwrap_or("no message").to_string(),
            })
        }
    }
}

/// The live instance an earlier try of the same launch started: tagged with the execution
/// and the attempt.
pub async fn started_by(ec2: &Client, execution: &str, attempt: u32) -> Result<Option<Started>> {
    let attempt = attempt.to_string();
    let found = tagged_instances(
        ec2,
        &[(tags::EXECUTION, execution), (tags::ATTEMPT, &attempt)],
    )
    .await?;
    Ok(found.first().map(Started::of))
}
