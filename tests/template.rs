//! The deployment files against the code: template.yaml (IAM without wildcard actions, the
//! functions' build and runtime, state machines whose substitutions cover their definitions,
//! the schedules and the failure rule), env.json, and the events/ files against the handlers'
//! input types.
//!
//! template.yaml is read through Python's PyYAML (on every machine of this project; no YAML
//! crate is a dependency), with the CloudFormation short tags (`!Ref`, `!Sub`, `!GetAtt`...)
//! turned into their long JSON form.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use spotstep::asl::{self, Timing};
use spotstep::handlers::{cleanup, launch, poll_result, send_step, wait_online};
use spotstep::manifest::Job;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const YAML_TO_JSON: &str = r#"
import json, sys, yaml

class Loader(yaml.SafeLoader):
    pass

def short_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}

Loader.add_multi_constructor("!", short_tag)
with open(sys.argv[1]) as f:
    json.dump(yaml.load(f, Loader=Loader), sys.stdout)
"#;

/// template.yaml as JSON.
fn template() -> Value {
    let venv_python = root().join(".local/venv/bin/python");
    let python = if venv_python.exists() {
        venv_python
    } else {
        PathBuf::from("python3")
    };
    let out = Command::new(&python)
        .args(["-c", YAML_TO_JSON])
        .arg(root().join("template.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (python3 with PyYAML reads template.yaml)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "reading template.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"].as_object().unwrap()
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

fn jobs() -> Vec<Job> {
    spotstep::manifest::job_dirs(&root().join("jobs"))
        .unwrap()
        .iter()
        .map(|d| Job::load(d).unwrap())
        .collect()
}

/// The five functions: logical id, binary, timeout.
const FUNCTIONS: [(&str, &str, u64); 5] = [
    ("LaunchFunction", "launch", 120),
    ("WaitOnlineFunction", "wait-online", 30),
    ("SendStepFunction", "send-step", 30),
    ("PollResultFunction", "poll-result", 60),
    ("CleanupFunction", "cleanup", 300),
];

/// Every IAM statement anywhere in the template.
fn statements(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if let Some(list) = map.get("Statement") {
                match list {
                    Value::Array(items) => out.extend(items.iter().cloned()),
                    single => out.push(single.clone()),
                }
            }
            map.values().for_each(|v| statements(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| statements(v, out)),
        _ => {}
    }
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

#[test]
fn no_iam_statement_allows_a_wildcard_action() {
    let mut found = Vec::new();
    statements(&template(), &mut found);
    assert!(found.len() > 20, "only {} statements found", found.len());
    for statement in &found {
        assert!(statement.get("NotAction").is_none(), "{statement}");
        let actions = strings(&statement["Action"]);
        assert!(!actions.is_empty(), "{statement}");
        for action in actions {
            assert!(
                !action.contains('*'),
                "wildcard action `{action}` in {statement}"
            );
            assert!(action
                .split_once(':')
                .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty()));
        }
    }
}

#[test]
fn every_function_is_a_rust_arm64_bootstrap_built_by_cargo_lambda() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
    assert_eq!(globals["Handler"], "bootstrap");
    let functions = of_type(&template, "AWS::Serverless::Function");
    let ids: BTreeSet<&str> = functions.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, FUNCTIONS.iter().map(|f| f.0).collect());
    for (id, binary, timeout) in FUNCTIONS {
        let function = &resources(&template)[id];
        let properties = &function["Properties"];
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{id}"
        );
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"], binary,
            "{id}"
        );
        assert_eq!(properties["CodeUri"], format!("functions/{binary}"), "{id}");
        let manifest =
            std::fs::read_to_string(root().join(format!("functions/{binary}/Cargo.toml"))).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: functions/{binary}/Cargo.toml"
        );
        assert_eq!(properties["Timeout"], timeout, "{id}");
        for overridden in ["Runtime", "Architectures", "Handler"] {
            assert!(
                properties.get(overridden).is_none(),
                "{id} overrides Globals {overridden}"
            );
        }
    }
}

