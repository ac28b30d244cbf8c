//! The contract with the Python local stage and the benchmark: every name and string format
//! the Rust side owns and the Python side reads, printed by `spotstep contract`.
//!
//! Nothing here is spelled twice: each format's template is the output of the function that
//! makes the real strings, called with `{field}` markers for its arguments, and its regex is
//! built from that template. Python formats a string with `template.format(**fields)` and
//! parses one with `re.fullmatch(regex, text)` (named groups, one per field).

use serde_json::{json, Map, Value};

use crate::asl::{resource, state, task_timeout, Backoff, Timing};
use crate::{naming, script, waiting};

/// The contract's layout version: bumped when a key is renamed or removed.
pub const VERSION: u64 = 1;

/// Each function's name (its crate under `functions/` and its Lambda name) and the
/// `DefinitionSubstitutions` placeholder of its ARN in the generated definitions.
pub const FUNCTIONS: [(&str, &str, u64); 5] = [
    ("launch", resource::LAUNCH, task_timeout::LAUNCH),
    (
        "wait-online",
        resource::WAIT_ONLINE,
        task_timeout::WAIT_ONLINE,
    ),
    ("send-step", resource::SEND_STEP, task_timeout::SEND_STEP),
    (
        "poll-result",
        resource::POLL_RESULT,
        task_timeout::POLL_RESULT,
    ),
    ("cleanup", resource::CLEANUP, task_timeout::CLEANUP),
];

/// A job, step or mode name ([`naming::check_name`]).
pub const NAME_PATTERN: &str = "[a-z0-9][a-z0-9-]{0,39}";

/// A run id ([`naming::check_run_id`]).
pub const RUN_ID_PATTERN: &str = "[A-Za-z0-9_-]{1,80}";

/// The regex of one `{field}` of a template, without anchors; `None` for an unknown field.
pub fn field_pattern(field: &str) -> Option<String> {
    let pattern = match field {
        "job" | "step" => NAME_PATTERN,
        "run_id" => RUN_ID_PATTERN,
        "run_hash" => "[0-9a-f]{16}",
        "round" => "0|[1-9][0-9]{0,9}",
        "lane_state" => "[a-z0-9 :?-]{1,60}",
        "shard" => "0|[1-9][0-9]{0,3}",
        "command_id" => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "instance_id" => "i-[0-9a-f]{8,17}",
        "stream" => "stdout|stderr",
        "run_date" => "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "prefix" => "[A-Za-z0-9_-]{1,100}",
        "yyyymmdd" => "[0-9]{8}",
        // A step's, or one shard's (`naming::shard_log_prefix`: the step's, `/<shard>`).
        "log_prefix" => {
            return Some(format!(
                "{}(?:/(?:0|[1-9][0-9]{{0,3}}))?",
                regex(&step_log_prefix_template())
            ))
        }
        _ => return None,
    };
    Some(pattern.to_string())
}

fn step_log_prefix_template() -> String {
    naming::step_log_prefix("{job}", "{run_id}", "{step}")
}

