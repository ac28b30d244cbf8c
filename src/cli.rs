//! The `spotstep` command line, on clap: its commands, the usage errors in spotstep's words,
//! and the exit codes. Each command's options, and what it does, are in its module under
//! [`operator`](crate::operator).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::naming::{check_branch, check_name};
use crate::operator::{
    asl, completions, contract, cost, graph, logs, redrive, run, runs, watch, Aws, Failure,
};

/// Exit codes of `spotstep`.
pub mod exit {
    /// Done; for `watch` and `redrive`: the execution SUCCEEDED; for `logs --follow`: the
    /// step succeeded; `--help` and `--version`.
    pub const OK: u8 = 0;
    /// The execution FAILED (or, for `asl`/`asl-all`/`contract`/`graph`, any error).
    pub const FAILED: u8 = 1;
    /// The execution TIMED_OUT.
    pub const TIMED_OUT: u8 = 2;
    /// The execution was ABORTED (stopped).
    pub const ABORTED: u8 = 3;
    /// Nothing was done: AWS refused or could not be reached (no credentials, an unknown
    /// execution, a job without a state machine, a refused redrive).
    pub const ERROR: u8 = 4;
    /// The arguments are wrong (the error and the command's usage are printed); clap's own
    /// code for this is 2, which is [`TIMED_OUT`] here.
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

    /// The exit code of what [`parse`](super::parse) refused: [`OK`] for `--help` and
    /// `--version` (printed on stdout), else [`USAGE`].
    pub fn of_usage(error: &clap::Error) -> u8 {
        if error.use_stderr() {
            USAGE
        } else {
            OK
        }
    }
}

/// Where a job's state machine is: `<stack>-<job>` (the name `template.yaml` gives it,
/// and the local harness's `spotstep-<job>`), or an explicit ARN. The options of `run`,
/// `watch`, `logs`, `redrive` and `runs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Target {
    /// The stack: a job's state machine is `<stack>-<job>` (default: $SPOTSTEP_STACK when set)
    #[arg(long, value_name = "S", default_value = DEFAULT_STACK, value_parser = trimmed)]
    pub stack: String,
    /// Use this state machine, whatever the job
    #[arg(long, value_name = "ARN")]
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

/// spotstep: run a job's steps on an EC2 spot instance, one Step Functions state per step
///
/// The operator's commands (run, watch, logs, redrive, runs, graph) and the developer's
/// generators (asl, asl-all, contract).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "spotstep", version)]
pub enum Command {
    /// Start an execution of the job's state machine; print its ARN and console link
    ///
    /// The execution is named `manual-<UTC time>`; its input is {"mode","preflight","branch"}
    /// as the schedule gives it, and what is not given takes the job's default.
    #[command(override_usage = "spotstep run <job> [--mode M] [--preflight] [--branch B]")]
    Run(run::RunOptions),
    /// Follow an execution to its end
    ///
    /// Prints the step running now and its elapsed time, the steps done with their
    /// durations, relaunches, the failure cause; exit 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT,
    /// 3 ABORTED.
    #[command(override_usage = "spotstep watch <execution>")]
    Watch(watch::WatchOptions),
    /// Print a step's full output, or its lines as they arrive (--follow)
    ///
    /// The output is read from `s3://<bucket>/logs/<job>/<run_id>/<step>/`. --follow prints the
    /// lines from CloudWatch Logs (the stream SSM writes the command's stdout to), follows the
    /// step when it is sent again, until it ends; exit 0 the step succeeded, 1 it failed,
    /// 2/3 the execution timed out/was aborted first (a command streaming to no log group is
    /// printed from S3 when it ends). --shard K prints shard K of a fan-out step, from
    /// `.../<step>/<K>/`.
    #[command(override_usage = "spotstep logs <execution> [step] [--follow | --shard K]")]
    Logs(logs::LogsOptions),
    /// Redrive a FAILED, TIMED_OUT or ABORTED execution, then watch it
    ///
    /// RedriveExecution: the failed state runs again, the run resumes there. Exit as watch
    /// does, 4 when nothing was redriven (a RUNNING or SUCCEEDED execution).
    #[command(override_usage = "spotstep redrive <execution>")]
    Redrive(redrive::RedriveOptions),
    /// Recent executions with status, duration and the failed state
    #[command(override_usage = "spotstep runs [job] [--limit N]")]
    Runs(runs::RunsOptions),
    /// What each run cost, with totals per job and per month, from the run ledger
    #[command(override_usage = "spotstep cost [job] [--since YYYY-MM-DD]")]
    Cost(cost::CostOptions),
    /// Print the job's state machine as a Mermaid flowchart
    #[command(override_usage = "spotstep graph <job|jobs/<job>>")]
    Graph(graph::GraphOptions),
    /// Print the job's state machine definition
    #[command(override_usage = "spotstep asl jobs/<job> [--local]")]
    Asl(asl::AslOptions),
    /// Regenerate `statemachine/<job>.asl.json` for every folder in `jobs/` (run from the
    /// repository root)
    #[command(override_usage = "spotstep asl-all")]
    AslAll(asl::AslAllOptions),
    /// Print the names and formats the Python stage reads (JSON)
    #[command(override_usage = "spotstep contract")]
    Contract(contract::ContractOptions),
    /// Print a completion script for a shell
    ///
    /// For example: spotstep completions bash > ~/.local/share/bash-completion/completions/spotstep
    #[command(override_usage = "spotstep completions <shell>")]
    Completions(completions::CompletionsOptions),
}

