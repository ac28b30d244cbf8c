//! A bare `lambda_runtime` function answering `{}`: the floor the functions' init time is
//! compared against (`scripts/bench-coldstart.sh`). Not deployed.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<Value, lambda_runtime::Error>(json!({}))
    }))
    .await
}
