//! One narrow module per AWS service: the few calls spotstep makes, named in its own words,
//! returning its own [`Error`](crate::Error). Handlers call only these; no handler builds an
//! SDK request itself. Each call is mocked at the client in the handler tests
//! (`aws-smithy-mocks`), so a test sees the real request.

pub mod ec2;
pub mod https;
#[cfg(feature = "cli")]
pub mod logs;
pub mod s3;
pub mod sfn;
pub mod sns;
pub mod ssm;
