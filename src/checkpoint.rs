//! Step checkpoints: a step that saves its state to a folder resumes from it after a spot
//! reclaim, losing seconds of work instead of hours.
//!
//! A workload step's `[steps.checkpoint]` names a folder under the job's work folder. The
//! step's runner (rendered here, run by [`crate::script`]) restores the folder from
//! `checkpoints/<job>/<run_id>/<step>/` before the step starts (`SPOTSTEP_RESUMED=1` when it
//! found something), uploads it every `every_seconds` while the step runs (`aws s3 sync`:
//! changed files only), and watches the instance metadata service (IMDSv2) for the spot
//! interruption notice and the rebalance recommendation. On the notice it sends SIGTERM to
//! the step's process group, waits up to `grace_seconds`, uploads the folder a last time and
//! writes the marker (`checkpoints/<job>/<run_id>/<step>.marker`: when the checkpoint was
//! taken, why, whether the step had stopped). send-step reads that marker before it sends
//! the step again ([`Restored`]), so the history, `watch` and the notification say how old
//! the checkpoint the step resumes from is.

use serde::{Deserialize, Serialize};

use crate::naming;
use crate::script::shell_quote;

/// The spot interruption warning: EC2 reclaims the instance about this many seconds after
/// the notice appears in instance metadata.
pub const WARNING_SECONDS: u64 = 120;

/// How often the runner asks instance metadata for a notice (production). AWS suggests
/// checking every 5 seconds.
pub const NOTICE_POLL_SECONDS: u64 = 5;

/// The time the final upload (`aws s3 sync` of the changed files, then the marker) is
/// allowed inside the warning: 30 s moves about 1.5 GB at the 50 MB/s a single sync of a
/// few large files reaches on small instances (more on bigger ones). A step whose checkpoint
/// grows beyond that should save more often (`every_seconds`) so that less changes at the end.
pub const FINAL_UPLOAD_ALLOWANCE_SECONDS: u64 = 30;

/// The shortest periodic upload interval a manifest may ask for.
pub const MIN_EVERY_SECONDS: u64 = 30;

/// The longest grace that fits the warning: the notice may be seen up to one poll late, and
/// the final upload follows the grace.
pub const MAX_GRACE_SECONDS: u64 =
    WARNING_SECONDS - NOTICE_POLL_SECONDS - FINAL_UPLOAD_ALLOWANCE_SECONDS;

fn default_every_seconds() -> u64 {
    300
}

fn default_grace_seconds() -> u64 {
    60
}

fn default_poll_seconds() -> u64 {
    NOTICE_POLL_SECONDS
}

/// `[steps.checkpoint]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    dir: String,
    #[serde(default = "default_every_seconds")]
    every_seconds: u64,
    #[serde(default = "default_grace_seconds")]
    grace_seconds: u64,
}

/// A step's checkpoint, validated: what the runner needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSpec {
    /// Relative to the job's work folder; never leaves it.
    pub dir: String,
    /// The periodic upload interval.
    pub every_seconds: u64,
    /// From SIGTERM to the final upload.
    pub grace_seconds: u64,
    /// How often the runner asks instance metadata for a notice (not a manifest field: the
    /// timing sets it).
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
}

/// Checks `[steps.checkpoint]`: the folder stays inside the work folder, the interval is
/// at least [`MIN_EVERY_SECONDS`], the grace and the final upload fit the two-minute warning.
/// The problem is returned with the field it concerns (`dir`, `every_seconds`,
/// `grace_seconds`).
pub fn check(raw: RawCheckpoint) -> Result<CheckpointSpec, (&'static str, String)> {
    check_dir(&raw.dir).map_err(|p| ("dir", p))?;
    if raw.every_seconds < MIN_EVERY_SECONDS {
        return Err((
            "every_seconds",
            format!(
                "{} is under {MIN_EVERY_SECONDS} s: uploading that often costs more than it saves; \
                 save the folder more often instead, the runner uploads what changed",
                raw.every_seconds
            ),
        ));
    }
    if raw.grace_seconds == 0 || raw.grace_seconds > MAX_GRACE_SECONDS {
        return Err((
            "grace_seconds",
            format!(
                "{} does not fit the spot warning: between 1 and {MAX_GRACE_SECONDS} s \
                 ({WARNING_SECONDS} s of warning, less up to {NOTICE_POLL_SECONDS} s to see the notice \
                 and {FINAL_UPLOAD_ALLOWANCE_SECONDS} s for the final upload)",
                raw.grace_seconds
            ),
        ));
    }
    Ok(CheckpointSpec {
        dir: raw.dir,
        every_seconds: raw.every_seconds,
        grace_seconds: raw.grace_seconds,
        poll_seconds: NOTICE_POLL_SECONDS,
    })
}

