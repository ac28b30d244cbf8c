//! One narrow module per AWS service: the few calls spotstep makes, named in its own words,
//! returning its own [`Error`](crate::Error). Handlers call only these; no handler builds an
//! SDK request itself. Each call is mocked at the client in the handler tests
//! (`aws-smithy-mocks`), so a test sees the real request.

pub mod ec2;
pub mod http;
pub mod logs;
pub mod s3;
pub mod sfn;
pub mod sns;
pub mod ssm;

/// The SDK configuration, as `aws_config::load_from_env` loads it (the default credential
/// and region chains, `AWS_ENDPOINT_URL`), on the HTTP client of [`http`].
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http::client())
        .load()
        .await
}