impl Command {
    /// Carries the command out: its exit code, or the failure to print and exit with.
    pub async fn execute(self) -> Result<u8, Failure> {
        match self {
            Command::Run(o) => o.execute(&Aws::connect().await?).await,
            Command::Watch(o) => o.execute(&Aws::connect().await?).await,
            Command::Logs(o) => o.execute(&Aws::connect().await?).await,
            Command::Redrive(o) => o.execute(&Aws::connect().await?).await,
            Command::Runs(o) => o.execute(&Aws::connect().await?).await,
            Command::Cost(o) => o.execute(&Aws::connect().await?).await,
            Command::Graph(o) => o.execute(),
            Command::Asl(o) => o.execute(),
            Command::AslAll(o) => o.execute(),
            Command::Contract(o) => o.execute(),
            Command::Completions(o) => o.execute(),
        }
    }
}

/// What every command's `--help` ends with.
const NOTES: &str = "<execution> is an execution ARN, or <job>/<run-id> (the execution's name, as `run` prints it)\n\
AWS: the default credential and region chain; AWS_ENDPOINT_URL for a local emulator\n\
exit codes: 0 done (watch, redrive: SUCCEEDED; logs --follow: the step succeeded), 1 FAILED, \
2 TIMED_OUT, 3 ABORTED, 4 nothing done (AWS error, unknown execution or job, no credentials, \
a refused redrive), 64 bad arguments";

/// `spotstep`'s clap command: [`Command`]'s, every help ending with the notes on executions,
/// AWS and exit codes, and `--stack` defaulting to `stack_default` (`$SPOTSTEP_STACK`) when
/// it is set and not blank.
pub fn command(stack_default: Option<&str>) -> clap::Command {
    let stack = stack_default
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    Command::command().after_help(NOTES).mut_subcommands(|c| {
        c.after_help(NOTES).mut_args(|a| match &stack {
            Some(stack) if a.get_id() == "stack" => a.default_value(stack.clone()),
            _ => a,
        })
    })
}

/// Parses the arguments after the program name. `stack_default` is `$SPOTSTEP_STACK`
/// (empty or `None`: [`DEFAULT_STACK`]). The error is what to print instead, with
/// [`exit::of_usage`]: `--help`, `--version`, or a usage error (in spotstep's words where
/// it has some).
pub fn parse(args: &[&str], stack_default: Option<&str>) -> Result<Command, clap::Error> {
    let mut cli = command(stack_default);
    let argv = std::iter::once("spotstep").chain(args.iter().copied());
    cli.try_get_matches_from_mut(argv)
        .and_then(|matches| Command::from_arg_matches(&matches))
        .map_err(|e| reword(e, &mut cli, args))
}

