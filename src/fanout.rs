//! Fan-out: one workload step run over many shards on many spot instances at once.
//!
//! A workload step with a `[steps.fan_out]` table runs its script once per item of a shard
//! list (a JSON array: a file in the job folder, or written at run time by an earlier step).
//! The state machine runs it as an Inline Map of *lanes*: each lane launches one instance,
//! runs the job's setup steps on it once, then takes the next unclaimed shard (an S3
//! conditional write), sends it as its own SSM command and records its outcome, until no
//! shard is left; then it ends its instance. After the Map one results index goes to S3.
//!
//! Here: the manifest's fan-out settings, the shard list's bounds, the records a sweep keeps
//! (claims in the run's staging, one record per shard and round and the results index under
//! the step's logs, which outlive a failed run so a redrive skips the shards that succeeded),
//! where each shard's command puts its output, and the script prefix that gives a shard its
//! `SPOTSTEP_SHARD`, `SPOTSTEP_SHARD_ITEM` and result file.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::naming;
use crate::records::Launch;
use crate::script::shell_quote;

/// The most shards one sweep runs (the execution history's 25,000 events bound it: see
/// [`EVENTS_PER_SHARD`]).
pub const MAX_SHARDS: usize = 1000;
/// The largest shard item, as compact JSON (it becomes `SPOTSTEP_SHARD_ITEM`).
pub const MAX_ITEM_BYTES: usize = 1024;
/// The largest shard list, as compact JSON: a static list travels in the definition, in
/// one state's parameters (Step Functions' payload limit is 256 KiB).
pub const MAX_LIST_BYTES: usize = 128 * 1024;
/// The largest result a shard may leave (its result file), in bytes.
pub const MAX_RESULT_BYTES: usize = 1024;
/// The most instances one sweep runs at once (an Inline Map runs at most 40 iterations at
/// once).
pub const MAX_INSTANCES: u32 = 40;
/// History events one shard costs: the lane's `next shard` Task (entered, scheduled,
/// started, succeeded, exited: 5), the shard's waiting send (entered, scheduled, started,
/// submitted, succeeded or failed, exited: 6) and the `shard left?` Choice (entered,
/// exited: 2).
pub const EVENTS_PER_SHARD: usize = 13;

/// The line a step's output ends with to carry a file out of the instance:
/// `spotstep-file <name> <base64 of the file>`.
pub const FILE_LINE: &str = "spotstep-file";
/// The name a shard's result file travels under.
pub const RESULT_FILE: &str = "result";

/// A fan-out step's settings, as the manifest writes them (`[steps.fan_out]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOut {
    /// The shard list's file: in the job folder, or (with `written_by`) the file that step
    /// writes in its work folder.
    pub shards: String,
    /// The earlier workload step that writes the list at run time (a dynamic list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    /// At most this many instances at once.
    pub instances: u32,
    /// How many shards may fail before the step fails (`ShardsFailed`).
    #[serde(default)]
    pub max_failed_shards: u32,
    /// A static list's items (read from the job folder and checked by the manifest); they
    /// travel only in the plan state's parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Value>,
}

impl FanOut {
    /// The settings without the static items: what the lanes carry.
    pub fn without_items(&self) -> FanOut {
        FanOut {
            items: Vec::new(),
            ..self.clone()
        }
    }
}

