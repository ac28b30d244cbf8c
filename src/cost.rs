//! What a run cost: each instance's spot price history integrated per second over its
//! lifetime under the billing rules AWS documents, its root volume's GB-month share, and the
//! orchestration (state transitions, Lambda, the reconciler's schedule) at list prices.
//!
//! Every list price is here, once, with the date and region it was read for ([`LIST`]);
//! `spotstep contract` hands them to the Python side (the benchmark's cost model). A price
//! that cannot be had (no history, throttling, an on-demand instance) leaves that part of the
//! cost unknown with its reason: it is never taken as 0.

use serde::{Deserialize, Serialize};

/// List prices (us-east-1) spotstep multiplies its own counts by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ListPrices {
    /// When and where the prices were read.
    pub as_of: &'static str,
    pub region: &'static str,
    /// Step Functions Standard, per state transition ($0.025 per 1,000).
    pub sfn_standard_per_transition: f64,
    /// Lambda on arm64, per GB-second.
    pub lambda_arm64_per_gb_second: f64,
    /// Lambda, per request ($0.20 per million).
    pub lambda_per_request: f64,
    /// EBS gp3 storage, per GB-month.
    pub ebs_gp3_per_gb_month: f64,
    /// EventBridge Scheduler, per invocation past its free 14 million a month.
    pub scheduler_per_invocation: f64,
}

/// The list prices, in one place.
pub const LIST: ListPrices = ListPrices {
    as_of: "2026-12-06",
    region: "us-east-1",
    sfn_standard_per_transition: 0.025 / 1000.0,
    lambda_arm64_per_gb_second: 0.000_013_333_4,
    lambda_per_request: 0.20 / 1_000_000.0,
    ebs_gp3_per_gb_month: 0.08,
    scheduler_per_invocation: 1.00 / 1_000_000.0,
};

/// The functions' memory (template.yaml's `MemorySize`), in MB.
pub const LAMBDA_MEMORY_MB: u64 = 128;
/// Billed milliseconds assumed per Lambda invocation: the history does not carry billed
/// durations (the functions answer in tens of milliseconds; Lambda rounds up to 1 ms).
pub const LAMBDA_BILLED_MS_ASSUMED: u64 = 100;
/// The month a GB-month is a share of: 730 hours, the average month AWS's pricing uses.
pub const SECONDS_PER_MONTH: i64 = 730 * 3600;
/// The product whose spot prices apply (the image is Amazon Linux).
pub const SPOT_PRODUCT: &str = "Linux/UNIX";
/// Per-second billing charges at least this many seconds per instance (Linux).
pub const MINIMUM_BILLED_SECONDS: i64 = 60;
/// An instance EC2 interrupts within this many seconds of its launch costs nothing.
pub const FIRST_HOUR_SECONDS: i64 = 3600;

/// One spot price change: from `at` (epoch seconds) the price is `usd_per_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    pub at: i64,
    pub usd_per_hour: f64,
}

/// Who ended an instance, as far as billing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// spotstep, an operator, the watchdog's own shutdown: anything but EC2's interruption.
    Us,
    /// EC2 interrupted the spot instance (a reclaim).
    Interruption,
}

/// Which documented billing rule an instance's charge follows (AWS EC2 User Guide, "Billing
/// for interrupted Spot Instances", Linux rows; and per-second billing's 60 s minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Ended by us: the seconds used.
    SecondsUsed,
    /// Ended by us within its first minute: 60 seconds.
    MinimumMinute,
    /// Interrupted by EC2 in its first hour: no charge for the instance.
    InterruptedFirstHour,
    /// Interrupted by EC2 after its first hour: the seconds used.
    InterruptedAfterFirstHour,
}

impl Rule {
    /// The rule in words, as the ledger and `spotstep cost` show it.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::SecondsUsed => "stopped by us: the seconds used",
            Rule::MinimumMinute => "stopped by us in its first minute: 60 seconds (the minimum)",
            Rule::InterruptedFirstHour => "interrupted by EC2 in its first hour: no charge",
            Rule::InterruptedAfterFirstHour => {
                "interrupted by EC2 after its first hour: the seconds used"
            }
        }
    }
}

