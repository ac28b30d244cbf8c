//! wait-online: is the instance's SSM agent `Online`? A still-booting instance is the
//! retryable `AgentNotOnline`; an instance that is gone is `InstanceReclaimed` or
//! `InstanceLost`, classified before anything is terminated.

use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::ec2;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::run::{parse, Launch, Run};

/// What the state machine passes to wait-online.
#[derive(Debug, Deserialize)]
pub struct Input {
    pub run: Run,
    pub instance: Launch,
}

/// The agent, once online.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Online {
    pub instance_id: String,
    pub ping_status: String,
    pub agent_version: String,
    pub platform: String,
}

/// Handles one wait-online request.
pub async fn handle(env: &Env, input: Value) -> Result<Online> {
    let Input { instance, .. } = parse("wait-online input", input)?;
    let id = &instance.instance_id;
    if id.is_empty() {
        return Err(Error::InvalidInput(
            "wait-online needs instance.instance_id".into(),
        ));
    }
    let out = env
        .ssm
        .describe_instance_information()
        .filters(
            InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(id)
                .build()
                .map_err(|e| {
                    Error::AwsError(format!(
                        "building the DescribeInstanceInformation filter: {e}"
                    ))
                })?,
        )
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("DescribeInstanceInformation {id}"), &e))?;
    let info = out
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(id.as_str()));
    if let Some(info) = info.filter(|i| i.ping_status() == Some(&PingStatus::Online)) {
        info!(instance_id = %id, "agent online");
        return Ok(Online {
            instance_id: id.clone(),
            ping_status: "Online".into(),
            agent_version: info.agent_version().unwrap_or_default().into(),
            platform: info.platform_name().unwrap_or_default().into(),
        });
    }
    ec2::ensure_alive(&env.ec2, id).await?;
    let status = info
        .and_then(|i| i.ping_status())
        .map_or("not registered".to_string(), |s| s.as_str().to_string());
    Err(Error::AgentNotOnline(format!(
        "the SSM agent of instance {id} is not online yet ({status}); the state machine keeps waiting. \
         If this is the final attempt: the instance is terminated by cleanup; check that its instance profile \
         grants AmazonSSMManagedInstanceCore and that its subnet reaches the SSM endpoints"
    )))
}
