//! Step script rendering: the header every step gets, the runner that keeps a workload
//! step's log, and the `AWS-RunShellScript` command lines that carry both.
//!
//! The step body travels base64-encoded, so no quote, heredoc or `$(...)` in it can be
//! altered on the way: `AWS-RunShellScript` writes the command lines to a file and runs it
//! with `sh`, and the lines spotstep sends contain nothing but base64 and fixed text.

use base64::Engine;

use crate::checkpoint;
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

/// The full script of one step: header, then the body verbatim. The header exports the
/// environment and stops the step unless each of its secrets is set (the runner reads them;
/// the header never holds a value).
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
            ("SPOTSTEP_WORKDIR", workdir(job)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let mut out =
        String::from("#!/bin/bash\n# spotstep step header\nset -eo pipefail\nexec 2>&1\n");
    for (k, v) in &vars {
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    out.push_str("PYTHON_BIN=\"$(command -v python3.12 || command -v python3 || true)\"\nexport PYTHON_BIN\n");
    for name in step.secrets.keys() {
        out.push_str(&format!(
            ": \"${{{name}:?is not set: the spotstep runner reads it from SSM Parameter Store}}\"\n"
        ));
    }
    out.push_str("mkdir -p \"$SPOTSTEP_WORKDIR\"\ncd \"$SPOTSTEP_WORKDIR\"\n");
    out.push_str(&format!("# spotstep step body: {}\n", step.name));
    out.push_str(&step.script);
    if !step.script.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The job's work folder on the instance (`SPOTSTEP_WORKDIR`): each step starts there.
pub fn workdir(job: &JobSpec) -> String {
    format!("{}/spotstep/{}", job.home, job.name)
}

/// Secret values shorter than this are not masked (masking `ab` would garble the output).
pub const MASK_MIN_LEN: usize = 4;

/// The masking filter (Python 3, standard library only; run with `python3 -I -c`, the
/// secrets' variable names as arguments): copies its input to its output line by line, every
/// line of every named variable's value of at least [`MASK_MIN_LEN`] bytes replaced by `***`
/// (literal byte matching: no pattern syntax, any byte allowed), longest first. The values
/// come from its environment, never from its command line.
fn mask_program() -> String {
    format!(
        r#"import os, sys
out = sys.stdout.buffer
masks = set()
for name in sys.argv[1:]:
    for line in os.environb.get(name.encode(), b"").splitlines():
        if len(line) >= {MASK_MIN_LEN}:
            masks.add(line)
        elif line:
            out.write(b"spotstep: a line of secret " + name.encode() + b" is shorter than {MASK_MIN_LEN} characters and is not masked\n")
masks = sorted(masks, key=len, reverse=True)
for line in sys.stdin.buffer:
    for mask in masks:
        line = line.replace(mask, b"***")
    out.write(line)
    out.flush()
"#
    )
}

/// The runner: reads the step's secrets (if any) from SSM Parameter Store with the instance
/// role and exports them, runs the step script with its output merged, through the masking
/// filter when the step has secrets, and exits with the step's exit code. A secret that
/// cannot be read or is empty fails the step before it starts, naming the parameter (never
/// a value). For workload steps it keeps a copy of the (masked) output and ships it to
/// `health/<step>_log/<run_date>/<ts>-exit<code>.log` (best effort: where no `aws` CLI is
/// present it is skipped). A step with a checkpoint runs inside the checkpoint's block
/// ([`checkpoint::runner_block`]: restore, periodic upload, the spot notice).
pub fn render_runner(run: &Run, job: &JobSpec, step: &StepSpec, bucket: &str) -> String {
    let mut out = String::from("#!/bin/bash\nset -o pipefail\n");
    let mut filters = String::new();
    if !step.secrets.is_empty() {
        out.push_str(
            r#"# spotstep secrets: read with the instance role, exported for the step, masked in its output
command -v python3 >/dev/null 2>&1 || { echo "spotstep: python3 is needed to mask this step's secrets"; exit 1; }
spotstep_secret() {
  local value
  if ! value="$(aws ssm get-parameter --with-decryption --name "$2" --query Parameter.Value --output text)"; then
    echo "spotstep: cannot read secret $1 from SSM parameter $2 (the aws error is above)"
    exit 1
  fi
  if [ -z "$value" ] || [ "$value" = "None" ]; then
    echo "spotstep: SSM parameter $2 (secret $1) is empty"
    exit 1
  fi
  export "$1=$value"
} 2>&1
"#,
        );
        for (name, parameter) in &step.secrets {
            out.push_str(&format!(
                "spotstep_secret {name} {}\n",
                shell_quote(parameter)
            ));
        }
        let names: Vec<&str> = step.secrets.keys().map(String::as_str).collect();
        filters.push_str(&format!(
            " | python3 -I -c {} {}",
            shell_quote(&mask_program()),
            names.join(" ")
        ));
    }
    if step.kind == StepKind::Workload {
        filters.push_str(" | tee \"$1/output.log\"");
    }
    match &step.checkpoint {
        Some(spec) => out.push_str(&checkpoint::runner_block(
            spec,
            &job.name,
            &run.run_id,
            &step.name,
            &workdir(job),
            bucket,
            &filters,
        )),
        None => out.push_str(&format!(
            "bash \"$1/step.sh\" 2>&1{filters}\nrc=${{PIPESTATUS[0]}}\n"
        )),
    }
    if step.kind == StepKind::Workload {
        let prefix = naming::health_log_prefix(&step.name, &run.run_date);
        out.push_str(&format!(
            r#"if command -v aws >/dev/null 2>&1; then
  aws s3 cp --quiet "$1/output.log" "s3://{bucket}/{prefix}$(date -u +%Y%m%dT%H%M%SZ)-exit$rc.log" >/dev/null 2>&1 || true
fi
"#
        ));
    }
    out.push_str("exit \"$rc\"\n");
    out
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
            b64(&render_runner(run, job, step, &at.bucket))
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
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::{Command, Stdio};

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
            secrets: BTreeMap::new(),
            script: script.into(),
            checkpoint: None,
            fan_out: None,
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
        let runner = render_runner(&run(), &job(), &step(StepKind::Workload, "true"), "b");
        assert!(runner.contains(
            "s3://b/health/quoting_log/2026-11-28/$(date -u +%Y%m%dT%H%M%SZ)-exit$rc.log"
        ));
        let setup = render_runner(&run(), &job(), &step(StepKind::Setup, "true"), "b");
        assert!(!setup.contains("health/"));
    }

    /// Values with every kind of character a filter could trip on.
    const SECRETS: [(&str, &str); 3] = [
        ("API_KEY", r#"s3cr.t*[x]^$1\/'q"&amp;|(a+b)?"#),
        ("DB_URL", "postgres://rag:pässwörd@db/rag"),
        (
            "PEM",
            "-----BEGIN KEY-----\nMIIBOgIBAAJB\n-----END KEY-----",
        ),
    ];

    /// A step with the SECRETS, read from `/test/<NAME>`.
    fn secret_step(kind: StepKind, script: &str) -> StepSpec {
        StepSpec {
            secrets: SECRETS
                .iter()
                .map(|(name, _)| (name.to_string(), format!("/test/{name}")))
                .collect(),
            ..step(kind, script)
        }
    }

    /// A fake `aws` in `dir/bin`: `ssm get-parameter --name P ...` prints the file
    /// `dir/ssm/<P with '/' as '_'>` (ParameterNotFound if absent), as `--output text`
    /// does; `s3 cp --quiet FILE URL` copies FILE to `dir/s3/health.log`.
    fn fake_aws(dir: &Path, values: &[(&str, &str)]) {
        for sub in ["bin", "ssm", "s3"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (name, value) in values {
            std::fs::write(dir.join("ssm").join(format!("_test_{name}")), value).unwrap();
        }
        let aws = dir.join("bin/aws");
        std::fs::write(
            &aws,
            format!(
                r#"#!/bin/bash
root={root}
if [ "$1 $2" = "s3 cp" ]; then cp "$4" "$root/s3/health.log"; exit; fi
[ "$1 $2 $3 $4" = "ssm get-parameter --with-decryption --name" ] || exit 2
file="$root/ssm/${{5//\//_}}"
if [ ! -f "$file" ]; then
  echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: Parameter $5 not found." >&2
  exit 254
fi
cat "$file"; echo
"#,
                root = shell_quote(&dir.display().to_string())
            ),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&aws).status().unwrap();
    }

    /// Runs a step's commands as AWS-RunShellScript would, with the fake `aws` first on PATH:
    /// (exit code, stdout).
    fn run_on_instance(dir: &Path, step: &StepSpec) -> (Option<i32>, String) {
        let mut j = job();
        j.home = dir.display().to_string();
        let commands = ssm_commands(&run(), &j, step, &at());
        let out = Command::new("sh")
            .arg("-c")
            .arg(commands.join("\n"))
            .env("PATH", format!("{}/bin:/usr/bin:/bin", dir.display()))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn secrets_reach_the_step_and_never_its_output() {
        let body = r#"printf 'raw: %s\n' "$API_KEY"
echo "embedded:${API_KEY}:and:${DB_URL}."
echo "$PEM"
env | grep -c -e '^API_KEY=' -e '^DB_URL=' -e '^PEM='
[ "$API_KEY" = 's3cr.t*[x]^$1\/'\''q"&amp;|(a+b)?' ] && echo "exact value: yes"
printf 'no newline at the end: %s' "$API_KEY"
exit 3
"#;
        for kind in [StepKind::Setup, StepKind::Workload] {
            let dir = sandbox(&format!("secrets-{kind:?}"));
            fake_aws(&dir, &SECRETS);
            let (code, stdout) = run_on_instance(&dir, &secret_step(kind, body));
            assert_eq!(code, Some(3), "{kind:?}: the step's exit code: {stdout}");
            for (name, value) in SECRETS {
                for line in value.lines() {
                    assert!(!stdout.contains(line), "{kind:?}: {name} leaked: {stdout}");
                }
            }
            let expected = "raw: ***\nembedded:***:and:***.\n***\n***\n***\n3\nexact value: yes\nno newline at the end: ***";
            assert_eq!(stdout, expected, "{kind:?}");
            let health = std::fs::read_to_string(dir.join("s3/health.log"));
            match kind {
                StepKind::Workload => assert_eq!(health.unwrap(), expected),
                StepKind::Setup => assert!(health.is_err(), "setup steps ship no health log"),
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_missing_or_empty_secret_fails_the_step_naming_the_parameter() {
        let body = "echo body ran\n";
        for (values, expected) in [
            (
                &SECRETS[1..],
                "Parameter /test/API_KEY not found.\nspotstep: cannot read secret API_KEY from SSM parameter /test/API_KEY (the aws error is above)\n",
            ),
            (
                &[("API_KEY", ""), SECRETS[1], SECRETS[2]][..],
                "spotstep: SSM parameter /test/API_KEY (secret API_KEY) is empty\n",
            ),
        ] {
            let dir = sandbox("secret-missing");
            fake_aws(&dir, values);
            let (code, stdout) = run_on_instance(&dir, &secret_step(StepKind::Workload, body));
            assert_eq!(code, Some(1), "{stdout}");
            assert!(stdout.ends_with(expected), "{stdout}");
            assert!(!stdout.contains("body ran"), "{stdout}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn the_mask_filter_replaces_values_literally() {
        // (values, input, expected output)
        let cases: [(&[&str], &str, &str); 9] = [
            (&["hunter2"], "pw=hunter2 again hunter2\n", "pw=*** again ***\n"),
            (&["a.b*"], "aXb a.b* a.b\n", "aXb *** a.b\n"),
            (&["/x/y\\z"], "path /x/y\\z/ok\n", "path ***/ok\n"),
            (&["it's \"q\""], "say it's \"q\"!\n", "say ***!\n"),
            (&["$(id)&"], "run $(id)& now\n", "run *** now\n"),
            (&["pässwörd"], "ü pässwörd ü\n", "ü *** ü\n"),
            (&["line one\nline two"], "line one\nx line two x\n", "***\nx *** x\n"),
            (&["abcd", "abcdef"], "abcdefgh abcd\n", "***gh ***\n"),
            (
                &["abc"],
                "abc\n",
                "spotstep: a line of secret S0 is shorter than 4 characters and is not masked\nabc\n",
            ),
        ];
        for (values, input, expected) in cases {
            let names: Vec<String> = (0..values.len()).map(|i| format!("S{i}")).collect();
            let mut child = Command::new("python3")
                .arg("-I")
                .arg("-c")
                .arg(mask_program())
                .args(&names)
                .envs(names.iter().zip(values.iter()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                expected,
                "{values:?}"
            );
        }
    }

    #[test]
    fn the_header_refuses_to_run_without_its_secrets() {
        let dir = sandbox("secret-header");
        let mut j = job();
        j.home = dir.display().to_string();
        let script = render_step(
            &run(),
            &j,
            &secret_step(StepKind::Workload, "echo body ran\n"),
            &at(),
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("PATH", "/usr/bin:/bin")
            .env("API_KEY", "set")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(
                "DB_URL: is not set: the spotstep runner reads it from SSM Parameter Store"
            ),
            "{stdout}"
        );
        assert!(!stdout.contains("body ran"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpointed_step_keeps_secrets_out_of_its_checkpoint_names_and_masks_its_output() {
        let step = StepSpec {
            checkpoint: Some(crate::checkpoint::CheckpointSpec {
                dir: "ckpt".into(),
                every_seconds: 300,
                grace_seconds: 60,
                poll_seconds: 5,
            }),
            ..secret_step(StepKind::Workload, "true")
        };
        let runner = render_runner(&run(), &job(), &step, "b");
        for prefix in [
            "export SPOTSTEP_CHECKPOINT_DIR=",
            "spotstep_ck_url=",
            "spotstep_ck_marker=",
        ] {
            let line = runner.lines().find(|l| l.starts_with(prefix)).unwrap();
            assert!(!line.contains('$'), "fixed text only, no variable: {line}");
        }
        assert!(
            runner.contains("cat \"$1/output.fifo\" | python3 -I -c '"),
            "the step's output goes through the mask: {runner}"
        );
        assert!(!runner.contains("bash \"$1/step.sh\" 2>&1 |"), "{runner}");
    }

    #[test]
    fn only_steps_with_secrets_read_and_mask() {
        for kind in [StepKind::Setup, StepKind::Workload] {
            let plain = render_runner(&run(), &job(), &step(kind, "true"), "b");
            assert!(
                !plain.contains("ssm") && !plain.contains("python3"),
                "{plain}"
            );
            let secret = render_runner(&run(), &job(), &secret_step(kind, "true"), "b");
            assert!(secret.contains("spotstep_secret API_KEY '/test/API_KEY'\n"));
            assert!(secret.contains(" | python3 -I -c '"), "{secret}");
            assert!(secret.contains("' API_KEY DB_URL PEM"), "{secret}");
        }
    }
}
