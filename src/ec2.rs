//! The few EC2 calls spotstep makes besides launching: what became of an instance, which
//! instances belong to a run, terminating them.

use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName};
use aws_sdk_ec2::Client;

use crate::error::{Error, Result};
use crate::loss::{fate, Fate, InstanceFacts};
use crate::naming::tags;

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

/// The (job, run id) pairs of every instance an execution launched, in any state.
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
        .filter_map(|i| {
            Some((
                tag(i, tags::JOB)?.to_string(),
                tag(i, tags::RUN_ID)?.to_string(),
            ))
        })
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
