//! The launch Lambda: wiring only; the logic is `spotstep::handlers::launch`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotstep::lambda::serve(|env, input| async move {
        spotstep::handlers::launch::handle(&env, input).await
    })
    .await
}