/// Checks a shard list's text: a JSON array of 1 to [`MAX_SHARDS`] items, each at most
/// [`MAX_ITEM_BYTES`] and all at most [`MAX_LIST_BYTES`] as compact JSON. The error says
/// what is wrong (the caller names the file).
pub fn check_list(text: &str) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(format!(
            "must be a JSON array of shard items, not {}",
            kind_of(&value)
        ));
    };
    if items.is_empty() {
        return Err("is an empty array: a sweep needs at least one shard".into());
    }
    if items.len() > MAX_SHARDS {
        return Err(format!(
            "has {} items; a sweep runs at most {MAX_SHARDS} shards",
            items.len()
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let size = compact(item).len();
        if size > MAX_ITEM_BYTES {
            return Err(format!(
                "item {i} is {size} bytes as compact JSON; a shard item may be at most {MAX_ITEM_BYTES} bytes"
            ));
        }
    }
    let size = compact(&Value::Array(items.clone())).len();
    if size > MAX_LIST_BYTES {
        return Err(format!(
            "is {size} bytes as compact JSON; a shard list may be at most {MAX_LIST_BYTES} bytes"
        ));
    }
    Ok(items)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as compact JSON.
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

/// One lane of a sweep: the fan-out step and the lane's number. Its [`Lane::id`] tags the
/// lane's instances (`spotstep:lane`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub step: String,
    pub index: u32,
}

impl Lane {
    /// `<step>.<index>`: the lane's tag value and the part of its setup markers' keys.
    pub fn id(&self) -> String {
        format!("{}.{}", self.step, self.index)
    }
}

/// A claimed shard: its index and item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub item: Value,
}

/// Where a command runs inside a sweep: a setup step on a lane's instance, or a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub lane: Lane,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// The send marker key of a step's command: the step's own, or within a sweep the lane's
/// (a setup step) or the shard's.
pub fn marker_key(job: &str, run_id: &str, step: &str, round: u32, slot: Option<&Slot>) -> String {
    match slot {
        None => naming::send_marker_key(job, run_id, step, round),
        Some(Slot {
            shard: Some(shard), ..
        }) => naming::shard_marker_key(job, run_id, step, shard.index, round),
        Some(Slot { lane, shard: None }) => {
            naming::lane_marker_key(job, run_id, step, &lane.id(), round)
        }
    }
}

/// The S3 prefix a command's output goes under: the step's, or a shard's own folder.
pub fn log_prefix(job: &str, run_id: &str, step: &str, slot: Option<&Slot>) -> String {
    match slot.and_then(|s| s.shard.as_ref()) {
        Some(shard) => naming::shard_log_prefix(job, run_id, step, shard.index),
        None => naming::step_log_prefix(job, run_id, step),
    }
}

/// The `Comment` of a command: a shard's names its shard (one lane sends many shards to one
/// instance, and a retried send finds its command by it).
pub fn comment(run_id: &str, step: &str, round: u32, slot: Option<&Slot>) -> String {
    match slot.and_then(|s| s.shard.as_ref()) {
        Some(shard) => naming::shard_command_comment(run_id, step, round, shard.index),
        None => naming::command_comment(run_id, step, round),
    }
}

/// The lines a shard's script starts with: its index, item and result file, and an exit
/// trap that carries the result file out in its output's last line ([`FILE_LINE`]).
pub fn shard_prelude(shard: &Shard) -> String {
    format!(
        "# spotstep shard {index}\nexport SPOTSTEP_SHARD={index}\nexport SPOTSTEP_SHARD_ITEM={item}\n\
         SPOTSTEP_SHARD_RESULT=\"$(mktemp /tmp/spotstep-result.XXXXXX)\"\nexport SPOTSTEP_SHARD_RESULT\n{}",
        carry_file_trap(RESULT_FILE, "$SPOTSTEP_SHARD_RESULT"),
        index = shard.index,
        item = shell_quote(&compact(&shard.item)),
    )
}

/// The lines a dynamic shard list's writer starts with: its file is removed first (a work
/// folder outlives a run) and carried out in its output's last line when the step exits.
pub fn writer_prelude(file: &str) -> String {
    format!(
        "# spotstep: carries {file} out to the fan-out that reads it\nrm -f {quoted}\n{}",
        carry_file_trap(file, file),
        quoted = shell_quote(file),
    )
}

/// An EXIT trap printing `spotstep-file <name> <base64>` for `path` when it is not empty,
/// keeping the step's exit code.
fn carry_file_trap(name: &str, path: &str) -> String {
    format!(
        "spotstep_carry() {{ rc=$?; if [ -s \"{path}\" ]; then printf '\\n{FILE_LINE} %s %s\\n' {name} \"$(base64 -w0 < \"{path}\")\"; fi; exit \"$rc\"; }}\ntrap spotstep_carry EXIT\n",
        name = shell_quote(name),
    )
}

