//! The `spotstep` command line: its commands, their arguments and exit codes (parsing only;
//! [`operator`](crate::operator) carries them out).

use crate::naming::{check_branch, check_name};

/// Exit codes of `spotstep`.
pub mod exit {
    /// Done; for `watch` and `redrive`: the execution SUCCEEDED; for `logs --follow`: the
    /// step succeeded.
    pub const OK: u8 = 0;
    /// The execution FAILED (or, for `asl`/`asl-all`/`contract`, any error).
    pub const FAILED: u8 = 1;
    /// The execution TIMED_OUT.
    pub const TIMED_OUT: u8 = 2;
    /// The execution was ABORTED (stopped).
    pub const ABORTED: u8 = 3;
    /// Nothing was done: AWS refused or could not be reached (no credentials, an unknown
    /// execution, a job without a state machine, a refused redrive).
    pub const ERROR: u8 = 4;
    /// The arguments are wrong (the usage is printed).
    pub const USAGE: u8 = 64;

    /// The exit code of an execution that ended with `status`.
    pub fn of_status(status: &str) -> u8 {
        match status {
            "SUCCEEDED" => OK,
            "TIMED_OUT" => TIMED_OUT,
            "ABORTED" => ABORTED,
            _ => FAILED,
        }
    }
}

/// Where a job's state machine is: `<stack>-<job>` (the name `template.yaml` gives it,
/// and the local harness's `spotstep-<job>`), or an explicit ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `--stack S`, else `$SPOTSTEP_STACK`, else [`DEFAULT_STACK`].
    pub stack: String,
    /// `--state-machine ARN`: use this state machine whatever the job.
    pub state_machine: Option<String>,
}

/// The stack name `samconfig.toml` deploys (and the prefix the local harness uses).
pub const DEFAULT_STACK: &str = "spotstep";

impl Target {
    /// The state machine name of `job` in this stack.
    pub fn machine_name(&self, job: &str) -> String {
        format!("{}-{job}", self.stack)
    }
}

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage of one command (`None`: all).
    Help(Option<&'static str>),
    Asl {
        dir: String,
        local: bool,
    },
    AslAll,
    Contract,
    Graph {
        job: String,
    },
    Run {
        job: String,
        mode: Option<String>,
        preflight: bool,
        branch: Option<String>,
        target: Target,
    },
    Watch {
        execution: String,
        target: Target,
    },
    Logs {
        execution: String,
        step: Option<String>,
        follow: bool,
        target: Target,
    },
    Redrive {
        execution: String,
        target: Target,
    },
    Runs {
        job: Option<String>,
        limit: usize,
        target: Target,
    },
}

