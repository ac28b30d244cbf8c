//! A state machine definition as a Mermaid flowchart (`spotstep graph <job>`).
//!
//! Nodes come from [`asl::shape`](crate::asl::shape), one per state, in breadth-first order
//! from `StartAt` (then any state not reached, by name); their shape shows the state's type (Task: rectangle, Choice: rhombus, Pass:
//! stadium, Wait: parallelogram, Succeed/Fail: circle). Edges are
//! [`asl::successors`](crate::asl::successors): a solid arrow for `Next`, `Default` and the
//! Choice rules, a dotted arrow labelled with the error names for a `Catch` (when the same
//! target is also a `Next`, the solid arrow is drawn).

use serde_json::Value;

use crate::asl::{shape, successors};

/// The Mermaid text of `definition` (ends with a newline).
pub fn mermaid(definition: &Value) -> String {
    let shapes = shape(definition);
    let order = flow_order(definition, &shapes);
    let id = |name: &str| {
        order
            .iter()
            .position(|n| n == name)
            .map_or_else(|| "unknown".to_string(), |i| format!("s{i}"))
    };
    let mut out = String::from("flowchart TD\n");
    out.push_str(&format!(
        "  start(( )) --> {}\n",
        id(definition["StartAt"].as_str().unwrap_or_default())
    ));
    for name in &order {
        let kind = shapes
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or("", |(_, k, _)| k.as_str());
        let label = name.replace('"', "#quot;");
        let node = match kind {
            "Choice" => format!("{{\"{label}\"}}"),
            "Pass" => format!("([\"{label}\"])"),
            "Wait" => format!("[/\"{label}\"/]"),
            "Succeed" | "Fail" => format!("((\"{label}\"))"),
            _ => format!("[\"{label}\"]"),
        };
        out.push_str(&format!("  {}{node}\n", id(name)));
    }
    for name in &order {
        let state = &definition["States"][name.as_str()];
        let plain = successors(&without_catch(state));
        for next in successors(state) {
            if plain.contains(&next) {
                out.push_str(&format!("  {} --> {}\n", id(name), id(&next)));
            } else {
                out.push_str(&format!(
                    "  {} -.->|\"{}\"| {}\n",
                    id(name),
                    caught(state, &next).join(", "),
                    id(&next)
                ));
            }
        }
    }
    out
}

/// The state names breadth-first from `StartAt` (successors in name order), then the states
/// not reached, by name.
fn flow_order(definition: &Value, shapes: &[(String, String, Vec<String>)]) -> Vec<String> {
    let mut order: Vec<String> = definition["StartAt"]
        .as_str()
        .filter(|s| shapes.iter().any(|(n, _, _)| n == s))
        .map(String::from)
        .into_iter()
        .collect();
    let mut i = 0;
    while i < order.len() {
        let next = shapes
            .iter()
            .find(|(n, _, _)| *n == order[i])
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default();
        for n in next {
            if !order.contains(&n) && shapes.iter().any(|(s, _, _)| *s == n) {
                order.push(n);
            }
        }
        i += 1;
    }
    for (n, _, _) in shapes {
        if !order.contains(n) {
            order.push(n.clone());
        }
    }
    order
}

fn without_catch(state: &Value) -> Value {
    let mut copy = state.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("Catch");
    }
    copy
}

/// The error names of the Catches of `state` that go to `next`.
fn caught(state: &Value, next: &str) -> Vec<String> {
    state["Catch"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["Next"] == next)
        .flat_map(|c| c["ErrorEquals"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_by_type_and_edges_by_kind() {
        let d = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Next": "B", "Catch": [
                    {"ErrorEquals": ["X", "Y"], "Next": "C"},
                    {"ErrorEquals": ["Z"], "Next": "B"}
                ]},
                "B": {"Type": "Choice", "Choices": [{"Next": "C"}], "Default": "D"},
                "C": {"Type": "Pass", "Next": "W"},
                "W": {"Type": "Wait", "Next": "D"},
                "D": {"Type": "Succeed"}
            }
        });
        assert_eq!(
            mermaid(&d),
            "flowchart TD\n  start(( )) --> s0\n  s0[\"A\"]\n  s1{\"B\"}\n  s2([\"C\"])\n  \
             s3((\"D\"))\n  s4[/\"W\"/]\n  s0 --> s1\n  s0 -.->|\"X, Y\"| s2\n  s1 --> s2\n  \
             s1 --> s3\n  s2 --> s4\n  s4 --> s3\n"
        );
    }
}