/// The largest results index copied onto the instance of a later step.
pub const MAX_COPIED_INDEX_BYTES: usize = 64 * 1024;

/// The lines that put sweep `step`'s results index (`index`, kept at `uri`) in a later
/// step's work folder as `spotstep-results/<step>.json`; one too large to copy is only
/// named.
pub fn index_prelude(step: &str, index: &str, uri: &str) -> String {
    let file = shell_quote(&format!("spotstep-results/{step}.json"));
    if index.len() > MAX_COPIED_INDEX_BYTES {
        return format!(
            "echo {}
",
            shell_quote(&format!(
                "spotstep: the results index of `{step}` is {uri} ({} bytes, too large to copy here)",
                index.len()
            ))
        );
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(index);
    format!(
        "mkdir -p spotstep-results
echo '{encoded}' | base64 -d > {file}
"
    )
}

/// The last file named `name` a step's output carried out ([`FILE_LINE`]), decoded.
pub fn carried_file(output: &str, name: &str) -> Option<Result<String, String>> {
    let line = output.lines().rev().find_map(|l| {
        let rest = l.strip_prefix(FILE_LINE)?.strip_prefix(' ')?;
        let (n, data) = rest.split_once(' ')?;
        (n == name).then_some(data.trim())
    })?;
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| format!("its carried copy is not base64: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|e| format!("is not UTF-8: {e}"))),
    )
}

/// What happened to one shard in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub shard: u32,
    pub round: u32,
    /// `Succeeded`, or the error name (`StepFailed`, `States.Timeout`, ...).
    pub status: String,
    /// The shard's full output (`s3://…/stdout`), when it was sent.
    #[serde(default)]
    pub output: String,
    /// The shard's result (its result file, as JSON), if it left one.
    #[serde(default)]
    pub result: Option<Value>,
    /// Why it failed (the first line of the cause).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default)]
    pub command_id: String,
    #[serde(default)]
    pub instance_id: String,
}

/// The status of a succeeded shard.
pub const SUCCEEDED: &str = "Succeeded";
/// The status of a shard no lane finished.
pub const NOT_RUN: &str = "NotRun";

impl ShardRecord {
    pub fn succeeded(&self) -> bool {
        self.status == SUCCEEDED
    }
}

/// The sweep's state per shard: a success in any round stands (a rerun skips it); otherwise
/// the latest round's record, if any.
pub fn standing(count: usize, records: &[ShardRecord]) -> Vec<Option<&ShardRecord>> {
    let mut out: Vec<Option<&ShardRecord>> = vec![None; count];
    for r in records {
        let Some(slot) = out.get_mut(r.shard as usize) else {
            continue;
        };
        let better = match slot {
            None => true,
            Some(old) => !old.succeeded() && (r.succeeded() || r.round > old.round),
        };
        if better {
            *slot = Some(r);
        }
    }
    out
}

/// One shard in the results index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub shard: u32,
    pub status: String,
    pub output: String,
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// The results index of a sweep (`logs/<job>/<run>/<step>/results.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsIndex {
    pub step: String,
    pub shards: usize,
    pub succeeded: usize,
    pub failed: Vec<u32>,
    pub not_run: Vec<u32>,
    pub entries: Vec<IndexEntry>,
}

