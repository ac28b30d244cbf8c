//! One module per Lambda function. Each `handle` takes the function's JSON input and the
//! [`Env`](crate::env::Env) and returns its output or a stable [`Error`](crate::Error).

pub mod cleanup;
pub mod fanout;
pub mod launch;
pub mod poll_result;
pub mod send_step;
pub mod wait_online;

#[cfg(test)]
pub(crate) mod tests;
