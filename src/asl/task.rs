//! The Task builder: a function's call with the transient retry first, then the state's own
//! retriers and catchers in order.

use serde_json::{json, Map, Value};

use super::{Timing, TRANSIENT_ERRORS};

/// A Task under construction: Retry and Catch lists grow in order, `next` finishes it.
pub(super) struct TaskState {
    body: Map<String, Value>,
    retry: Vec<Value>,
    catch: Vec<Value>,
}

/// A Task calling `resource` with `parameters`, its result at `result_path`, with the
/// transient retry first.
pub(super) fn task(
    resource: &str,
    timeout_seconds: u64,
    parameters: Value,
    result_path: &str,
    timing: &Timing,
) -> TaskState {
    let mut body = Map::new();
    body.insert("Type".into(), json!("Task"));
    body.insert("Resource".into(), json!(resource));
    body.insert("Parameters".into(), parameters);
    body.insert("ResultPath".into(), json!(result_path));
    body.insert("TimeoutSeconds".into(), json!(timeout_seconds));
    TaskState {
        body,
        retry: Vec::new(),
        catch: Vec::new(),
    }
    .retry(
        &TRANSIENT_ERRORS,
        json!({
            "IntervalSeconds": timing.transient_interval_seconds,
            "MaxAttempts": timing.transient_max_attempts,
            "BackoffRate": timing.transient_backoff_rate,
            "JitterStrategy": "FULL",
        }),
    )
}

impl TaskState {
    pub(super) fn comment(mut self, comment: &str) -> TaskState {
        self.body.insert("Comment".into(), json!(comment));
        self
    }

    /// Adds a retrier for `errors`; `schedule` holds its interval fields.
    pub(super) fn retry(mut self, errors: &[&str], schedule: Value) -> TaskState {
        let mut retrier = Map::new();
        retrier.insert("ErrorEquals".into(), json!(errors));
        if let Value::Object(fields) = schedule {
            retrier.extend(fields);
        }
        self.retry.push(Value::Object(retrier));
        self
    }

    pub(super) fn catch(mut self, errors: &[&str], result_path: &str, next: &str) -> TaskState {
        self.catch
            .push(json!({"ErrorEquals": errors, "ResultPath": result_path, "Next": next}));
        self
    }

    pub(super) fn next(self, next: &str) -> Value {
        self.finish("Next", json!(next))
    }

    /// Finishes the Task as the last state of its Map iteration.
    pub(super) fn end(self) -> Value {
        self.finish("End", json!(true))
    }

    fn finish(mut self, field: &str, value: Value) -> Value {
        self.body.insert("Retry".into(), Value::Array(self.retry));
        if !self.catch.is_empty() {
            self.body.insert("Catch".into(), Value::Array(self.catch));
        }
        self.body.insert(field.into(), value);
        Value::Object(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::super::definition;
    use super::super::tests::{job, SMALL};
    use super::*;

    #[test]
    fn every_task_retries_transient_errors_first() {
        let def = definition(&job(SMALL), &Timing::local());
        for (name, s) in def["States"].as_object().unwrap() {
            if s["Type"] == "Task" {
                let first = &s["Retry"][0];
                assert_eq!(first["ErrorEquals"], json!(TRANSIENT_ERRORS), "{name}");
                assert_eq!(first["JitterStrategy"], "FULL", "{name}");
                assert_eq!(first["IntervalSeconds"], 1, "{name}");
            }
        }
    }
}