/// Each command's usage, in the order `spotstep --help` prints them.
pub const USAGES: [(&str, &str); 10] = [
    (
        "run",
        "spotstep run <job> [--mode M] [--preflight] [--branch B]\n    start an execution of the job's state machine (input {\"mode\",\"preflight\",\"branch\"} as the schedule gives it; \
         what is not given takes the job's default); prints the execution ARN and its console link",
    ),
    (
        "watch",
        "spotstep watch <execution>\n    follow an execution to its end: the step running now and its elapsed time, the steps done with their durations, \
         relaunches, the failure cause; exit 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT, 3 ABORTED",
    ),
    (
        "logs",
        "spotstep logs <execution> [step] [--follow]\n    print a step's full output (default: the last step sent) from s3://<bucket>/logs/<job>/<run_id>/<step>/; \
         --follow: print its lines as they arrive (CloudWatch Logs: the stream SSM writes the command's stdout to), following the step \
         when it is sent again, until it ends; exit 0 the step succeeded, 1 it failed, 2/3 the execution timed out/was aborted first \
         (a command streaming to no log group is printed from S3 when it ends)",
    ),
    (
        "redrive",
        "spotstep redrive <execution>\n    redrive a FAILED, TIMED_OUT or ABORTED execution (RedriveExecution: the failed state runs again, \
         the run resumes there), then watch it; exit as watch does, 4 when nothing was redriven (a RUNNING or SUCCEEDED execution)",
    ),
    (
        "runs",
        "spotstep runs [job] [--limit N]\n    recent executions (default 20 per job) with status, duration and the failed state",
    ),
    (
        "graph",
        "spotstep graph <job|jobs/<job>>\n    print the job's state machine as a Mermaid flowchart",
    ),
    (
        "asl",
        "spotstep asl jobs/<job> [--local]\n    print the job's state machine definition (--local: the emulator's fast intervals)",
    ),
    (
        "asl-all",
        "spotstep asl-all\n    regenerate statemachine/<job>.asl.json for every folder in jobs/ (run from the repository root)",
    ),
    (
        "contract",
        "spotstep contract\n    print the names and formats the Python stage reads (JSON)",
    ),
    (
        "options",
        "<execution> is an execution ARN, or <job>/<run-id> (the execution's name, as `run` prints it)\n\
         options of run, watch, logs, redrive, runs: --stack S (default $SPOTSTEP_STACK, else `spotstep`: a job's state machine \
         is <stack>-<job>), --state-machine ARN (use this one)\n\
         AWS: the default credential and region chain; AWS_ENDPOINT_URL for a local emulator\n\
         exit codes: 0 done (watch, redrive: SUCCEEDED; logs --follow: the step succeeded), 1 FAILED, 2 TIMED_OUT, 3 ABORTED, \
         4 nothing done (AWS error, unknown execution or job, no credentials, a refused redrive), 64 bad arguments",
    ),
];

/// The usage text of `command`, or of every command for `None`.
pub fn usage(command: Option<&str>) -> String {
    let wanted = |name: &str| command.is_none_or(|c| c == name || name == "options");
    let body: Vec<&str> = USAGES
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(_, text)| *text)
        .collect();
    format!("usage:\n  {}", body.join("\n  "))
}

/// A usage error: what is wrong, and the command whose usage to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub command: Option<&'static str>,
}