/// Every format, by name: its template, as its maker writes it with `{field}` for each
/// argument.
pub fn templates() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "command_comment",
            "naming::command_comment",
            naming::command_comment_from("{step}", "{run_hash}", "{round}"),
        ),
        (
            "step_log_prefix",
            "naming::step_log_prefix",
            step_log_prefix_template(),
        ),
        (
            "shard_command_comment",
            "naming::shard_command_comment",
            naming::shard_command_comment_from("{step}", "{run_hash}", "{round}", "{shard}"),
        ),
        (
            "shard_log_prefix",
            "naming::shard_log_prefix",
            naming::shard_log_prefix("{job}", "{run_id}", "{step}", "{shard}"),
        ),
        (
            "ssm_output_key",
            "naming::ssm_output_key",
            naming::ssm_output_key("{log_prefix}", "{command_id}", "{instance_id}", "{stream}"),
        ),
        (
            "ssm_log_stream",
            "naming::ssm_log_stream",
            naming::ssm_log_stream("{command_id}", "{instance_id}", "{stream}"),
        ),
        (
            "staging_prefix",
            "naming::staging_prefix",
            naming::staging_prefix("{job}", "{run_id}"),
        ),
        (
            "staging_config_key",
            "naming::staging_config_key",
            naming::staging_config_key("{job}", "{run_id}"),
        ),
        (
            "run_lock_key",
            "naming::run_lock_key",
            naming::run_lock_key("{job}"),
        ),
        (
            "send_marker_key",
            "naming::send_marker_key",
            naming::send_marker_key("{job}", "{run_id}", "{step}", 1234567890)
                .replace("1234567890", "{round}"),
        ),
        (
            "checkpoint_run_prefix",
            "naming::checkpoint_run_prefix",
            naming::checkpoint_run_prefix("{job}", "{run_id}"),
        ),
        (
            "checkpoint_marker_key",
            "naming::checkpoint_marker_key",
            naming::checkpoint_marker_key("{job}", "{run_id}", "{step}"),
        ),
        (
            "health_log_prefix",
            "naming::health_log_prefix",
            naming::health_log_prefix("{step}", "{run_date}"),
        ),
        (
            "instance_name",
            "naming::instance_name",
            naming::instance_name("{prefix}", "{yyyymmdd}"),
        ),
        ("state_send", "asl::state::send", state::send("{step}")),
        (
            "state_lane",
            "asl::fanout::lane",
            crate::asl::lane("{step}", "{lane_state}"),
        ),
        ("state_poll", "asl::state::poll", state::poll("{step}")),
        (
            "state_failed",
            "asl::state::failed",
            state::failed("{step}"),
        ),
        (
            "state_in_mode",
            "asl::state::in_mode",
            state::in_mode("{step}"),
        ),
        (
            "state_resume_here",
            "asl::state::resume_here",
            state::resume_here("{step}"),
        ),
    ]
}

/// The pieces of a template: `Ok(field)` for each `{field}`, `Err(text)` for literal text.
fn pieces(template: &str) -> Vec<Result<&str, &str>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open
            + rest[open..]
                .find('}')
                .expect("every `{` of a template opens a field");
        if open > 0 {
            out.push(Err(&rest[..open]));
        }
        out.push(Ok(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Err(rest));
    }
    out
}

