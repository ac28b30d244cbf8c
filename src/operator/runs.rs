//! `spotstep runs`: recent executions with status, duration and the failed state.

use aws_sdk_sfn::Client as Sfn;
use time::OffsetDateTime;

use super::{state_machine, Aws, Failure};
use crate::aws::sfn;
use crate::cli::{self, exit, Target};
use crate::ledger::Record;

/// The arguments of `spotstep runs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunsOptions {
    /// The job (default: every job of the stack)
    #[arg(value_name = "job", value_parser = cli::name("job"))]
    pub job: Option<String>,
    /// How many executions per job
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = positive)]
    pub limit: usize,
    #[command(flatten)]
    pub target: Target,
}

impl RunsOptions {
    /// Prints the table of the recent executions ([`runs`], [`table`]).
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let mut rows = runs(
            aws.env.sfn().await,
            &self.target,
            self.job.as_deref(),
            self.limit,
        )
        .await?;
        let bucket = &aws.env.settings.bucket;
        if !bucket.is_empty() {
            let records = crate::ledger::records(&aws.env, bucket, self.job.as_deref()).await?;
            rows = with_ledger(rows, records, self.limit);
        }
        let now = aws.env.clock.now().unix_timestamp() * 1000;
        print!("{}", table(&rows, now));
        Ok(exit::OK)
    }
}

/// The rows with their cost from the ledger's `records`, plus the runs only the ledger still
/// has (Step Functions forgets an execution 90 days after it ended), newest first, at most
/// `limit` per job.
pub fn with_ledger(mut rows: Vec<Row>, records: Vec<Record>, limit: usize) -> Vec<Row> {
    for record in records {
        let cost = record.cost.total_text();
        match rows.iter_mut().find(|r| {
            r.execution.arn == record.execution
                || (r.job == record.job && r.execution.name == record.run_id)
        }) {
            Some(row) => row.cost = cost,
            None => {
                let millis = |t: &str| {
                    crate::env::parse_rfc3339(t)
                        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                };
                rows.push(Row {
                    job: record.job.clone(),
                    execution: sfn::Execution {
                        arn: record.execution.clone(),
                        name: record.run_id.clone(),
                        state_machine: String::new(),
                        status: record.status.clone(),
                        started_millis: millis(&record.started_at).unwrap_or_default(),
                        stopped_millis: millis(&record.ended_at),
                        error: None,
                        cause: None,
                        redrive_count: record.redrive_count,
                    },
                    failed_state: None,
                    launches: String::new(),
                    cost,
                });
            }
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.execution.started_millis));
    let mut shown: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    rows.retain(|r| {
        let n = shown.entry(r.job.clone()).or_default();
        *n += 1;
        *n <= limit
    });
    rows
}

/// The value parser of `--limit`: a positive number.
fn positive(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--limit `{value}` is not a positive number"))
}
use crate::naming::check_name;
use crate::progress;

/// One row of `spotstep runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub job: String,
    pub execution: sfn::Execution,
    /// The state it failed at, for an execution that did not succeed.
    pub failed_state: Option<String>,
    /// Its launches' markets and reclaims ([`crate::preemption::Preemption::launches`]).
    pub launches: String,
    /// Its cost from the run ledger (empty: no record).
    pub cost: String,
}

/// The `runs` table: name, status, start (UTC), duration (to `now_millis` while running),
/// the cost from the ledger (`-` without a record), the launches (markets, reclaims), the
/// state it failed at.
pub fn table(rows: &[Row], now_millis: i64) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<20} {:>8} {:>10}  {:<32} {}\n",
        "EXECUTION", "STATUS", "STARTED", "DURATION", "COST", "LAUNCHES", "FAILED AT"
    );
    for r in rows {
        let e = &r.execution;
        let started = OffsetDateTime::from_unix_timestamp(e.started_millis / 1000)
            .map(crate::env::rfc3339)
            .unwrap_or_default();
        let took =
            progress::duration((e.stopped_millis.unwrap_or(now_millis) - e.started_millis) / 1000);
        out.push_str(&format!(
            "{:<40} {:<10} {:<20} {:>8} {:>10}  {:<32} {}\n",
            format!("{}/{}", r.job, e.name),
            e.status,
            started,
            took,
            if r.cost.is_empty() { "-" } else { &r.cost },
            r.launches,
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
            let events = sfn::history(client, &execution.arn).await?;
            let failed_state = if matches!(
                execution.status.as_str(),
                "FAILED" | "TIMED_OUT" | "ABORTED"
            ) {
                sfn::last_state_of(&events)
            } else {
                None
            };
            rows.push(Row {
                job: job.clone(),
                execution,
                failed_state,
                launches: crate::preemption::of(&events).launches(),
                cost: String::new(),
            });
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.execution.started_millis));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::super::tests::MACHINE;
    use super::*;

    #[test]
    fn the_ledger_adds_costs_and_the_runs_step_functions_forgot() {
        let row = |name: &str, started: i64| Row {
            job: "demo".into(),
            execution: sfn::Execution {
                arn: format!("arn:{name}"),
                name: name.into(),
                state_machine: MACHINE.into(),
                status: "SUCCEEDED".into(),
                started_millis: started,
                stopped_millis: Some(started + 1000),
                error: None,
                cause: None,
                redrive_count: 0,
            },
            failed_state: None,
            launches: String::new(),
            cost: String::new(),
        };
        let record = |name: &str, started: &str, usd: f64| {
            let mut r: Record = serde_json::from_value(serde_json::json!({
                "version": 1, "job": "demo", "run_id": name, "execution": format!("arn:{name}"),
                "mode": "all", "status": "SUCCEEDED", "started_at": started,
                "ended_at": "2026-01-01T00:10:00Z", "redrive_count": 0, "steps": [],
                "instances": [], "reclaims": [], "counts": {"transitions": 1,
                "lambda_invocations": 1, "scheduler_invocations": 0},
                "cost": {"instance_usd": 0.0, "volume_usd": 0.0, "orchestration_usd": 0.0,
                "total_usd": 0.0, "prices_as_of": "2026-12-06"}}))
            .unwrap();
            r.cost.total_usd = Some(usd);
            r
        };
        let rows = with_ledger(
            vec![
                row("new", 1_795_856_400_000),
                row("no-record", 1_795_856_300_000),
            ],
            vec![
                record("new", "2026-11-28T09:00:00Z", 0.25),
                record("old", "2026-01-01T00:00:00Z", 0.5),
            ],
            3,
        );
        let shown: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.execution.name.as_str(), r.cost.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("new", "$0.2500"), ("no-record", ""), ("old", "$0.5000")]
        );
        assert_eq!(
            with_ledger(rows, vec![], 2).len(),
            2,
            "at most `limit` per job"
        );
    }

    #[test]
    fn the_runs_table() {
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
            launches: "spot, on-demand (1 reclaim)".into(),
            cost: if status == "FAILED" {
                "$0.0123".into()
            } else {
                String::new()
            },
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
            [
                "EXECUTION",
                "STATUS",
                "STARTED",
                "DURATION",
                "COST",
                "LAUNCHES",
                "FAILED",
                "AT"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "demo/r2",
                "RUNNING",
                "2026-11-28T09:00:00Z",
                "42s",
                "-",
                "spot,",
                "on-demand",
                "(1",
                "reclaim)"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "demo/r1",
                "FAILED",
                "2026-11-28T09:00:00Z",
                "3m05s",
                "$0.0123",
                "spot,",
                "on-demand",
                "(1",
                "reclaim)",
                "fail:",
                "failed"
            ]
        );
    }
}
