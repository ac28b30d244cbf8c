//! Step script rendering: the header every step gets, the runner that keeps a workload
//! step's log, and the `AWS-RunShellScript` command lines that carry both.
//!
//! The step body travels base64-encoded, so no quote, heredoc or `$(...)` in it can be
//! altered on the way: `AWS-RunShellScript` writes the command lines to a file and runs it
//! with `sh`, and the lines spotstep sends contain nothing but base64 and fixed text.

use base64::Engine;

use crate::manifest::{JobSpec, StepKind, StepSpec};
use crate::naming;
use crate::records::Run;

/// What the header needs to know besides the run, the job and the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub bucket: String,
    pub region: String,
}

/// Quotes `value` for POSIX shells: single quotes, with embedded ones as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The full script of one step: header, then the body verbatim.
pub fn render_step(run: &Run, job: &JobSpec, step: &StepSpec, at: &Placement) -> String {
    let mut vars: Vec<(String, String)> = vec![
        ("HOME".into(), job.home.clone()),
        ("XDG_CACHE_HOME".into(), "/tmp".into()),
        ("AWS_REGION".into(), at.region.clone()),
        ("AWS_DEFAULT_REGION".into(), at.region.clone()),
    ];
    vars.extend(job.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let staging = format!("s3://{}/{}", at.bucket, run.staging_prefix());
    let flag = if run.preflight {
        job.preflight_flag.clone()
    } else {
        String::new()
    };
    vars.extend(
        [
            ("SPOTSTEP_JOB", job.name.clone()),
            ("SPOTSTEP_RUN_ID", run.run_id.clone()),
            ("SPOTSTEP_STEP", step.name.clone()),
            ("SPOTSTEP_MODE", run.mode.clone()),
            (
                "SPOTSTEP_PREFLIGHT",
                if run.preflight { "1" } else { "0" }.to_string(),
            ),
            ("SPOTSTEP_PREFLIGHT_FLAG", flag),
            ("SPOTSTEP_BRANCH", run.branch.clone()),
            ("SPOTSTEP_BUCKET", at.bucket.clone()),
            ("SPOTSTEP_STAGING", staging),
            ("SPOTSTEP_MAX_RUNTIME", job.max_runtime_seconds.to_string()),
            ("SPOTSTEP_RUN_DATE", run.run_date.clone()),
            (
                "SPOTSTEP_WORKDIR",
                format!("{}/spotstep/{}", job.home, job.name),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let mut out =
        String::from("#!/bin/bash\n# spotstep step header\nset -eo pipefail\nexec 2>&1\n");
    for (k, v) in &vars {
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    out.push_str("PYTHON_BIN=\"$(command -v python3.12 || command -v python3 || true)\"\nexport PYTHON_BIN\n");
    out.push_str("mkdir -p \"$SPOTSTEP_WORKDIR\"\ncd \"$SPOTSTEP_WORKDIR\"\n");
    out.push_str(&format!("# spotstep step body: {}\n", step.name));
    out.push_str(&step.script);
    if !step.script.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The runner: runs the step script with its output merged, and for workload steps keeps
/// a copy of the output and ships it to `health/<step>_log/<run_date>/<ts>-exit<code>.log`
/// (best effort: where no `aws` CLI is present it is skipped).
pub fn render_runner(run: &Run, step: &StepSpec, bucket: &str) -> String {
    match step.kind {
        StepKind::Setup => "#!/bin/bash\nexec bash \"$1/step.sh\" 2>&1\n".to_string(),
        StepKind::Workload => {
            let prefix = naming::health_log_prefix(&step.name, &run.run_date);
            format!(
                r#"#!/bin/bash
set -o pipefail
bash "$1/step.sh" 2>&1 | tee "$1/output.log"
rc=${{PIPESTATUS[0]}}
if command -v aws >/dev/null 2>&1; then
  aws s3 cp --quiet "$1/output.log" "s3://{bucket}/{prefix}$(date -u +%Y%m%dT%H%M%SZ)-exit$rc.log" >/dev/null 2>&1 || true
fi
exit "$rc"
"#
            )
        }
    }
}

/// The `mktemp -d` template of the fresh folder each step's command decodes its runner and
/// script into, on the instance.
pub const WORKDIR_TEMPLATE: &str = "/tmp/spotstep.XXXXXX";

/// The `commands` parameter of `AWS-RunShellScript` for one step: decode the runner and the
/// step script into a fresh folder and run them. Only base64 and fixed text cross SSM.
pub fn ssm_commands(run: &Run, job: &JobSpec, step: &StepSpec, at: &Placement) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    vec![
        "set -e".to_string(),
        format!("d=\"$(mktemp -d {WORKDIR_TEMPLATE})\""),
        format!(
            "echo '{}' | base64 -d > \"$d/run.sh\"",
            b64(&render_runner(run, step, &at.bucket))
        ),
        format!(
            "echo '{}' | base64 -d > \"$d/step.sh\"",
            b64(&render_step(run, job, step, at))
        ),
        "exec bash \"$d/run.sh\" \"$d\"".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::fixtures::{job, run};
    use std::process::Command;

    const HOSTILE: &str = r#"msg="it's a \"test\" with \$HOME and \`backticks\`"
printf '%s\n' "$msg"
echo "$(echo 'nested $(quotes)' | tr a-z A-Z)"
cat <<'EOF'
literal $HOME 'single' "double" \n
EOF
cat <<EOF
expanded ${SPOTSTEP_STEP}
EOF
echo 'done: it'\''s over'
"#;

    fn step(kind: StepKind, script: &str) -> StepSpec {
        StepSpec {
            name: "quoting".into(),
            kind,
            timeout_seconds: 60,
            heartbeats: vec![],
            script: script.into(),
        }
    }

    fn at() -> Placement {
        Placement {
            bucket: "logs-bucket".into(),
            region: "eu-west-1".into(),
        }
    }

    fn sandbox(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("spotstep-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        for value in [
            "plain",
            "it's",
            "a'b'c",
            "$(rm -rf /)",
            "`x`",
            "back\\slash",
            "new\nline",
            "",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }

    #[test]
    fn header_sets_the_environment_then_the_body_verbatim() {
        let mut r = run();
        r.preflight = true;
        let script = render_step(&r, &job(), &step(StepKind::Workload, HOSTILE), &at());
        assert!(script.starts_with("#!/bin/bash\n# spotstep step header\nset -eo pipefail\n"));
        for line in [
            "export HOME='/tmp'",
            "export XDG_CACHE_HOME='/tmp'",
            "export AWS_REGION='eu-west-1'",
            "export AWS_DEFAULT_REGION='eu-west-1'",
            "export DEMO_GREETING='it'\\''s'",
            "export SPOTSTEP_RUN_ID='run-1'",
            "export SPOTSTEP_STEP='quoting'",
            "export SPOTSTEP_MODE='all'",
            "export SPOTSTEP_PREFLIGHT='1'",
            "export SPOTSTEP_PREFLIGHT_FLAG='--preflight-only'",
            "export SPOTSTEP_STAGING='s3://logs-bucket/tmp/demo/run-1/'",
            "export SPOTSTEP_MAX_RUNTIME='1800'",
            "export SPOTSTEP_RUN_DATE='2026-11-28'",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line} in\n{script}"
            );
        }
        assert!(script.contains("command -v python3.12 || command -v python3"));
        assert!(script.ends_with(HOSTILE));
    }

    #[test]
    fn preflight_flag_is_empty_outside_preflight() {
        let script = render_step(&run(), &job(), &step(StepKind::Workload, "true\n"), &at());
        assert!(
            script.contains("export SPOTSTEP_PREFLIGHT='0'\nexport SPOTSTEP_PREFLIGHT_FLAG=''\n")
        );
    }

    #[test]
    fn commands_carry_only_base64_and_run_the_body_unaltered() {
        let dir = sandbox("script");
        let mut j = job();
        j.home = dir.display().to_string();
        let commands = ssm_commands(&run(), &j, &step(StepKind::Workload, HOSTILE), &at());
        for line in &commands[2..4] {
            let payload = line.split('\'').nth(1).unwrap();
            assert!(payload
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
        }
        // Run the lines the way AWS-RunShellScript does: written to a file, run with sh.
        let file = dir.join("_script.sh");
        std::fs::write(&file, commands.join("\n")).unwrap();
        let out = Command::new("sh")
            .arg(&file)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{stdout}");
        let expected = "it's a \"test\" with $HOME and `backticks`\nNESTED $(QUOTES)\nliteral $HOME 'single' \"double\" \\n\nexpanded quoting\ndone: it's over\n";
        assert_eq!(stdout, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_body_keeps_its_exit_code_and_output() {
        let dir = sandbox("exit");
        let mut j = job();
        j.home = dir.display().to_string();
        let body = "echo before\nls /nonexistent-spotstep | cat\necho never\n";
        for kind in [StepKind::Setup, StepKind::Workload] {
            let commands = ssm_commands(&run(), &j, &step(kind, body), &at());
            let out = Command::new("sh")
                .arg("-c")
                .arg(commands.join("\n"))
                .env("PATH", "/usr/bin:/bin")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(2), "{kind:?}: {stdout}");
            assert!(stdout.starts_with("before\n"), "{stdout}");
            assert!(
                stdout.contains("nonexistent-spotstep"),
                "stderr is merged, pipefail holds: {stdout}"
            );
            assert!(!stdout.contains("never"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn workload_runner_ships_the_health_log_under_todays_key() {
        let runner = render_runner(&run(), &step(StepKind::Workload, "true"), "b");
        assert!(runner.contains(
            "s3://b/health/quoting_log/2026-11-28/$(date -u +%Y%m%dT%H%M%SZ)-exit$rc.log"
        ));
        let setup = render_runner(&run(), &step(StepKind::Setup, "true"), "b");
        assert!(!setup.contains("health/"));
    }
}