impl ResultsIndex {
    /// The index of a sweep of `count` shards from its records.
    pub fn of(step: &str, count: usize, records: &[ShardRecord]) -> ResultsIndex {
        let mut entries = Vec::with_capacity(count);
        let (mut failed, mut not_run) = (Vec::new(), Vec::new());
        for (i, record) in standing(count, records).into_iter().enumerate() {
            let shard = i as u32;
            let entry = match record {
                Some(r) => IndexEntry {
                    shard,
                    status: r.status.clone(),
                    output: r.output.clone(),
                    result: r.result.clone(),
                    error: r.error.clone(),
                },
                None => IndexEntry {
                    shard,
                    status: NOT_RUN.into(),
                    output: String::new(),
                    result: None,
                    error: String::new(),
                },
            };
            match entry.status.as_str() {
                SUCCEEDED => {}
                NOT_RUN => not_run.push(shard),
                _ => failed.push(shard),
            }
            entries.push(entry);
        }
        ResultsIndex {
            step: step.to_string(),
            shards: count,
            succeeded: count - failed.len() - not_run.len(),
            failed,
            not_run,
            entries,
        }
    }

    /// The shards that did not succeed, failed and not run.
    pub fn unsuccessful(&self) -> usize {
        self.failed.len() + self.not_run.len()
    }
}

/// How many lanes a sweep of `remaining` shards runs with at most `instances` at once.
pub fn lanes(instances: u32, remaining: usize) -> Vec<u32> {
    let n = (instances as usize).min(remaining);
    (0..n as u32).collect()
}

