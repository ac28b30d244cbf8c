//! The whole definition: its header (comment, start, execution timeout) and its states, as a
//! JSON value and as the text committed in `statemachine/<job>.asl.json`.

use serde_json::{json, Map, Value};

use super::{state, states, Timing, CAPACITY_WAIT_SECONDS};
use crate::manifest::Job;

/// The whole definition of `job`'s state machine.
pub fn definition(job: &Job, timing: &Timing) -> Value {
    json!({
        "Comment": comment(job),
        "StartAt": state::APPLY_DEFAULTS,
        "TimeoutSeconds": execution_timeout_seconds(job),
        "States": states(job, timing).into_iter().collect::<Map<String, Value>>(),
    })
}

/// The definition as committed in `statemachine/<job>.asl.json`: pretty JSON with a trailing
/// newline, states in flow order and each state's fields in a fixed order, whatever the
/// order of keys in `serde_json`'s maps.
pub fn render(job: &Job, timing: &Timing) -> String {
    let mut out = String::from("{\n");
    let header = [
        ("Comment", json!(comment(job))),
        ("StartAt", json!(state::APPLY_DEFAULTS)),
        ("TimeoutSeconds", json!(execution_timeout_seconds(job))),
    ];
    for (key, value) in &header {
        out.push_str(&format!("  {}: ", json!(key)));
        write_json(&mut out, value, 1);
        out.push_str(",\n");
    }
    out.push_str("  \"States\": {\n");
    let states = states(job, timing);
    for (i, (name, body)) in states.iter().enumerate() {
        out.push_str(&format!("    {}: ", json!(name)));
        write_json(&mut out, body, 2);
        out.push_str(if i + 1 < states.len() { ",\n" } else { "\n" });
    }
    out.push_str("  }\n}\n");
    out
}

fn comment(job: &Job) -> String {
    let name = &job.spec.name;
    format!(
        "spotstep job `{name}`: {}. Generated from jobs/{name}/job.toml by `spotstep asl-all`; do not edit.",
        job.description
    )
}

/// The execution's own time limit: every launch of the job running its full max runtime,
/// plus half an hour.
fn execution_timeout_seconds(job: &Job) -> u64 {
    job.spec.max_runtime_seconds * u64::from(job.spec.max_attempts) + CAPACITY_WAIT_SECONDS + 1800
}

/// The fields of states, retriers, catchers and choice rules, in the order they are written;
/// other keys follow in alphabetical order.
const FIELD_ORDER: [&str; 22] = [
    "ErrorEquals",
    "Type",
    "Comment",
    "Resource",
    "Parameters",
    "Result",
    "ResultPath",
    "Seconds",
    "TimeoutSeconds",
    "Choices",
    "Default",
    "Retry",
    "Catch",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Variable",
    "StringEquals",
    "Or",
    "Next",
];

/// Writes `value` as pretty JSON (two-space indent) at nesting depth `depth`.
fn write_json(out: &mut String, value: &Value, depth: usize) {
    let pad = |depth: usize| "  ".repeat(depth);
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_json(out, item, depth + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::Object(fields) if !fields.is_empty() => {
            let mut keys: Vec<&String> = fields.keys().collect();
            let rank = |k: &str| {
                FIELD_ORDER
                    .iter()
                    .position(|f| *f == k)
                    .unwrap_or(FIELD_ORDER.len())
            };
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            out.push_str("{\n");
            for (i, key) in keys.iter().enumerate() {
                out.push_str(&format!("{}{}: ", pad(depth + 1), json!(key)));
                write_json(out, &fields[key.as_str()], depth + 1);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, SMALL};
    use super::*;

    #[test]
    fn rendered_text_is_the_definition_in_flow_order() {
        let j = job(SMALL);
        let text = render(&j, &Timing::production());
        assert!(text.ends_with("}\n"));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, definition(&j, &Timing::production()));
        let position = |name: &str| text.find(&format!("\n    \"{name}\": {{")).unwrap();
        let flow = [
            "Apply defaults",
            "Init",
            "Name the run",
            "Launch",
            "Wait for agent",
            "setup: send",
            "Resume",
        ];
        assert!(
            flow.windows(2).all(|w| position(w[0]) < position(w[1])),
            "{text}"
        );
        assert!(position("two: resume here") < position(state::FINISH));
        assert!(
            !text.contains("\"ResultPath\": \"$.lost\",\n            \"ErrorEquals\""),
            "{text}"
        );
        assert!(text.contains("{\n          \"ErrorEquals\": [\n"), "{text}");
    }
}