/// Parses the arguments after the program name. `stack_default` is `$SPOTSTEP_STACK`
/// (empty or `None`: [`DEFAULT_STACK`]).
pub fn parse(args: &[&str], stack_default: Option<&str>) -> Result<Command, UsageError> {
    let Some((&first, rest)) = args.split_first() else {
        return Err(UsageError {
            message: "no command".into(),
            command: None,
        });
    };
    if matches!(first, "-h" | "--help" | "help") {
        return Ok(Command::Help(None));
    }
    let Some(&(command, _)) = USAGES
        .iter()
        .find(|(name, _)| *name == first && *name != "options")
    else {
        return Err(UsageError {
            message: format!("unknown command `{first}`"),
            command: None,
        });
    };
    if rest.iter().any(|a| matches!(*a, "-h" | "--help")) {
        return Ok(Command::Help(Some(command)));
    }
    let wrong = |message: String| UsageError {
        message,
        command: Some(command),
    };
    let mut positional: Vec<&str> = Vec::new();
    let mut flags: Vec<(&str, Option<&str>)> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i];
        match a {
            "--mode" | "--branch" | "--stack" | "--state-machine" | "--limit" => {
                let value = rest
                    .get(i + 1)
                    .filter(|v| !v.starts_with("--"))
                    .ok_or_else(|| wrong(format!("{a} needs a value")))?;
                flags.push((a, Some(value)));
                i += 2;
            }
            "--preflight" | "--follow" | "--local" => {
                flags.push((a, None));
                i += 1;
            }
            _ if a.starts_with('-') => return Err(wrong(format!("unknown option `{a}`"))),
            _ => {
                positional.push(a);
                i += 1;
            }
        }
    }
    let allowed: &[&str] = match command {
        "run" => &[
            "--mode",
            "--branch",
            "--preflight",
            "--stack",
            "--state-machine",
        ],
        "watch" | "redrive" => &["--stack", "--state-machine"],
        "logs" => &["--follow", "--stack", "--state-machine"],
        "runs" => &["--limit", "--stack", "--state-machine"],
        "asl" => &["--local"],
        _ => &[],
    };
    if let Some((flag, _)) = flags.iter().find(|(f, _)| !allowed.contains(f)) {
        return Err(wrong(format!("`{command}` takes no {flag}")));
    }
    let value = |flag: &str| flags.iter().find(|(f, _)| *f == flag).and_then(|(_, v)| *v);
    let has = |flag: &str| flags.iter().any(|(f, _)| *f == flag);
    let target = Target {
        stack: value("--stack")
            .or(stack_default.filter(|s| !s.trim().is_empty()))
            .unwrap_or(DEFAULT_STACK)
            .trim()
            .to_string(),
        state_machine: value("--state-machine").map(String::from),
    };
    let arity = |min: usize, max: usize| {
        if positional.len() < min || positional.len() > max {
            Err(wrong(format!(
                "`{command}` takes {} argument(s), got {}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min}-{max}")
                },
                positional.len()
            )))
        } else {
            Ok(())
        }
    };
    let job = |name: &str| check_name(name).map_err(|e| wrong(format!("job {e}")));
    match command {
        "asl" => {
            arity(1, 1)?;
            Ok(Command::Asl {
                dir: positional[0].to_string(),
                local: has("--local"),
            })
        }
        "asl-all" | "contract" => {
            arity(0, 0)?;
            Ok(if command == "contract" {
                Command::Contract
            } else {
                Command::AslAll
            })
        }
        "graph" => {
            arity(1, 1)?;
            Ok(Command::Graph {
                job: positional[0].to_string(),
            })
        }
        "run" => {
            arity(1, 1)?;
            job(positional[0])?;
            if let Some(mode) = value("--mode") {
                check_name(mode).map_err(|e| wrong(format!("mode {e}")))?;
            }
            if let Some(branch) = value("--branch") {
                check_branch(branch).map_err(wrong)?;
            }
            Ok(Command::Run {
                job: positional[0].to_string(),
                mode: value("--mode").map(String::from),
                preflight: has("--preflight"),
                branch: value("--branch").map(String::from),
                target,
            })
        }
        "watch" | "redrive" => {
            arity(1, 1)?;
            let execution = positional[0].to_string();
            Ok(if command == "watch" {
                Command::Watch { execution, target }
            } else {
                Command::Redrive { execution, target }
            })
        }
        "logs" => {
            arity(1, 2)?;
            if let Some(step) = positional.get(1) {
                check_name(step).map_err(|e| wrong(format!("step {e}")))?;
            }
            Ok(Command::Logs {
                execution: positional[0].to_string(),
                step: positional.get(1).map(|s| s.to_string()),
                follow: has("--follow"),
                target,
            })
        }
        _ => {
            arity(0, 1)?;
            if let Some(name) = positional.first() {
                job(name)?;
            }
            let limit = match value("--limit") {
                None => 20,
                Some(n) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| wrong(format!("--limit `{n}` is not a positive number")))?,
            };
            Ok(Command::Runs {
                job: positional.first().map(|s| s.to_string()),
                limit,
                target,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(stack: &str) -> Target {
        Target {
            stack: stack.into(),
            state_machine: None,
        }
    }

    #[test]
    fn run_with_every_option() {
        let c = parse(
            &[
                "run",
                "data-weekly",
                "--mode",
                "full",
                "--preflight",
                "--branch",
                "fix/x",
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            c,
            Command::Run {
                job: "data-weekly".into(),
                mode: Some("full".into()),
                preflight: true,
                branch: Some("fix/x".into()),
                target: target("spotstep"),
            }
        );
        assert_eq!(target("prod").machine_name("demo"), "prod-demo");
    }

    #[test]
    fn stack_from_flag_then_environment_then_default() {
        let runs = |args: &[&str], env| match parse(args, env).unwrap() {
            Command::Runs { target, limit, .. } => (target, limit),
            other => panic!("{other:?}"),
        };
        assert_eq!(runs(&["runs"], Some("")), (target("spotstep"), 20));
        assert_eq!(runs(&["runs"], Some("prod")).0, target("prod"));
        let (t, limit) = runs(
            &[
                "runs",
                "--stack",
                "x",
                "--limit",
                "5",
                "--state-machine",
                "arn:m",
            ],
            Some("prod"),
        );
        assert_eq!(t.stack, "x");
        assert_eq!(t.state_machine.as_deref(), Some("arn:m"));
        assert_eq!(limit, 5);
    }

    #[test]
    fn logs_watch_redrive_and_the_legacy_commands() {
        assert_eq!(
            parse(&["logs", "demo/r1", "slow", "--follow"], None).unwrap(),
            Command::Logs {
                execution: "demo/r1".into(),
                step: Some("slow".into()),
                follow: true,
                target: target("spotstep"),
            }
        );
        assert!(
            matches!(parse(&["watch", "arn:x"], None).unwrap(), Command::Watch { execution, .. } if execution == "arn:x")
        );
        assert!(matches!(
            parse(&["redrive", "demo/r"], None).unwrap(),
            Command::Redrive { .. }
        ));
        assert_eq!(
            parse(&["asl", "--local", "jobs/demo"], None).unwrap(),
            Command::Asl {
                dir: "jobs/demo".into(),
                local: true
            }
        );
        assert_eq!(parse(&["asl-all"], None).unwrap(), Command::AslAll);
        assert_eq!(parse(&["contract"], None).unwrap(), Command::Contract);
        assert_eq!(
            parse(&["graph", "data-weekly"], None).unwrap(),
            Command::Graph {
                job: "data-weekly".into()
            }
        );
    }

    #[test]
    fn help_per_command() {
        assert_eq!(parse(&["--help"], None).unwrap(), Command::Help(None));
        assert_eq!(
            parse(&["watch", "--help"], None).unwrap(),
            Command::Help(Some("watch"))
        );
        let text = usage(Some("logs"));
        assert!(text.contains("spotstep logs <execution>"), "{text}");
        assert!(!text.contains("spotstep watch"), "{text}");
        assert!(text.contains("exit codes"), "{text}");
        let all = usage(None);
        for (name, _) in USAGES.iter().filter(|(n, _)| *n != "options") {
            assert!(all.contains(&format!("spotstep {name}")), "{name}");
        }
    }

    #[test]
    fn wrong_arguments_name_the_command() {
        let err = |args: &[&str]| parse(args, None).unwrap_err();
        assert_eq!(err(&[]).command, None);
        assert_eq!(err(&["launch"]).message, "unknown command `launch`");
        let e = err(&["run"]);
        assert_eq!(e.command, Some("run"));
        assert!(e.message.contains("takes 1 argument(s), got 0"), "{e:?}");
        assert!(err(&["run", "demo", "--mode"])
            .message
            .contains("--mode needs a value"));
        assert!(err(&["run", "Demo!"]).message.starts_with("job `Demo!`"));
        assert!(err(&["run", "demo", "--branch", "-x"])
            .message
            .contains("not a safe branch name"));
        assert!(err(&["run", "demo", "--branch", "a..b"])
            .message
            .contains("not a safe branch"));
        assert!(err(&["watch", "x", "--follow"])
            .message
            .contains("takes no --follow"));
        assert!(err(&["runs", "--limit", "0"])
            .message
            .contains("not a positive number"));
        assert!(err(&["logs", "x", "--bogus"])
            .message
            .contains("unknown option `--bogus`"));
    }

    #[test]
    fn exit_codes_of_statuses() {
        assert_eq!(exit::of_status("SUCCEEDED"), 0);
        assert_eq!(exit::of_status("FAILED"), 1);
        assert_eq!(exit::of_status("TIMED_OUT"), 2);
        assert_eq!(exit::of_status("ABORTED"), 3);
    }
}
