//! The state machines of the real jobs (jobs/*): the committed definitions match the
//! manifests, every step has its states, the graph is whole, failures can be redriven, waits
//! outlast their steps, relaunches resume where they left off, and modes pick their steps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use spotstep::asl::{self, definition, render, shape, state, Timing, TRANSIENT_ERRORS};
use spotstep::manifest::{Job, StepKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every job under jobs/, by folder name.
fn jobs() -> Vec<(String, Job)> {
    let dirs = spotstep::manifest::job_dirs(&root().join("jobs")).unwrap();
    let jobs: Vec<(String, Job)> = dirs
        .iter()
        .map(|dir| {
            let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
            let job = Job::load(dir).unwrap_or_else(|e| panic!("{e}"));
            (folder, job)
        })
        .collect();
    let names: Vec<&str> = jobs.iter().map(|(f, _)| f.as_str()).collect();
    assert!(
        names.contains(&"demo") && names.contains(&"data-weekly"),
        "{names:?}"
    );
    jobs
}

/// The jobs whose steps each run once on the run's instance (no fan-out step): the shape
/// the tests below check state by state. A fan-out's states are checked in `src/asl/fanout.rs`
/// and run end to end in `tests/e2e/test_fanout.py`.
fn chain_jobs() -> Vec<(String, Job)> {
    jobs()
        .into_iter()
        .filter(|(_, job)| job.spec.fan_out_steps.is_empty())
        .collect()
}

fn production(job: &Job) -> Value {
    definition(job, &Timing::production())
}

fn states(def: &Value) -> &serde_json::Map<String, Value> {
    def["States"].as_object().expect("States is an object")
}

fn setup_steps(job: &Job) -> Vec<&str> {
    job.steps
        .iter()
        .filter(|s| s.kind == StepKind::Setup)
        .map(|s| s.name.as_str())
        .collect()
}

#[test]
fn committed_definitions_match_the_manifests() {
    let mut expected = BTreeSet::new();
    for (folder, job) in jobs() {
        assert_eq!(
            job.spec.name, folder,
            "jobs/{folder}: the job's name must be its folder's name"
        );
        let file = root()
            .join("statemachine")
            .join(format!("{folder}.asl.json"));
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == render(&job, &Timing::production()),
            "{} is not what jobs/{folder}/job.toml generates: run `cargo run --bin spotstep -- asl-all`",
            file.display()
        );
        let parsed: Value = serde_json::from_str(&committed).unwrap();
        assert_eq!(parsed, production(&job), "{}", file.display());
        expected.insert(file);
    }
    let present: BTreeSet<PathBuf> = std::fs::read_dir(root().join("statemachine"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    assert_eq!(
        present, expected,
        "statemachine/ holds a definition without a job: run `cargo run --bin spotstep -- asl-all`"
    );
}

#[test]
fn every_step_has_its_states() {
    for (_, job) in chain_jobs() {
        let def = production(&job);
        let states = states(&def);
        for step in &job.steps {
            let s = step.name.as_str();
            let send = &states[&state::send(s)];
            let poll = &states[&state::poll(s)];
            let failed = &states[&state::failed(s)];
            assert_eq!(send["Resource"], asl::resource::WAIT_FOR_TOKEN, "{s}");
            assert_eq!(asl::function_of(send), Some(asl::resource::SEND_STEP));
            assert_eq!(
                send["Parameters"]["Payload"]["step"],
                serde_json::to_value(step).unwrap(),
                "{s}"
            );
            assert_eq!(
                send["Parameters"]["Payload"]["task_token.$"], "$$.Task.Token",
                "{s}"
            );
            assert_eq!(send["Next"], poll["Next"], "{s}: the poll is a detour");
            let timeout_catch = send["Catch"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["ErrorEquals"] == json!(["States.Timeout"]))
                .unwrap_or_else(|| panic!("{s}: a timed-out wait falls back to the poll"));
            assert_eq!(timeout_catch["Next"], state::poll(s));
            assert_eq!(poll["Resource"], asl::resource::POLL_RESULT, "{s}");
            assert_eq!(
                poll["Parameters"]["step"],
                serde_json::to_value(step.without_script()).unwrap()
            );
            assert_eq!(failed["Resource"], asl::resource::CLEANUP, "{s}");
            assert_eq!(failed["Parameters"]["action"], "step-failed");
            assert_eq!(
                failed["Next"],
                state::send(s),
                "a redriven failure sends {s} again"
            );
            assert!(
                failed.get("Catch").is_none(),
                "{s}: the execution must fail at `{s}: failed`"
            );
            if step.kind == StepKind::Workload {
                assert!(states.contains_key(&state::in_mode(s)), "{s}");
                let resume = &states[&state::resume_here(s)];
                assert_eq!(resume["Type"], "Pass");
                assert_eq!(resume["Result"], s);
                assert_eq!(resume["ResultPath"], "$.resume_at");
            } else {
                assert!(!states.contains_key(&state::in_mode(s)), "{s}");
            }
        }
    }
}

#[test]
fn every_task_retries_transient_errors_first_and_has_a_timeout() {
    for (_, job) in jobs() {
        for timing in [Timing::production(), Timing::local()] {
            let def = definition(&job, &timing);
            for (name, s) in states(&def) {
                if s["Type"] != "Task" {
                    continue;
                }
                let resource = asl::function_of(s).unwrap();
                assert!(
                    resource.starts_with("${") && resource.ends_with("FunctionArn}"),
                    "{name}: {resource}"
                );
                assert_eq!(
                    s["Retry"][0],
                    json!({
                        "ErrorEquals": TRANSIENT_ERRORS,
                        "IntervalSeconds": timing.transient_interval_seconds,
                        "MaxAttempts": timing.transient_max_attempts,
                        "BackoffRate": timing.transient_backoff_rate,
                        "JitterStrategy": "FULL",
                    }),
                    "{name}"
                );
                let timeout = s["TimeoutSeconds"].as_u64().unwrap_or(0);
                if s["Resource"] == asl::resource::WAIT_FOR_TOKEN {
                    let step = job.step(name.strip_suffix(": send").unwrap()).unwrap();
                    assert_eq!(
                        timeout,
                        asl::wait_seconds(&job.spec, step, &timing),
                        "{name}"
                    );
                } else {
                    assert!(
                        (1..=120).contains(&timeout),
                        "{name}: TimeoutSeconds {timeout}"
                    );
                }
            }
        }
    }
}

#[test]
fn no_fail_state_and_no_catch_of_a_step_failure_except_into_its_cleanup() {
    for (_, job) in jobs() {
        let def = production(&job);
        for (name, s) in states(&def) {
            assert_ne!(
                s["Type"], "Fail",
                "{name}: a redrive re-enters a Fail state and fails again"
            );
            for catcher in s["Catch"].as_array().into_iter().flatten() {
                let errors = catcher["ErrorEquals"].as_array().unwrap();
                // The one catch-all: Finish, after the job succeeded (its cleanup failing
                // must not fail the run; the sweep finishes it).
                let finish_to_done = name == state::FINISH && catcher["Next"] == state::DONE;
                assert!(
                    !errors.contains(&json!("States.ALL")) || finish_to_done,
                    "{name}"
                );
                if errors.contains(&json!("StepFailed")) {
                    let step = name
                        .strip_suffix(": poll")
                        .or_else(|| name.strip_suffix(": send"))
                        .expect("only sends and polls catch StepFailed");
                    assert_eq!(catcher["Next"], state::failed(step));
                }
            }
        }
    }
}

#[test]
fn the_graph_is_whole() {
    for (_, job) in jobs() {
        let def = production(&job);
        let graph: BTreeMap<String, Vec<String>> = shape(&def)
            .into_iter()
            .map(|(n, _, next)| (n, next))
            .collect();
        let start = def["StartAt"].as_str().unwrap().to_string();
        assert!(graph.contains_key(&start));
        for (name, next) in &graph {
            for target in next {
                assert!(
                    graph.contains_key(target),
                    "{name} -> {target}: no such state"
                );
            }
        }
        let mut seen = BTreeSet::from([start.clone()]);
        let mut todo = vec![start];
        while let Some(name) = todo.pop() {
            for target in &graph[&name] {
                if seen.insert(target.clone()) {
                    todo.push(target.clone());
                }
            }
        }
        let unreachable: Vec<&String> = graph.keys().filter(|n| !seen.contains(*n)).collect();
        assert!(
            unreachable.is_empty(),
            "{}: unreachable {unreachable:?}",
            job.spec.name
        );
        let ends: Vec<&String> = graph
            .iter()
            .filter(|(_, next)| next.is_empty())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(ends, [state::DONE], "the only end is the Succeed state");
    }
}

/// The seconds the first `attempts` retries of a retrier wait, from its own fields (delays
/// rounded down, as `asl::Backoff` does).
fn retry_coverage(retrier: &Value, attempts: u64) -> u64 {
    let interval = retrier["IntervalSeconds"].as_f64().unwrap();
    let rate = retrier["BackoffRate"].as_f64().unwrap();
    let cap = retrier["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
    (0..attempts)
        .map(|k| (interval * rate.powi(k as i32)).floor().min(cap) as u64)
        .sum()
}

fn still_running_retrier(poll: &Value) -> &Value {
    poll["Retry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ErrorEquals"] == json!(["StillRunning"]))
        .expect("a poll retries StillRunning")
}

#[test]
fn waits_outlast_their_steps_and_a_timed_out_wait_polls_briefly() {
    for (_, job) in chain_jobs() {
        for timing in [Timing::production(), Timing::local()] {
            let def = definition(&job, &timing);
            for step in &job.steps {
                let send = &states(&def)[&state::send(&step.name)];
                let needed = step.timeout_seconds + job.spec.delivery_timeout_seconds;
                let waits = send["TimeoutSeconds"].as_u64().unwrap();
                assert!(waits >= needed, "{}: waits {waits}s < {needed}s", step.name);
                assert!(waits <= needed + timing.wait_slack_seconds, "{}", step.name);
                let retrier = still_running_retrier(&states(&def)[&state::poll(&step.name)]);
                let attempts = retrier["MaxAttempts"].as_u64().unwrap();
                assert!(retry_coverage(retrier, attempts) >= asl::FALLBACK_POLL_SECONDS);
            }
        }
    }
}

#[test]
fn a_ninety_minute_step_makes_no_transition_while_it_waits() {
    for (_, job) in chain_jobs() {
        let def = production(&job);
        for step in &job.steps {
            let send = &states(&def)[&state::send(&step.name)];
            assert_eq!(send["Resource"], asl::resource::WAIT_FOR_TOKEN);
            assert!(
                send["Retry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["ErrorEquals"] != json!(["StillRunning"])),
                "{}: a waiting send never polls",
                step.name
            );
            let poll = &states(&def)[&state::poll(&step.name)];
            let transitions = still_running_retrier(poll)["MaxAttempts"].as_u64().unwrap();
            assert!(
                transitions <= 10,
                "{}: the fallback poll is short",
                step.name
            );
        }
    }
}

#[test]
fn production_and_local_have_the_same_shape() {
    for (_, job) in jobs() {
        assert_eq!(
            shape(&production(&job)),
            shape(&definition(&job, &Timing::local()))
        );
    }
}

/// What the walk knows of the state data: the only fields Choices read.
#[derive(Debug, Clone)]
struct Data {
    mode: String,
    resume_at: String,
}

fn test_holds(rule: &Value, data: &Data) -> bool {
    if let Some(any) = rule["Or"].as_array() {
        return any.iter().any(|r| test_holds(r, data));
    }
    let value = match rule["Variable"].as_str() {
        Some("$.run.mode") => &data.mode,
        Some("$.resume_at") => &data.resume_at,
        other => panic!("unexpected Choice variable {other:?}"),
    };
    rule["StringEquals"].as_str().expect("StringEquals") == value
}

/// Follows the success path from `from` (every Task succeeds) until `until` or the end;
/// returns the states visited, `from` first.
fn walk(def: &Value, from: &str, data: &mut Data, until: &str) -> Vec<String> {
    let states = states(def);
    let mut path = vec![];
    let mut at = from.to_string();
    for _ in 0..1000 {
        path.push(at.clone());
        let s = &states[&at];
        if at == until || s["Type"] == "Succeed" {
            return path;
        }
        if s["Type"] == "Pass" {
            if s["ResultPath"] == "$.resume_at" {
                data.resume_at = s["Result"].as_str().unwrap().to_string();
            }
            if let Some(resume_at) = s["Parameters"]["resume_at"].as_str() {
                data.resume_at = resume_at.to_string();
            }
        }
        let next = if s["Type"] == "Choice" {
            s["Choices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|rule| test_holds(rule, data))
                .map_or(&s["Default"], |rule| &rule["Next"])
        } else {
            &s["Next"]
        };
        at = next
            .as_str()
            .unwrap_or_else(|| panic!("{at} has no next state"))
            .to_string();
    }
    panic!("the walk from {from} does not end: {path:?}");
}

fn sends(path: &[String]) -> Vec<&str> {
    path.iter()
        .filter_map(|s| s.strip_suffix(": send"))
        .collect()
}

#[test]
fn each_mode_runs_exactly_its_steps_in_order() {
    for (_, job) in chain_jobs() {
        let def = production(&job);
        for (mode, spec) in &job.spec.modes {
            let mut data = Data {
                mode: mode.clone(),
                resume_at: "stale".into(),
            };
            let path = walk(&def, state::APPLY_DEFAULTS, &mut data, state::DONE);
            let mut expected: Vec<&str> = setup_steps(&job);
            expected.extend(spec.steps.iter().map(String::as_str));
            assert_eq!(sends(&path), expected, "mode {mode}");
            assert!(path.iter().any(|s| s == state::FINISH), "mode {mode}");
            assert!(
                !path.iter().any(|s| s.ends_with(": poll")),
                "mode {mode}: a step that ends by its token never polls: {path:?}"
            );
        }
    }
}

#[test]
fn a_lost_workload_step_relaunches_and_resumes_at_itself() {
    for (_, job) in chain_jobs() {
        let def = production(&job);
        let states = states(&def);
        for step in job.spec.workload_steps.iter() {
            let resume_here = state::resume_here(step);
            for lost_at in [state::send(step), state::poll(step)] {
                let catcher = states[&lost_at]["Catch"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["ErrorEquals"] == json!(["InstanceLost", "InstanceReclaimed"]))
                    .unwrap_or_else(|| panic!("{lost_at} catches a lost instance"));
                assert_eq!(catcher["Next"], resume_here.as_str());
                assert_eq!(catcher["ResultPath"], "$.lost");
            }
            let mode = job
                .spec
                .modes
                .iter()
                .find(|(_, m)| m.steps.contains(step))
                .unwrap()
                .0;
            let mut data = Data {
                mode: mode.clone(),
                resume_at: String::new(),
            };
            let path = walk(&def, &resume_here, &mut data, &state::send(step));
            assert_eq!(data.resume_at, *step);
            let mut expected = vec![
                resume_here.clone(),
                state::RELAUNCH_CLEAN_UP.into(),
                state::RELAUNCH_PAUSE.into(),
                state::LAUNCH.into(),
                state::WAIT_FOR_AGENT.into(),
            ];
            for setup in setup_steps(&job) {
                expected.push(state::send(setup));
            }
            expected.extend([state::RESUME.into(), state::send(step)]);
            assert_eq!(path, expected, "relaunch from {step}");
        }
    }
}

#[test]
fn a_lost_setup_step_or_agent_relaunches_from_the_start() {
    for (_, job) in jobs() {
        let def = production(&job);
        let states = states(&def);
        let mut lost_at: Vec<String> = vec![state::WAIT_FOR_AGENT.into()];
        for setup in setup_steps(&job) {
            lost_at.extend([state::send(setup), state::poll(setup)]);
        }
        for name in lost_at {
            let targets: Vec<&Value> = states[&name]["Catch"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| &c["Next"])
                .collect();
            assert!(
                targets.contains(&&json!(state::RELAUNCH_CLEAN_UP)),
                "{name}"
            );
        }
        assert_eq!(states[state::RELAUNCH_PAUSE]["Next"], state::LAUNCH);
        assert_eq!(
            states[state::RELAUNCH_PAUSE]["Seconds"],
            Timing::production().relaunch_pause_seconds
        );
        assert!(
            states[state::LAUNCH].get("Catch").is_none(),
            "launch errors end the execution at Launch"
        );
    }
}

#[test]
fn the_execution_has_a_time_limit_covering_every_launch() {
    for (_, job) in jobs() {
        let def = production(&job);
        let limit = def["TimeoutSeconds"].as_u64().unwrap();
        assert_eq!(
            limit,
            job.spec.max_runtime_seconds * u64::from(job.spec.max_attempts)
                + asl::CAPACITY_WAIT_SECONDS
                + 1800
        );
        assert!(def["Comment"]
            .as_str()
            .unwrap()
            .contains("spotstep asl-all"));
    }
}

/// Resolves a Task's `Parameters` against a state of the run the way Step Functions does for
/// the paths the definitions use (`$.field`, `$$.Execution.RedriveCount`).
fn resolve(parameters: &Value, data: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (key, value) in parameters.as_object().unwrap() {
        match key.strip_suffix(".$") {
            Some(field) => {
                let path = value.as_str().unwrap();
                let resolved = match path {
                    "$$.Execution.RedriveCount" => json!(1),
                    "$$.Task.Token" => json!("token"),
                    _ => data[path
                        .strip_prefix("$.")
                        .unwrap_or_else(|| panic!("path {path}"))]
                    .clone(),
                };
                out.insert(field.to_string(), resolved);
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[test]
fn every_task_input_is_what_its_handler_reads() {
    use spotstep::handlers::{cleanup, launch, poll_result, send_step, wait_online};
    let event = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root().join("events").join(name)).unwrap())
            .unwrap()
    };
    for (_, job) in chain_jobs() {
        let def = production(&job);
        let mut data = json!({
            "run": event("launch.json")["run"],
            "job": serde_json::to_value(&job.spec).unwrap(),
            "launch": event("wait-online.json")["instance"],
            "failure": event("cleanup-step-failed.json")["failure"],
            "resume_at": "",
        });
        data["run"]["job"] = json!(job.spec.name);
        data["run"]["mode"] = json!(job.default_mode);
        for (name, s) in states(&def) {
            if s["Type"] != "Task" {
                continue;
            }
            let parameters = if s["Resource"] == asl::resource::WAIT_FOR_TOKEN {
                &s["Parameters"]["Payload"]
            } else {
                &s["Parameters"]
            };
            let input = resolve(parameters, &data);
            let parsed = match asl::function_of(s).unwrap() {
                asl::resource::LAUNCH => serde_json::from_value::<launch::Input>(input).map(|_| ()),
                asl::resource::WAIT_ONLINE => {
                    serde_json::from_value::<wait_online::Input>(input).map(|_| ())
                }
                asl::resource::SEND_STEP => {
                    serde_json::from_value::<send_step::Input>(input).map(|_| ())
                }
                asl::resource::POLL_RESULT => {
                    serde_json::from_value::<poll_result::Input>(input).map(|_| ())
                }
                asl::resource::CLEANUP => {
                    cleanup::request(input).unwrap_or_else(|e| panic!("{name}: {e}"));
                    Ok(())
                }
                other => panic!("{name}: unknown resource {other}"),
            };
            parsed.unwrap_or_else(|e| panic!("{}: {name}: {e}", job.spec.name));
        }
    }
}

#[test]
fn the_cli_prints_the_definition() {
    let binary = Path::new(env!("CARGO_BIN_EXE_spotstep"));
    let out = std::process::Command::new(binary)
        .args(["asl", "jobs/demo", "--local"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = Job::load(&root().join("jobs/demo")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        render(&demo, &Timing::local())
    );
    let bad = std::process::Command::new(binary)
        .args(["asl"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage"));
}
