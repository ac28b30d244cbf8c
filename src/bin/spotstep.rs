//! The spotstep developer tool.
//!
//! ```text
//! spotstep asl jobs/<job> [--local]   print the job's state machine definition
//! spotstep asl-all                    regenerate statemachine/<job>.asl.json for every job
//! spotstep contract                   print the names and formats the Python stage reads (JSON)
//! ```
//!
//! Run from the repository root (`cargo run --bin spotstep -- asl-all`).

use std::path::Path;
use std::process::ExitCode;

use spotstep::asl::{render, Timing};
use spotstep::manifest::Job;

const USAGE: &str = "usage:\n  spotstep asl jobs/<job> [--local]   print the job's state machine definition \
                     (--local: the emulator's fast intervals)\n  spotstep asl-all                    \
                     regenerate statemachine/<job>.asl.json for every folder in jobs/ (run from the repository root)\n  \
                     spotstep contract                   print the names and formats the Python stage reads (JSON)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["asl", dir] => print(Path::new(dir), &Timing::production()),
        ["asl", dir, "--local"] | ["asl", "--local", dir] => {
            print(Path::new(dir), &Timing::local())
        }
        ["contract"] => {
            println!("{:#}", spotstep::contract::contract());
            Ok(())
        }
        ["asl-all"] => regenerate_all(Path::new("jobs"), Path::new("statemachine")),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("spotstep: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(dir: &Path) -> Result<Job, String> {
    Job::load(dir).map_err(|e| e.to_string())
}

fn print(dir: &Path, timing: &Timing) -> Result<(), String> {
    print!("{}", render(&load(dir)?, timing));
    Ok(())
}

/// Writes `<out>/<job>.asl.json` for every job folder and removes definitions whose job is
/// gone.
fn regenerate_all(jobs: &Path, out: &Path) -> Result<(), String> {
    let dirs = spotstep::manifest::job_dirs(jobs).map_err(|e| {
        format!(
            "cannot list {}: {e} (run from the repository root)",
            jobs.display()
        )
    })?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for dir in &dirs {
        let job = load(dir)?;
        let file = out.join(format!("{}.asl.json", job.spec.name));
        std::fs::write(&file, render(&job, &Timing::production()))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        println!("wrote {}", file.display());
        written.push(file);
    }
    let entries =
        std::fs::read_dir(out).map_err(|e| format!("cannot list {}: {e}", out.display()))?;
    for stale in entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".asl.json") && !written.contains(p))
    {
        std::fs::remove_file(&stale)
            .map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
        println!("removed {} (no such job)", stale.display());
    }
    Ok(())
}
