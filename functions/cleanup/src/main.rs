//! The cleanup Lambda: wiring only; the logic is `spotstep::handlers::cleanup`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotstep::lambda::serve(|env, input| async move {
        spotstep::handlers::cleanup::handle(&env, input).await
    })
    .await
}