#[test]
fn functions_get_every_setting_the_code_reads() {
    let template = template();
    let variables: BTreeSet<String> = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let settings = [
        "SPOTSTEP_BUCKET",
        "SPOTSTEP_SUBNETS",
        "SPOTSTEP_SECURITY_GROUP",
        "SPOTSTEP_INSTANCE_PROFILE",
        "SPOTSTEP_IMAGE_ID",
        "SPOTSTEP_LOG_GROUP",
    ];
    assert_eq!(
        variables,
        settings
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    );
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("env.json")).unwrap()).unwrap();
    for (id, _, _) in FUNCTIONS {
        for setting in settings {
            assert!(
                env[id][setting].is_string(),
                "env.json {id} lacks {setting}"
            );
        }
        assert_eq!(env[id]["AWS_ENDPOINT_URL"], "http://127.0.0.1:5000");
    }
}

/// The `${...}` tokens of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

/// The `${...}` tokens of every string in a JSON value.
fn tokens_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => out.extend(placeholders(s)),
        Value::Array(items) => items.iter().for_each(|v| tokens_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| tokens_in(v, out)),
        _ => {}
    }
}

#[test]
fn one_state_machine_per_job_with_substitutions_covering_its_definition() {
    let template = template();
    let machines = of_type(&template, "AWS::Serverless::StateMachine");
    let jobs = jobs();
    assert_eq!(machines.len(), jobs.len());
    let function_of = |placeholder: &str| placeholder.strip_suffix("Arn").map(String::from);
    for job in &jobs {
        let (id, machine) = machines
            .iter()
            .find(|(_, m)| {
                m["Properties"]["DefinitionUri"]
                    == format!("statemachine/{}.asl.json", job.spec.name)
            })
            .unwrap_or_else(|| panic!("no state machine for job {}", job.spec.name));
        let properties = &machine["Properties"];
        assert_eq!(properties["Type"], "STANDARD", "{id}");
        assert_eq!(
            properties["Name"],
            json!({"Fn::Sub": format!("${{AWS::StackName}}-{}", job.spec.name)})
        );
        assert_eq!(properties["Logging"]["Level"], "ERROR", "{id}");
        assert_eq!(properties["Logging"]["IncludeExecutionData"], true, "{id}");
        assert_eq!(properties["Tracing"]["Enabled"], true, "{id}");
        // CloudFormation replaces `${Key}` for the keys of DefinitionSubstitutions only and
        // leaves any other `${...}` as it is: the step scripts' own `${VAR}` stay intact as
        // long as no key shares their name.
        let text =
            std::fs::read_to_string(root().join(properties["DefinitionUri"].as_str().unwrap()))
                .unwrap();
        let definition: Value = serde_json::from_str(&text).unwrap();
        let resources: BTreeSet<String> = definition["States"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|s| s["Resource"].as_str())
            .flat_map(placeholders)
            .collect();
        let substitutions = properties["DefinitionSubstitutions"].as_object().unwrap();
        let given: BTreeSet<String> = substitutions.keys().cloned().collect();
        assert_eq!(
            resources, given,
            "{id}: placeholders of the Task resources vs DefinitionSubstitutions"
        );
        let scripts: BTreeSet<String> = job
            .steps
            .iter()
            .flat_map(|s| placeholders(&s.script))
            .collect();
        assert!(
            scripts.is_disjoint(&given),
            "{id}: a step script uses a substitution name"
        );
        let mut everywhere = BTreeSet::new();
        tokens_in(&definition, &mut everywhere);
        assert_eq!(
            everywhere,
            &resources | &scripts,
            "{id}: unexpected `${{...}}` in the definition"
        );
        for (placeholder, value) in substitutions {
            let function = function_of(placeholder).unwrap();
            assert_eq!(
                value,
                &json!({"Fn::GetAtt": [function, "Arn"]}),
                "{id}: {placeholder}"
            );
        }
        let invokable: Vec<&Value> = properties["Policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.get("LambdaInvokePolicy"))
            .map(|p| &p["FunctionName"]["Ref"])
            .collect();
        for (function, _, _) in FUNCTIONS {
            assert!(
                invokable.contains(&&json!(function)),
                "{id} may not invoke {function}"
            );
        }
    }
}

#[test]
fn task_timeouts_fit_in_the_function_timeouts() {
    let template = template();
    let timeout_of: BTreeMap<String, u64> = FUNCTIONS
        .iter()
        .map(|(id, _, _)| {
            (
                format!("${{{id}Arn}}"),
                resources(&template)[*id]["Properties"]["Timeout"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    for job in jobs() {
        let def = asl::definition(&job, &Timing::production());
        for (name, state) in def["States"].as_object().unwrap() {
            if state["Type"] == "Task" {
                let function_timeout = timeout_of[state["Resource"].as_str().unwrap()];
                let task_timeout = state["TimeoutSeconds"].as_u64().unwrap();
                assert!(
                    task_timeout <= function_timeout,
                    "{name}: {task_timeout}s > {function_timeout}s"
                );
            }
        }
    }
}

#[test]
fn the_weekly_job_starts_saturdays_at_nine_utc_in_full_mode() {
    let template = template();
    let schedules = of_type(&template, "AWS::Scheduler::Schedule");
    let (_, weekly) = schedules
        .iter()
        .find(|(_, s)| s["Properties"]["Target"]["Arn"] == json!({"Ref": "DataWeeklyStateMachine"}))
        .expect("a schedule starts the data-weekly state machine");
    let properties = &weekly["Properties"];
    assert_eq!(properties["ScheduleExpression"], "cron(0 9 ? * SAT *)");
    assert_eq!(properties["ScheduleExpressionTimezone"], "UTC");
    assert_eq!(properties["FlexibleTimeWindow"]["Mode"], "OFF");
    let input: Value =
        serde_json::from_str(properties["Target"]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(input, json!({"mode": "full"}));
    let weekly_job = jobs()
        .into_iter()
        .find(|j| j.spec.name == "data-weekly")
        .unwrap();
    assert!(weekly_job.spec.modes.contains_key("full"));

    let (_, sweep) = schedules
        .iter()
        .find(|(_, s)| {
            s["Properties"]["Target"]["Arn"] == json!({"Fn::GetAtt": ["CleanupFunction", "Arn"]})
        })
        .expect("a schedule invokes the sweep");
    assert_eq!(sweep["Properties"]["ScheduleExpression"], "rate(1 hour)");
    let input: Value =
        serde_json::from_str(sweep["Properties"]["Target"]["Input"].as_str().unwrap()).unwrap();
    assert!(matches!(
        cleanup::request(input).unwrap(),
        cleanup::Request::Sweep
    ));
}

#[test]
fn ended_executions_are_cleaned_up_and_notified() {
    let template = template();
    let rules = of_type(&template, "AWS::Events::Rule");
    assert_eq!(rules.len(), 1);
    let properties = &rules[0].1["Properties"];
    let pattern = &properties["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.states"]));
    assert_eq!(
        pattern["detail-type"],
        json!(["Step Functions Execution Status Change"])
    );
    assert_eq!(
        pattern["detail"]["status"],
        json!(["FAILED", "TIMED_OUT", "ABORTED"])
    );
    let watched = pattern["detail"]["stateMachineArn"].as_array().unwrap();
    for (id, _) in of_type(&template, "AWS::Serverless::StateMachine") {
        assert!(
            watched.contains(&json!({"Ref": id})),
            "the rule does not watch {id}"
        );
    }
    let targets = properties["Targets"].as_array().unwrap();
    assert!(targets.iter().any(
        |t| t["Arn"] == json!({"Fn::GetAtt": ["CleanupFunction", "Arn"]})
            && t.get("InputTransformer").is_none()
    ));
    let notify = targets
        .iter()
        .find(|t| t["Arn"] == json!({"Ref": "SpotstepNotifications"}))
        .unwrap();
    let message = notify["InputTransformer"]["InputTemplate"]["Fn::Sub"]
        .as_str()
        .unwrap();
    for needed in [
        "<name>",
        "<machine>",
        "<status>",
        "<execution>",
        "Redrive",
        "failed step",
    ] {
        assert!(message.contains(needed), "the notification lacks {needed}");
    }
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/cleanup-status-change.json")).unwrap(),
    )
    .unwrap();
    for (_, path) in notify["InputTransformer"]["InputPathsMap"]
        .as_object()
        .unwrap()
    {
        let field = path.as_str().unwrap().strip_prefix("$.detail.").unwrap();
        assert!(
            event["detail"][field].is_string(),
            "a status change event has no detail.{field}"
        );
    }
}

#[test]
fn the_launch_may_read_every_jobs_config_source() {
    let template = template();
    let defaults = |name: &str| -> Vec<String> {
        template["Parameters"][name]["Default"]
            .as_str()
            .unwrap()
            .split(',')
            .map(String::from)
            .collect()
    };
    let objects = defaults("ConfigSourceArns");
    let buckets = defaults("ConfigBucketArns");
    for job in jobs() {
        let (bucket, key) = spotstep::naming::parse_s3_uri(&job.spec.config_source).unwrap();
        assert!(
            objects.contains(&format!("arn:aws:s3:::{bucket}/{key}")),
            "{}",
            job.spec.name
        );
        assert!(
            buckets.contains(&format!("arn:aws:s3:::{bucket}")),
            "{}",
            job.spec.name
        );
    }
}

fn event(name: &str) -> Value {
    let path = root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_event_is_what_its_handler_reads() {
    let names: BTreeSet<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected = [
        "cleanup-end-of-run.json",
        "cleanup-relaunch.json",
        "cleanup-status-change.json",
        "cleanup-step-failed.json",
        "cleanup-sweep.json",
        "launch.json",
        "poll-result.json",
        "send-step.json",
        "wait-online.json",
    ];
    assert_eq!(names, expected.iter().map(|s| s.to_string()).collect());

    let demo = Job::load(&root().join("jobs/demo")).unwrap();
    let job_json = serde_json::to_value(&demo.spec).unwrap();

    let launch: launch::Input = serde_json::from_value(event("launch.json")).unwrap();
    launch.run.validate(&demo.spec).unwrap();
    assert_eq!(launch.job, demo.spec);

    let wait: wait_online::Input = serde_json::from_value(event("wait-online.json")).unwrap();
    assert!(!wait.instance.instance_id.is_empty());

    let send: send_step::Input = serde_json::from_value(event("send-step.json")).unwrap();
    assert_eq!(
        &send.step,
        demo.step(&send.step.name).unwrap(),
        "send-step.json carries a demo step with its script"
    );
    assert_eq!(event("send-step.json")["job"], job_json);

    let poll: poll_result::Input = serde_json::from_value(event("poll-result.json")).unwrap();
    assert_eq!(
        poll.step,
        demo.step(&poll.step.name).unwrap().without_script()
    );
    assert_eq!(poll.command.step, poll.step.name);
    assert_eq!(poll.command.instance_id, poll.instance.instance_id);

    match cleanup::request(event("cleanup-end-of-run.json")).unwrap() {
        cleanup::Request::EndOfRun { run } => run.validate(&demo.spec).unwrap(),
        other => panic!("{other:?}"),
    }
    match cleanup::request(event("cleanup-relaunch.json")).unwrap() {
        cleanup::Request::Relaunch { instance, .. } => assert!(!instance.instance_id.is_empty()),
        other => panic!("{other:?}"),
    }
    match cleanup::request(event("cleanup-step-failed.json")).unwrap() {
        cleanup::Request::StepFailed {
            step,
            command,
            failure,
            job,
            ..
        } => {
            assert_eq!(serde_json::to_value(&job).unwrap(), job_json);
            assert_eq!(command.step, step.name);
            assert_eq!(failure.error, "StepFailed");
            assert!(cleanup::cause_message(&failure)
                .starts_with(&format!("step `{}` failed", step.name)));
        }
        other => panic!("{other:?}"),
    }
    match cleanup::request(event("cleanup-status-change.json")).unwrap() {
        cleanup::Request::ExecutionEnded { execution, status } => {
            assert_eq!(status, "FAILED");
            assert_eq!(execution, launch.run.execution);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cleanup::request(event("cleanup-sweep.json")).unwrap(),
        cleanup::Request::Sweep
    ));
}

#[test]
fn the_staging_lifecycle_rule_is_documented() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert!(
        text.contains("\"Prefix\":\"tmp/\"") && text.contains("\"Days\":7"),
        "template.yaml must document the tmp/ expiry"
    );
}