/// A usage error in spotstep's words, then the usage of the command it is about and where
/// its help is. The words are spotstep's for an unknown command or option (with clap's
/// suggestion as "did you mean"), an option without its value, a value the checks refuse
/// (their message), a wrong number of arguments; clap's for the rest. `--help`, `--version`
/// and the help printed for no command at all are clap's as they are.
fn reword(e: clap::Error, cli: &mut clap::Command, args: &[&str]) -> clap::Error {
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return e;
    }
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(s)) => s.clone(),
        _ => Vec::new(),
    };
    let did_you_mean = |kind| {
        context(kind)
            .first()
            .map(|s| format!("\n\n  tip: did you mean `{s}`?"))
            .unwrap_or_default()
    };
    let invalid = context(ContextKind::InvalidArg).join(", ");
    let name = args
        .first()
        .copied()
        .filter(|a| cli.find_subcommand(a).is_some());
    let arity = || {
        let positionals: Vec<_> = name
            .and_then(|n| cli.find_subcommand(n))
            .map(|c| c.get_positionals().map(|a| a.is_required_set()).collect())
            .unwrap_or_default();
        let (min, max) = (
            positionals.iter().filter(|r| **r).count(),
            positionals.len(),
        );
        let count = if min == max {
            min.to_string()
        } else {
            format!("{min}-{max}")
        };
        (
            min,
            format!("`{}` takes {count} argument(s)", name.unwrap_or_default()),
        )
    };
    let message = match e.kind() {
        ErrorKind::InvalidSubcommand => format!(
            "unknown command `{}`{}",
            context(ContextKind::InvalidSubcommand).concat(),
            did_you_mean(ContextKind::SuggestedSubcommand)
        ),
        ErrorKind::UnknownArgument if invalid.starts_with('-') => {
            let elsewhere = cli
                .get_subcommands()
                .flat_map(|c| c.get_arguments())
                .any(|a| {
                    a.get_long()
                        .is_some_and(|long| invalid.strip_prefix("--") == Some(long))
                });
            match name {
                Some(name) if elsewhere => format!("`{name}` takes no {invalid}"),
                _ => format!(
                    "unknown option `{invalid}`{}",
                    did_you_mean(ContextKind::SuggestedArg)
                ),
            }
        }
        ErrorKind::UnknownArgument => format!("{}, got more: `{invalid}`", arity().1),
        ErrorKind::MissingRequiredArgument => {
            let (min, takes) = arity();
            let missing = context(ContextKind::InvalidArg).len();
            format!("{takes}, got {}", min.saturating_sub(missing))
        }
        ErrorKind::InvalidValue if context(ContextKind::InvalidValue).concat().is_empty() => {
            let flag = invalid.split_whitespace().next().unwrap_or_default();
            format!("{flag} needs a value")
        }
        ErrorKind::ValueValidation => match std::error::Error::source(&e) {
            Some(source) => source.to_string(),
            None => clap_words(&e),
        },
        _ => clap_words(&e),
    };
    let about = match name {
        Some(name) => cli
            .find_subcommand_mut(name)
            .expect("a command parse found"),
        None => cli,
    };
    let usage = about.render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage);
    let help = match name {
        Some(name) => format!("spotstep {name} --help"),
        None => "spotstep --help".to_string(),
    };
    clap::Error::raw(
        e.kind(),
        format!("{message}\n\nusage: {usage}\n\nFor more information, try '{help}'.\n"),
    )
}

/// What clap says of an error, without its usage and help lines.
fn clap_words(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let text = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let end = ["\n\nUsage:", "\n\nFor more information"]
        .iter()
        .filter_map(|cut| text.find(cut))
        .min()
        .unwrap_or(text.len());
    text[..end].trim_end().to_string()
}

