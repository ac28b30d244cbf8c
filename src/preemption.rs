//! What spot preemption did to a run, read from its history: the market of each launch, the
//! reclaims (counted apart from step retries, on the launch record), and the checkpoints the
//! steps resumed from. `spotstep runs` and the failure notification show it; `watch` shows
//! the same facts line by line ([`crate::progress`]).

use serde_json::Value;

use crate::asl::state;
use crate::checkpoint::Restored;
use crate::progress::Event;

/// A run's launches and resumes, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preemption {
    /// The market (`spot`, `on-demand`) of each launch.
    pub markets: Vec<String>,
    /// Spot reclaims before the last launch.
    pub reclaims: u32,
    /// Each step that resumed from a checkpoint, and that checkpoint.
    pub resumes: Vec<(String, Restored)>,
}

fn json(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// Reads the launch records (`Launch` exits) and send-step's records (`TaskSubmitted`).
pub fn of(events: &[Event]) -> Preemption {
    let mut p = Preemption::default();
    for e in events {
        match e.kind.as_str() {
            "TaskStateExited" if e.state.as_deref() == Some(state::LAUNCH) => {
                let launch = &json(e.output.as_deref())["launch"];
                if let Some(market) = launch["market"].as_str() {
                    p.markets.push(market.to_string());
                    p.reclaims = launch["reclaims"]
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or_default();
                }
            }
            _ => p.resumes.extend(resume_of(e)),
        }
    }
    p
}

/// The step and the checkpoint it resumes from, when `e` is send-step's record of a send
/// (`TaskSubmitted`) that names one.
pub fn resume_of(e: &Event) -> Option<(String, Restored)> {
    if e.kind != "TaskSubmitted" {
        return None;
    }
    let sent = &json(e.output.as_deref())["Payload"];
    let restored = serde_json::from_value::<Restored>(sent.get("checkpoint")?.clone()).ok()?;
    Some((sent["step"].as_str()?.to_string(), restored))
}

impl Preemption {
    /// `spot, on-demand (1 reclaim)`; empty before the first launch.
    pub fn launches(&self) -> String {
        if self.markets.is_empty() {
            return String::new();
        }
        let reclaims = match self.reclaims {
            0 => "no reclaim".to_string(),
            1 => "1 reclaim".to_string(),
            n => format!("{n} reclaims"),
        };
        format!("{} ({reclaims})", self.markets.join(", "))
    }

    /// One line per resume: `step train resumes from a checkpoint 12s old (...)`.
    pub fn resume_lines(&self) -> Vec<String> {
        self.resumes
            .iter()
            .map(|(step, r)| format!("step {step} {}", r.describe()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> Event {
        Event::from_json(&v).unwrap()
    }

    fn launched(at: f64, market: &str, reclaims: u32) -> Event {
        event(
            json!({"type": "TaskStateExited", "timestamp": at, "stateExitedEventDetails": {
            "name": state::LAUNCH,
            "output": json!({"launch": {"market": market, "reclaims": reclaims}}).to_string()}}),
        )
    }

    #[test]
    fn markets_reclaims_and_resumes_from_the_history() {
        let resumed = event(
            json!({"type": "TaskSubmitted", "timestamp": 5.0, "taskSubmittedEventDetails": {
            "output": json!({"Payload": {"step": "train", "checkpoint":
                {"saved_at": "2026-12-06T08:00:00Z", "age_seconds": 9, "reason": "periodic", "complete": false}}}).to_string()}}),
        );
        let plain = event(
            json!({"type": "TaskSubmitted", "timestamp": 2.0, "taskSubmittedEventDetails": {
            "output": json!({"Payload": {"step": "train"}}).to_string()}}),
        );
        let p = of(&[
            launched(1.0, "spot", 0),
            plain,
            launched(3.0, "spot", 1),
            launched(4.0, "on-demand", 2),
            resumed,
        ]);
        assert_eq!(p.launches(), "spot, spot, on-demand (2 reclaims)");
        assert_eq!(
            p.resume_lines(),
            ["step train resumes from a checkpoint 9s old (the last periodic upload)"]
        );
        assert_eq!(of(&[]).launches(), "");
        assert_eq!(
            of(&[launched(1.0, "spot", 0)]).launches(),
            "spot (no reclaim)"
        );
    }
}
