//! The Lambda wiring every function's `main` shares: logs, clients, and the runtime loop
//! that maps [`Error`] to a `Diagnostic` with its stable name.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::env::Env;
use crate::error::Error;

/// Runs `handler` as a Lambda function: one span per invocation carrying the job, run id,
/// step and instance id found in the input.
pub async fn serve<F, Fut, T>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Arc<Env>, Value) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
    T: Serialize,
{
    crate::telemetry::init_logs();
    let env = Arc::new(Env::from_environment().await.map_err(Box::new)?);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let env = env.clone();
        async move {
            let payload = event.payload;
            let span = invocation_span(&payload, &event.context.request_id);
            let result = handler(env, payload).instrument(span.clone()).await;
            match &result {
                Err(e @ (Error::StillRunning(_) | Error::AgentNotOnline(_))) => span.in_scope(
                    || tracing::info!(error_type = e.name(), detail = %e, "not ready yet"),
                ),
                Err(e) => span.in_scope(
                    || tracing::warn!(error_type = e.name(), error = %e, "invocation failed"),
                ),
                Ok(_) => {}
            }
            result.map_err(Diagnostic::from)
        }
    }))
    .await
}

fn invocation_span(payload: &Value, request_id: &str) -> tracing::Span {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let run = &payload["run"];
    let instance = payload["instance"]["instance_id"]
        .as_str()
        .or_else(|| payload["command"]["instance_id"].as_str())
        .unwrap_or_default();
    tracing::info_span!(
        "invocation",
        request_id,
        job = %text(&run["job"]),
        run_id = %text(&run["run_id"]),
        step = %text(&payload["step"]["name"]),
        instance_id = %instance,
    )
}
