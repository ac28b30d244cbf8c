//! The send-step Lambda: wiring only; the logic is `spotstep::handlers::send_step`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotstep::lambda::serve(|env, input| async move {
        spotstep::handlers::send_step::handle(&env, input).await
    })
    .await
}
