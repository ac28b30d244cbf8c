//! What the operator's commands do (`spotstep run`, `watch`, `logs`, `redrive`, `runs`,
//! `graph`): each one a function over the AWS clients it reads (Step Functions; S3, SSM and
//! CloudWatch Logs for `logs`) and an output, so tests run them against mocked clients. Parsing is in [`cli`](crate::cli).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_s3::Client as S3;
use aws_sdk_sfn::Client as Sfn;
use aws_sdk_ssm::Client as Ssm;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::aws::{logs, s3, sfn, ssm};
use crate::cli::{exit, Target};
use crate::naming::{self, check_name, check_run_id, parse_s3_uri};
use crate::progress::{self, render, running_line, Current};

/// Why a command did nothing (or stopped): the message to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// A failure with [`exit::ERROR`].
    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::ERROR,
        }
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Failure {
        let text = e.to_string();
        let hint = if text.contains("credentials") {
            " (no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        } else {
            ""
        };
        Failure::error(format!("{text}{hint}"))
    }
}

fn io(e: std::io::Error) -> Failure {
    Failure::error(format!("cannot write the output: {e}"))
}

/// Checks that the default credential chain yields credentials, before any request: a
/// clear error instead of a dispatch failure.
pub async fn credentials() -> Result<(), Failure> {
    use aws_sdk_sfn::config::ProvideCredentials;
    let config = aws_config::load_from_env().await;
    let Some(provider) = config.credentials_provider() else {
        return Err(Failure::error("no AWS credential provider is configured"));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| {
            Failure::error(format!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
             or run where a role is available ({})",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        ))
        })
}

/// The console page of an execution (the region is the ARN's).
pub fn console_link(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    )
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

/// The ARN of `job`'s state machine: `--state-machine`, else the one named
/// `<stack>-<job>` (ListStateMachines).
pub async fn state_machine(client: &Sfn, target: &Target, job: &str) -> Result<String, Failure> {
    if let Some(arn) = &target.state_machine {
        return Ok(arn.clone());
    }
    let name = target.machine_name(job);
    let machines = sfn::state_machines(client).await?;
    machines
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.arn.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
            Failure::error(format!(
                "job `{job}` has no state machine `{name}` here (state machines: {}); deploy the stack, or pass --stack or --state-machine",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
}

/// The execution `reference` names: an execution ARN, or `<job>/<run-id>`.
pub async fn execution(
    client: &Sfn,
    target: &Target,
    reference: &str,
) -> Result<sfn::Execution, Failure> {
    let arn = if reference.starts_with("arn:") {
        reference.to_string()
    } else {
        let (job, run_id) = reference.split_once('/').ok_or_else(|| {
            Failure::error(format!(
                "`{reference}` is neither an execution ARN nor <job>/<run-id>"
            ))
        })?;
        check_run_id(run_id).map_err(Failure::error)?;
        let machine = state_machine(client, target, job).await?;
        format!(
            "{}:{run_id}",
            machine.replacen(":stateMachine:", ":execution:", 1)
        )
    };
    sfn::execution(client, &arn)
        .await?
        .ok_or_else(|| Failure::error(format!("no execution {arn}")))
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

/// How `watch` polls and shows what runs now.
#[derive(Debug, Clone, Copy)]
pub struct Watching {
    /// Between two fetches of the history.
    pub interval: Duration,
    /// A terminal: the running line is rewritten in place; otherwise it is a line of its
    /// own whenever the running state changes.
    pub tty: bool,
}

/// `spotstep watch`: prints the execution's progress until it ends; returns the exit code
/// of its status ([`exit::of_status`]).
pub async fn watch(
    client: &Sfn,
    arn: &str,
    how: Watching,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let mut printed = 0;
    let mut shown: Option<Current> = None;
    loop {
        let status = sfn::execution(client, arn)
            .await?
            .ok_or_else(|| Failure::error(format!("no execution {arn}")))?;
        let events = sfn::history(client, arn).await?;
        let p = render(&events);
        if how.tty && shown.is_some() {
            write!(out, "\r\x1b[K").map_err(io)?;
        }
        for line in &p.lines[printed.min(p.lines.len())..] {
            writeln!(out, "{line}").map_err(io)?;
        }
        printed = p.lines.len();
        if status.status != "RUNNING" {
            if p.ended.is_none() {
                writeln!(out, "{}", status.status).map_err(io)?;
            }
            out.flush().map_err(io)?;
            return Ok(exit::of_status(&status.status));
        }
        if let Some(current) = &p.current {
            let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
            let line = running_line(current, now);
            let changed = shown
                .as_ref()
                .is_none_or(|s| s.state != current.state || s.retried != current.retried);
            if how.tty {
                write!(out, "{line}").map_err(io)?;
            } else if changed {
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        shown = p.current;
        out.flush().map_err(io)?;
        tokio::time::sleep(how.interval).await;
    }
}

/// A command a step was sent as: from the result its token was answered with, or, while the
/// step waits, from SSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub step: String,
    pub command_id: String,
    pub instance_id: String,
    /// `s3://<bucket>/logs/<job>/<run_id>/<step>`.
    pub output_prefix: String,
}

/// The step a send or poll state belongs to.
fn step_of_state(name: &str) -> Option<&str> {
    use crate::asl::state;
    name.strip_suffix(&state::send(""))
        .or_else(|| name.strip_suffix(&state::poll("")))
}

/// The steps that ended in a history, in order (one per end, so a step sent twice is
/// twice): the result a send's token was answered with, or a fallback poll's.
pub fn sent(events: &[progress::Event]) -> Vec<Sent> {
    events
        .iter()
        .filter(|e| e.kind.ends_with("StateExited"))
        .filter_map(|e| {
            let step = step_of_state(e.state.as_deref()?)?;
            let v: Value = serde_json::from_str(e.output.as_deref()?).ok()?;
            let r = &v["result"];
            let field = |k: &str| r[k].as_str().map(String::from);
            // A caught error's exit still carries an earlier step's result.
            if r["step"] != step {
                return None;
            }
            let command_id = field("command_id")?;
            let output = field("output")?;
            let (output_prefix, _) = output.split_once(&format!("/{command_id}/"))?;
            Some(Sent {
                step: step.to_string(),
                output_prefix: output_prefix.to_string(),
                instance_id: field("instance_id")?,
                command_id,
            })
        })
        .collect()
}

/// A send of a step: its name, run id and instance, from the send state's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendEntered {
    pub step: String,
    pub run_id: String,
    pub instance_id: String,
}

/// Every entry of a send state in a history, with its position.
fn sends_entered(events: &[progress::Event]) -> Vec<(usize, SendEntered)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind.ends_with("StateEntered"))
        .filter_map(|(i, e)| {
            let step = e
                .state
                .as_deref()?
                .strip_suffix(&crate::asl::state::send(""))?;
            let input: Value = serde_json::from_str(e.input.as_deref()?).ok()?;
            Some((
                i,
                SendEntered {
                    step: step.to_string(),
                    run_id: input["run"]["run_id"].as_str()?.to_string(),
                    instance_id: input["launch"]["instance_id"].as_str()?.to_string(),
                },
            ))
        })
        .collect()
}

/// The step waiting on its token now: the last state entered is its send, it has not
/// exited, and the execution has not ended.
pub fn waiting(events: &[progress::Event]) -> Option<SendEntered> {
    let last_entered = events
        .iter()
        .rposition(|e| e.kind.ends_with("StateEntered"))?;
    let over = events[last_entered..].iter().any(|e| {
        e.kind.ends_with("StateExited")
            || (e.kind.starts_with("Execution")
                && !matches!(e.kind.as_str(), "ExecutionStarted" | "ExecutionRedriven"))
    });
    let (at, send) = sends_entered(events).pop()?;
    (at == last_entered && !over).then_some(send)
}

/// The command of a send, from SSM: the latest command on its instance whose Comment names
/// its run and step (`None` until SSM lists it).
async fn listed_command(ssm_client: &Ssm, send: &SendEntered) -> Result<Option<Sent>, Failure> {
    let comment = naming::command_comment_from(&send.step, &naming::run_hash(&send.run_id), "");
    let mut listed: Vec<ssm::Listed> = ssm::commands_on(ssm_client, &send.instance_id)
        .await?
        .into_iter()
        .filter(|c| c.comment.starts_with(&comment) && !c.output_prefix.is_empty())
        .collect();
    listed.sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
    Ok(listed.pop().map(|c| Sent {
        step: send.step.clone(),
        command_id: c.command_id,
        instance_id: send.instance_id.clone(),
        output_prefix: c.output_prefix,
    }))
}

/// The step `logs` is about: `step` (it must have been sent), else the last one sent.
fn step_named(
    events: &[progress::Event],
    arn: &str,
    step: Option<&str>,
) -> Result<String, Failure> {
    let entered = sends_entered(events);
    match step {
        Some(s) if entered.iter().any(|(_, x)| x.step == s) => Ok(s.to_string()),
        Some(s) => {
            let mut known: Vec<&str> = entered.iter().map(|(_, x)| x.step.as_str()).collect();
            known.dedup();
            Err(Failure::error(format!(
                "step `{s}` was not sent in {arn} (sent: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )))
        }
        None => entered
            .last()
            .map(|(_, x)| x.step.clone())
            .ok_or_else(|| Failure::error(format!("no step was sent yet in {arn}"))),
    }
}

/// The last command `step` was sent as: the result its last send ended with, else (the step
/// runs, failed, or lost its instance) the command SSM lists for that send; `None` while SSM
/// does not list it yet.
async fn command_of(
    events: &[progress::Event],
    ssm_client: &Ssm,
    step: &str,
) -> Result<Option<Sent>, Failure> {
    let Some((at, send)) = sends_entered(events)
        .into_iter()
        .rev()
        .find(|(_, x)| x.step == step)
    else {
        return Ok(None);
    };
    if let Some(done) = sent(&events[at..]).into_iter().find(|x| x.step == step) {
        return Ok(Some(done));
    }
    listed_command(ssm_client, &send).await
}

/// How the last send of `step` in a history ended, as an exit code: [`exit::OK`] when its
/// poll returned the step's result, [`exit::FAILED`] when the step failed (`StepFailed`),
/// the execution's code ([`exit::of_status`]) when the execution ended first (an instance
/// lost, a stop, a timeout). `None` while the step runs, before it is sent, and while it
/// waits to be sent again (a relaunch; a redrive after it failed).
pub fn step_end(events: &[progress::Event], step: &str) -> Option<u8> {
    use crate::asl::state;
    let (send, poll) = (state::send(step), state::poll(step));
    let own = |s: Option<&str>| s == Some(send.as_str()) || s == Some(poll.as_str());
    let step_failed = crate::error::Error::StepFailed(String::new()).name();
    let mut end = None;
    let mut sent = false;
    let mut current: Option<&str> = None;
    for e in events {
        let kind = e.kind.as_str();
        match kind {
            "ExecutionRedriven" if end != Some(exit::OK) => end = None,
            "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"
                if sent && end.is_none() =>
            {
                let status = match kind {
                    "ExecutionSucceeded" => "SUCCEEDED",
                    "ExecutionTimedOut" => "TIMED_OUT",
                    "ExecutionAborted" => "ABORTED",
                    _ => "FAILED",
                };
                end = Some(exit::of_status(status));
            }
            "LambdaFunctionFailed" | "TaskFailed"
                if own(current) && e.error.as_deref() == Some(step_failed) =>
            {
                end = Some(exit::FAILED);
            }
            _ if kind.ends_with("StateEntered") => {
                current = e.state.as_deref();
                if current == Some(send.as_str()) {
                    sent = true;
                    end = None;
                }
            }
            _ if kind.ends_with("StateExited") && own(e.state.as_deref()) => {
                let output: Value = e
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                if output["result"]["step"] == step {
                    end = Some(exit::OK);
                }
            }
            _ => {}
        }
    }
    end.filter(|_| sent)
}

/// Prints the full output of `chosen` from S3: every command's stdout under the step's log
/// prefix, oldest first (a relaunch or redrive sends it again), then its stderr when not
/// empty. Headers go to `note`, output to `out`.
async fn print_s3_output(
    storage: &S3,
    chosen: &Sent,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Failure> {
    let (bucket, key) = parse_s3_uri(&chosen.output_prefix).map_err(Failure::error)?;
    let prefix = format!("{key}/");
    let mut objects = s3::list(storage, &bucket, &prefix).await?;
    objects.sort_by_key(|o| (o.modified_millis, o.key.clone()));
    let stdout: Vec<_> = objects
        .iter()
        .filter(|o| o.key.ends_with("/stdout"))
        .collect();
    if stdout.is_empty() {
        return Err(Failure::error(format!(
            "no output of step `{}` in s3://{bucket}/{prefix} yet",
            chosen.step
        )));
    }
    for o in stdout {
        writeln!(note, "--- s3://{bucket}/{} ({} bytes)", o.key, o.size).map_err(io)?;
        let text = s3::read(storage, &bucket, &o.key)
            .await?
            .unwrap_or_default();
        out.write_all(text.as_bytes()).map_err(io)?;
        let stderr_key = format!("{}stderr", o.key.trim_end_matches("stdout"));
        if let Some(err) = s3::read(storage, &bucket, &stderr_key)
            .await?
            .filter(|t| !t.is_empty())
        {
            writeln!(note, "--- s3://{bucket}/{stderr_key}").map_err(io)?;
            out.write_all(err.as_bytes()).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// `spotstep logs`: the full output of `step` (default: the last step sent) from S3.
pub async fn logs(
    client: &Sfn,
    sources: Sources<'_>,
    arn: &str,
    step: Option<&str>,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Failure> {
    let events = sfn::history(client, arn).await?;
    let step = step_named(&events, arn, step)?;
    if waiting(&events).is_some_and(|w| w.step == step) {
        return Err(Failure::error(format!(
            "step `{step}` is running: its full output reaches S3 when it ends; follow it live \
             with `spotstep logs {arn} {step} --follow`"
        )));
    }
    let command = command_of(&events, sources.ssm, &step)
        .await?
        .ok_or_else(|| {
            Failure::error(format!(
                "step `{step}` was sent in {arn} but SSM lists no command for it"
            ))
        })?;
    print_s3_output(sources.storage, &command, out, note).await
}

/// What `logs --follow` reads besides the execution: SSM (where a command streams its
/// output), CloudWatch Logs (the stream) and S3 (the output of a command that streams none).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub ssm: &'a Ssm,
    pub logs: &'a Logs,
    pub storage: &'a S3,
}

/// `spotstep logs --follow`: prints the output of `step` (default: the last step sent) as
/// it arrives in CloudWatch Logs (the command's stdout stream in the log group SSM streams
/// it to), following the step's new command when it is sent again, until the step ends
/// ([`step_end`]); returns that exit code. A command that streams to no log group is
/// printed from S3 once the step ends. Headers go to `note`, output to `out`.
pub async fn follow(
    client: &Sfn,
    sources: Sources<'_>,
    arn: &str,
    step: Option<&str>,
    how: Watching,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<u8, Failure> {
    let mut events = sfn::history(client, arn).await?;
    let step = step_named(&events, arn, step)?;
    let mut followed: Option<Sent> = None;
    let mut streaming = ssm::Streaming::Unknown;
    let mut token: Option<String> = None;
    loop {
        let end = step_end(&events, &step);
        let command = command_of(&events, sources.ssm, &step).await?;
        let Some(command) = command.or_else(|| followed.clone()) else {
            tokio::time::sleep(how.interval).await;
            events = sfn::history(client, arn).await?;
            continue;
        };
        if followed.as_ref() != Some(&command) {
            writeln!(
                note,
                "--- step {step}: command {} on {}",
                command.command_id, command.instance_id
            )
            .map_err(io)?;
            (streaming, token) = (ssm::Streaming::Unknown, None);
        }
        if streaming == ssm::Streaming::Unknown {
            streaming =
                ssm::streaming(sources.ssm, &command.command_id, &command.instance_id).await?;
            match &streaming {
                ssm::Streaming::To(group) => writeln!(
                    note,
                    "--- CloudWatch Logs {group} {}",
                    naming::ssm_log_stream(&command.command_id, &command.instance_id, "stdout")
                ),
                ssm::Streaming::Off => writeln!(
                    note,
                    "step {step} streams no output to CloudWatch Logs; its output follows from S3 when it ends"
                ),
                ssm::Streaming::Unknown => Ok(()),
            }
            .map_err(io)?;
        }
        if let ssm::Streaming::To(group) = &streaming {
            let stream =
                naming::ssm_log_stream(&command.command_id, &command.instance_id, "stdout");
            // While the step runs, one read an interval; once it ended, until the stream
            // has nothing more.
            while let Some(page) =
                logs::read(sources.logs, group, &stream, token.as_deref()).await?
            {
                for message in &page.messages {
                    out.write_all(message.as_bytes()).map_err(io)?;
                    if !message.ends_with('\n') {
                        out.write_all(b"\n").map_err(io)?;
                    }
                }
                out.flush().map_err(io)?;
                token = page.next_token.or(token);
                if end.is_none() || page.messages.is_empty() {
                    break;
                }
            }
        }
        followed = Some(command);
        if let Some(code) = end {
            if let (ssm::Streaming::Off | ssm::Streaming::Unknown, Some(command)) =
                (&streaming, &followed)
            {
                print_s3_output(sources.storage, command, out, note).await?;
            }
            let outcome = match code {
                exit::OK => "succeeded".to_string(),
                exit::FAILED => "failed".to_string(),
                other => format!("ended with the execution (exit {other})"),
            };
            writeln!(note, "--- step {step} {outcome}").map_err(io)?;
            return Ok(code);
        }
        tokio::time::sleep(how.interval).await;
        events = sfn::history(client, arn).await?;
    }
}

/// `spotstep redrive`: RedriveExecution; nothing is watched when it is refused.
pub async fn redrive(client: &Sfn, arn: &str, out: &mut dyn Write) -> Result<(), Failure> {
    sfn::redrive(client, arn).await.map_err(|e| {
        Failure::error(format!(
            "the redrive was refused, nothing was redriven: {e}"
        ))
    })?;
    writeln!(out, "redriven: {arn}\nconsole: {}", console_link(arn)).map_err(io)
}

/// One row of `spotstep runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub job: String,
    pub execution: sfn::Execution,
    /// The state it failed at, for an execution that did not succeed.
    pub failed_state: Option<String>,
}

/// The `runs` table: name, status, start (UTC), duration (to `now_millis` while running),
/// the state it failed at.
pub fn table(rows: &[Row], now_millis: i64) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<20} {:>8}  {}\n",
        "EXECUTION", "STATUS", "STARTED", "DURATION", "FAILED AT"
    );
    for r in rows {
        let e = &r.execution;
        let started = OffsetDateTime::from_unix_timestamp(e.started_millis / 1000)
            .map(crate::env::rfc3339)
            .unwrap_or_default();
        let took =
            progress::duration((e.stopped_millis.unwrap_or(now_millis) - e.started_millis) / 1000);
        out.push_str(&format!(
            "{:<40} {:<10} {:<20} {:>8}  {}\n",
            format!("{}/{}", r.job, e.name),
            e.status,
            started,
            took,
            r.failed_state.as_deref().unwrap_or("")
        ));
    }
    out
}

/// `spotstep runs`: the recent executions of `job`, or of every state machine named
/// `<stack>-<job>` (whose `<job>` is a job name), newest first.
pub async fn runs(
    client: &Sfn,
    target: &Target,
    job: Option<&str>,
    limit: usize,
) -> Result<Vec<Row>, Failure> {
    let prefix = format!("{}-", target.stack);
    let machines: Vec<(String, String)> = match (job, &target.state_machine) {
        (Some(job), _) => vec![(job.to_string(), state_machine(client, target, job).await?)],
        (None, Some(arn)) => vec![(
            arn.rsplit(':').next().unwrap_or_default().to_string(),
            arn.clone(),
        )],
        (None, None) => sfn::state_machines(client)
            .await?
            .into_iter()
            .filter_map(|m| {
                let job = m.name.strip_prefix(&prefix)?.to_string();
                check_name(&job).is_ok().then_some((job, m.arn))
            })
            .collect(),
    };
    let mut rows = Vec::new();
    for (job, machine) in machines {
        for execution in sfn::executions(client, &machine, limit).await? {
            let failed_state = if matches!(
                execution.status.as_str(),
                "FAILED" | "TIMED_OUT" | "ABORTED"
            ) {
                sfn::last_state(client, &execution.arn).await?
            } else {
                None
            };
            rows.push(Row {
                job: job.clone(),
                execution,
                failed_state,
            });
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.execution.started_millis));
    Ok(rows)
}

/// `spotstep graph`: the Mermaid flowchart of the job in `dir` (production definition).
pub fn graph(dir: &Path) -> Result<String, Failure> {
    let job = crate::manifest::Job::load(dir).map_err(|e| Failure::error(e.to_string()))?;
    Ok(crate::graph::mermaid(&crate::asl::definition(
        &job,
        &crate::asl::Timing::production(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::tests::{meta, recorder, Mocks};
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::list_state_machines::ListStateMachinesOutput;
    use aws_sdk_sfn::operation::redrive_execution::{
        RedriveExecutionError, RedriveExecutionOutput,
    };
    use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
    use aws_sdk_sfn::types::{ExecutionStatus, StateMachineListItem, StateMachineType};
    use aws_smithy_mocks::mock;
    use aws_smithy_types::DateTime;

    const MACHINE: &str = "arn:aws:states:eu-west-1:123:stateMachine:spotstep-demo";
    const EXECUTION: &str = "arn:aws:states:eu-west-1:123:execution:spotstep-demo:r1";

    fn target() -> Target {
        Target {
            stack: "spotstep".into(),
            state_machine: None,
        }
    }

    fn machines() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_sfn::Client::list_state_machines).then_output(|| {
            let item = |name: &str| {
                StateMachineListItem::builder()
                    .name(name)
                    .state_machine_arn(format!("arn:aws:states:eu-west-1:123:stateMachine:{name}"))
                    .r#type(StateMachineType::Standard)
                    .creation_date(DateTime::from_secs(0))
                    .build()
                    .unwrap()
            };
            ListStateMachinesOutput::builder()
                .state_machines(item("spotstep-data-weekly"))
                .state_machines(item("spotstep-demo"))
                .build()
                .unwrap()
        })
    }

    #[test]
    fn links_names_and_inputs() {
        assert_eq!(
            console_link(EXECUTION),
            format!("https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{EXECUTION}")
        );
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
        let arn = run(&env.sfn, &target(), "demo", &input, now, &mut out)
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
        let f = run(&env.sfn, &target(), "nightly", &json!({}), now, &mut out)
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

    #[tokio::test]
    async fn an_execution_by_job_and_run_id_and_an_unknown_one() {
        let (seen, record) = recorder();
        let env = Mocks {
            sfn: vec![
                machines(),
                mock!(aws_sdk_sfn::Client::describe_execution)
                    .match_requests(|r| r.execution_arn() == Some(EXECUTION))
                    .then_output(|| {
                        DescribeExecutionOutput::builder()
                            .execution_arn(EXECUTION)
                            .state_machine_arn(MACHINE)
                            .name("r1")
                            .status(ExecutionStatus::Failed)
                            .start_date(DateTime::from_secs(100))
                            .build()
                            .unwrap()
                    }),
                mock!(aws_sdk_sfn::Client::describe_execution)
                    .match_requests(record)
                    .then_error(|| {
                        aws_sdk_sfn::operation::describe_execution::DescribeExecutionError::ExecutionDoesNotExist(
                            aws_sdk_sfn::types::error::ExecutionDoesNotExist::builder().build(),
                        )
                    }),
            ],
            ..Mocks::default()
        }
        .env();
        let e = execution(&env.sfn, &target(), "demo/r1").await.unwrap();
        assert_eq!((e.arn.as_str(), e.status.as_str()), (EXECUTION, "FAILED"));
        let f = execution(&env.sfn, &target(), "demo/r2").await.unwrap_err();
        assert_eq!(
            f.message,
            "no execution arn:aws:states:eu-west-1:123:execution:spotstep-demo:r2"
        );
        let asked: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(
                |r: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionInput| {
                    r.execution_arn().unwrap_or_default().to_string()
                },
            )
            .collect();
        assert_eq!(
            asked,
            ["arn:aws:states:eu-west-1:123:execution:spotstep-demo:r2"]
        );
        let f = execution(&env.sfn, &target(), "demo/../x")
            .await
            .unwrap_err();
        assert!(f.message.contains("is unsafe"), "{}", f.message);
        let f = execution(&env.sfn, &target(), "r1").await.unwrap_err();
        assert!(f
            .message
            .contains("neither an execution ARN nor <job>/<run-id>"));
    }

    #[tokio::test]
    async fn redrive_sends_the_execution_and_a_refusal_is_an_error() {
        let (seen, record) = recorder();
        let env = Mocks {
            sfn: vec![mock!(aws_sdk_sfn::Client::redrive_execution)
                .match_requests(record)
                .then_output(|| {
                    RedriveExecutionOutput::builder()
                        .redrive_date(DateTime::from_secs(0))
                        .build()
                        .unwrap()
                })],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        redrive(&env.sfn, EXECUTION, &mut out).await.unwrap();
        let asked: Vec<aws_sdk_sfn::operation::redrive_execution::RedriveExecutionInput> =
            seen.lock().unwrap().clone();
        assert_eq!(asked[0].execution_arn(), Some(EXECUTION));
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with(&format!("redriven: {EXECUTION}\n")));

        let refusing = Mocks {
            sfn: vec![mock!(aws_sdk_sfn::Client::redrive_execution)
                .then_error(|| RedriveExecutionError::generic(meta("ExecutionNotRedrivable")))],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        let f = redrive(&refusing.sfn, EXECUTION, &mut out)
            .await
            .unwrap_err();
        assert_eq!(f.code, exit::ERROR);
        assert!(
            f.message
                .starts_with("the redrive was refused, nothing was redriven: RedriveExecution")
                && f.message.contains("ExecutionNotRedrivable"),
            "{}",
            f.message
        );
        assert!(out.is_empty());
    }

    fn event(
        kind: &str,
        state: Option<&str>,
        output: Option<Value>,
        error: Option<&str>,
    ) -> progress::Event {
        progress::Event {
            kind: kind.into(),
            at_millis: 0,
            state: state.map(String::from),
            output: output.map(|o| o.to_string()),
            input: None,
            error: error.map(String::from),
            cause: None,
        }
    }

    #[test]
    fn how_a_followed_step_ended() {
        let entered = |state: &str| event("TaskStateEntered", Some(state), None, None);
        let answered = |step: &str, state: &str| {
            let result = json!({"result": {"step": step, "status": "Success", "exit_code": 0}});
            event(
                "TaskStateExited",
                Some(&format!("{step}: {state}")),
                Some(result),
                None,
            )
        };
        let polled = |step: &str| answered(step, "send");
        let failed = |error: &str| event("TaskFailed", None, None, Some(error));
        let ended = |kind: &str| event(kind, None, None, None);
        let running = vec![ended("ExecutionStarted"), entered("slow: send")];
        assert_eq!(step_end(&running, "slow"), None);
        assert_eq!(step_end(&[], "slow"), None);
        let done = [running.clone(), vec![polled("slow")]].concat();
        assert_eq!(step_end(&done, "slow"), Some(exit::OK));
        // A wait that timed out ends at the fallback poll.
        let timed_out = [
            running.clone(),
            vec![
                failed("States.Timeout"),
                entered("slow: poll"),
                answered("slow", "poll"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&timed_out, "slow"), Some(exit::OK));
        // Another step's result does not end it; the execution's end does.
        let other = [running.clone(), vec![polled("quick")]].concat();
        assert_eq!(step_end(&other, "slow"), None);
        let aborted = [other, vec![ended("ExecutionAborted")]].concat();
        assert_eq!(step_end(&aborted, "slow"), Some(exit::ABORTED));
        // A failure, then a redrive: it waits for the step to be sent again.
        let step_failed = [
            running.clone(),
            vec![
                failed("StepFailed"),
                entered("slow: failed"),
                ended("ExecutionFailed"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&step_failed, "slow"), Some(exit::FAILED));
        let redriven = [
            step_failed,
            vec![ended("ExecutionRedriven"), entered("slow: failed")],
        ]
        .concat();
        assert_eq!(step_end(&redriven, "slow"), None);
        let sent_again = [redriven, vec![entered("slow: send"), polled("slow")]].concat();
        assert_eq!(step_end(&sent_again, "slow"), Some(exit::OK));
        // A relaunch sends it again; a later step's failure is not its end.
        let relaunched = [
            running.clone(),
            vec![
                failed("InstanceReclaimed"),
                entered("slow: resume here"),
                entered("Launch"),
            ],
        ]
        .concat();
        assert_eq!(step_end(&relaunched, "slow"), None);
        let later = [done, vec![entered("big: send"), failed("StepFailed")]].concat();
        assert_eq!(step_end(&later, "slow"), Some(exit::OK));
    }

    #[test]
    fn sent_steps_and_the_runs_table() {
        let exited = |state: &str, output: Value| progress::Event {
            kind: "TaskStateExited".into(),
            at_millis: 0,
            state: Some(state.into()),
            output: Some(output.to_string()),
            input: None,
            error: None,
            cause: None,
        };
        let command = |step: &str| {
            json!({"result": {"step": step, "command_id": format!("c-{step}"), "instance_id": "i-1",
                "output": format!("s3://b/logs/demo/r1/{step}/c-{step}/i-1/awsrunShellScript/0.awsrunShellScript/stdout")}})
        };
        let events = [
            exited("prepare: send", command("prepare")),
            exited("fail: send", command("prepare")),
            exited("fail: poll", command("fail")),
        ];
        let expected = |step: &str| Sent {
            step: step.into(),
            command_id: format!("c-{step}"),
            instance_id: "i-1".into(),
            output_prefix: format!("s3://b/logs/demo/r1/{step}"),
        };
        assert_eq!(sent(&events), [expected("prepare"), expected("fail")]);
        let entered = |state: &str, input: Value| progress::Event {
            kind: "TaskStateEntered".into(),
            at_millis: 0,
            state: Some(state.into()),
            output: None,
            input: Some(input.to_string()),
            error: None,
            cause: None,
        };
        let data = json!({"run": {"run_id": "r1"}, "launch": {"instance_id": "i-1"}});
        let now = [entered("slow: send", data.clone())];
        assert_eq!(
            waiting(&now),
            Some(SendEntered {
                step: "slow".into(),
                run_id: "r1".into(),
                instance_id: "i-1".into()
            })
        );
        let after = [now[0].clone(), entered("Finish", data)];
        assert_eq!(waiting(&after), None);
        let row = |name: &str, status: &str, stopped: Option<i64>, failed: Option<&str>| Row {
            job: "demo".into(),
            execution: sfn::Execution {
                arn: format!("arn:{name}"),
                name: name.into(),
                state_machine: MACHINE.into(),
                status: status.into(),
                started_millis: 1_795_856_400_000,
                stopped_millis: stopped,
                error: None,
                cause: None,
                redrive_count: 0,
            },
            failed_state: failed.map(String::from),
        };
        let text = table(
            &[
                row("r2", "RUNNING", None, None),
                row(
                    "r1",
                    "FAILED",
                    Some(1_795_856_400_000 + 185_000),
                    Some("fail: failed"),
                ),
            ],
            1_795_856_400_000 + 42_000,
        );
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["EXECUTION", "STATUS", "STARTED", "DURATION", "FAILED", "AT"]
        );
        assert_eq!(
            lines[1],
            ["demo/r2", "RUNNING", "2026-11-28T09:00:00Z", "42s"]
        );
        assert_eq!(
            lines[2],
            [
                "demo/r1",
                "FAILED",
                "2026-11-28T09:00:00Z",
                "3m05s",
                "fail:",
                "failed"
            ]
        );
    }
}