/// The seconds billed for an instance used `used` seconds, and the rule that says so.
pub fn billed_seconds(used: i64, ended_by: EndedBy) -> (i64, Rule) {
    let used = used.max(0);
    match ended_by {
        EndedBy::Interruption if used < FIRST_HOUR_SECONDS => (0, Rule::InterruptedFirstHour),
        EndedBy::Interruption => (used, Rule::InterruptedAfterFirstHour),
        EndedBy::Us if used < MINIMUM_BILLED_SECONDS => {
            (MINIMUM_BILLED_SECONDS, Rule::MinimumMinute)
        }
        EndedBy::Us => (used, Rule::SecondsUsed),
    }
}

/// The price integrated over `[from, to)` (epoch seconds), per second, in USD. `history` is
/// what DescribeSpotPriceHistory returns for the window: the change in force at `from` and
/// every change inside, in any order. `Err` with the reason when no price was in force at
/// `from`.
pub fn integrate(history: &[PricePoint], from: i64, to: i64) -> Result<f64, String> {
    let mut points: Vec<PricePoint> = history.to_vec();
    points.sort_by_key(|p| p.at);
    let Some(start) = points.iter().rposition(|p| p.at <= from) else {
        return Err(match points.first() {
            Some(first) => format!(
                "the price history starts at {}, after the instance's launch",
                crate::env::rfc3339(
                    time::OffsetDateTime::from_unix_timestamp(first.at)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                )
            ),
            None => "no spot price history for the instance's type and zone".to_string(),
        });
    };
    let mut usd = 0.0;
    for (i, point) in points.iter().enumerate().skip(start) {
        let begin = point.at.max(from);
        let end = points.get(i + 1).map_or(to, |next| next.at.min(to));
        if end > begin {
            usd += point.usd_per_hour * (end - begin) as f64 / 3600.0;
        }
    }
    Ok(usd)
}

/// An instance's charge, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceCost {
    pub billed_seconds: i64,
    pub rule: Rule,
    /// The instance itself; `None` when unknown (`unknown` says why).
    pub instance_usd: Option<f64>,
    /// The root volume's GB-month share over the instance's lifetime.
    pub volume_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

/// The root volume's charge: `gb` for `seconds`, a share of a GB-month. The volume is
/// deleted with the instance, and billed for its lifetime whoever ended it (the billing page
/// waives only the instance's usage).
pub fn volume_usd(gb: u32, seconds: i64) -> f64 {
    f64::from(gb) * LIST.ebs_gp3_per_gb_month * seconds.max(0) as f64 / SECONDS_PER_MONTH as f64
}

/// What one instance cost: launched at `launched`, ended at `ended` (epoch seconds) by
/// `ended_by`, with its `gb` root volume, priced by `prices` (the spot history, or why there
/// is none).
pub fn instance_cost(
    launched: i64,
    ended: i64,
    ended_by: EndedBy,
    gb: u32,
    prices: Result<&[PricePoint], String>,
) -> InstanceCost {
    let used = (ended - launched).max(0);
    let (billed, rule) = billed_seconds(used, ended_by);
    let priced = if billed == 0 {
        Ok(0.0)
    } else {
        prices.and_then(|history| integrate(history, launched, launched + billed))
    };
    let (instance_usd, unknown) = match priced {
        Ok(usd) => (Some(round(usd)), None),
        Err(why) => (None, Some(why)),
    };
    InstanceCost {
        billed_seconds: billed,
        rule,
        instance_usd,
        volume_usd: round(volume_usd(gb, used)),
        unknown,
    }
}

/// What a run's orchestration did, counted from its own history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// State transitions (each state entered, each retry).
    pub transitions: u64,
    /// Lambda invocations (the states' and the events' answers and the cleanups).
    pub lambda_invocations: u64,
    /// The reconciler's scheduled invocations during the run (stack-wide, at most one run
    /// at a time per job).
    pub scheduler_invocations: u64,
}

