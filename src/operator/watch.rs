//! `spotstep watch`: follow an execution to its end.

use std::io::Write;
use std::time::Duration;

use aws_sdk_sfn::Client as Sfn;
use time::OffsetDateTime;

use super::{io, Aws, Failure};
use crate::aws::sfn;
use crate::cli::{exit, Target};

/// The arguments of `spotstep watch`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WatchOptions {
    /// The execution: its ARN, or `<job>/<run-id>`
    #[arg(value_name = "execution")]
    pub execution: String,
    #[command(flatten)]
    pub target: Target,
}

impl WatchOptions {
    /// Watches the execution to its end ([`watch`]).
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let e = super::execution(aws.env.sfn().await, &self.target, &self.execution).await?;
        let code = watch(aws.env.sfn().await, &e.arn, aws.how, &mut std::io::stdout()).await?;
        println!("{}", super::cost::line(aws, &self.target, &e.arn).await);
        Ok(code)
    }
}
use crate::progress::{render, running_line, Current};

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
    let mut sweeps: Vec<String> = Vec::new();
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
        let now_sweeps = super::shards::progress_lines(&events);
        for line in now_sweeps.iter().filter(|l| !sweeps.contains(l)) {
            writeln!(out, "{line}").map_err(io)?;
        }
        sweeps = now_sweeps;
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