/// The regex of `template`: its literal text escaped, each `{field}` a named group
/// `(?P<field>...)` of [`field_pattern`]. It has no anchors: the whole string must match
/// (Python `re.fullmatch`). The syntax is the common subset of Python `re` and Rust `regex`.
pub fn regex(template: &str) -> String {
    pieces(template)
        .into_iter()
        .map(|piece| match piece {
            Ok(field) => {
                let pattern = field_pattern(field)
                    .unwrap_or_else(|| panic!("template `{template}`: no pattern for `{field}`"));
                format!("(?P<{field}>{pattern})")
            }
            Err(text) => text
                .chars()
                .map(|c| {
                    if "\\.+*?()|[]{}^$".contains(c) {
                        format!("\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        })
        .collect()
}

fn backoff(poll: &Backoff) -> Value {
    // Every delay up to the first at the cap; all later ones equal the cap.
    let mut delays = Vec::new();
    for k in 0.. {
        let delay = poll.delay(k);
        delays.push(delay);
        if delay >= poll.max_delay_seconds {
            break;
        }
    }
    json!({
        "interval_seconds": poll.interval_seconds,
        "backoff_rate": poll.backoff_rate,
        "max_delay_seconds": poll.max_delay_seconds,
        "delay": "min(floor(interval_seconds * backoff_rate ** k), max_delay_seconds) before retry k (0-based)",
        "delays_seconds": delays,
    })
}

fn timing(t: &Timing) -> Value {
    json!({
        "agent_interval_seconds": t.agent_interval_seconds,
        "agent_max_attempts": t.agent_max_attempts,
        "poll": backoff(&t.poll),
        "wait_slack_seconds": t.wait_slack_seconds,
        "relaunch_pause_seconds": t.relaunch_pause_seconds,
        "transient_interval_seconds": t.transient_interval_seconds,
        "transient_max_attempts": t.transient_max_attempts,
        "transient_backoff_rate": t.transient_backoff_rate,
    })
}

/// The whole contract:
///
/// - `functions`: `[{name, arn_placeholder, task_timeout_seconds}]`, in flow order;
/// - `states`: the fixed state names by key (`name_the_run`: `Name the run`, ...);
/// - `tags`: the instance tag keys by key (`run_id`: `spotstep:run-id`, ...);
/// - `formats`: by name, `{template, regex, fields, made_by}` (`fields`: each field's
///   pattern);
/// - `instance`: `workdir_template`, the `mktemp -d` template of each command's folder;
/// - `callback_resource`: the `Resource` of a step's waiting send state;
/// - `events`: the rules feeding poll-result (`rules`: `[{name, pattern}]`), their
///   `detail_types` by key, and the reconciler's schedule;
/// - `timing`: `production` and `local`, the intervals of the generated definitions, with
///   each poll schedule's delays as the generator counts them;
/// - `ledger`: the run ledger's `key` (`runs/{job}/{run_id}.json`) and `prefix` templates
///   (`str.format` fields; not in `formats`, whose scan would flag every `.json`);
/// - `prices`: the list prices of [`crate::cost`] with their date, the Lambda memory and
///   billed time assumed, the month's seconds and the spot product.
pub fn contract() -> Value {
    let functions: Vec<Value> = FUNCTIONS
        .iter()
        .map(|(name, placeholder, timeout)| {
            json!({"name": name, "arn_placeholder": placeholder, "task_timeout_seconds": timeout})
        })
        .collect();
    let states = json!({
        "apply_defaults": state::APPLY_DEFAULTS,
        "init": state::INIT,
        "name_the_run": state::NAME_THE_RUN,
        "launch": state::LAUNCH,
        "wait_for_agent": state::WAIT_FOR_AGENT,
        "resume": state::RESUME,
        "relaunch_clean_up": state::RELAUNCH_CLEAN_UP,
        "relaunch_pause": state::RELAUNCH_PAUSE,
        "finish": state::FINISH,
        "done": state::DONE,
    });
    let tags = json!({
        "job": naming::tags::JOB,
        "run_id": naming::tags::RUN_ID,
        "execution": naming::tags::EXECUTION,
        "attempt": naming::tags::ATTEMPT,
        "max_runtime": naming::tags::MAX_RUNTIME,
        "name": naming::tags::NAME,
        "lane": naming::tags::LANE,
    });
    let mut formats = Map::new();
    for (name, made_by, template) in templates() {
        let fields: Map<String, Value> = pieces(&template)
            .into_iter()
            .filter_map(Result::ok)
            .map(|f| (f.to_string(), json!(field_pattern(f))))
            .collect();
        formats.insert(
            name.to_string(),
            json!({"template": template, "regex": regex(&template), "fields": fields, "made_by": made_by}),
        );
    }
    json!({
        "version": VERSION,
        "functions": functions,
        "states": states,
        "tags": tags,
        "formats": formats,
        "instance": {"workdir_template": script::WORKDIR_TEMPLATE},
        "callback_resource": resource::WAIT_FOR_TOKEN,
        "events": {
            "rules": waiting::events::rules()
                .into_iter()
                .map(|(name, pattern)| json!({"name": name, "pattern": pattern}))
                .collect::<Vec<Value>>(),
            "reconcile_schedule": waiting::events::RECONCILE_SCHEDULE,
            "detail_types": {
                "command_invocation": waiting::events::COMMAND_INVOCATION,
                "spot_warning": waiting::events::SPOT_WARNING,
                "instance_state": waiting::events::INSTANCE_STATE,
                "scheduled": waiting::events::SCHEDULED,
            },
        },
        "timing": {"production": timing(&Timing::production()), "local": timing(&Timing::local())},
        "ledger": {
            "key": naming::ledger_key("{job}", "{run_id}"),
            "prefix": naming::ledger_prefix("{job}"),
        },
        "prices": {
            "list": crate::cost::LIST,
            "lambda_memory_mb": crate::cost::LAMBDA_MEMORY_MB,
            "lambda_billed_ms_assumed": crate::cost::LAMBDA_BILLED_MS_ASSUMED,
            "seconds_per_month": crate::cost::SECONDS_PER_MONTH,
            "spot_product": crate::cost::SPOT_PRODUCT,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use regex_lite::Regex;

    use super::*;

    /// The compiled regex of format `name`, anchored at both ends.
    fn compiled(name: &str) -> Regex {
        let c = contract();
        let re = c["formats"][name]["regex"].as_str().unwrap();
        Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    /// The named groups of format `name` matched against `text`, or `None`.
    fn parse(name: &str, text: &str) -> Option<BTreeMap<String, String>> {
        let re = compiled(name);
        let caps = re.captures(text)?;
        Some(
            re.capture_names()
                .flatten()
                .filter_map(|n| Some((n.to_string(), caps.name(n)?.as_str().to_string())))
                .collect(),
        )
    }

    fn fields(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const STEP: &str = "a234567890-234567890-234567890-234567890";
    const RUN_ID: &str =
        "R_34567890-234567890-234567890-234567890-234567890-234567890-234567890-234567890";
    const COMMAND: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const INSTANCE: &str = "i-0123456789abcdef0";

    #[test]
    fn the_longest_names_are_valid() {
        assert_eq!(STEP.len(), 40);
        assert_eq!(RUN_ID.len(), 80);
        assert!(naming::check_name(STEP).is_ok());
        assert!(naming::check_run_id(RUN_ID).is_ok());
    }

    #[test]
    fn the_command_comment_round_trips() {
        let comment = naming::command_comment(RUN_ID, STEP, 4_294_967_295);
        let hash = naming::run_hash(RUN_ID);
        assert_eq!(
            parse("command_comment", &comment),
            fields(&[("step", STEP), ("run_hash", &hash), ("round", "4294967295")])
        );
        assert_eq!(
            parse("command_comment", &naming::command_comment("r", "deps", 0)),
            fields(&[
                ("step", "deps"),
                ("run_hash", &naming::run_hash("r")),
                ("round", "0")
            ])
        );
        for near_miss in [
            format!("spotstep {STEP} run {hash} round 03"),
            format!("spotstep {STEP} run {hash} round -1"),
            format!("spotstep {STEP} run {} round 1", &hash[1..]),
            format!("spotstep {STEP}x run {hash} round 1"),
            format!("spotstep Deps run {hash} round 1"),
            format!("spotstep deps run {hash} round 1\n"),
            format!("spotstep deps run {hash}  round 1"),
            format!("spotstep deps run {} round 1", hash.to_uppercase()),
            format!("spotstep  run {hash} round 1"),
        ] {
            assert_eq!(parse("command_comment", &near_miss), None, "{near_miss:?}");
        }
    }

    #[test]
    fn keys_and_prefixes_round_trip() {
        let prefix = naming::step_log_prefix(STEP, RUN_ID, STEP);
        assert_eq!(
            parse("step_log_prefix", &prefix),
            fields(&[("job", STEP), ("run_id", RUN_ID), ("step", STEP)])
        );
        for stream in ["stdout", "stderr"] {
            assert_eq!(
                parse(
                    "ssm_output_key",
                    &naming::ssm_output_key(&prefix, COMMAND, INSTANCE, stream)
                ),
                fields(&[
                    ("log_prefix", &prefix),
                    ("job", STEP),
                    ("run_id", RUN_ID),
                    ("step", STEP),
                    ("command_id", COMMAND),
                    ("instance_id", INSTANCE),
                    ("stream", stream),
                ])
            );
        }
        assert!(parse(
            "ssm_output_key",
            &naming::ssm_stdout_key(&prefix, COMMAND, INSTANCE)
        )
        .is_some());
        assert_eq!(
            parse(
                "ssm_log_stream",
                &naming::ssm_log_stream(COMMAND, INSTANCE, "stdout")
            ),
            fields(&[
                ("command_id", COMMAND),
                ("instance_id", INSTANCE),
                ("stream", "stdout"),
            ])
        );
        assert_eq!(
            parse(
                "ssm_log_stream",
                &format!("{COMMAND}/{INSTANCE}/awsrunShellScript/stdout")
            ),
            None
        );
        assert_eq!(
            parse("staging_prefix", &naming::staging_prefix("demo", RUN_ID)),
            fields(&[("job", "demo"), ("run_id", RUN_ID)])
        );
        assert_eq!(
            parse(
                "staging_config_key",
                &naming::staging_config_key("demo", RUN_ID)
            ),
            fields(&[("job", "demo"), ("run_id", RUN_ID)])
        );
        assert_eq!(
            parse(
                "health_log_prefix",
                &naming::health_log_prefix(STEP, "2026-11-28")
            ),
            fields(&[("step", STEP), ("run_date", "2026-11-28")])
        );
        assert_eq!(
            parse(
                "instance_name",
                &naming::instance_name("alpha-engine-data-weekly", "2026-11-28")
            ),
            fields(&[
                ("prefix", "alpha-engine-data-weekly"),
                ("yyyymmdd", "20261128")
            ])
        );
        for (name, near_miss) in [
            ("step_log_prefix", format!("logs/demo/{RUN_ID}x/deps")),
            ("step_log_prefix", "logs/demo/r1/deps/".to_string()),
            ("step_log_prefix", "logs/demo/r.1/deps".to_string()),
            ("step_log_prefix", "log/demo/r1/deps".to_string()),
            ("step_log_prefix", "logs/demo/r1".to_string()),
            ("step_log_prefix", format!("logs/demo/r1/{STEP}x")),
            (
                "ssm_output_key",
                format!("logs/demo/r1/deps/{COMMAND}/{INSTANCE}/awsrunShellScript/0.awsrunShellScript/stdin"),
            ),
            (
                "ssm_output_key",
                format!("logs/demo/r1/deps/{COMMAND}/{INSTANCE}/awsrunShellScript/0xawsrunShellScript/stdout"),
            ),
            (
                "ssm_output_key",
                format!("logs/demo/r1/deps/{INSTANCE}/{COMMAND}/awsrunShellScript/0.awsrunShellScript/stdout"),
            ),
            ("staging_prefix", "tmp/demo/r1".to_string()),
            ("staging_prefix", "tmp/demo/../".to_string()),
            ("staging_config_key", "tmp/demo/r1/config.yml".to_string()),
            ("health_log_prefix", "health/deps_log/2026-11-28".to_string()),
            ("health_log_prefix", "health/deps_log/20261128/".to_string()),
            ("instance_name", "alpha-2026-11-28".to_string()),
        ] {
            assert_eq!(parse(name, &near_miss), None, "{name}: {near_miss:?}");
        }
    }

    #[test]
    fn state_names_round_trip() {
        type Maker = fn(&str) -> String;
        let makers: [(&str, Maker); 5] = [
            ("state_send", state::send),
            ("state_poll", state::poll),
            ("state_failed", state::failed),
            ("state_in_mode", state::in_mode),
            ("state_resume_here", state::resume_here),
        ];
        for (name, make) in makers {
            assert_eq!(
                parse(name, &make(STEP)),
                fields(&[("step", STEP)]),
                "{name}"
            );
            assert_eq!(parse(name, &format!("{}x", make("deps"))), None, "{name}");
            assert_eq!(parse(name, &make("Deps")), None, "{name}");
        }
        assert_eq!(parse("state_in_mode", "deps: in modeX"), None);
        assert_eq!(parse("state_poll", state::NAME_THE_RUN), None);
    }

    #[test]
    fn field_patterns_agree_with_the_name_checks() {
        let name = Regex::new(&format!("^(?:{NAME_PATTERN})$")).unwrap();
        let run_id = Regex::new(&format!("^(?:{RUN_ID_PATTERN})$")).unwrap();
        let samples = [
            "",
            "a",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            "0",
            STEP,
            RUN_ID,
            "ü",
            "a\n",
            &"a".repeat(41),
            &"a".repeat(81),
            "x/y",
            "20261128T090000Z-i-0abc",
        ];
        for s in samples {
            assert_eq!(
                name.is_match(s),
                naming::check_name(s).is_ok(),
                "name {s:?}"
            );
            assert_eq!(
                run_id.is_match(s),
                naming::check_run_id(s).is_ok(),
                "run id {s:?}"
            );
        }
    }

    #[test]
    fn every_template_field_has_a_pattern_and_every_regex_compiles() {
        let c = contract();
        for (name, _, template) in templates() {
            let spec = &c["formats"][name];
            assert_eq!(spec["template"], template.as_str());
            for (field, pattern) in spec["fields"].as_object().unwrap() {
                assert!(pattern.is_string(), "{name}: {field}");
                assert!(
                    template.contains(&format!("{{{field}}}")),
                    "{name}: {field}"
                );
            }
            compiled(name);
        }
        assert_eq!(field_pattern("nonsense"), None);
    }

    #[test]
    fn functions_are_the_workspace_crates_and_the_definitions_resources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut crates: Vec<String> = std::fs::read_dir(root.join("functions"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        crates.sort();
        let mut names: Vec<String> = FUNCTIONS.iter().map(|f| f.0.to_string()).collect();
        names.sort();
        assert_eq!(names, crates);
        for (name, _, _) in FUNCTIONS {
            let manifest =
                std::fs::read_to_string(root.join("functions").join(name).join("Cargo.toml"))
                    .unwrap();
            assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
        }
        let job = crate::manifest::Job::load(&root.join("jobs").join("demo")).unwrap();
        let definition = crate::asl::definition(&job, &Timing::production());
        let mut used: Vec<&str> = definition["States"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(crate::asl::function_of)
            .collect();
        used.sort();
        used.dedup();
        let mut placeholders: Vec<&str> = FUNCTIONS.iter().map(|f| f.1).collect();
        placeholders.sort();
        assert_eq!(used, placeholders);
        let c = contract();
        assert_eq!(c["functions"][3]["name"], "poll-result");
        assert_eq!(
            c["functions"][3]["arn_placeholder"],
            "${PollResultFunctionArn}"
        );
        assert_eq!(c["functions"][0]["task_timeout_seconds"], 120);
    }

    #[test]
    fn states_tags_and_instance() {
        let c = contract();
        assert_eq!(c["states"]["name_the_run"], "Name the run");
        assert_eq!(c["states"]["wait_for_agent"], "Wait for agent");
        assert_eq!(c["states"].as_object().unwrap().len(), 10);
        assert_eq!(c["tags"]["run_id"], "spotstep:run-id");
        assert_eq!(c["tags"].as_object().unwrap().len(), 7);
        assert_eq!(c["version"], VERSION);
        assert!(c["instance"]["workdir_template"]
            .as_str()
            .is_some_and(|t| t.ends_with("XXXXXX")));
    }

    #[test]
    fn poll_delays_are_the_generators() {
        let c = contract();
        let production = &c["timing"]["production"]["poll"];
        assert_eq!(
            production["delays_seconds"],
            json!([10, 15, 22, 33, 50, 75, 113, 120])
        );
        assert_eq!(production["max_delay_seconds"], 120);
        assert_eq!(production["backoff_rate"], 1.5);
        assert_eq!(
            c["timing"]["local"]["poll"]["delays_seconds"],
            json!([1, 1, 2])
        );
        assert_eq!(c["timing"]["local"]["agent_interval_seconds"], 1);
        assert_eq!(c["timing"]["production"]["agent_max_attempts"], 18);
    }
}
