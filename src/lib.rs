//! spotstep: run a job's steps on an EC2 spot instance through SSM, one Step Functions
//! state per step.
//!
//! The Lambda functions (`functions/*`) are wiring only; everything they do lives here, in
//! three floors:
//! - pure rules that need no AWS: [`manifest`], [`naming`], [`script`], [`status`],
//!   [`capacity`], [`loss`], [`records`], [`waiting`], [`input`], [`asl`], [`contract`];
//! - one narrow module per AWS service, the only code that calls AWS: [`aws`];
//! - the handlers, which read as decisions over both: [`handlers`];
//!
//! plus the wiring they share: [`env`](mod@env) (clients, settings, clock), [`lambda`] (the runtime
//! loop), [`telemetry`] (logs and metrics), [`error`] (the stable error names).
//!
//! The operator's `spotstep` command (`cli`, `operator`, and the CloudWatch Logs reader
//! `aws::logs`) is the `cli` feature, the root package's default; the functions leave it out.

pub mod asl;
pub mod aws;
pub mod capacity;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod contract;
pub mod cost;
pub mod env;
pub mod error;
pub mod fanout;
pub mod fleet;
pub mod graph;
pub mod handlers;
pub mod input;
pub mod lambda;
pub mod ledger;
pub mod lock;
pub mod loss;
pub mod manifest;
pub mod naming;
pub mod notification;
#[cfg(feature = "cli")]
pub mod operator;
pub mod preemption;
pub mod progress;
pub mod records;
pub mod script;
pub mod status;
pub mod telemetry;
pub mod waiting;

pub use error::{Error, Result};
