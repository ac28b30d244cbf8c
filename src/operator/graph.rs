//! `spotstep graph`: a job's state machine as a Mermaid flowchart.

use std::path::Path;

use super::Failure;

/// `spotstep graph`: the Mermaid flowchart of the job in `dir` (production definition).
pub fn graph(dir: &Path) -> Result<String, Failure> {
    let job = crate::manifest::Job::load(dir).map_err(|e| Failure::error(e.to_string()))?;
    Ok(crate::graph::mermaid(&crate::asl::definition(
        &job,
        &crate::asl::Timing::production(),
    )))
}
