//! `spotstep redrive`: RedriveExecution of a failed, timed out or aborted execution.

use std::io::Write;

use aws_sdk_sfn::Client as Sfn;

use super::watch::watch;
use super::{console_link, io, Aws, Failure};
use crate::aws::sfn;
use crate::cli::Target;

/// The arguments of `spotstep redrive`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RedriveOptions {
    /// The execution: its ARN, or `<job>/<run-id>`
    #[arg(value_name = "execution")]
    pub execution: String,
    #[command(flatten)]
    pub target: Target,
}

impl RedriveOptions {
    /// Redrives the execution ([`redrive`]), then watches it to its end.
    pub async fn execute(self, aws: &Aws) -> Result<u8, Failure> {
        let e = super::execution(aws.env.sfn().await, &self.target, &self.execution).await?;
        let mut out = std::io::stdout();
        redrive(aws.env.sfn().await, &e.arn, &mut out).await?;
        let code = watch(aws.env.sfn().await, &e.arn, aws.how, &mut out).await?;
        writeln!(
            out,
            "{}",
            super::cost::line(aws, &self.target, &e.arn).await
        )
        .map_err(super::io)?;
        Ok(code)
    }
}

/// `spotstep redrive`: RedriveExecution; nothing is watched when it is refused.
pub async fn redrive(client: &Sfn, arn: &str, out: &mut dyn Write) -> Result<(), Failure> {
    sfn::redrive(client, arn).await.map_err(|e| {
        Failure::error(format!(
            "the redrive was refused, nothing was redriven: {e}"
        ))
    })?;
    writeln!(out, "redriven: {arn}\nconsole: {}", console_link(arn)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::super::tests::EXECUTION;
    use super::*;
    use crate::cli::exit;
    use crate::handlers::tests::{meta, recorder, Mocks};
    use aws_sdk_sfn::operation::redrive_execution::{
        RedriveExecutionError, RedriveExecutionOutput,
    };
    use aws_smithy_mocks::mock;
    use aws_smithy_types::DateTime;

    #[tokio::test]
    async fn redrive_sends_the_execution_and_a_refusal_is_an_error() {
        let (seen, record) = recorder();
        let env = Mocks {
            sfn: vec![mock!(aws_sdk_sfn::Client::redrive_execution)
                .match_requests(record)
                .then_output(|| {
                    RedriveExecutionOutput::builder()
                        .redrive_date(DateTime::from_secs(0))
                        .build()
                        .unwrap()
                })],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        redrive(env.sfn().await, EXECUTION, &mut out).await.unwrap();
        let asked: Vec<aws_sdk_sfn::operation::redrive_execution::RedriveExecutionInput> =
            seen.lock().unwrap().clone();
        assert_eq!(asked[0].execution_arn(), Some(EXECUTION));
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with(&format!("redriven: {EXECUTION}\n")));

        let refusing = Mocks {
            sfn: vec![mock!(aws_sdk_sfn::Client::redrive_execution)
                .then_error(|| RedriveExecutionError::generic(meta("ExecutionNotRedrivable")))],
            ..Mocks::default()
        }
        .env();
        let mut out = Vec::new();
        let f = redrive(refusing.sfn().await, EXECUTION, &mut out)
            .await
            .unwrap_err();
        assert_eq!(f.code, exit::ERROR);
        assert!(
            f.message
                .starts_with("the redrive was refused, nothing was redriven: RedriveExecution")
                && f.message.contains("ExecutionNotRedrivable"),
            "{}",
            f.message
        );
        assert!(out.is_empty());
    }
}