/// A checkpoint folder: relative, each part 1-64 characters of letters, digits, `-`, `_`
/// and `.` but not `.` or `..` (the runner empties the folder before a restore, so it must
/// never be the work folder itself or outside it).
fn check_dir(dir: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{dir}` {why}"));
    if dir.is_empty() {
        return bad("is empty: name a folder inside the step's work folder, such as `ckpt`");
    }
    if dir.starts_with('/') {
        return bad("is absolute: it must be relative to the step's work folder");
    }
    for part in dir.split('/') {
        if part == ".." {
            return bad("leaves the step's work folder (`..`)");
        }
        let ok = !part.is_empty()
            && part != "."
            && part.len() <= 64
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return bad(
                "must be folder names of letters, digits, '-', '_' and '.' separated by '/' \
                 (no empty part, no `.`), inside the step's work folder",
            );
        }
    }
    Ok(())
}

/// The checkpoint intervals a state machine gives its steps: production keeps the
/// manifest's; the emulator's are seconds, so the tests can reclaim a step mid-epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointTiming {
    /// Replaces `every_seconds` when set.
    pub every_seconds: Option<u64>,
    /// Caps `grace_seconds` when set.
    pub grace_cap_seconds: Option<u64>,
    pub poll_seconds: u64,
}

impl CheckpointTiming {
    pub const PRODUCTION: CheckpointTiming = CheckpointTiming {
        every_seconds: None,
        grace_cap_seconds: None,
        poll_seconds: NOTICE_POLL_SECONDS,
    };

    pub const LOCAL: CheckpointTiming = CheckpointTiming {
        every_seconds: Some(2),
        grace_cap_seconds: Some(3),
        poll_seconds: 1,
    };

    /// The checkpoint as this timing runs it.
    pub fn apply(&self, spec: &CheckpointSpec) -> CheckpointSpec {
        CheckpointSpec {
            dir: spec.dir.clone(),
            every_seconds: self.every_seconds.unwrap_or(spec.every_seconds),
            grace_seconds: self
                .grace_cap_seconds
                .map_or(spec.grace_seconds, |cap| spec.grace_seconds.min(cap)),
            poll_seconds: self.poll_seconds,
        }
    }
}

/// The runner's part for a checkpointed step, in place of the plain pipeline: restore, run
/// the step in its own process group with its output through `filters` (the runner's mask
/// and log copy, each starting with ` | `), upload periodically, watch for the notice, and
/// upload a last time after a notice or a failure. Leaves the step's exit code in `rc`.
/// `workdir` is the job's work folder; `$1` is the runner's own folder.
pub fn runner_block(
    spec: &CheckpointSpec,
    job: &str,
    run_id: &str,
    step: &str,
    workdir: &str,
    bucket: &str,
    filters: &str,
) -> String {
    let dir = format!("{workdir}/{}", spec.dir);
    let url = format!(
        "s3://{bucket}/{}",
        naming::checkpoint_prefix(job, run_id, step)
    );
    let marker = format!(
        "s3://{bucket}/{}",
        naming::checkpoint_marker_key(job, run_id, step)
    );
    format!(
        r#"# spotstep checkpoint: restore before the step, upload while it runs, stop it on a spot notice
export SPOTSTEP_CHECKPOINT_DIR={dir}
spotstep_ck_url={url}
spotstep_ck_marker={marker}
spotstep_imds="${{AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}}"
spotstep_imds="${{spotstep_imds%/}}"
spotstep_ck_save() {{
  local at
  at="$(date +%s)"
  aws s3 sync --only-show-errors --delete "$SPOTSTEP_CHECKPOINT_DIR" "$spotstep_ck_url" || return 1
  printf '{{"saved_at":%s,"reason":"%s","complete":%s}}\n' "$at" "$2" "$3" > "$1/checkpoint.json"
  aws s3 cp --quiet "$1/checkpoint.json" "$spotstep_ck_marker"
}}
spotstep_imds_get() {{
  local token
  token="$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$spotstep_imds/latest/api/token")" || return 1
  curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$spotstep_imds/latest/meta-data/$1"
}}
spotstep_ck_uploads() {{
  trap 'exit 0' TERM
  local next now
  next="$(( $(date +%s) + {every} ))"
  while :; do
    sleep 0.2 & wait $!
    now="$(date +%s)"
    if [ -f "$1/checkpoint.rebalance" ]; then
      rm -f "$1/checkpoint.rebalance"
      spotstep_ck_save "$1" rebalance false
    elif [ "$now" -ge "$next" ]; then
      spotstep_ck_save "$1" periodic false || echo "spotstep: a periodic checkpoint upload failed; the next one retries"
      next="$(( next + {every} ))"
      if [ "$next" -le "$now" ]; then next="$(( now + {every} ))"; fi
    fi
  done
}}
spotstep_ck_watch() {{
  trap 'exit 0' TERM
  local action start rebalanced=""
  while :; do
    sleep {poll} & wait $!
    if action="$(spotstep_imds_get spot/instance-action)"; then
      echo "spotstep: spot interruption notice ($action): SIGTERM to the step, {grace}s to save its checkpoint"
      : > "$1/checkpoint.notice"
      kill -TERM -- "-$spotstep_step" 2>/dev/null
      start="$(date +%s)"
      while kill -0 "$spotstep_step" 2>/dev/null && [ "$(( $(date +%s) - start ))" -lt {grace} ]; do sleep 1 & wait $!; done
      kill -KILL -- "-$spotstep_step" 2>/dev/null
      exit 0
    fi
    if [ -z "$rebalanced" ] && spotstep_imds_get events/recommendations/rebalance >/dev/null; then
      rebalanced=1
      echo "spotstep: rebalance recommendation: uploading the checkpoint now"
      : > "$1/checkpoint.rebalance"
    fi
  done
}}
if ! {{ rm -rf "$SPOTSTEP_CHECKPOINT_DIR" && mkdir -p "$SPOTSTEP_CHECKPOINT_DIR"; }}; then
  echo "spotstep: cannot make the checkpoint folder $SPOTSTEP_CHECKPOINT_DIR"
  exit 1
fi
if ! aws s3 sync --only-show-errors "$spotstep_ck_url" "$SPOTSTEP_CHECKPOINT_DIR"; then
  echo "spotstep: cannot restore the checkpoint from $spotstep_ck_url (the aws error is above)"
  exit 1
fi
export SPOTSTEP_RESUMED=0
if [ -n "$(ls -A "$SPOTSTEP_CHECKPOINT_DIR")" ]; then
  export SPOTSTEP_RESUMED=1
  saved=""
  if aws s3 cp --quiet "$spotstep_ck_marker" "$1/restored.json" >/dev/null 2>&1; then
    saved="$(sed -n 's/.*"saved_at":\([0-9]*\).*/\1/p' "$1/restored.json")"
  fi
  echo "spotstep: resumed from the checkpoint ($(find "$SPOTSTEP_CHECKPOINT_DIR" -type f | wc -l) files${{saved:+, saved $(( $(date +%s) - saved ))s ago}})"
fi
command -v curl >/dev/null 2>&1 || echo "spotstep: curl not found: no spot notice is watched, only the periodic uploads run"
mkfifo "$1/output.fifo"
cat "$1/output.fifo"{filters} &
spotstep_out=$!
set -m
bash "$1/step.sh" > "$1/output.fifo" 2>&1 &
spotstep_step=$!
set +m
spotstep_ck_watch "$1" &
spotstep_watch=$!
spotstep_ck_uploads "$1" &
spotstep_uploads=$!
wait "$spotstep_step"
rc=$?
kill -TERM "$spotstep_watch" "$spotstep_uploads" 2>/dev/null
wait "$spotstep_watch" "$spotstep_uploads"
wait "$spotstep_out"
if [ -f "$1/checkpoint.notice" ]; then spotstep_why=notice; elif [ "$rc" -ne 0 ]; then spotstep_why=failure; else spotstep_why=""; fi
if [ -n "$spotstep_why" ]; then
  if spotstep_ck_save "$1" "$spotstep_why" true; then
    echo "spotstep: checkpoint uploaded after the step stopped ($spotstep_why)"
  else
    echo "spotstep: the final checkpoint upload failed ($spotstep_why)"
  fi
fi
if [ "$spotstep_why" = notice ]; then
  # The instance's end tells the state machine (a reclaim, then a relaunch that restores
  # this checkpoint); a command that ended now would read as a failed step.
  echo "spotstep: waiting for EC2 to reclaim the instance"
  sleep {wait_for_reclaim}
fi
"#,
        dir = shell_quote(&dir),
        url = shell_quote(&url),
        marker = shell_quote(&marker),
        poll = spec.poll_seconds,
        grace = spec.grace_seconds,
        every = spec.every_seconds,
        wait_for_reclaim = 2 * WARNING_SECONDS,
    )
}

/// The marker the runner writes after each upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Marker {
    saved_at: i64,
    reason: String,
    complete: bool,
}

/// The checkpoint a step is about to resume from, as send-step found it before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// When it was taken (RFC 3339).
    pub saved_at: String,
    /// Seconds between then and the send.
    pub age_seconds: i64,
    /// `notice` (the step stopped at the spot notice), `failure` (after the step failed),
    /// `periodic` or `rebalance` (taken while the step ran).
    pub reason: String,
    /// Whether the step had stopped when it was taken.
    pub complete: bool,
}

impl Restored {
    /// Reads the runner's marker; `None` when it is not one.
    pub fn from_marker(text: &str, now: time::OffsetDateTime) -> Option<Restored> {
        let marker: Marker = serde_json::from_str(text).ok()?;
        let saved = time::OffsetDateTime::from_unix_timestamp(marker.saved_at).ok()?;
        Some(Restored {
            saved_at: crate::env::rfc3339(saved),
            age_seconds: (now - saved).whole_seconds().max(0),
            reason: marker.reason,
            complete: marker.complete,
        })
    }

    /// `resumes from a checkpoint 12s old (saved at the spot notice)`.
    pub fn describe(&self) -> String {
        let why = match self.reason.as_str() {
            "notice" => "saved at the spot notice",
            "failure" => "saved after the step failed",
            "rebalance" => "uploaded at a rebalance recommendation",
            _ => "the last periodic upload",
        };
        format!(
            "resumes from a checkpoint {} old ({why})",
            crate::progress::duration(self.age_seconds)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dir: &str, every: u64, grace: u64) -> RawCheckpoint {
        RawCheckpoint {
            dir: dir.into(),
            every_seconds: every,
            grace_seconds: grace,
        }
    }

    #[test]
    fn good_settings_pass_with_the_production_poll() {
        let spec = check(raw("ckpt/model.v1", 300, 60)).unwrap();
        assert_eq!(spec.poll_seconds, NOTICE_POLL_SECONDS);
        assert_eq!(
            check(raw("c", 30, MAX_GRACE_SECONDS))
                .unwrap()
                .every_seconds,
            30
        );
        assert_eq!(MAX_GRACE_SECONDS, 85);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let cases = [
            (
                raw("../up", 300, 60),
                "dir",
                "leaves the step's work folder",
            ),
            (
                raw("a/../../b", 300, 60),
                "dir",
                "leaves the step's work folder",
            ),
            (raw("/abs", 300, 60), "dir", "is absolute"),
            (raw("", 300, 60), "dir", "is empty"),
            (raw(".", 300, 60), "dir", "no `.`"),
            (raw("a//b", 300, 60), "dir", "no empty part"),
            (raw("a b", 300, 60), "dir", "letters, digits"),
            (raw("$(id)", 300, 60), "dir", "letters, digits"),
            (raw("ckpt", 29, 60), "every_seconds", "under 30 s"),
            (
                raw("ckpt", 300, 86),
                "grace_seconds",
                "does not fit the spot warning",
            ),
            (raw("ckpt", 300, 0), "grace_seconds", "between 1 and 85 s"),
        ];
        for (raw, field, problem) in cases {
            let (f, p) = check(raw.clone()).unwrap_err();
            assert_eq!(f, field, "{raw:?}");
            assert!(p.contains(problem), "{raw:?}: {p}");
        }
    }

    #[test]
    fn local_timing_shortens_the_intervals_and_production_keeps_them() {
        let spec = check(raw("ckpt", 300, 60)).unwrap();
        assert_eq!(CheckpointTiming::PRODUCTION.apply(&spec), spec);
        let local = CheckpointTiming::LOCAL.apply(&spec);
        assert_eq!(
            (local.every_seconds, local.grace_seconds, local.poll_seconds),
            (2, 3, 1)
        );
    }

    #[test]
    fn the_marker_gives_the_checkpoint_age() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_042).unwrap();
        let r = Restored::from_marker(
            r#"{"saved_at":1800000030,"reason":"notice","complete":true}"#,
            now,
        )
        .unwrap();
        assert_eq!(r.age_seconds, 12);
        assert!(r.complete);
        assert_eq!(
            r.describe(),
            "resumes from a checkpoint 12s old (saved at the spot notice)"
        );
        assert!(Restored::from_marker("not json", now).is_none());
    }

    #[test]
    fn the_block_reaches_the_default_metadata_address_unless_overridden() {
        let spec = check(raw("ckpt", 300, 60)).unwrap();
        let block = runner_block(
            &spec,
            "train",
            "run-1",
            "train",
            "/home/u/spotstep/train",
            "b",
            "",
        );
        assert!(block.contains(
            r#"spotstep_imds="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}""#
        ));
        assert!(block.contains("export SPOTSTEP_CHECKPOINT_DIR='/home/u/spotstep/train/ckpt'\n"));
        assert!(block.contains("spotstep_ck_url='s3://b/checkpoints/train/run-1/train/'\n"));
        assert!(
            block.contains("spotstep_ck_marker='s3://b/checkpoints/train/run-1/train.marker'\n")
        );
        assert!(block.contains("+ 300 ))"), "{block}");
    }
}