/// The instance lane 0 adopts instead of launching: the run's own (`run_instance`, which ran
/// the setup steps and the steps before the sweep), when it belongs to this redrive round.
/// A redriven run's instance of an earlier round was ended with the failed run, so lane 0
/// launches its own then. With it, a sweep without reclaims launches min(instances, shards)
/// instances in the whole run and holds at most `instances` at once.
pub fn adopted(run_instance: &Launch, redrive_count: u32) -> Option<Launch> {
    (!run_instance.instance_id.is_empty() && run_instance.round == redrive_count)
        .then(|| run_instance.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_good_list_passes_and_bad_ones_say_why() {
        assert_eq!(check_list(r#"[{"a":1}, 2, "x"]"#).unwrap().len(), 3);
        let cases = [
            (
                "{\"a\": 1}",
                "must be a JSON array of shard items, not an object",
            ),
            ("[1,", "is not JSON"),
            ("[]", "empty array"),
            ("\"x\"", "not a string"),
        ];
        for (text, expected) in cases {
            let e = check_list(text).unwrap_err();
            assert!(e.contains(expected), "{e} lacks {expected}");
        }
        let many = format!("[{}]", vec!["1"; MAX_SHARDS + 1].join(","));
        assert!(check_list(&many)
            .unwrap_err()
            .contains("at most 1000 shards"));
        let big = format!("[1, \"{}\"]", "x".repeat(MAX_ITEM_BYTES));
        assert!(check_list(&big)
            .unwrap_err()
            .starts_with("item 1 is 1026 bytes"));
        let long = format!(
            "[{}]",
            vec![format!("\"{}\"", "y".repeat(200)); 900].join(",")
        );
        assert!(check_list(&long)
            .unwrap_err()
            .contains("at most 131072 bytes"));
    }

    #[test]
    fn a_success_stands_over_later_failures_and_the_latest_round_counts_otherwise() {
        let rec = |shard, round, status: &str| ShardRecord {
            shard,
            round,
            status: status.into(),
            output: format!("s3://b/{shard}/{round}"),
            result: None,
            error: String::new(),
            command_id: String::new(),
            instance_id: String::new(),
        };
        let records = vec![
            rec(0, 0, SUCCEEDED),
            rec(1, 0, "StepFailed"),
            rec(1, 1, SUCCEEDED),
            rec(2, 1, "StepFailed"),
            rec(2, 0, "StepFailed"),
            rec(0, 1, "StepFailed"),
            rec(9, 0, SUCCEEDED),
        ];
        let index = ResultsIndex::of("sweep", 4, &records);
        assert_eq!(index.succeeded, 2);
        assert_eq!(index.failed, vec![2]);
        assert_eq!(index.not_run, vec![3]);
        assert_eq!(index.entries[0].output, "s3://b/0/0");
        assert_eq!(index.entries[2].output, "s3://b/2/1");
        assert_eq!(index.unsuccessful(), 2);
    }

    #[test]
    fn the_largest_sweep_fits_one_execution_history() {
        // A lane's own events (iteration, launch, agent wait with retries, setup sends, end)
        // and the rest of the run, generously: see the README's history budget.
        let per_lane = 40;
        let rest = 150;
        let events = MAX_SHARDS * EVENTS_PER_SHARD + MAX_INSTANCES as usize * per_lane + rest;
        assert!(events <= 15_000, "{events} events");
        assert!(events < 25_000 * 2 / 3, "room for retries and reclaims");
    }

    #[test]
    fn lanes_are_at_most_the_instances_and_the_shards_left() {
        assert_eq!(lanes(3, 12), vec![0, 1, 2]);
        assert_eq!(lanes(8, 2), vec![0, 1]);
        assert!(lanes(4, 0).is_empty());
    }

    #[test]
    fn lane_zero_adopts_the_run_instance_of_this_round_only() {
        let run_instance = Launch {
            attempt: 1,
            round: 1,
            round_attempts: 1,
            instance_id: "i-run".into(),
            ..Launch::default()
        };
        assert_eq!(adopted(&run_instance, 1), Some(run_instance.clone()));
        // Redriven past the instance's round: the failed run's cleanup ended it.
        assert_eq!(adopted(&run_instance, 2), None);
        // No instance recorded.
        assert_eq!(adopted(&Launch::default(), 0), None);
    }

    #[test]
    fn a_carried_file_round_trips_through_the_output() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("{\"sum\": 3}");
        let output = format!("line\n{FILE_LINE} result old\n{FILE_LINE} result {encoded}\n");
        assert_eq!(
            carried_file(&output, RESULT_FILE).unwrap().unwrap(),
            "{\"sum\": 3}"
        );
        assert!(carried_file("nothing", RESULT_FILE).is_none());
        assert!(carried_file(&format!("{FILE_LINE} result !!"), RESULT_FILE)
            .unwrap()
            .is_err());
        let prelude = shard_prelude(&Shard {
            index: 3,
            item: json!({"p": "it's"}),
        });
        assert!(prelude.contains("export SPOTSTEP_SHARD=3\n"));
        assert!(prelude.contains(r#"export SPOTSTEP_SHARD_ITEM='{"p":"it'\''s"}'"#));
        assert!(prelude.contains("trap spotstep_carry EXIT"));
    }

    #[test]
    fn shard_commands_have_their_own_marker_logs_and_comment() {
        let lane = Lane {
            step: "sweep".into(),
            index: 2,
        };
        let shard = Slot {
            lane: lane.clone(),
            shard: Some(Shard {
                index: 7,
                item: json!(1),
            }),
        };
        let setup = Slot { lane, shard: None };
        assert_eq!(
            marker_key("j", "r", "sweep", 1, Some(&shard)),
            "tmp/j/r/sent/sweep.shard-7.round-1"
        );
        assert_eq!(
            marker_key("j", "r", "prepare", 0, Some(&setup)),
            "tmp/j/r/sent/prepare.lane-sweep.2.round-0"
        );
        assert_eq!(
            marker_key("j", "r", "sweep", 0, None),
            "tmp/j/r/sent/sweep.round-0"
        );
        assert_eq!(
            log_prefix("j", "r", "sweep", Some(&shard)),
            "logs/j/r/sweep/7"
        );
        assert_eq!(
            log_prefix("j", "r", "prepare", Some(&setup)),
            "logs/j/r/prepare"
        );
        assert!(comment("r", "sweep", 1, Some(&shard)).ends_with("round 1 shard 7"));
        let longest = naming::shard_command_comment(
            &"r".repeat(80),
            &"s".repeat(40),
            u32::MAX,
            MAX_SHARDS as u32 - 1,
        );
        assert!(
            longest.len() <= 100,
            "{} characters: {longest}",
            longest.len()
        );
        assert_eq!(
            comment("r", "prepare", 0, Some(&setup)),
            naming::command_comment("r", "prepare", 0)
        );
    }
}
