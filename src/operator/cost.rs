//! `spotstep cost`: what each run cost, and the totals per job and per month, from the run
//! ledger (`runs/<job>/<run_id>.json`); a run the ledger does not have is read from its
//! execution's history and priced the same way (marked `history`).

use std::collections::BTreeMap;
use std::io::Write;

use super::{io, runs, Aws, Failure};
use crate::cli::{self, exit, Target};
use crate::cost::usd_text;
use crate::ledger::{self, Record};
use crate::progress;

/// The arguments of `spotstep cost`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CostOptions {
    /// The job (default: every job of the stack)
    #[arg(value_name = "job", value_parser = cli::name("job"))]
    pub job: Option<String>,
    /// Only runs started on or after this day (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub since: Option<String>,
    /// The staging bucket that holds the ledger (default: $SPOTSTEP_BUCKET)
    #[arg(long, value_name = "B")]
    pub bucket: Option<String>,
    /// How many executions per job the history fallback reads
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub target: Target,
}

/// The value parser of `--since`: a `YYYY-MM-DD` day.
fn date(value: &str) -> Result<String, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format)
        .map(|_| value.to_string())
        .map_err(|_| format!("--since `{value}` is not a day (YYYY-MM-DD)"))
}

/// Where a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ledger,
    History,
}

impl CostOptions {
    /// Prints the per-run table and the totals ([`table`]).
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let bucket = self
            .bucket
            .clone()
            .unwrap_or_else(|| aws.env.settings.bucket.clone());
        let rows = costed_runs(aws, &bucket, &self.target, self.job.as_deref(), self.limit).await?;
        let since = self.since.as_deref().unwrap_or("");
        let rows: Vec<(Record, Source)> = rows
            .into_iter()
            .filter(|(r, _)| r.started_at.as_str() >= since)
            .collect();
        let mut out = std::io::stdout();
        write!(out, "{}", table(&rows)).map_err(io)?;
        Ok(exit::OK)
    }
}

/// The ledger's records (of `job`, or of every job), then every ended execution of the
/// job's state machines that the ledger does not have, read from its history.
pub async fn costed_runs(
    aws: &Aws,
    bucket: &str,
    target: &Target,
    job: Option<&str>,
    limit: usize,
) -> Result<Vec<(Record, Source)>, Failure> {
    let mut rows: Vec<(Record, Source)> = Vec::new();
    if bucket.is_empty() {
        eprintln!(
            "no staging bucket (--bucket or $SPOTSTEP_BUCKET): reading the execution history only"
        );
    } else {
        rows.extend(
            ledger::records(&aws.env, bucket, job)
                .await?
                .into_iter()
                .map(|r| (r, Source::Ledger)),
        );
    }
    for row in runs::runs(aws.env.sfn().await, target, job, limit).await? {
        let e = &row.execution;
        if e.running() || rows.iter().any(|(r, _)| r.execution == e.arn) {
            continue;
        }
        if let Some(record) = ledger::from_history(&aws.env, &e.arn, &e.status).await? {
            rows.push((record, Source::History));
        }
    }
    rows.sort_by(|a, b| b.0.started_at.cmp(&a.0.started_at));
    Ok(rows)
}

/// A sum of costs, some of which may be unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sum {
    runs: usize,
    usd: f64,
    unknown: usize,
}

impl Sum {
    fn add(&mut self, record: &Record) {
        self.runs += 1;
        match record.cost.total_usd {
            Some(usd) => self.usd += usd,
            None => self.unknown += 1,
        }
    }

    fn text(&self) -> String {
        let known = usd_text(self.usd);
        match self.unknown {
            0 => known,
            n => format!("{known} + {n} unknown"),
        }
    }
}

fn cell(usd: Option<f64>) -> String {
    usd.map_or("unknown".to_string(), usd_text)
}

/// The `cost` page: one row per run (newest first), then the totals per job and per month,
/// then why any cost is unknown.
pub fn table(rows: &[(Record, Source)]) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<20} {:>8} {:>10} {:>10} {:>10} {:>10}  {}\n",
        "RUN", "STATUS", "STARTED", "DURATION", "INSTANCE", "VOLUME", "ORCHESTR.", "TOTAL", "FROM"
    );
    let mut by_job: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut by_month: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut all = Sum::default();
    let mut unknown = Vec::new();
    for (r, source) in rows {
        let took = match (
            crate::env::parse_rfc3339(&r.started_at),
            crate::env::parse_rfc3339(&r.ended_at),
        ) {
            (Some(a), Some(b)) => progress::duration((b - a).whole_seconds()),
            _ => String::new(),
        };
        let c = &r.cost;
        out.push_str(&format!(
            "{:<40} {:<10} {:<20} {:>8} {:>10} {:>10} {:>10} {:>10}  {}\n",
            format!("{}/{}", r.job, r.run_id),
            r.status,
            r.started_at,
            took,
            cell(c.instance_usd),
            usd_text(c.volume_usd),
            usd_text(c.orchestration_usd),
            cell(c.total_usd),
            match source {
                Source::Ledger => "ledger",
                Source::History => "history",
            }
        ));
        by_job.entry(&r.job).or_default().add(r);
        by_month
            .entry(r.started_at.get(..7).unwrap_or_default())
            .or_default()
            .add(r);
        all.add(r);
        if c.total_usd.is_none() {
            unknown.push(format!("{}/{}: {}", r.job, r.run_id, c.unknown.join("; ")));
        }
    }
    let mut totals = |title: &str, sums: &BTreeMap<&str, Sum>| {
        out.push_str(&format!("\nTOTAL BY {title}\n"));
        for (key, sum) in sums {
            out.push_str(&format!(
                "{key:<40} {:>4} run(s)  {}\n",
                sum.runs,
                sum.text()
            ));
        }
    };
    totals("JOB", &by_job);
    totals("MONTH", &by_month);
    out.push_str(&format!(
        "\n{:<40} {:>4} run(s)  {}\n",
        "ALL",
        all.runs,
        all.text()
    ));
    if !unknown.is_empty() {
        out.push_str("\nUNKNOWN COSTS\n");
        for line in unknown {
            out.push_str(&format!("{line}\n"));
        }
    }
    if let Some((r, _)) = rows.first() {
        out.push_str(&format!(
            "\nList prices of {} ({}); spot prices from DescribeSpotPriceHistory.\n",
            r.cost.prices_as_of,
            crate::cost::LIST.region
        ));
    }
    out
}

