//! One validation point per input.
//!
//! Every function's `handle` takes its input as raw JSON (`serde_json::Value`) rather than a
//! typed `LambdaEvent<T>`, on purpose: the runtime would answer a malformed event with its
//! own error type (a Rust type name no `Catch` can match), while [`parse`] answers it with
//! our stable `InvalidInput`. Parsing and checking are one step: an input type says what
//! makes it valid in [`Checked::check`], and no handler checks its input again.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// An input that knows its own rules.
pub trait Checked: DeserializeOwned {
    /// `InvalidInput` naming what is wrong, or `Ok`.
    fn check(&self) -> Result<()>;
}

/// Parses `value` into `T` and checks it: a type error or a broken rule is `InvalidInput`,
/// the message naming `what`.
pub fn parse<T: Checked>(what: &str, value: Value) -> Result<T> {
    let parsed: T = serde_json::from_value(value)
        .map_err(|e| Error::InvalidInput(format!("malformed {what}: {e}")))?;
    parsed.check()?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Run;

    #[test]
    fn malformed_json_is_invalid_input() {
        let err = parse::<Run>("run", serde_json::json!({"job": 5})).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().starts_with("malformed run:"), "{err}");
    }

    #[test]
    fn a_parsed_input_is_checked() {
        let mut run = serde_json::to_value(crate::records::fixtures::run()).unwrap();
        run["run_id"] = "../escape".into();
        let err = parse::<Run>("run", run).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("unsafe"), "{err}");
    }
}
