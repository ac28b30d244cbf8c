//! The job-level fields of a manifest: names, instance types, sizes, config source,
//! attempts, `[env]` (no secrets in it) and `[secrets]`.

use super::{ManifestError, RawManifest, DELIVERY_TIMEOUT_RANGE};
use crate::naming;

/// The job-level fields: names, instance types, sizes, config source, attempts, env names.
pub(super) fn check_fields(
    raw: &RawManifest,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    naming::check_name(&raw.name).map_err(|p| err("name", p))?;
    naming::check_name_prefix(&raw.instance_name_prefix)
        .map_err(|p| err("instance_name_prefix", p))?;
    if raw.instance_types.is_empty() {
        return Err(err(
            "instance_types",
            "must list at least one instance type".into(),
        ));
    }
    for (i, t) in raw.instance_types.iter().enumerate() {
        naming::check_instance_type(t).map_err(|p| err(&format!("instance_types[{i}]"), p))?;
    }
    if !(8..=16_384).contains(&raw.root_volume_gb) {
        return Err(err("root_volume_gb", "must be between 8 and 16384".into()));
    }
    if !(600..=172_800).contains(&raw.max_runtime_seconds) {
        return Err(err(
            "max_runtime_seconds",
            "must be between 600 and 172800 (the instance shuts itself down after it)".into(),
        ));
    }
    naming::parse_s3_uri(&raw.config_source).map_err(|p| err("config_source", p))?;
    let (lo, hi) = DELIVERY_TIMEOUT_RANGE;
    if !(lo..=hi).contains(&raw.delivery_timeout_seconds) {
        return Err(err(
            "delivery_timeout_seconds",
            format!("must be between {lo} and {hi} (SendCommand TimeoutSeconds)"),
        ));
    }
    if !(1..=5).contains(&raw.max_attempts) {
        return Err(err("max_attempts", "must be between 1 and 5".into()));
    }
    naming::check_branch(&raw.default_branch).map_err(|p| err("default_branch", p))?;
    if !raw.home.starts_with('/') {
        return Err(err("home", "must be an absolute path".into()));
    }
    for (name, value) in &raw.env {
        let field = format!("env.{name}");
        naming::check_env_name(name).map_err(|p| err(&field, p))?;
        if let Some(why) = looks_like_secret(name, value) {
            return Err(err(
                &field,
                format!(
                    "looks like a secret ({why}): [env] values are stored in the state machine; \
                     put the value in SSM Parameter Store and name it in [secrets] instead"
                ),
            ));
        }
    }
    for (name, parameter) in &raw.secrets {
        let field = format!("secrets.{name}");
        naming::check_env_name(name).map_err(|p| err(&field, p))?;
        if raw.env.contains_key(name) {
            return Err(err(&field, format!("`{name}` is also set in [env]")));
        }
        naming::check_parameter_name(parameter).map_err(|p| err(&field, p))?;
    }
    Ok(())
}

/// Name parts (between `_`) that mark an `[env]` variable as a secret: `API_KEY` and
/// `GITHUB_TOKEN` do, `MONKEY` and `TOKENIZER_MODEL` do not.
const SECRET_NAME_PARTS: [&str; 5] = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY"];

/// Why an `[env]` entry looks like a secret, or `None`: a name with a
/// [`SECRET_NAME_PARTS`] part, a URL with a password (`scheme://user:pass@host`), or an
/// AWS access key id (`AKIA`/`ASIA` and 16 more uppercase letters or digits).
fn looks_like_secret(name: &str, value: &str) -> Option<String> {
    if let Some(part) = name
        .split('_')
        .find(|part| SECRET_NAME_PARTS.contains(part))
    {
        return Some(format!("its name contains `{part}`"));
    }
    let has_url_password = value.match_indices("://").any(|(at, sep)| {
        let rest = &value[at + sep.len()..];
        let authority = rest
            .split(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .next()
            .unwrap_or_default();
        authority
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
    });
    if has_url_password {
        return Some("a URL with a password".into());
    }
    let bytes = value.as_bytes();
    let access_key = bytes.windows(20).any(|w| {
        (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    });
    if access_key {
        return Some("an AWS access key id".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, GOOD};
    use super::*;

    #[test]
    fn env_entries_that_look_like_secrets_are_rejected() {
        let cases: [(&str, &str, Option<&str>); 17] = [
            ("REPO_URL", "https://github.com/o/r.git", None),
            ("MONKEY", "banana", None),
            ("KEYBOARD_LAYOUT", "us", None),
            ("TOKENIZER_MODEL", "bert", None),
            ("DB_URL", "postgres://db.internal/rag", None),
            ("DB_URL", "postgres://rag@db.internal/rag", None),
            ("DB_URL", "postgres://rag:@db.internal/rag", None),
            ("MAIL", "user@example.com:25", None),
            ("BUCKET", "AKIAPREFIX-not-a-key", None),
            ("API_KEY", "x", Some("its name contains `KEY`")),
            ("GITHUB_TOKEN", "x", Some("its name contains `TOKEN`")),
            ("CLIENT_SECRET", "x", Some("its name contains `SECRET`")),
            ("DB_PASSWORD", "x", Some("its name contains `PASSWORD`")),
            (
                "DB_URL",
                "postgres://rag:hunter22@db.internal:5432/rag",
                Some("a URL with a password"),
            ),
            (
                "OPTS",
                "--mirror https://u:p@mirror.example --fast",
                Some("a URL with a password"),
            ),
            (
                "AWS_ID",
                "AKIAIOSFODNN7EXAMPLE",
                Some("an AWS access key id"),
            ),
            (
                "CREDS",
                "id=ASIAIOSFODNN7EXAMPLE;",
                Some("an AWS access key id"),
            ),
        ];
        for (name, value, expected) in cases {
            assert_eq!(
                looks_like_secret(name, value).as_deref(),
                expected,
                "{name}={value}"
            );
        }
        let e = error(&format!("{GOOD}\n[env]\nAPI_KEY = \"abc\"\n"));
        assert!(
            e.contains("field `env.API_KEY`: looks like a secret (its name contains `KEY`): [env] values are stored in the state machine; put the value in SSM Parameter Store and name it in [secrets] instead"),
            "{e}"
        );
    }
}
