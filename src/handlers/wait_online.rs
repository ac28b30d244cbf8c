//! wait-online: is the instance's SSM agent `Online`? A still-booting instance is the
//! retryable `AgentNotOnline`; an instance that is gone is `InstanceReclaimed` or
//! `InstanceLost`, classified before anything is terminated.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::aws::{ec2, ssm};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::input::{parse, Checked};
use crate::records::{Launch, Run};

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

impl Checked for Input {
    fn check(&self) -> Result<()> {
        self.run.check()?;
        if self.instance.instance_id.is_empty() {
            return Err(Error::InvalidInput(
                "wait-online needs instance.instance_id".into(),
            ));
        }
        Ok(())
    }
}

/// Handles one wait-online request.
pub async fn handle(env: &Env, input: Value) -> Result<Online> {
    let Input { instance, .. } = parse("wait-online input", input)?;
    let id = &instance.instance_id;
    let agent = ssm::agent(env.ssm().await, id).await?;
    if let Some(agent) = agent.as_ref().filter(|a| a.online()) {
        info!(instance_id = %id, "agent online");
        return Ok(Online {
            instance_id: id.clone(),
            ping_status: agent.ping_status.clone(),
            agent_version: agent.agent_version.clone(),
            platform: agent.platform.clone(),
        });
    }
    ec2::ensure_alive(
        env.ec2().await,
        id,
        instance.seconds_since_launch(env.clock.now()),
    )
    .await?;
    let status = agent
        .map(|a| a.ping_status)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not registered".to_string());
    Err(Error::AgentNotOnline(format!(
        "the SSM agent of instance {id} is not online yet ({status}); the state machine keeps waiting. \
         If this is the final attempt: the instance is terminated by cleanup; check that its instance profile \
         grants AmazonSSMManagedInstanceCore and that its subnet reaches the SSM endpoints"
    )))
}