/// The value parser of a name [`check_name`] accepts (a job, a mode, a step); `what` starts
/// its error.
pub(crate) fn name(
    what: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |value| {
        check_name(value)
            .map(|()| value.to_string())
            .map_err(|e| format!("{what} {e}"))
    }
}

/// The value parser of `--branch`: a branch [`check_branch`] accepts.
pub(crate) fn branch(value: &str) -> Result<String, String> {
    check_branch(value).map(|()| value.to_string())
}

/// The value parser of `--stack`: the value without surrounding blanks.
fn trimmed(value: &str) -> Result<String, String> {
    Ok(value.trim().to_string())
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

    fn ok(args: &[&str]) -> Command {
        parse(args, None).unwrap()
    }

    /// The message of a usage error, after clap's `error: `, and checks it exits 64 with the
    /// usage of `command`.
    fn err(args: &[&str], command: &str) -> String {
        let e = parse(args, None).unwrap_err();
        assert_eq!(exit::of_usage(&e), exit::USAGE, "{args:?}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("\n\nusage: spotstep {command}")),
            "{text}"
        );
        text.strip_prefix("error: ").unwrap_or(&text).to_string()
    }

    /// What `--help` (or `--version`) prints, and checks it exits 0.
    fn shown(args: &[&str]) -> String {
        let e = parse(args, None).unwrap_err();
        assert_eq!(exit::of_usage(&e), exit::OK, "{args:?}");
        e.to_string()
    }

    #[test]
    fn run_with_every_option() {
        let c = ok(&[
            "run",
            "data-weekly",
            "--mode",
            "full",
            "--preflight",
            "--branch",
            "fix/x",
        ]);
        assert_eq!(
            c,
            Command::Run(run::RunOptions {
                job: "data-weekly".into(),
                mode: Some("full".into()),
                preflight: true,
                branch: Some("fix/x".into()),
                target: target("spotstep"),
            })
        );
        assert_eq!(target("prod").machine_name("demo"), "prod-demo");
    }

    #[test]
    fn stack_from_flag_then_environment_then_default() {
        let runs = |args: &[&str], env| match parse(args, env).unwrap() {
            Command::Runs(runs::RunsOptions { target, limit, .. }) => (target, limit),
            other => panic!("{other:?}"),
        };
        assert_eq!(runs(&["runs"], Some("")), (target("spotstep"), 20));
        assert_eq!(runs(&["runs"], Some(" prod ")).0, target("prod"));
        let (t, limit) = runs(
            &[
                "runs",
                "--stack",
                "x ",
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
        let help = parse(&["runs", "--help"], Some("prod")).unwrap_err();
        assert!(help.to_string().contains("[default: prod]"), "{help}");
    }

    #[test]
    fn logs_watch_redrive_and_the_generators() {
        assert_eq!(
            ok(&["logs", "demo/r1", "slow", "--follow"]),
            Command::Logs(logs::LogsOptions {
                execution: "demo/r1".into(),
                step: Some("slow".into()),
                follow: true,
                shard: None,
                target: target("spotstep"),
            })
        );
        assert!(matches!(
            ok(&["logs", "backtest/r1", "sweep", "--shard", "7"]),
            Command::Logs(o) if o.shard == Some(7) && o.step.as_deref() == Some("sweep")
        ));
        assert!(parse(&["logs", "backtest/r1", "--shard", "7"], None).is_err());
        assert!(parse(
            &["logs", "backtest/r1", "sweep", "--shard", "7", "--follow"],
            None
        )
        .is_err());
        assert!(matches!(ok(&["watch", "arn:x"]), Command::Watch(o) if o.execution == "arn:x"));
        assert!(matches!(
            ok(&["redrive", "demo/r"]),
            Command::Redrive(o) if o.execution == "demo/r"
        ));
        assert_eq!(
            ok(&["asl", "--local", "jobs/demo"]),
            Command::Asl(asl::AslOptions {
                dir: "jobs/demo".into(),
                local: true
            })
        );
        assert!(matches!(ok(&["asl-all"]), Command::AslAll(_)));
        assert!(matches!(ok(&["contract"]), Command::Contract(_)));
        assert_eq!(
            ok(&["graph", "data-weekly"]),
            Command::Graph(graph::GraphOptions {
                job: "data-weekly".into()
            })
        );
        assert!(matches!(
            ok(&["completions", "bash"]),
            Command::Completions(_)
        ));
    }

    #[test]
    fn help_of_each_command_exits_0_and_names_it() {
        let all = shown(&["--help"]);
        for c in command(None).get_subcommands() {
            let name = c.get_name();
            assert!(all.contains(name), "{name}: {all}");
            let text = shown(&[name, "--help"]);
            assert!(text.contains(&format!("spotstep {name}")), "{text}");
            assert!(text.contains("exit codes"), "{text}");
            assert_eq!(shown(&["help", name]), text);
        }
        let logs = shown(&["logs", "--help"]);
        assert!(logs.contains("spotstep logs <execution>"), "{logs}");
        assert!(!logs.contains("spotstep watch"), "{logs}");
        assert!(shown(&["--version"]).starts_with("spotstep "));
    }

    #[test]
    fn a_mistyped_command_or_option_gets_a_suggestion() {
        let e = parse(&["wacth", "demo/r1"], None).unwrap_err();
        assert_eq!(exit::of_usage(&e), exit::USAGE);
        let text = e.to_string();
        assert!(
            text.starts_with("error: unknown command `wacth`\n\n  tip: did you mean `watch`?"),
            "{text}"
        );
        assert!(err(&["logs", "x", "--folow"], "logs")
            .starts_with("unknown option `--folow`\n\n  tip: did you mean `--follow`?"));
        assert!(err(&["launch"], "<COMMAND>").starts_with("unknown command `launch`"));
    }

    #[test]
    fn wrong_arguments_exit_64_with_the_commands_usage() {
        let none = parse(&[], None).unwrap_err();
        assert_eq!(exit::of_usage(&none), exit::USAGE);
        assert!(none.to_string().contains("watch"), "{none}");
        assert!(err(&["run"], "run").contains("`run` takes 1 argument(s), got 0"));
        assert!(err(&["logs"], "logs").contains("`logs` takes 1-2 argument(s), got 0"));
        assert!(err(&["watch", "x", "y"], "watch")
            .contains("`watch` takes 1 argument(s), got more: `y`"));
        assert!(err(&["run", "demo", "--mode"], "run <job>").starts_with("--mode needs a value"));
        assert!(err(&["run", "Demo!"], "run").starts_with("job `Demo!`"));
        assert!(err(&["run", "demo", "--branch", "a..b"], "run").contains("not a safe branch"));
        assert!(err(&["run", "demo", "--branch", "-x"], "run").contains("not a safe branch name"));
        assert!(err(&["watch", "x", "--follow"], "watch").contains("`watch` takes no --follow"));
        assert!(err(&["runs", "--limit", "0"], "runs").contains("not a positive number"));
        assert!(err(&["logs", "x", "--bogus"], "logs").contains("unknown option `--bogus`"));
        assert!(err(&["logs", "x", "Slow"], "logs").starts_with("step `Slow`"));
    }

    #[test]
    fn completions_for_bash() {
        let mut script = Vec::new();
        completions::write(clap_complete::Shell::Bash, &mut script).unwrap();
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("_spotstep()"), "{script}");
        assert!(script.contains("redrive"), "{script}");
    }

    #[test]
    fn exit_codes_of_statuses() {
        assert_eq!(exit::of_status("SUCCEEDED"), 0);
        assert_eq!(exit::of_status("FAILED"), 1);
        assert_eq!(exit::of_status("TIMED_OUT"), 2);
        assert_eq!(exit::of_status("ABORTED"), 3);
    }
}