/// The cost line `watch` and `redrive` end with: the ledger record's cost, or why there is
/// none yet (never a made-up 0).
pub async fn line(aws: &Aws, target: &Target, execution_arn: &str) -> String {
    let bucket = &aws.env.settings.bucket;
    let name = execution_arn.rsplit(':').next().unwrap_or_default();
    let job = execution_arn
        .split(':')
        .nth(6)
        .and_then(|machine| machine.strip_prefix(&format!("{}-", target.stack)))
        .unwrap_or_default();
    if bucket.is_empty() || job.is_empty() {
        return "cost: not shown (no staging bucket: set $SPOTSTEP_BUCKET; `spotstep cost` reads the history)".into();
    }
    match ledger::read(&aws.env, bucket, job, name).await {
        Ok(Some(record)) => format!("cost: {}", record.cost.line()),
        Ok(None) => format!(
            "cost: no ledger record yet (cleanup writes it when the run ends; `spotstep cost {job}` shows it)"
        ),
        Err(e) => format!("cost: the ledger could not be read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{Cost, Counts};

    fn record(job: &str, run: &str, started: &str, total: Option<f64>) -> Record {
        Record {
            version: 1,
            job: job.into(),
            run_id: run.into(),
            execution: format!("arn:{run}"),
            mode: "full".into(),
            status: "SUCCEEDED".into(),
            started_at: started.into(),
            ended_at: "2026-12-05T09:10:00Z".into(),
            redrive_count: 0,
            steps: vec![],
            instances: vec![],
            reclaims: vec![],
            counts: Counts::default(),
            cost: Cost {
                instance_usd: total.map(|t| t - 0.001),
                volume_usd: 0.0005,
                orchestration_usd: 0.0005,
                total_usd: total,
                unknown: if total.is_none() {
                    vec!["Throttled: slow down".into()]
                } else {
                    vec![]
                },
                prices_as_of: "2026-12-06".into(),
            },
        }
    }

    #[test]
    fn per_run_rows_then_totals_per_job_and_month() {
        let rows = [
            (
                record("demo", "r3", "2026-12-05T09:00:00Z", Some(0.0125)),
                Source::Ledger,
            ),
            (
                record("demo", "r2", "2026-11-30T09:00:00Z", None),
                Source::History,
            ),
            (
                record("data-weekly", "r1", "2026-11-28T09:00:00Z", Some(0.5)),
                Source::Ledger,
            ),
        ];
        let text = table(&rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[1],
            [
                "demo/r3",
                "SUCCEEDED",
                "2026-12-05T09:00:00Z",
                "10m00s",
                "$0.0115",
                "$0.0005",
                "$0.0005",
                "$0.0125",
                "ledger"
            ]
        );
        assert_eq!(lines[2][4], "unknown");
        assert_eq!(lines[2][8], "history");
        assert!(text.contains("TOTAL BY JOB\ndata-weekly"), "{text}");
        let row = |key: &str| {
            text.lines()
                .rfind(|l| l.starts_with(&format!("{key} ")))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("demo"),
            ["demo", "2", "run(s)", "$0.0125", "+", "1", "unknown"]
        );
        assert_eq!(
            row("2026-11"),
            ["2026-11", "2", "run(s)", "$0.5000", "+", "1", "unknown"]
        );
        assert_eq!(row("2026-12"), ["2026-12", "1", "run(s)", "$0.0125"]);
        assert_eq!(
            row("ALL"),
            ["ALL", "3", "run(s)", "$0.5125", "+", "1", "unknown"]
        );
        assert!(
            text.contains("UNKNOWN COSTS\ndemo/r2: Throttled: slow down\n"),
            "{text}"
        );
    }

    #[test]
    fn since_is_a_day() {
        assert_eq!(date("2026-12-01"), Ok("2026-12-01".into()));
        assert!(date("12/01/2026").is_err());
    }
}
