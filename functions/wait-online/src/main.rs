//! The wait-online Lambda: wiring only; the logic is `spotstep::handlers::wait_online`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotstep::lambda::serve(|env, input| async move {
        spotstep::handlers::wait_online::handle(&env, input).await
    })
    .await
}