/// The orchestration's cost at list prices.
pub fn orchestration_usd(counts: &Counts) -> f64 {
    let gb = LAMBDA_MEMORY_MB as f64 / 1024.0;
    let lambda_seconds = (counts.lambda_invocations * LAMBDA_BILLED_MS_ASSUMED) as f64 / 1000.0;
    let all_invocations = counts.lambda_invocations + counts.scheduler_invocations;
    round(
        counts.transitions as f64 * LIST.sfn_standard_per_transition
            + all_invocations as f64 * LIST.lambda_per_request
            + lambda_seconds * gb * LIST.lambda_arm64_per_gb_second
            + counts.scheduler_invocations as f64 * LIST.scheduler_per_invocation,
    )
}

/// A run's cost: its parts and their total. A part that could not be priced makes the
/// instance part and the total unknown (`None`), with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub instance_usd: Option<f64>,
    pub volume_usd: f64,
    pub orchestration_usd: f64,
    pub total_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// The date of the list prices used ([`LIST`]).
    pub prices_as_of: String,
}

impl Cost {
    /// The cost of a run from its instances' charges and its counts.
    pub fn of<'a>(instances: impl IntoIterator<Item = &'a InstanceCost>, counts: &Counts) -> Cost {
        let mut instance_usd = Some(0.0);
        let mut volume = 0.0;
        let mut unknown = Vec::new();
        for c in instances {
            volume += c.volume_usd;
            match c.instance_usd {
                Some(usd) => instance_usd = instance_usd.map(|sum| sum + usd),
                None => {
                    instance_usd = None;
                    if let Some(why) = c.unknown.as_ref().filter(|w| !unknown.contains(*w)) {
                        unknown.push(why.clone());
                    }
                }
            }
        }
        let orchestration = orchestration_usd(counts);
        Cost {
            instance_usd: instance_usd.map(round),
            volume_usd: round(volume),
            orchestration_usd: orchestration,
            total_usd: instance_usd.map(|i| round(i + volume + orchestration)),
            unknown,
            prices_as_of: LIST.as_of.to_string(),
        }
    }

    /// The total in words: `$0.0123`, or `unknown (<reasons>)`; never `$0` for a price
    /// that could not be had.
    pub fn total_text(&self) -> String {
        match self.total_usd {
            Some(usd) => usd_text(usd),
            None => format!("unknown ({})", self.unknown.join("; ")),
        }
    }

    /// One line: the total and its parts.
    pub fn line(&self) -> String {
        let instance = self.instance_usd.map_or("unknown".to_string(), usd_text);
        format!(
            "{} (instance {instance}, volume {}, orchestration {}; list prices of {})",
            self.total_text(),
            usd_text(self.volume_usd),
            usd_text(self.orchestration_usd),
            self.prices_as_of
        )
    }
}

/// Dollars with 4 decimals (`$0.0123`); amounts under $0.0001 keep 6 (`$0.000012`).
pub fn usd_text(usd: f64) -> String {
    if usd != 0.0 && usd.abs() < 0.0001 {
        format!("${usd:.6}")
    } else {
        format!("${usd:.4}")
    }
}

