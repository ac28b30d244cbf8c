//! Reading a manifest: the TOML into a [`Job`], checked by topic, each error naming the file
//! and the field.

use std::path::Path;

use super::fields::check_fields;
use super::modes::{check_fit, check_modes};
use super::steps::check_steps;
use super::{Job, JobSpec, ManifestError, RawManifest, StepKind};

impl Job {
    /// Loads `<dir>/job.toml` and the scripts it names.
    pub fn load(dir: &Path) -> Result<Job, ManifestError> {
        let file = dir.join("job.toml");
        let text = std::fs::read_to_string(&file).map_err(|e| ManifestError {
            file: file.clone(),
            field: String::new(),
            problem: format!("cannot read the manifest: {e}"),
        })?;
        Job::parse(&file, &text, |script| {
            std::fs::read_to_string(dir.join(script)).map_err(|e| e.to_string())
        })
    }

    /// Parses and validates a manifest; `read_script` returns a script's text by its
    /// manifest path.
    pub fn parse(
        file: &Path,
        text: &str,
        read_script: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Job, ManifestError> {
        let err = |field: &str, problem: String| ManifestError {
            file: file.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .and_then(|span| field_at(text, span.start))
                .unwrap_or_default();
            err(&field, e.message().to_string())
        })?;

        check_fields(&raw, &err)?;
        check_reclaim_budget(raw.on_demand_after_reclaims, raw.max_attempts, &err)?;
        let steps = check_steps(raw.steps, &raw.secrets, &read_script, &err)?;
        let workload_steps: Vec<String> = steps
            .iter()
            .filter(|s| s.kind == StepKind::Workload)
            .map(|s| s.name.clone())
            .collect();
        check_modes(&raw.modes, &workload_steps, &raw.default_mode, &err)?;
        check_fit(&raw.modes, &steps, raw.max_runtime_seconds, &err)?;

        Ok(Job {
            description: raw.description,
            default_mode: raw.default_mode,
            default_branch: raw.default_branch,
            spec: JobSpec {
                name: raw.name,
                instance_name_prefix: raw.instance_name_prefix,
                instance_types: raw.instance_types,
                root_volume_gb: raw.root_volume_gb,
                max_runtime_seconds: raw.max_runtime_seconds,
                config_source: raw.config_source,
                on_demand_fallback: raw.on_demand_fallback,
                max_attempts: raw.max_attempts,
                on_demand_after_reclaims: raw.on_demand_after_reclaims,
                delivery_timeout_seconds: raw.delivery_timeout_seconds,
                home: raw.home,
                preflight_flag: raw.preflight_flag,
                env: raw.env,
                modes: raw.modes,
                workload_steps,
                fan_out_steps: steps
                    .iter()
                    .filter(|s| s.fan_out.is_some())
                    .map(|s| s.name.clone())
                    .collect(),
            },
            steps,
        })
    }
}

/// `on_demand_after_reclaims`: at least one reclaim, and fewer than `max_attempts` (the
/// launches a round may use), or no relaunch would ever go on-demand.
fn check_reclaim_budget(
    after: Option<u32>,
    max_attempts: u32,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    match after {
        Some(n) if n == 0 || n >= max_attempts => Err(err(
            "on_demand_after_reclaims",
            format!(
                "{n} must be between 1 and max_attempts - 1 ({}): the relaunch after that many \
                 reclaims must still fit the run's {max_attempts} launches",
                max_attempts.saturating_sub(1)
            ),
        )),
        _ => Ok(()),
    }
}

/// The dotted key of the TOML line holding byte offset `at`, best effort (for messages).
fn field_at(text: &str, at: usize) -> Option<String> {
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split('=').next()?.trim();
    let section = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string())
    });
    match (key.is_empty() || key.starts_with('['), section) {
        (true, _) => None,
        (false, Some(section)) => Some(format!("{section}.{key}")),
        (false, None) => Some(key.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, GOOD};

    #[test]
    fn errors_name_the_file_the_field_and_the_problem() {
        let cases = [
            (
                GOOD.replace("name = \"demo\"", "name = \"Demo Job\""),
                "jobs/demo/job.toml: field `name`: `Demo Job` must be",
            ),
            (
                GOOD.replace("root_volume_gb = 8", "root_volume_gb = \"big\""),
                "jobs/demo/job.toml: field `root_volume_gb`: invalid type",
            ),
            (
                GOOD.replace("timeout_seconds = 600", "timeout_seconds = 5"),
                "field `steps[1].timeout_seconds`: must be between 30 and 172800",
            ),
            (
                GOOD.replace("steps/work.sh", "steps/missing.sh"),
                "field `steps[1].script`: cannot read `steps/missing.sh`",
            ),
            (
                GOOD.replace("steps/work.sh", "steps/empty.sh"),
                "field `steps[1].script`: `steps/empty.sh` is empty",
            ),
            (
                GOOD.replace("steps = [\"work\"]", "steps = [\"prepare\"]"),
                "field `modes.all.steps[0]`: `prepare` is not a workload step",
            ),
            (
                GOOD.replace("default_mode = \"all\"", "default_mode = \"full\""),
                "field `default_mode`: `full` is not one of the modes (all)",
            ),
            (
                GOOD.replace(
                    "config_source = \"s3://cfg/demo/config.yaml\"",
                    "config_source = \"/etc/config.yaml\"",
                ),
                "field `config_source`",
            ),
            (
                GOOD.replace("instance_types = [\"t3.micro\"]", "instance_types = []"),
                "field `instance_types`: must list at least one",
            ),
            (
                GOOD.replace("kind = \"setup\"", "kind = \"setup\"\nheartbeats = [\"x\"]"),
                "field `steps[0].heartbeats`: only workload steps",
            ),
            (
                GOOD.replace("name = \"work\"", "name = \"prepare\""),
                "field `steps[1].name`: step `prepare` is listed twice",
            ),
            (
                GOOD.replace(
                    "default_mode = \"all\"",
                    "default_mode = \"all\"\ncolour = \"red\"",
                ),
                "unknown field `colour`",
            ),
            (
                format!("{GOOD}\n[env]\nHOME = \"/root\"\n"),
                "field `env.HOME`: `HOME` is set by spotstep itself",
            ),
            (
                GOOD.replace("kind = \"setup\"", "kind = \"later\""),
                "unknown variant `later`",
            ),
            (
                GOOD.replace(
                    "default_mode = \"all\"",
                    "default_mode = \"all\"\ndelivery_timeout_seconds = 5",
                ),
                "field `delivery_timeout_seconds`: must be between 30 and 2592000",
            ),
        ];
        for (text, expected) in cases {
            let e = error(&text);
            assert!(e.contains(expected), "expected `{expected}` in `{e}`");
            assert!(e.starts_with("jobs/demo/job.toml: "), "{e}");
        }
    }
}
