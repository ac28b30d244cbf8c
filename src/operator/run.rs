//! `spotstep run`: start an execution of a job's state machine.

use std::io::Write;

use aws_sdk_sfn::Client as Sfn;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::{console_link, io, state_machine, Aws, Failure};
use crate::aws::sfn;
use crate::cli::{self, exit, Target};

/// The arguments of `spotstep run`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunOptions {
    /// The job to run (its state machine is `<stack>-<job>`)
    #[arg(value_name = "job", value_parser = cli::name("job"))]
    pub job: String,
    /// The mode to run (default: the job's)
    #[arg(long, value_name = "M", value_parser = cli::name("mode"))]
    pub mode: Option<String>,
    /// Run the job's preflight (default: the job's)
    #[arg(long)]
    pub preflight: bool,
    /// The branch to run (default: the job's)
    // A value starting with '-' is taken as the value, and refused as a branch.
    #[arg(long, value_name = "B", value_parser = cli::branch, allow_hyphen_values = true)]
    pub branch: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

impl RunOptions {
    /// Starts the execution ([`run`]).
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let input = run_input(self.mode.as_deref(), self.preflight, self.branch.as_deref());
        let now = aws.env.clock.now();
        let mut out = std::io::stdout();
        run(
            aws.env.sfn().await,
            &self.target,
            &self.job,
            &input,
            now,
            &mut out,
        )
        .await?;
        Ok(exit::OK)
    }
}

/// The name (run id) of an execution started by hand at `now`: `manual-YYYYMMDDTHHMMSSZ`.
pub fn run_name(now: OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "manual-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The execution input, as the schedule gives it: only what is set (Init merges it over the
/// job's defaults).
pub fn run_input(mode: Option<&str>, preflight: bool, branch: Option<&str>) -> Value {
    let mut input = Map::new();
    if let Some(mode) = mode {
        input.insert("mode".into(), json!(mode));
    }
    if preflight {
        input.insert("preflight".into(), json!(true));
    }
    if let Some(branch) = branch {
        input.insert("branch".into(), json!(branch));
    }
    Value::Object(input)
}

/// `spotstep run`: starts an execution named [`run_name`]; prints its ARN and console link.
pub async fn run(
    client: &Sfn,
    target: &Target,
    job: &str,
    input: &Value,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> Result<String, Failure> {
    let machine = state_machine(client, target, job).await?;
    let name = run_name(now);
    let arn = sfn::start(client, &machine, &name, &input.to_string()).await?;
    writeln!(out, "started {job}/{name} with input {input}").map_err(io)?;
    writeln!(out, "execution: {arn}").map_err(io)?;
    writeln!(out, "console: {}", console_link(&arn)).map_err(io)?;
    writeln!(out, "watch: spotstep watch {arn}").map_err(io)?;
    Ok(arn)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{machines, target, EXECUTION, MACHINE};
    use super::*;
    use crate::handlers::tests::{recorder, Mocks};
    use crate::naming::check_run_id;
    use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
    use aws_smithy_mocks::mock;
    use aws_smithy_types::DateTime;

    #[test]
    fn run_names_and_inputs() {
        let t = crate::env::parse_rfc3339("2026-11-28T09:05:07Z").unwrap();
        assert_eq!(run_name(t), "manual-20261128T090507Z");
        check_run_id(&run_name(t)).unwrap();
        assert_eq!(run_input(None, false, None), json!({}));
        assert_eq!(
            run_input(Some("full"), true, Some("main")),
            json!({"mode": "full", "preflight": true, "branch": "main"})
        );
    }

    #[tokio::test]
    async fn run_starts_the_jobs_state_machine_with_the_input() {
        let (seen, record) = recorder();
        let env = Mocks {
            sfn: vec![
                machines(),
                mock!(aws_sdk_sfn::Client::start_execution)
                    .match_requests(record)
                    .then_output(|| {
                        StartExecutionOutput::builder()
                            .execution_arn(EXECUTION)
                            .start_date(DateTime::from_secs(0))
                            .build()
                            .unwrap()
                    }),
            ],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        let now = crate::env::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
        let input = run_input(Some("quick"), false, None);
        let arn = run(env.sfn().await, &target(), "demo", &input, now, &mut out)
            .await
            .unwrap();
        assert_eq!(arn, EXECUTION);
        let requests = seen.lock().unwrap();
        let request: &aws_sdk_sfn::operation::start_execution::StartExecutionInput = &requests[0];
        assert_eq!(request.state_machine_arn(), Some(MACHINE));
        assert_eq!(request.name(), Some("manual-20261128T090000Z"));
        assert_eq!(request.input(), Some(r#"{"mode":"quick"}"#));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("console: {}", console_link(EXECUTION))),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_job_without_a_state_machine_starts_nothing() {
        let env = Mocks {
            sfn: vec![machines()],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        let now = OffsetDateTime::UNIX_EPOCH;
        let f = run(
            env.sfn().await,
            &target(),
            "nightly",
            &json!({}),
            now,
            &mut out,
        )
        .await
        .unwrap_err();
        assert_eq!(f.code, exit::ERROR);
        assert!(
            f.message.starts_with(
                "job `nightly` has no state machine `spotstep-nightly` here (state machines: spotstep-data-weekly, spotstep-demo)"
            ),
            "{}",
            f.message
        );
        assert!(out.is_empty());
    }
}
