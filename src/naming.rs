//! Names, keys and tags: one name for one thing, built in one place.
//!
//! A step is called the same in the manifest, the state machine, the logs, the tags and the
//! S3 keys. Run ids are restricted to a safe character set so that no key built from them can
//! leave its prefix.

use sha2::{Digest, Sha256};

/// Tag keys spotstep puts on every instance (and its volume).
pub mod tags {
    pub const JOB: &str = "spotstep:job";
    pub const RUN_ID: &str = "spotstep:run-id";
    pub const EXECUTION: &str = "spotstep:execution";
    pub const ATTEMPT: &str = "spotstep:attempt";
    /// The redrive round the instance was launched in.
    pub const ROUND: &str = "spotstep:round";
    /// The stack (deployment) that launched the instance; IAM and cleanup are scoped to it.
    pub const STACK: &str = "spotstep:stack";
    pub const MAX_RUNTIME: &str = "spotstep:max-runtime";
    /// A sweep lane's instance: `<step>.<lane>` (`fanout::Lane::id`).
    pub const LANE: &str = "spotstep:lane";
    pub const NAME: &str = "Name";
    /// Every key the launch puts on an instance (the template's IAM allows exactly these in
    /// CreateFleet and RunInstances).
    pub const ALL: [&str; 9] = [
        NAME,
        JOB,
        RUN_ID,
        EXECUTION,
        ATTEMPT,
        ROUND,
        STACK,
        MAX_RUNTIME,
        LANE,
    ];
}

/// Checks a job, step, mode or heartbeat name: `[a-z0-9][a-z0-9-]{0,39}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit"
        ))
    }
}

/// Checks the instance `Name` tag prefix.
pub fn check_name_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` must be 1-100 characters of letters, digits, '-' and '_'"
        ))
    }
}

/// Checks an EC2 instance type such as `c5.large`.
pub fn check_instance_type(t: &str) -> Result<(), String> {
    let mut parts = t.split('.');
    let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(family), Some(size), None)
        if !family.is_empty() && !size.is_empty()
            && family.chars().chain(size.chars()).all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{t}` is not an EC2 instance type (family.size, such as c5.large)"
        ))
    }
}

