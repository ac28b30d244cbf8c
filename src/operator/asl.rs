//! `spotstep asl` and `spotstep asl-all`: a job's state machine definition, printed or
//! written to `statemachine/<job>.asl.json` for every job.

use std::path::Path;

use super::Failure;
use crate::asl::{render, Timing};
use crate::cli::exit;
use crate::manifest::{job_dirs, Job};

/// The arguments of `spotstep asl`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AslOptions {
    /// The job's folder
    #[arg(value_name = "jobs/<job>")]
    pub dir: String,
    /// The emulator's fast intervals instead of production's
    #[arg(long)]
    pub local: bool,
}

impl AslOptions {
    /// Prints the job's definition.
    pub fn execute(self) -> Result<u8, Failure> {
        let timing = if self.local {
            Timing::local()
        } else {
            Timing::production()
        };
        print!("{}", render(&load(Path::new(&self.dir))?, &timing));
        Ok(exit::OK)
    }
}

/// The arguments of `spotstep asl-all`: none.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AslAllOptions {}

impl AslAllOptions {
    /// Regenerates `statemachine/` from `jobs/` ([`regenerate_all`]).
    pub fn execute(self) -> Result<u8, Failure> {
        regenerate_all(Path::new("jobs"), Path::new("statemachine"))?;
        Ok(exit::OK)
    }
}

fn load(dir: &Path) -> Result<Job, Failure> {
    Job::load(dir).map_err(|e| Failure::failed(e.to_string()))
}

/// Writes `<out>/<job>.asl.json` (production timing) for every job folder in `jobs` and
/// removes the definitions whose job is gone.
pub fn regenerate_all(jobs: &Path, out: &Path) -> Result<(), Failure> {
    let dirs = job_dirs(jobs).map_err(|e| {
        Failure::failed(format!(
            "cannot list {}: {e} (run from the repository root)",
            jobs.display()
        ))
    })?;
    std::fs::create_dir_all(out)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", out.display())))?;
    let mut written = Vec::new();
    for dir in &dirs {
        let job = load(dir)?;
        let file = out.join(format!("{}.asl.json", job.spec.name));
        std::fs::write(&file, render(&job, &Timing::production()))
            .map_err(|e| Failure::failed(format!("cannot write {}: {e}", file.display())))?;
        println!("wrote {}", file.display());
        written.push(file);
    }
    let entries = std::fs::read_dir(out)
        .map_err(|e| Failure::failed(format!("cannot list {}: {e}", out.display())))?;
    for stale in entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".asl.json") && !written.contains(p))
    {
        std::fs::remove_file(&stale)
            .map_err(|e| Failure::failed(format!("cannot remove {}: {e}", stale.display())))?;
        println!("removed {} (no such job)", stale.display());
    }
    Ok(())
}