/// Rounded to a millionth of a dollar, as the ledger stores amounts.
pub fn round(usd: f64) -> f64 {
    (usd * 1_000_000.0).round() / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_000_000;

    fn p(at: i64, usd_per_hour: f64) -> PricePoint {
        PricePoint { at, usd_per_hour }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_price_change_mid_run_is_integrated_per_second() {
        // In force since before the launch: 0.036/h; from T0 + 1800 s: 0.072/h.
        let history = [p(T0 + 1800, 0.072), p(T0 - 5000, 0.036)];
        let usd = integrate(&history, T0, T0 + 3600).unwrap();
        assert!(close(usd, 0.036 * 0.5 + 0.072 * 0.5), "{usd}");
        // A change after the end does not count.
        let later = [p(T0 - 1, 0.036), p(T0 + 7200, 1.0)];
        assert!(close(
            integrate(&later, T0, T0 + 90).unwrap(),
            0.036 * 90.0 / 3600.0
        ));
        let cost = instance_cost(T0, T0 + 3600, EndedBy::Us, 30, Ok(&history));
        assert_eq!(cost.rule, Rule::SecondsUsed);
        assert_eq!(cost.billed_seconds, 3600);
        assert_eq!(cost.instance_usd, Some(0.054));
        // 30 GB for one hour of a 730-hour month at $0.08.
        assert!(close(cost.volume_usd, round(30.0 * 0.08 / 730.0)));
        assert_eq!(cost.unknown, None);
    }

    #[test]
    fn an_interruption_in_the_first_hour_costs_no_instance_time() {
        let history = [p(T0 - 60, 0.05)];
        let cost = instance_cost(T0, T0 + 3599, EndedBy::Interruption, 30, Ok(&history));
        assert_eq!(
            (cost.billed_seconds, cost.rule),
            (0, Rule::InterruptedFirstHour)
        );
        assert_eq!(cost.instance_usd, Some(0.0));
        assert!(cost.volume_usd > 0.0, "the volume is still billed");
        let after = instance_cost(T0, T0 + 3600 + 36, EndedBy::Interruption, 30, Ok(&history));
        assert_eq!(after.rule, Rule::InterruptedAfterFirstHour);
        assert_eq!(after.billed_seconds, 3636);
        assert_eq!(after.instance_usd, Some(round(0.05 * 3636.0 / 3600.0)));
        // An interruption in the first hour needs no price at all.
        let unpriced = instance_cost(
            T0,
            T0 + 10,
            EndedBy::Interruption,
            8,
            Err("throttled".into()),
        );
        assert_eq!(unpriced.instance_usd, Some(0.0));
    }

    #[test]
    fn a_short_run_is_billed_its_minute() {
        let history = [p(T0 - 60, 0.036), p(T0 + 30, 0.072)];
        let cost = instance_cost(T0, T0 + 12, EndedBy::Us, 8, Ok(&history));
        assert_eq!((cost.billed_seconds, cost.rule), (60, Rule::MinimumMinute));
        // The minute runs on at the prices then in force: 30 s at 0.036, 30 s at 0.072.
        assert_eq!(
            cost.instance_usd,
            Some(round((0.036 + 0.072) * 30.0 / 3600.0))
        );
        // The volume lived 12 s.
        assert!(close(cost.volume_usd, round(volume_usd(8, 12))));
    }

    #[test]
    fn a_missing_price_is_unknown_with_its_reason_never_zero() {
        let none = instance_cost(T0, T0 + 600, EndedBy::Us, 30, Ok(&[]));
        assert_eq!(none.instance_usd, None);
        assert_eq!(
            none.unknown.as_deref(),
            Some("no spot price history for the instance's type and zone")
        );
        let late = instance_cost(T0, T0 + 600, EndedBy::Us, 30, Ok(&[p(T0 + 5, 0.1)]));
        assert!(
            late.unknown.unwrap().contains("starts at"),
            "after the launch"
        );
        let throttled = instance_cost(
            T0,
            T0 + 600,
            EndedBy::Us,
            30,
            Err("DescribeSpotPriceHistory was throttled".into()),
        );
        let counts = Counts {
            transitions: 40,
            lambda_invocations: 20,
            scheduler_invocations: 1,
        };
        let priced = instance_cost(T0, T0 + 600, EndedBy::Us, 30, Ok(&[p(T0, 0.036)]));
        let cost = Cost::of([&priced, &throttled], &counts);
        assert_eq!(cost.instance_usd, None);
        assert_eq!(cost.total_usd, None);
        assert_eq!(cost.unknown, ["DescribeSpotPriceHistory was throttled"]);
        assert_eq!(
            cost.total_text(),
            "unknown (DescribeSpotPriceHistory was throttled)"
        );
        assert!(cost.volume_usd > 0.0);
        let known = Cost::of([&priced], &counts);
        assert_eq!(
            known.total_usd,
            Some(round(0.006 + priced.volume_usd + known.orchestration_usd))
        );
    }

    #[test]
    fn orchestration_at_list_prices() {
        let counts = Counts {
            transitions: 1000,
            lambda_invocations: 1000,
            scheduler_invocations: 0,
        };
        // $0.025 + $0.0002 requests + 100 s at 0.125 GB.
        let want = 0.025 + 0.0002 + 100.0 * 0.125 * 0.000_013_333_4;
        assert!(close(orchestration_usd(&counts), round(want)));
        assert_eq!(usd_text(0.054), "$0.0540");
        assert_eq!(usd_text(0.000_012), "$0.000012");
        assert_eq!(usd_text(0.0), "$0.0000");
    }
}
