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
//!
//! Here: the manifest as written and as validated, and where the jobs are. [`Job::parse`]
//! reads a manifest and checks it by topic: the job's fields (`fields`), its steps
//! (`steps`), its modes and how they fit the instance's life (`modes`).

mod fan_out;
mod fields;
mod modes;
mod parse;
mod steps;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// The step's checkpoint folder and intervals (`[steps.checkpoint]`, workload steps
    /// only): the runner restores it before the step and uploads it while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::CheckpointSpec>,
    /// A fan-out step's settings (`[steps.fan_out]`): the step runs once per shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<crate::fanout::FanOut>,
}

impl StepSpec {
    /// The same step without its script: what poll and cleanup states carry.
    pub fn without_script(&self) -> StepSpec {
        StepSpec {
            script: String::new(),
            fan_out: self
                .fan_out
                .as_ref()
                .map(crate::fanout::FanOut::without_items),
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
    /// After this many spot reclaims in one run, the relaunch goes on-demand (same pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_after_reclaims: Option<u32>,
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
    /// The workload steps that fan out, in manifest order (the steps after one get its
    /// results index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fan_out_steps: Vec<String>,
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
    #[serde(default)]
    on_demand_after_reclaims: Option<u32>,
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
    #[serde(default)]
    checkpoint: Option<crate::checkpoint::RawCheckpoint>,
    #[serde(default)]
    fan_out: Option<RawFanOut>,
}

/// `[steps.fan_out]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFanOut {
    shards: String,
    #[serde(default)]
    written_by: Option<String>,
    instances: u32,
    #[serde(default)]
    max_failed_shards: u32,
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
    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.name == name)
    }
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub const GOOD: &str = r#"
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

    pub fn parse(text: &str) -> Result<Job, ManifestError> {
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

    pub fn error(text: &str) -> String {
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
    fn the_shipped_jobs_fit_their_max_runtime() {
        for dir in job_dirs(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs").as_path()).unwrap() {
            Job::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