/// Checks a git branch name: letters, digits, `._/-`, no `..`, not starting with `-`.
pub fn check_branch(branch: &str) -> Result<(), String> {
    let ok = !branch.is_empty()
        && branch.len() <= 200
        && !branch.starts_with('-')
        && !branch.contains("..")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{branch}` is not a safe branch name (letters, digits, '.', '_', '/', '-'; no '..'; not starting with '-')"
        ))
    }
}

/// Variables the step header sets that a job's `[env]` may not override (besides every
/// `SPOTSTEP_*` name).
pub const RESERVED_ENV: [&str; 5] = [
    "HOME",
    "XDG_CACHE_HOME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PYTHON_BIN",
];

/// Checks an environment variable name: `[A-Z_][A-Z0-9_]*`, and not one spotstep sets.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!("`{name}` must match [A-Z_][A-Z0-9_]*"));
    }
    if name.starts_with("SPOTSTEP_") || RESERVED_ENV.contains(&name) {
        return Err(format!("`{name}` is set by spotstep itself"));
    }
    Ok(())
}

/// The longest SSM parameter name (the API's 2,048 less the 1,037 reserved for the ARN).
pub const PARAMETER_NAME_MAX: usize = 1011;

/// Checks an SSM Parameter Store parameter name as a secret's source: hierarchical
/// (`/` then segments of `a-zA-Z0-9_.-` separated by single `/`), at most 15 levels and
/// [`PARAMETER_NAME_MAX`] characters. The `aws`/`ssm` prefixes SSM forbids when creating a
/// parameter are allowed: reading `/aws/reference/secretsmanager/<secret>` is how Parameter
/// Store serves a Secrets Manager secret.
pub fn check_parameter_name(name: &str) -> Result<(), String> {
    let segments: Vec<&str> = name
        .strip_prefix('/')
        .unwrap_or_default()
        .split('/')
        .collect();
    let ok = name.starts_with('/')
        && name.len() <= PARAMETER_NAME_MAX
        && segments.len() <= 15
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an SSM parameter name: `/` then 1-15 segments of letters, digits, '_', '.', '-' separated by `/`, at most {PARAMETER_NAME_MAX} characters"
        ))
    }
}

/// Checks a run id: 1-80 characters of letters, digits, `-` and `_` (a Step Functions
/// execution name's safe subset), so that `tmp/<job>/<run_id>/` can never escape.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 80
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "run id `{run_id}` is unsafe: it must be 1-80 characters of letters, digits, '-' and '_' (it names the run's S3 prefix)"
        ))
    }
}

/// Splits `s3://bucket/key` into bucket and key.
pub fn parse_s3_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{uri}` is not an s3:// URI"))?;
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(format!("`{uri}` must be s3://<bucket>/<key of one object>")),
    }
}

/// The run's staging prefix, deleted at the end of the run: `tmp/<job>/<run_id>/`.
pub fn staging_prefix(job: &str, run_id: &str) -> String {
    format!("tmp/{job}/{run_id}/")
}

/// Where the run's copy of the job config goes.
pub fn staging_config_key(job: &str, run_id: &str) -> String {
    format!("{}config.yaml", staging_prefix(job, run_id))
}

/// The run's ledger record ([`crate::ledger`]): `runs/<job>/<run_id>.json`, outside `tmp/`,
/// so it is kept.
pub fn ledger_key(job: &str, run_id: &str) -> String {
    format!("{}{run_id}.json", ledger_prefix(job))
}

/// Where a job's ledger records are: `runs/<job>/`.
pub fn ledger_prefix(job: &str) -> String {
    format!("runs/{job}/")
}

/// The job's run lock: held by the one execution of the job that runs
/// ([`crate::lock`]). Outside `tmp/`, so no run's staging cleanup or the staging lifecycle
/// rule touches it.
pub fn run_lock_key(job: &str) -> String {
    format!("locks/{job}")
}

/// A job's checkpoints: `checkpoints/<job>/`. The instance role reads and writes only the
/// checkpointed jobs' prefixes.
pub fn checkpoint_job_prefix(job: &str) -> String {
    format!("checkpoints/{job}/")
}

/// A run's checkpoints: `checkpoints/<job>/<run_id>/`. Deleted when the run succeeds; kept
/// when it fails (a redrive resumes from them) and expired by the bucket's lifecycle rule
/// like `tmp/`.
pub fn checkpoint_run_prefix(job: &str, run_id: &str) -> String {
    format!("{}{run_id}/", checkpoint_job_prefix(job))
}

/// Where one step's checkpoint folder is mirrored: `checkpoints/<job>/<run_id>/<step>/`.
pub fn checkpoint_prefix(job: &str, run_id: &str, step: &str) -> String {
    format!("{}{step}/", checkpoint_run_prefix(job, run_id))
}

/// The marker the step's runner writes after each upload of its checkpoint (when it was
/// taken, why, whether the step had stopped): `checkpoints/<job>/<run_id>/<step>.marker`, beside
/// the folder's mirror, so that a restore never brings it into the folder.
pub fn checkpoint_marker_key(job: &str, run_id: &str, step: &str) -> String {
    format!("{}{step}.marker", checkpoint_run_prefix(job, run_id))
}

/// The SSM output prefix of one step of one run: `logs/<job>/<run_id>/<step>`. Never
/// deleted by cleanup.
pub fn step_log_prefix(job: &str, run_id: &str, step: &str) -> String {
    format!("logs/{job}/{run_id}/{step}")
}

/// The bucket and key of a command's full stdout, from the command's output prefix
/// (`s3://<bucket>/logs/<job>/<run_id>/<step>`, as send-step records it).
pub fn ssm_stdout_object(
    output_prefix: &str,
    command_id: &str,
    instance_id: &str,
) -> Result<(String, String), String> {
    let (bucket, log_prefix) =
        parse_s3_uri(output_prefix).map_err(|e| format!("command.output_prefix: {e}"))?;
    Ok((bucket, ssm_stdout_key(&log_prefix, command_id, instance_id)))
}

/// The send marker of one step in one redrive round, under the run's staging prefix: written
/// before SendCommand and completed with the command id after it, so a retried send finds
/// the command in S3 (strongly consistent) rather than in ListCommands (eventually
/// consistent). Deleted with the staging.
pub fn send_marker_key(job: &str, run_id: &str, step: &str, round: u32) -> String {
    format!("{}{step}.round-{round}", send_markers_prefix(job, run_id))
}

/// Where a run's send markers are: `tmp/<job>/<run_id>/sent/`.
pub fn send_markers_prefix(job: &str, run_id: &str) -> String {
    format!("{}sent/", staging_prefix(job, run_id))
}

/// The key SSM writes a command's full stdout to, under its output prefix.
pub fn ssm_stdout_key(log_prefix: &str, command_id: &str, instance_id: &str) -> String {
    ssm_output_key(log_prefix, command_id, instance_id, "stdout")
}

/// The key SSM writes one output `stream` (`stdout` or `stderr`) of an `AWS-RunShellScript`
/// command to, under its output prefix.
pub fn ssm_output_key(
    log_prefix: &str,
    command_id: &str,
    instance_id: &str,
    stream: &str,
) -> String {
    format!(
        "{log_prefix}/{command_id}/{instance_id}/awsrunShellScript/0.awsrunShellScript/{stream}"
    )
}

/// The CloudWatch Logs stream SSM streams one output `stream` (`stdout` or `stderr`) of an
/// `AWS-RunShellScript` command to, in the command's log group.
pub fn ssm_log_stream(command_id: &str, instance_id: &str, stream: &str) -> String {
    format!("{command_id}/{instance_id}/aws-runShellScript/{stream}")
}

/// The prefix of a workload step's health log, as dashboards read it:
/// `health/<step>_log/<run_date>/`.
pub fn health_log_prefix(step: &str, run_date: &str) -> String {
    format!("health/{step}_log/{run_date}/")
}

/// The instance `Name` tag: `<prefix>-YYYYMMDD` (today's reaper matches on the prefix).
pub fn instance_name(prefix: &str, run_date: &str) -> String {
    format!("{prefix}-{}", run_date.replace('-', ""))
}

/// An idempotency token for one launch call from everything that identifies it (`key`; see
/// [`crate::fleet::client_token`]): the same key gives the same token, at most 64 characters.
pub fn client_token(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("spotstep-{}", hex(&digest[..16]))
}

/// The `Comment` that marks a step's command so a retried send finds it instead of sending
/// the script twice (at most 100 characters).
pub fn command_comment(run_id: &str, step: &str, round: u32) -> String {
    command_comment_from(step, &run_hash(run_id), round)
}

/// The run part of a [`command_comment`]: 16 lowercase hex digits from the run id's SHA-256,
/// so that the comment stays short whatever the run id's length.
pub fn run_hash(run_id: &str) -> String {
    hex(&Sha256::digest(run_id.as_bytes())[..8])
}

/// A [`command_comment`] from its parts: `spotstep <step> run <run_hash> round <round>`.
pub fn command_comment_from(step: &str, run_hash: &str, round: impl std::fmt::Display) -> String {
    format!("spotstep {step} run {run_hash} round {round}")
}

/// The `Comment` of one shard's command: [`command_comment`] plus ` shard <shard>`.
pub fn shard_command_comment(run_id: &str, step: &str, round: u32, shard: u32) -> String {
    shard_command_comment_from(step, &run_hash(run_id), round, shard)
}

/// A [`shard_command_comment`] from its parts.
pub fn shard_command_comment_from(
    step: &str,
    run_hash: &str,
    round: impl std::fmt::Display,
    shard: impl std::fmt::Display,
) -> String {
    format!(
        "{} shard {shard}",
        command_comment_from(step, run_hash, round)
    )
}

/// Where one shard's command writes its full output: `logs/<job>/<run_id>/<step>/<shard>`.
pub fn shard_log_prefix(
    job: &str,
    run_id: &str,
    step: &str,
    shard: impl std::fmt::Display,
) -> String {
    format!("{}/{shard}", step_log_prefix(job, run_id, step))
}

/// The send marker of one shard's command in redrive round `round`.
pub fn shard_marker_key(job: &str, run_id: &str, step: &str, shard: u32, round: u32) -> String {
    format!(
        "{}{step}.shard-{shard}.round-{round}",
        send_markers_prefix(job, run_id)
    )
}

/// The send marker of a setup step's command on a sweep lane's instance (`lane`: the lane's
/// id, `<step>.<index>`).
pub fn lane_marker_key(job: &str, run_id: &str, step: &str, lane: &str, round: u32) -> String {
    format!(
        "{}{step}.lane-{lane}.round-{round}",
        send_markers_prefix(job, run_id)
    )
}

/// A sweep's validated shard list, kept with the step's logs (a redrive reads it again).
pub fn shard_list_key(job: &str, run_id: &str, step: &str) -> String {
    format!("{}/shards.json", step_log_prefix(job, run_id, step))
}

/// A sweep's results index (shard -> status, output, result), kept with the step's logs.
pub fn results_index_key(job: &str, run_id: &str, step: &str) -> String {
    format!("{}/results.json", step_log_prefix(job, run_id, step))
}

/// Where a sweep keeps one record per shard and round (they outlive a failed run's staging,
/// so a redrive skips the shards that succeeded).
pub fn shard_records_prefix(job: &str, run_id: &str, step: &str) -> String {
    format!("{}/records/", step_log_prefix(job, run_id, step))
}

/// The record of shard `shard` in redrive round `round`.
pub fn shard_record_key(job: &str, run_id: &str, step: &str, shard: u32, round: u32) -> String {
    format!(
        "{}{shard}.round-{round}.json",
        shard_records_prefix(job, run_id, step)
    )
}

/// Where a sweep marks the shards that succeeded (in any round), one empty object each.
pub fn shard_done_prefix(job: &str, run_id: &str, step: &str) -> String {
    format!("{}/done/", step_log_prefix(job, run_id, step))
}

/// The mark of shard `shard`'s success.
pub fn shard_done_key(job: &str, run_id: &str, step: &str, shard: u32) -> String {
    format!("{}{shard}", shard_done_prefix(job, run_id, step))
}

/// The send marker a sweep lane's instance waits on now (its key; one command at a time runs
/// on a lane): poll-result reads it instead of every marker of the run.
pub fn lane_instance_marker_key(job: &str, run_id: &str, instance_id: &str) -> String {
    format!(
        "{}fanout/instances/{instance_id}",
        staging_prefix(job, run_id)
    )
}

/// Where a sweep keeps one round's claims and lanes in the run's staging.
fn sweep_round_prefix(job: &str, run_id: &str, step: &str, round: u32) -> String {
    format!(
        "{}fanout/{step}/round-{round}/",
        staging_prefix(job, run_id)
    )
}

/// Where a sweep's lanes claim shards in the run's staging (one round's claims).
pub fn shard_claims_prefix(job: &str, run_id: &str, step: &str, round: u32) -> String {
    format!("{}claims/", sweep_round_prefix(job, run_id, step, round))
}

/// The shard lane `lane` (its id) last claimed in round `round`: a retried `next shard`
/// hands it out again instead of claiming another.
pub fn lane_claim_key(job: &str, run_id: &str, step: &str, lane: &str, round: u32) -> String {
    format!(
        "{}lanes/{lane}",
        sweep_round_prefix(job, run_id, step, round)
    )
}

/// The claim of shard `shard` in redrive round `round` (written `If-None-Match: *`).
pub fn shard_claim_key(job: &str, run_id: &str, step: &str, shard: u32, round: u32) -> String {
    format!("{}{shard}", shard_claims_prefix(job, run_id, step, round))
}

/// The state machine ARN of an execution ARN
/// (`arn:aws:states:<region>:<account>:execution:<machine>:<name>`).
pub fn state_machine_arn(execution_arn: &str) -> Option<String> {
    let parts: Vec<&str> = execution_arn.split(':').collect();
    if parts.len() < 8 || parts[5] != "execution" {
        return None;
    }
    let mut machine = parts[..7].to_vec();
    machine[5] = "stateMachine";
    Some(machine.join(":"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_restricted_to_a_safe_set() {
        for good in ["20261128T090000Z-i-0abc", "a", "run_1-2", &"x".repeat(80)] {
            assert!(check_run_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "a b",
            "a.b",
            "run$(id)",
            "ü",
            &"x".repeat(81),
            "a\n",
        ] {
            let e = check_run_id(bad).unwrap_err();
            assert!(e.contains("unsafe"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_follow_the_name_rule() {
        assert!(check_name("data-phase1").is_ok());
        assert!(check_name("Data").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a_b").is_err());
        assert!(check_name(&"a".repeat(41)).is_err());
    }

    #[test]
    fn branches_and_types_and_env_names() {
        assert!(check_branch("feature/x-1.2").is_ok());
        for bad in ["", "-rf", "a..b", "a b", "a;b", "$(x)"] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
        assert!(check_instance_type("c6i.large").is_ok());
        assert!(check_instance_type("c6i").is_err());
        assert!(check_instance_type("C5.large").is_err());
        assert!(check_env_name("REPO_URL").is_ok());
        assert!(check_env_name("repo").is_err());
        assert!(check_env_name("SPOTSTEP_X").is_err());
        assert!(check_env_name("HOME").is_err());
    }

    #[test]
    fn parameter_names() {
        let deep = format!("/{}", ["a"; 15].join("/"));
        let long = format!("/{}", "p".repeat(PARAMETER_NAME_MAX - 1));
        for good in [
            "/alpha-engine/VOYAGE_API_KEY",
            "/x",
            "/a.b/c-d/e_f/G9",
            "/aws/reference/secretsmanager/rag-db",
            deep.as_str(),
            long.as_str(),
        ] {
            assert!(check_parameter_name(good).is_ok(), "{good}");
        }
        let too_deep = format!("{deep}/b");
        let too_long = format!("{long}p");
        for bad in [
            "",
            "/",
            "VOYAGE_API_KEY",
            "/a//b",
            "/a/",
            "/a b",
            "/a;rm",
            "/a'b",
            "/a$(x)",
            "/ü",
            too_deep.as_str(),
            too_long.as_str(),
        ] {
            let e = check_parameter_name(bad).unwrap_err();
            assert!(e.contains("is not an SSM parameter name"), "{bad}: {e}");
        }
    }

    #[test]
    fn s3_uris() {
        assert_eq!(
            parse_s3_uri("s3://b/data/config.yaml").unwrap(),
            ("b".into(), "data/config.yaml".into())
        );
        assert!(parse_s3_uri("https://b/k").is_err());
        assert!(parse_s3_uri("s3://b/").is_err());
        assert!(parse_s3_uri("s3://b").is_err());
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(staging_prefix("data-weekly", "r1"), "tmp/data-weekly/r1/");
        assert_eq!(staging_config_key("j", "r"), "tmp/j/r/config.yaml");
        assert_eq!(
            send_marker_key("j", "r", "deps", 2),
            "tmp/j/r/sent/deps.round-2"
        );
        assert_eq!(step_log_prefix("j", "r", "deps"), "logs/j/r/deps");
        assert_eq!(
            ssm_stdout_key("logs/j/r/deps", "cmd-1", "i-1"),
            "logs/j/r/deps/cmd-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout"
        );
        assert_eq!(
            health_log_prefix("data-phase1", "2026-11-28"),
            "health/data-phase1_log/2026-11-28/"
        );
        assert_eq!(
            instance_name("alpha-engine-data-weekly", "2026-11-28"),
            "alpha-engine-data-weekly-20261128"
        );
    }

    #[test]
    fn tokens_are_stable_distinct_and_short() {
        let a = client_token("arn:x|1|0");
        assert_eq!(a, client_token("arn:x|1|0"));
        assert_ne!(a, client_token("arn:x|1|1"));
        assert!(client_token(&"k".repeat(500)).len() <= 64);
        let c = command_comment(&"r".repeat(80), &"s".repeat(40), 3);
        assert!(c.len() <= 100, "{c}");
        assert_ne!(c, command_comment(&"r".repeat(80), &"s".repeat(40), 4));
    }

    #[test]
    fn state_machine_of_an_execution() {
        assert_eq!(
            state_machine_arn(
                "arn:aws:states:us-east-1:123456789012:execution:spotstep-demo:run-1"
            )
            .as_deref(),
            Some("arn:aws:states:us-east-1:123456789012:stateMachine:spotstep-demo")
        );
        assert_eq!(
            state_machine_arn("arn:aws:states:us-east-1:1:stateMachine:x"),
            None
        );
    }
}
