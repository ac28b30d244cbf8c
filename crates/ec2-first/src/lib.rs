//! `aws-sdk-ec2`, re-exported whole. spotstep takes the EC2 SDK through this crate (the root
//! Cargo.toml names it `aws-sdk-ec2`, so the code says `aws_sdk_ec2` as before) for one reason:
//! the order in which cargo compiles the SDK.
//!
//! `aws-sdk-ec2` is the build's longest crate by far (186 s on one core in the arm64 release
//! build, against 54 s for `aws-sdk-ssm`, the next), and every function's link waits for it.
//! Cargo starts the ready crate with the most crates depending on it, and breaks ties in an
//! order of its own. The service crates the library takes (EC2, S3, SSM, Step Functions, SNS)
//! have the same dependents (the library and the five functions), so EC2 used to start
//! anywhere among them, up to last. This crate is one more dependent of EC2 alone, which puts
//! it ahead of the four others on every build. README ("Release profile") has what it saves.

pub use aws_sdk_ec2::*;
