//! Job manifests: `jobs/<job>/job.toml` plus the step scripts it names.
//!
//! A job is data. The manifest is parsed into a [`Job`], validated field by field (an error
//! names the file, the field and the problem), and travels through the state machine as a
//! [`JobSpec`] (everything but the scripts) while each step's script travels in the
//! parameters of that step's send state as a [`StepSpec`].
//!
//! Secrets never appear in a manifest: its `[secrets]` table maps environment variable names
//! to SSM Parameter Store parameter names, each step lists in `secrets` the entries it needs,
//! and its [`StepSpec`] carries those names (never a value) to the runner on the instance.
//! An `[env]` entry that looks like a secret is rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::naming;

/// The default SendCommand delivery bound (`delivery_timeout_seconds`), in seconds.
pub const DEFAULT_DELIVERY_TIMEOUT_SECONDS: u64 = 300;

/// SendCommand `TimeoutSeconds` bounds (seconds).
pub const DELIVERY_TIMEOUT_RANGE: (u64, u64) = (30, 2_592_000);

/// SSM `executionTimeout` bounds for `AWS-RunShellScript` (seconds).
pub const STEP_TIMEOUT_RANGE: (u64, u64) = (30, 172_800);

/// What a step is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Prepares an instance; runs again on every fresh instance.
    Setup,
    /// Real work; runs once per run and is never rerun once it succeeded.
    Workload,
}

/// One step as the functions see it: the manifest entry with its script's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    pub kind: StepKind,
    pub timeout_seconds: u64,
    /// `Process` dimensions of the `Heartbeat` metric emitted when the step succeeds
    /// outside preflight (workload steps only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<String>,
    /// The secrets this step gets: environment variable name -> SSM Parameter Store
    /// parameter name. Names only: the runner reads the values on the instance with the
    /// instance role, exports them for the step and masks them in its output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The script body (without spotstep's header). Empty where only the step's identity
    /// is needed (poll, cleanup).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub script: String,
}

impl StepSpec {
    /// The same step without its script: what poll and cleanup states carry.
    pub fn without_script(&self) -> StepSpec {
        StepSpec {
            script: String::new(),
            ..self.clone()
        }
    }
}

/// A mode: which workload steps a run executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSpec {
    pub steps: Vec<String>,
}

/// The job as it travels in the state machine's input: everything but the scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub instance_name_prefix: String,
    pub instance_types: Vec<String>,
    pub root_volume_gb: u32,
    pub max_runtime_seconds: u64,
    pub config_source: String,
    pub on_demand_fallback: bool,
    pub max_attempts: u32,
    /// SendCommand `TimeoutSeconds`: how long a step's command may wait to be delivered.
    /// The one source of this value: send-step sends it and the state machine's poll budget
    /// is derived from it.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout_seconds: u64,
    pub home: String,
    pub preflight_flag: String,
    pub env: BTreeMap<String, String>,
    pub modes: BTreeMap<String, ModeSpec>,
    /// Workload step names in manifest order.
    pub workload_steps: Vec<String>,
}

/// A validated job: its spec, its steps with their scripts, its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub description: String,
    pub default_mode: String,
    pub default_branch: String,
    pub spec: JobSpec,
    pub steps: Vec<StepSpec>,
}

/// A manifest problem: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(
                f,
                "{}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.problem
            )
        }
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default)]
    description: String,
    instance_name_prefix: String,
    instance_types: Vec<String>,
    root_volume_gb: u32,
    max_runtime_seconds: u64,
    config_source: String,
    #[serde(default)]
    on_demand_fallback: bool,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_delivery_timeout")]
    delivery_timeout_seconds: u64,
    default_mode: String,
    #[serde(default = "default_branch")]
    default_branch: String,
    #[serde(default = "default_home")]
    home: String,
    #[serde(default)]
    preflight_flag: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    steps: Vec<RawStep>,
    modes: BTreeMap<String, ModeSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    kind: StepKind,
    script: String,
    timeout_seconds: u64,
    #[serde(default)]
    heartbeats: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

fn default_delivery_timeout() -> u64 {
    DEFAULT_DELIVERY_TIMEOUT_SECONDS
}

fn default_max_attempts() -> u32 {
    2
}

fn default_branch() -> String {
    "main".to_string()
}

