//! `spotstep graph`: a job's state machine as a Mermaid flowchart.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::cli::exit;

/// The arguments of `spotstep graph`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct GraphOptions {
    /// The job: its name (`jobs/<job>`, from the repository root) or its folder
    #[arg(value_name = "job|jobs/<job>")]
    pub job: String,
}

impl GraphOptions {
    /// Prints the job's flowchart ([`graph`]).
    pub fn execute(self) -> Result<u8, Failure> {
        print!("{}", graph(&job_dir(&self.job))?);
        Ok(exit::OK)
    }
}

/// `jobs/<job>` for a bare job name, else the path as given.
fn job_dir(job: &str) -> PathBuf {
    if job.contains('/') {
        PathBuf::from(job)
    } else {
        Path::new("jobs").join(job)
    }
}

/// `spotstep graph`: the Mermaid flowchart of the job in `dir` (production definition).
pub fn graph(dir: &Path) -> Result<String, Failure> {
    let job = crate::manifest::Job::load(dir).map_err(|e| Failure::failed(e.to_string()))?;
    Ok(crate::graph::mermaid(&crate::asl::definition(
        &job,
        &crate::asl::Timing::production(),
    )))
}
