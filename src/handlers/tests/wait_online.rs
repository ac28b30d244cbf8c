//! wait-online against mocked AWS.

use super::*;
use crate::handlers::wait_online::handle;
use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_sdk_ssm::types::{InstanceInformation, PingStatus};

fn input() -> Value {
    json!({"run": run_json(), "instance": launch_json()})
}

fn agent(status: Option<PingStatus>) -> Rule {
    mock!(aws_sdk_ssm::Client::describe_instance_information).then_output(move || {
        let list = status.clone().map(|s| {
            InstanceInformation::builder()
                .instance_id("i-1")
                .ping_status(s)
                .agent_version("3.3")
                .build()
        });
        DescribeInstanceInformationOutput::builder()
            .set_instance_information_list(list.map(|i| vec![i]))
            .build()
    })
}

#[tokio::test]
async fn online_agent() {
    let mocks = Mocks {
        ssm: vec![agent(Some(PingStatus::Online))],
        ..Mocks::default()
    };
    let online = handle(&mocks.env(), input()).await.unwrap();
    assert_eq!(online.instance_id, "i-1");
    assert_eq!(online.agent_version, "3.3");
}

#[tokio::test]
async fn an_instance_ec2_does_not_show_right_after_launch_is_not_lost() {
    let not_found = || {
        mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
            aws_sdk_ec2::operation::describe_instances::DescribeInstancesError::generic(meta(
                "InvalidInstanceID.NotFound",
            ))
        })
    };
    let mocks = Mocks {
        ssm: vec![agent(None)],
        ec2: vec![not_found()],
        ..Mocks::default()
    };
    let mut just_launched = input();
    just_launched["instance"]["launched_at"] = json!("2026-11-28T08:59:59Z");
    let err = handle(&mocks.env(), just_launched).await.unwrap_err();
    assert_eq!(err.name(), "AgentNotOnline", "{err}");
    let mut long_ago = input();
    long_ago["instance"]["launched_at"] = json!("2026-11-28T08:00:00Z");
    let err = handle(&mocks.env(), long_ago).await.unwrap_err();
    assert_eq!(err.name(), "InstanceLost", "{err}");
}

#[tokio::test]
async fn booting_instance_is_retryable() {
    for status in [None, Some(PingStatus::ConnectionLost)] {
        let mocks = Mocks {
            ssm: vec![agent(status)],
            ec2: vec![describe_instances(vec![instance(
                "i-1",
                InstanceStateName::Running,
                &[],
            )])],
            ..Mocks::default()
        };
        let err = handle(&mocks.env(), input()).await.unwrap_err();
        assert_eq!(err.name(), "AgentNotOnline");
    }
}

#[tokio::test]
async fn a_reclaimed_instance_is_reported_as_such() {
    let mocks = Mocks {
        ssm: vec![agent(None)],
        ec2: vec![describe_instances(vec![terminated_by(
            "Server.SpotInstanceTermination",
        )])],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "InstanceReclaimed");
    assert!(
        err.to_string().contains("Server.SpotInstanceTermination"),
        "{err}"
    );
}

#[tokio::test]
async fn a_vanished_instance_is_lost() {
    let mocks = Mocks {
        ssm: vec![agent(None)],
        ec2: vec![
            mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
                aws_sdk_ec2::operation::describe_instances::DescribeInstancesError::generic(meta(
                    "InvalidInstanceID.NotFound",
                ))
            }),
        ],
        ..Mocks::default()
    };
    let err = handle(&mocks.env(), input()).await.unwrap_err();
    assert_eq!(err.name(), "InstanceLost");
    assert!(err.to_string().contains("no longer knows"), "{err}");
}
