//! Reading a definition back: the function each Task calls, the states each state can go to,
//! the graph of the whole.

use serde_json::Value;

use super::resource;

/// The function placeholder a Task calls: its `Resource`, or for a waiting Task its
/// `Parameters.FunctionName`.
pub fn function_of(state: &Value) -> Option<&str> {
    match state["Resource"].as_str()? {
        resource::WAIT_FOR_TOKEN => state["Parameters"]["FunctionName"].as_str(),
        other => Some(other),
    }
}

/// The states a state can go to next: `Next`, `Default`, every Choice rule's and every
/// Catch's `Next`; sorted, without repeats.
pub fn successors(state: &Value) -> Vec<String> {
    let mut out: Vec<String> = [&state["Next"], &state["Default"]]
        .into_iter()
        .chain(
            state["Choices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["Next"]),
        )
        .chain(
            state["Catch"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["Next"]),
        )
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The graph of a definition: each state's name, type and successors, by name. Two
/// definitions with the same shape differ only in their intervals and parameters.
pub fn shape(definition: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = definition["States"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            let kind = s["Type"].as_str().unwrap_or_default().to_string();
            (name.clone(), kind, successors(s))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, SMALL};
    use super::super::{definition, Timing};
    use super::*;
    use serde_json::json;

    #[test]
    fn production_and_local_have_the_same_shape() {
        let j = job(SMALL);
        assert_eq!(
            shape(&definition(&j, &Timing::production())),
            shape(&definition(&j, &Timing::local()))
        );
        assert_ne!(
            definition(&j, &Timing::production()),
            definition(&j, &Timing::local())
        );
    }

    #[test]
    fn successors_include_choices_defaults_and_catches() {
        let s = json!({
            "Choices": [{"Next": "b"}, {"Next": "a"}],
            "Default": "c",
            "Catch": [{"Next": "a"}],
        });
        assert_eq!(successors(&s), ["a", "b", "c"]);
    }
}
