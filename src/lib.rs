//! spotstep: run a job's steps on an EC2 spot instance through SSM, one Step Functions
//! state per step.
//!
//! The Lambda functions (`functions/*`) are wiring only; everything they do lives here:
//! pure rules that need no AWS ([`manifest`], [`naming`], [`script`], [`status`],
//! [`capacity`], [`loss`], [`run`]) and the handlers that make the AWS calls
//! ([`handlers`]).

pub mod asl;
pub mod capacity;
pub mod contract;
pub mod ec2;
pub mod env;
pub mod error;
pub mod handlers;
pub mod lambda;
pub mod loss;
pub mod manifest;
pub mod naming;
pub mod run;
pub mod script;
pub mod status;
pub mod telemetry;

pub use error::{Error, Result};
