//! The steps of a manifest: names, kinds (setup before workload), timeouts, heartbeats, the
//! secrets each lists, their scripts.

use std::collections::BTreeMap;

use super::{ManifestError, RawStep, StepKind, StepSpec, STEP_TIMEOUT_RANGE};
use crate::{checkpoint, naming};

/// The steps: names, kinds (setup before workload), timeouts, heartbeats, secrets (each an
/// entry of the job's `[secrets]`, each entry used by a step), scripts read.
pub(super) fn check_steps(
    raw_steps: Vec<RawStep>,
    secrets: &BTreeMap<String, String>,
    read_script: &impl Fn(&str) -> Result<String, String>,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<Vec<StepSpec>, ManifestError> {
    let mut steps: Vec<StepSpec> = Vec::with_capacity(raw_steps.len());
    let mut fan_outs = Vec::new();
    if raw_steps.is_empty() {
        return Err(err("steps", "must list at least one step".into()));
    }
    for (i, s) in raw_steps.into_iter().enumerate() {
        let field = |f: &str| format!("steps[{i}].{f}");
        naming::check_name(&s.name).map_err(|p| err(&field("name"), p))?;
        if steps.iter().any(|other| other.name == s.name) {
            return Err(err(
                &field("name"),
                format!("step `{}` is listed twice", s.name),
            ));
        }
        let (lo, hi) = STEP_TIMEOUT_RANGE;
        if !(lo..=hi).contains(&s.timeout_seconds) {
            return Err(err(
                &field("timeout_seconds"),
                format!("must be between {lo} and {hi} (SSM executionTimeout)"),
            ));
        }
        if s.kind == StepKind::Setup && !s.heartbeats.is_empty() {
            return Err(err(
                &field("heartbeats"),
                "only workload steps emit heartbeats".into(),
            ));
        }
        for (j, h) in s.heartbeats.iter().enumerate() {
            naming::check_name(h).map_err(|p| err(&field(&format!("heartbeats[{j}]")), p))?;
        }
        let mut step_secrets = BTreeMap::new();
        for (j, name) in s.secrets.iter().enumerate() {
            let field = field(&format!("secrets[{j}]"));
            let parameter = secrets.get(name).ok_or_else(|| {
                err(
                    &field,
                    format!("`{name}` is not an entry of the job's [secrets]"),
                )
            })?;
            if step_secrets
                .insert(name.clone(), parameter.clone())
                .is_some()
            {
                return Err(err(&field, format!("`{name}` is listed twice")));
            }
        }
        let checkpoint = match s.checkpoint {
            Some(_) if s.kind == StepKind::Setup => {
                return Err(err(
                    &field("checkpoint"),
                    "only workload steps resume from a checkpoint (setup steps run again on every instance)".into(),
                ))
            }
            Some(raw) => Some(
                checkpoint::check(raw).map_err(|(f, p)| err(&field(&format!("checkpoint.{f}")), p))?,
            ),
            None => None,
        };
        let script = read_script(&s.script)
            .map_err(|e| err(&field("script"), format!("cannot read `{}`: {e}", s.script)))?;
        if script.trim().is_empty() {
            return Err(err(&field("script"), format!("`{}` is empty", s.script)));
        }
        steps.push(StepSpec {
            name: s.name,
            kind: s.kind,
            timeout_seconds: s.timeout_seconds,
            heartbeats: s.heartbeats,
            secrets: step_secrets,
            script,
            checkpoint,
            fan_out: None,
        });
        if let Some(f) = s.fan_out {
            fan_outs.push((i, f));
        }
    }
    let first_workload = steps.iter().position(|s| s.kind == StepKind::Workload);
    if let Some(i) = first_workload.and_then(|w| {
        steps[w..]
            .iter()
            .position(|s| s.kind == StepKind::Setup)
            .map(|j| w + j)
    }) {
        return Err(err(
            &format!("steps[{i}].kind"),
            "setup steps must come before every workload step".into(),
        ));
    }
    if !steps.iter().any(|s| s.kind == StepKind::Workload) {
        return Err(err("steps", "must have at least one workload step".into()));
    }
    super::fan_out::check_fan_outs(&mut steps, fan_outs, read_script, err)?;
    if let Some(unused) = secrets
        .keys()
        .find(|name| !steps.iter().any(|s| s.secrets.contains_key(*name)))
    {
        return Err(err(
            &format!("secrets.{unused}"),
            format!("no step lists `{unused}` in its `secrets`"),
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, parse, GOOD};
    use super::*;

    const WITH_SECRETS: &str = r#"
[env]
REPO_URL = "https://github.com/cipher813/alpha-engine-data.git"

[secrets]
VOYAGE_API_KEY = "/alpha-engine/VOYAGE_API_KEY"
RAG_DATABASE_URL = "/alpha-engine/RAG_DATABASE_URL"
"#;

    /// GOOD with WITH_SECRETS, the workload step listing `work_secrets`.
    fn with_secrets(work_secrets: &str) -> String {
        GOOD.replace(
            "heartbeats = [\"demo-work\"]",
            &format!("heartbeats = [\"demo-work\"]\nsecrets = {work_secrets}"),
        ) + WITH_SECRETS
    }

    #[test]
    fn a_step_gets_the_secrets_it_lists_by_name_only() {
        let job = parse(&with_secrets(r#"["VOYAGE_API_KEY", "RAG_DATABASE_URL"]"#)).unwrap();
        let work = job.step("work").unwrap();
        assert_eq!(
            work.secrets,
            BTreeMap::from([
                (
                    "RAG_DATABASE_URL".to_string(),
                    "/alpha-engine/RAG_DATABASE_URL".to_string()
                ),
                (
                    "VOYAGE_API_KEY".to_string(),
                    "/alpha-engine/VOYAGE_API_KEY".to_string()
                ),
            ])
        );
        assert!(job.step("prepare").unwrap().secrets.is_empty());
        // The step (with its secrets' names) serializes for its send state; a step without
        // secrets serializes as before.
        let json = serde_json::to_value(work).unwrap();
        assert_eq!(
            json["secrets"]["VOYAGE_API_KEY"],
            "/alpha-engine/VOYAGE_API_KEY"
        );
        let prepare = serde_json::to_value(job.step("prepare").unwrap()).unwrap();
        assert!(prepare.get("secrets").is_none(), "{prepare}");
    }

    #[test]
    fn secrets_are_checked() {
        let cases = [
            (
                with_secrets(r#"["VOYAGE_API_KEY"]"#),
                "field `secrets.RAG_DATABASE_URL`: no step lists `RAG_DATABASE_URL` in its `secrets`",
            ),
            (
                with_secrets(r#"["VOYAGE_API_KEY", "RAG_DATABASE_URL", "OTHER"]"#),
                "field `steps[1].secrets[2]`: `OTHER` is not an entry of the job's [secrets]",
            ),
            (
                with_secrets(r#"["VOYAGE_API_KEY", "RAG_DATABASE_URL", "VOYAGE_API_KEY"]"#),
                "field `steps[1].secrets[2]`: `VOYAGE_API_KEY` is listed twice",
            ),
            (
                with_secrets(r#"["VOYAGE_API_KEY", "RAG_DATABASE_URL"]"#)
                    .replace("\"/alpha-engine/VOYAGE_API_KEY\"", "\"alpha-engine/key\""),
                "field `secrets.VOYAGE_API_KEY`: `alpha-engine/key` is not an SSM parameter name",
            ),
            (
                with_secrets(r#"["voyage", "RAG_DATABASE_URL"]"#)
                    .replace("VOYAGE_API_KEY =", "voyage ="),
                "field `secrets.voyage`: `voyage` must match [A-Z_][A-Z0-9_]*",
            ),
            (
                with_secrets(r#"["HOME", "RAG_DATABASE_URL"]"#)
                    .replace("VOYAGE_API_KEY =", "HOME ="),
                "field `secrets.HOME`: `HOME` is set by spotstep itself",
            ),
            (
                with_secrets(r#"["REPO_URL", "VOYAGE_API_KEY", "RAG_DATABASE_URL"]"#)
                    .replace("[secrets]\n", "[secrets]\nREPO_URL = \"/alpha-engine/REPO_URL\"\n"),
                "field `secrets.REPO_URL`: `REPO_URL` is also set in [env]",
            ),
            (
                with_secrets(r#"["VOYAGE_API_KEY", "RAG_DATABASE_URL"]"#).replace(
                    "REPO_URL = \"https://github.com/cipher813/alpha-engine-data.git\"",
                    "RAG_DATABASE_URL = \"postgres://rag:hunter22@db.internal:5432/rag\"",
                ),
                "field `env.RAG_DATABASE_URL`: looks like a secret (a URL with a password)",
            ),
        ];
        for (text, expected) in cases {
            let e = error(&text);
            assert!(e.contains(expected), "expected `{expected}` in `{e}`");
        }
    }

    #[test]
    fn setup_steps_come_first() {
        let swapped = GOOD
            .replace(
                "name = \"prepare\"\nkind = \"setup\"",
                "name = \"prepare\"\nkind = \"TMP\"",
            )
            .replace(
                "name = \"work\"\nkind = \"workload\"",
                "name = \"work\"\nkind = \"setup\"",
            )
            .replace("kind = \"TMP\"", "kind = \"workload\"")
            .replace("heartbeats = [\"demo-work\"]\n", "")
            .replace("steps = [\"work\"]", "steps = [\"prepare\"]");
        assert!(error(&swapped).contains("setup steps must come before every workload step"));
    }
}
