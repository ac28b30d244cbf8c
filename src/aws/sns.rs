//! The SNS call: the failure notification to the on-call engineer.

use aws_sdk_sns::Client;

use crate::error::{Error, Result};

/// Publishes `message` with `subject` (at most 100 characters) to `topic`.
pub async fn publish(sns: &Client, topic: &str, subject: &str, message: &str) -> Result<()> {
    sns.publish()
        .topic_arn(topic)
        .subject(subject)
        .message(message)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("Publish to {topic}"), &e))?;
    Ok(())
}