fn default_home() -> String {
    "/home/ec2-user".to_string()
}

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
                delivery_timeout_seconds: raw.delivery_timeout_seconds,
                home: raw.home,
                preflight_flag: raw.preflight_flag,
                env: raw.env,
                modes: raw.modes,
                workload_steps,
            },
            steps,
        })
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// The job-level fields: names, instance types, sizes, config source, attempts, env names.
fn check_fields(
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

/// The steps: names, kinds (setup before workload), timeouts, heartbeats, secrets (each an
/// entry of the job's `[secrets]`, each entry used by a step), scripts read.
fn check_steps(
    raw_steps: Vec<RawStep>,
    secrets: &BTreeMap<String, String>,
    read_script: &impl Fn(&str) -> Result<String, String>,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<Vec<StepSpec>, ManifestError> {
    let mut steps: Vec<StepSpec> = Vec::with_capacity(raw_steps.len());
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
        });
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

/// Every mode fits in one instance's life: the setup steps plus the mode's workload steps,
/// each at its full timeout, within `max_runtime_seconds` (after which the watchdog shuts
/// the instance down, which would cut a step that was still within its own timeout).
fn check_fit(
    modes: &BTreeMap<String, ModeSpec>,
    steps: &[StepSpec],
    max_runtime_seconds: u64,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    let setup: u64 = steps
        .iter()
        .filter(|s| s.kind == StepKind::Setup)
        .map(|s| s.timeout_seconds)
        .sum();
    for (mode, spec) in modes {
        let work: u64 = steps
            .iter()
            .filter(|s| spec.steps.contains(&s.name))
            .map(|s| s.timeout_seconds)
            .sum();
        if setup + work > max_runtime_seconds {
            return Err(err(
                &format!("modes.{mode}"),
                format!(
                    "setup ({setup} s) plus its steps ({work} s) take {} s, more than \
                     max_runtime_seconds ({max_runtime_seconds}): the watchdog would stop the \
                     instance first; shorten step timeouts or raise max_runtime_seconds",
                    setup + work
                ),
            ));
        }
    }
    Ok(())
}

/// The modes: each lists workload steps of this job in manifest order, every workload step
/// is in a mode, and the default mode exists.
fn check_modes(
    modes: &BTreeMap<String, ModeSpec>,
    workload_steps: &[String],
    default_mode: &str,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    if modes.is_empty() {
        return Err(err("modes", "must define at least one mode".into()));
    }
    for (mode, spec) in modes {
        naming::check_name(mode).map_err(|p| err(&format!("modes.{mode}"), p))?;
        if spec.steps.is_empty() {
            return Err(err(
                &format!("modes.{mode}.steps"),
                "must list at least one workload step".into(),
            ));
        }
        for (j, step) in spec.steps.iter().enumerate() {
            let field = format!("modes.{mode}.steps[{j}]");
            if !workload_steps.contains(step) {
                return Err(err(
                    &field,
                    format!("`{step}` is not a workload step of this job"),
                ));
            }
            if spec.steps[..j].contains(step) {
                return Err(err(&field, format!("`{step}` is listed twice")));
            }
            let position = |name: &String| workload_steps.iter().position(|w| w == name);
            if j > 0 && position(step) < position(&spec.steps[j - 1]) {
                return Err(err(
                    &field,
                    format!(
                        "`{step}` comes before `{}` in the manifest: a mode lists its steps in manifest order (the order they run in)",
                        spec.steps[j - 1]
                    ),
                ));
            }
        }
    }
    if let Some(unused) = workload_steps
        .iter()
        .find(|w| !modes.values().any(|m| m.steps.contains(w)))
    {
        return Err(err(
            "modes",
            format!("no mode runs workload step `{unused}`"),
        ));
    }
    if !modes.contains_key(default_mode) {
        return Err(err(
            "default_mode",
            format!(
                "`{}` is not one of the modes ({})",
                default_mode,
                mode_list(modes)
            ),
        ));
    }
    Ok(())
}

/// The job folders under `jobs_root` (each holds a `job.toml`), sorted by name.
pub fn job_dirs(jobs_root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(jobs_root)? {
        let path = entry?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

impl JobSpec {
    /// Whether `mode` runs workload step `step`.
    pub fn mode_runs(&self, mode: &str, step: &str) -> bool {
        self.modes
            .get(mode)
            .is_some_and(|m| m.steps.iter().any(|s| s == step))
    }

    /// The mode names, comma separated, for messages.
    pub fn mode_names(&self) -> String {
        mode_list(&self.modes)
    }
}

fn mode_list(modes: &BTreeMap<String, ModeSpec>) -> String {
    modes
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
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
    use super::*;

    const GOOD: &str = r#"
name = "demo"
instance_name_prefix = "spotstep-demo"
instance_types = ["t3.micro"]
root_volume_gb = 8
max_runtime_seconds = 1800
config_source = "s3://cfg/demo/config.yaml"
default_mode = "all"

[[steps]]
name = "prepare"
kind = "setup"
script = "steps/prepare.sh"
timeout_seconds = 60

[[steps]]
name = "work"
kind = "workload"
script = "steps/work.sh"
timeout_seconds = 600
heartbeats = ["demo-work"]

[modes.all]
steps = ["work"]
"#;

    fn parse(text: &str) -> Result<Job, ManifestError> {
        Job::parse(
            Path::new("jobs/demo/job.toml"),
            text,
            |script| match script {
                "steps/missing.sh" => Err("No such file or directory".into()),
                "steps/empty.sh" => Ok("  \n".into()),
                _ => Ok(format!("echo {script}\n")),
            },
        )
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_manifest_with_defaults() {
        let job = parse(GOOD).unwrap();
        assert_eq!(job.spec.workload_steps, ["work"]);
        assert_eq!(job.spec.max_attempts, 2);
        assert_eq!(job.default_branch, "main");
        assert_eq!(job.spec.home, "/home/ec2-user");
        assert_eq!(job.step("work").unwrap().script, "echo steps/work.sh\n");
        assert!(job.spec.mode_runs("all", "work"));
        assert!(!job.spec.mode_runs("all", "prepare"));
        assert!(job.step("work").unwrap().without_script().script.is_empty());
    }

    #[test]
    fn the_shipped_jobs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let weekly = Job::load(&root.join("data-weekly")).unwrap();
        assert_eq!(
            weekly.spec.workload_steps[..3],
            ["morning-enrich", "data-phase1", "rag-ingestion"]
        );
        assert_eq!(weekly.steps[0].name, "bootstrap");
        assert!(
            weekly.steps[0].script.contains("systemd-run"),
            "bootstrap arms the watchdog"
        );
        for mode in [
            "full",
            "data-only",
            "phase1-only",
            "morning-enrich-only",
            "rag-only",
            "smoke",
            "rag-smoke",
        ] {
            assert!(weekly.spec.modes.contains_key(mode), "{mode}");
        }
        let rag = weekly.step("rag-ingestion").unwrap();
        assert_eq!(
            rag.secrets.keys().collect::<Vec<_>>(),
            [
                "EDGAR_IDENTITY",
                "FINNHUB_API_KEY",
                "RAG_DATABASE_URL",
                "VOYAGE_API_KEY"
            ]
        );
        assert_eq!(
            rag.secrets["VOYAGE_API_KEY"],
            "/alpha-engine/VOYAGE_API_KEY"
        );
        assert_eq!(weekly.step("rag-smoke").unwrap().secrets, rag.secrets);
        assert!(
            weekly
                .steps
                .iter()
                .all(|s| s.name.starts_with("rag-") || s.secrets.is_empty()),
            "only the RAG steps get the RAG secrets"
        );
        let demo = Job::load(&root.join("demo")).unwrap();
        assert_eq!(demo.default_mode, "all");
    }

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

    #[test]
    fn a_mode_must_fit_in_the_max_runtime() {
        let long = GOOD.replace("timeout_seconds = 600", "timeout_seconds = 1741");
        assert_eq!(
            error(&long),
            "jobs/demo/job.toml: field `modes.all`: setup (60 s) plus its steps (1741 s) take \
             1801 s, more than max_runtime_seconds (1800): the watchdog would stop the instance \
             first; shorten step timeouts or raise max_runtime_seconds"
        );
        parse(&GOOD.replace("timeout_seconds = 600", "timeout_seconds = 1740")).unwrap();
    }

    #[test]
    fn the_shipped_jobs_fit_their_max_runtime() {
        for dir in job_dirs(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs").as_path()).unwrap() {
            Job::load(&dir).unwrap_or_else(|e| panic!("{e}"));
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

    #[test]
    fn modes_follow_manifest_order_and_every_workload_step_has_a_mode() {
        let two = format!(
            "{GOOD}\n[[steps]]\nname = \"more\"\nkind = \"workload\"\nscript = \"steps/more.sh\"\ntimeout_seconds = 60\n"
        );
        assert!(error(&two).contains("field `modes`: no mode runs workload step `more`"));
        let reversed = two.replace("steps = [\"work\"]", "steps = [\"more\", \"work\"]");
        assert!(error(&reversed)
            .contains("field `modes.all.steps[1]`: `work` comes before `more` in the manifest"));
        parse(&two.replace("steps = [\"work\"]", "steps = [\"work\", \"more\"]")).unwrap();
    }
}
