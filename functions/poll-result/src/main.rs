//! The poll-result Lambda: wiring only; the logic is `spotstep::handlers::poll_result`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotstep::lambda::serve(|env, input| async move {
        spotstep::handlers::poll_result::handle(&env, input).await
    })
    .await
}
