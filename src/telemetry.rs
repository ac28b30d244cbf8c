//! Structured logs and metrics.
//!
//! Logs are `tracing` JSON lines; each handler opens a span carrying job, run id, step and
//! instance id, so every line of an invocation names them. Metrics are CloudWatch Embedded
//! Metric Format lines on stdout, which Lambda's log pipeline turns into metrics.

use serde_json::json;
use time::OffsetDateTime;

/// Installs the JSON log subscriber (`RUST_LOG` filters, default `info`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .init();
}

/// One EMF line: a count of 1 for `metric` in `namespace`, with one dimension.
pub fn emf_count(
    namespace: &str,
    metric: &str,
    dimension: (&str, &str),
    at: OffsetDateTime,
) -> String {
    let (dim_name, dim_value) = dimension;
    let mut line = json!({
        "_aws": {
            "Timestamp": at.unix_timestamp() * 1000,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[dim_name]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        },
    });
    line[dim_name] = json!(dim_value);
    line[metric] = json!(1);
    line.to_string()
}

/// Emits an EMF count line on stdout.
pub fn emit_count(namespace: &str, metric: &str, dimension: (&str, &str), at: OffsetDateTime) {
    println!("{}", emf_count(namespace, metric, dimension, at));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_heartbeat_line() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let line: serde_json::Value = serde_json::from_str(&emf_count(
            "AlphaEngine",
            "Heartbeat",
            ("Process", "data-weekly-phase1"),
            at,
        ))
        .unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_800_000_000_000i64);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "AlphaEngine"
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Process"
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "Heartbeat"
        );
        assert_eq!(line["Process"], "data-weekly-phase1");
        assert_eq!(line["Heartbeat"], 1);
    }
}
