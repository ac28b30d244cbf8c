//! The spotstep tool: the operator's commands against AWS (or `AWS_ENDPOINT_URL`) and the
//! developer's generators.
//!
//! ```text
//! spotstep run <job> [--mode M] [--preflight] [--branch B]   start an execution, print its link
//! spotstep watch <execution>                                 follow it to its end (exit code: its status)
//! spotstep logs <execution> [step] [--follow]                a step's full output (S3), or its lines as they arrive
//! spotstep redrive <execution>                               RedriveExecution, then watch
//! spotstep runs [job] [--limit N]                            recent executions
//! spotstep graph <job>                                       the state machine as Mermaid
//! spotstep asl jobs/<job> [--local]                          print the job's state machine definition
//! spotstep asl-all                                           regenerate statemachine/<job>.asl.json
//! spotstep contract                                          the names and formats the Python stage reads
//! ```
//!
//! `spotstep --help` and `spotstep <command> --help` say more (`spotstep::cli::USAGES`); exit
//! codes are `spotstep::cli::exit`. Run `asl`, `asl-all` and `graph <job>` from the
//! repository root.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use spotstep::asl::{render, Timing};
use spotstep::cli::{exit, parse, usage, Command};
use spotstep::manifest::Job;
use spotstep::operator::{self, Failure, Watching};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = std::env::var("SPOTSTEP_STACK").ok();
    let command = match parse(&args, stack.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spotstep: {}\n{}", e.message, usage(e.command));
            return ExitCode::from(exit::USAGE);
        }
    };
    let result = match command {
        Command::Help(topic) => {
            println!("{}", usage(topic));
            Ok(exit::OK)
        }
        Command::Asl { dir, local } => {
            let timing = if local {
                Timing::local()
            } else {
                Timing::production()
            };
            print(Path::new(&dir), &timing).map(|()| exit::OK)
        }
        Command::Contract => {
            println!("{:#}", spotstep::contract::contract());
            Ok(exit::OK)
        }
        Command::AslAll => {
            regenerate_all(Path::new("jobs"), Path::new("statemachine")).map(|()| exit::OK)
        }
        Command::Graph { job } => operator::graph(&job_dir(&job))
            .map(|text| {
                print!("{text}");
                exit::OK
            })
            .map_err(|f| f.message),
        aws => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime");
            return match runtime.block_on(operate(aws)) {
                Ok(code) => ExitCode::from(code),
                Err(f) => {
                    eprintln!("spotstep: {}", f.message);
                    ExitCode::from(f.code)
                }
            };
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("spotstep: {message}");
            ExitCode::from(exit::FAILED)
        }
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

/// The commands that talk to AWS.
async fn operate(command: Command) -> Result<u8, Failure> {
    operator::credentials().await?;
    let env = spotstep::env::Env::from_environment()
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let (sfn, s3) = (&env.sfn, &env.s3);
    let how = Watching {
        interval: Duration::from_secs(2),
        tty: std::io::stdout().is_terminal(),
    };
    let mut out = std::io::stdout();
    match command {
        Command::Run {
            job,
            mode,
            preflight,
            branch,
            target,
        } => {
            let input = operator::run_input(mode.as_deref(), preflight, branch.as_deref());
            operator::run(sfn, &target, &job, &input, env.clock.now(), &mut out).await?;
            Ok(exit::OK)
        }
        Command::Watch { execution, target } => {
            let e = operator::execution(sfn, &target, &execution).await?;
            operator::watch(sfn, &e.arn, how, &mut out).await
        }
        Command::Logs {
            execution,
            step,
            follow,
            target,
        } => {
            let e = operator::execution(sfn, &target, &execution).await?;
            let mut note = std::io::stderr();
            let logs = spotstep::aws::logs::client().await;
            let sources = operator::Sources {
                ssm: &env.ssm,
                logs: &logs,
                storage: s3,
            };
            let (step, arn) = (step.as_deref(), &e.arn);
            if follow {
                return operator::follow(sfn, sources, arn, step, how, &mut out, &mut note).await;
            }
            operator::logs(sfn, sources, arn, step, &mut out, &mut note).await?;
            Ok(exit::OK)
        }
        Command::Redrive { execution, target } => {
            let e = operator::execution(sfn, &target, &execution).await?;
            operator::redrive(sfn, &e.arn, &mut out).await?;
            operator::watch(sfn, &e.arn, how, &mut out).await
        }
        Command::Runs { job, limit, target } => {
            let rows = operator::runs(sfn, &target, job.as_deref(), limit).await?;
            let now = env.clock.now().unix_timestamp() * 1000;
            print!("{}", operator::table(&rows, now));
            Ok(exit::OK)
        }
        other => Err(Failure::error(format!("not an AWS command: {other:?}"))),
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
