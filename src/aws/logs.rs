//! The CloudWatch Logs call: a log stream's events, read forward from a token (`spotstep
//! logs --follow` tails a step's output stream with it).

use aws_sdk_cloudwatchlogs::Client;

use crate::error::{Error, Result};

/// What one read of a stream returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The events' messages, oldest first.
    pub messages: Vec<String>,
    /// Where the next read goes on from (`nextForwardToken`).
    pub next_token: Option<String>,
}

/// The events of `stream` in `group` after `token` (from the stream's start without one),
/// or `None` while the group or the stream does not exist yet.
pub async fn read(
    logs: &Client,
    group: &str,
    stream: &str,
    token: Option<&str>,
) -> Result<Option<Page>> {
    match logs
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(true)
        .set_next_token(token.map(String::from))
        .send()
        .await
    {
        Ok(out) => Ok(Some(Page {
            messages: out
                .events()
                .iter()
                .filter_map(|e| e.message().map(String::from))
                .collect(),
            next_token: out.next_forward_token().map(String::from),
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("GetLogEvents {group} {stream}"),
            &e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_cloudwatchlogs::operation::get_log_events::{
        GetLogEventsError, GetLogEventsOutput,
    };
    use aws_sdk_cloudwatchlogs::types::error::ResourceNotFoundException;
    use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};

    fn client(rules: &[&Rule]) -> Client {
        let interceptor = rules.iter().fold(
            MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
            |i, rule| i.with_rule(rule),
        );
        Client::from_conf(
            aws_sdk_cloudwatchlogs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }

    #[tokio::test]
    async fn reads_forward_from_a_token_and_a_missing_stream_is_none() {
        let page = mock!(Client::get_log_events)
            .match_requests(|r| {
                r.log_group_name() == Some("/spotstep/steps")
                    && r.log_stream_name() == Some("c/i/aws-runShellScript/stdout")
                    && r.start_from_head() == Some(true)
                    && r.next_token() == Some("f/1")
            })
            .then_output(|| {
                GetLogEventsOutput::builder()
                    .events(OutputLogEvent::builder().message("tick 1").build())
                    .events(OutputLogEvent::builder().message("tick 2").build())
                    .next_forward_token("f/3")
                    .build()
            });
        let missing = mock!(Client::get_log_events)
            .match_requests(|r| r.next_token().is_none())
            .then_error(|| {
                GetLogEventsError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        let logs = client(&[&page, &missing]);
        let stream = "c/i/aws-runShellScript/stdout";
        assert_eq!(
            read(&logs, "/spotstep/steps", stream, Some("f/1"))
                .await
                .unwrap(),
            Some(Page {
                messages: vec!["tick 1".into(), "tick 2".into()],
                next_token: Some("f/3".into()),
            })
        );
        assert_eq!(
            read(&logs, "/spotstep/steps", stream, None).await.unwrap(),
            None
        );
    }
}
