//! The deployment files against the code: template.yaml (IAM without wildcard actions and
//! anchored to the stack, RunInstances limited to the jobs' manifests, the prerequisites it
//! creates unless given, the functions' one makefile build, state machines whose
//! substitutions cover their definitions, the schedules, the failure rule and its message,
//! dead letters and alarms, checkov exceptions with reasons), the Makefile, env.json, and the
//! events/ files against the handlers' input types.
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
use spotstep::naming;
use spotstep::waiting;

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
                    Value::Array(items) => items.iter().for_each(|s| statement_branches(s, out)),
                    single => out.push(single.clone()),
                }
            }
            map.values().for_each(|v| statements(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| statements(v, out)),
        _ => {}
    }
}

/// A statement, or both branches of a statement chosen by `Fn::If` (`AWS::NoValue` is none).
fn statement_branches(statement: &Value, out: &mut Vec<Value>) {
    match statement.get("Fn::If").and_then(Value::as_array) {
        Some(parts) => parts[1..]
            .iter()
            .for_each(|branch| statement_branches(branch, out)),
        None if statement == &json!({"Ref": "AWS::NoValue"}) => {}
        None => out.push(statement.clone()),
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
    let template = template();
    let mut found = Vec::new();
    statements(&template, &mut found);
    assert!(found.len() > 20, "only {} statements found", found.len());
    // A KMS key policy's statement for the account root only hands the key over to the
    // account's IAM policies (the documented default key policy): its `kms:*` grants no one.
    let delegation = json!({
        "Sid": "AccountIamPoliciesManageTheKey",
        "Effect": "Allow",
        "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
        "Action": "kms:*",
        "Resource": "*",
    });
    for (id, key) in of_type(&template, "AWS::KMS::Key") {
        let mut in_key = Vec::new();
        statements(&key["Properties"]["KeyPolicy"], &mut in_key);
        assert!(in_key.contains(&delegation), "{id}");
    }
    for statement in found.iter().filter(|s| **s != delegation) {
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

/// The Makefile's `build-<LogicalId>` targets: target -> (prerequisites, recipe lines).
fn make_targets(makefile: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut targets: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in makefile.lines() {
        if let Some(recipe) = line.strip_prefix('\t') {
            if let Some(target) = &current {
                targets
                    .get_mut(target)
                    .unwrap()
                    .1
                    .push(recipe.trim().to_string());
            }
            continue;
        }
        current = None;
        if let Some((target, prerequisites)) = line.split_once(':') {
            if !target.contains(' ') && !prerequisites.starts_with('=') {
                targets.insert(
                    target.to_string(),
                    (prerequisites.trim().to_string(), Vec::new()),
                );
                current = Some(target.to_string());
            }
        }
    }
    targets
}

#[test]
fn every_function_is_a_rust_arm64_bootstrap_built_from_its_crate_by_one_build_of_the_five() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
    assert_eq!(globals["Handler"], "bootstrap");
    let functions = of_type(&template, "AWS::Serverless::Function");
    let ids: BTreeSet<&str> = functions.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, FUNCTIONS.iter().map(|f| f.0).collect());

    // The workspace: the root package, exactly one member crate per function, the
    // cold-start floor (bench/hello, never deployed) and the EC2 SDK's re-export
    // (crates/ec2-first, a library).
    let cargo: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let members: BTreeSet<String> = cargo["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .filter(|m| m != "bench/hello" && m != "crates/ec2-first")
        .collect();
    let folders: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| format!("functions/{}", e.file_name().to_string_lossy()))
        .collect();
    assert_eq!(members, folders, "Cargo.toml members vs functions/*");
    assert_eq!(
        members,
        FUNCTIONS
            .iter()
            .map(|(_, binary, _)| format!("functions/{binary}"))
            .collect(),
        "Cargo.toml members vs the template's functions"
    );

    // One `cargo lambda build --release --arm64` of the five function packages (not the CLI,
    // not bench/hello) into the repository's target/, which every build-<LogicalId> depends on.
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(makefile.contains("ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))"));
    assert!(makefile.contains("export CARGO_TARGET_DIR := $(ROOT)/target"));
    assert!(makefile.contains("LAMBDA_DIR := $(CARGO_TARGET_DIR)/lambda"));
    let targets = make_targets(&makefile);
    let (_, functions_build) = &targets["$(FUNCTIONS_BUILD)"];
    assert_eq!(
        functions_build,
        &vec![
            "cd $(ROOT) && cargo lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))"
                .to_string(),
            "touch $@".to_string(),
        ]
    );
    let packages: BTreeSet<&str> = makefile
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS := "))
        .expect("FUNCTIONS := in the Makefile")
        .split_whitespace()
        .collect();
    assert_eq!(
        packages,
        FUNCTIONS.iter().map(|(_, binary, _)| *binary).collect(),
        "the Makefile's FUNCTIONS vs the template's functions"
    );
    let builds: BTreeSet<&str> = targets
        .keys()
        .filter_map(|t| t.strip_prefix("build-"))
        .filter(|t| *t != "tools")
        .collect();
    assert_eq!(
        builds, ids,
        "the Makefile's build-* targets vs the template's functions"
    );

    for (id, binary, timeout) in FUNCTIONS {
        let function = &resources(&template)[id];
        let properties = &function["Properties"];
        assert_eq!(function["Metadata"]["BuildMethod"], "makefile", "{id}");
        assert_eq!(
            function["Metadata"]["ContextPath"], ".",
            "{id}: the top-level Makefile"
        );
        assert!(
            function["Metadata"].get("BuildProperties").is_none(),
            "{id}"
        );
        assert_eq!(properties["CodeUri"], format!("functions/{binary}"), "{id}");
        let manifest =
            std::fs::read_to_string(root().join(format!("functions/{binary}/Cargo.toml"))).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: functions/{binary}/Cargo.toml"
        );
        let (prerequisites, recipe) = &targets[&format!("build-{id}")];
        assert_eq!(prerequisites, "$(FUNCTIONS_BUILD)", "{id}");
        assert_eq!(
            recipe,
            &vec![format!(
                "cp $(LAMBDA_DIR)/{binary}/bootstrap $(ARTIFACTS_DIR)/bootstrap"
            )],
            "{id}"
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
        "SPOTSTEP_STACK",
        "SPOTSTEP_BUCKET",
        "SPOTSTEP_SUBNETS",
        "SPOTSTEP_LAUNCH_TEMPLATE",
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
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["SPOTSTEP_STACK"],
        json!({"Ref": "AWS::StackName"}),
        "the stack name the instances are tagged with and IAM is anchored to"
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
            .filter_map(asl::function_of)
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
            if state["Type"] == "Task" && state["Resource"] == asl::resource::WAIT_FOR_TOKEN {
                // A waiting state's timeout bounds the step's wait, not the invocation.
                let step = job.step(name.strip_suffix(": send").unwrap()).unwrap();
                assert_eq!(
                    state["TimeoutSeconds"],
                    asl::wait_seconds(&job.spec, step, &Timing::production()),
                    "{name}"
                );
            } else if state["Type"] == "Task" {
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
    let ended: Vec<_> = rules
        .iter()
        .filter(|(_, r)| r["Properties"]["EventPattern"]["source"] == json!(["aws.states"]))
        .collect();
    assert_eq!(ended.len(), 1);
    let properties = &ended[0].1["Properties"];
    let pattern = &properties["EventPattern"];
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
    // One target: cleanup, which cleans up and then tells the on-call engineer the failed
    // state, error and cause (the event carries none of them; src/notification.rs).
    let targets = properties["Targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(
        targets[0]["Arn"],
        json!({"Fn::GetAtt": ["CleanupFunction", "Arn"]})
    );
    assert!(targets[0].get("InputTransformer").is_none());
    let cleanup = &resources(&template)["CleanupFunction"]["Properties"];
    assert_eq!(
        cleanup["Environment"]["Variables"]["SPOTSTEP_TOPIC"],
        json!({"Ref": "SpotstepNotifications"})
    );
    let mut granted = Vec::new();
    statements(&cleanup["Policies"], &mut granted);
    let allows = |action: &str, resource: &Value| {
        granted.iter().any(|s| {
            string_set(&s["Action"]).contains(action)
                && s["Resource"]
                    .as_array()
                    .is_some_and(|r| r.contains(resource))
        })
    };
    assert!(allows(
        "sns:Publish",
        &json!({"Ref": "SpotstepNotifications"})
    ));
    assert!(allows(
        "kms:GenerateDataKey",
        &json!({"Fn::GetAtt": ["MessagesKey", "Arn"]})
    ));
    assert!(granted
        .iter()
        .any(|s| string_set(&s["Action"]).contains("states:GetExecutionHistory")));
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
        "poll-result-command-ended.json",
        "poll-result-instance-going.json",
        "poll-result-reconcile.json",
        "poll-result-spot-warning.json",
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
    poll.run.validate(&demo.spec).unwrap();
    for (name, expected) in [
        ("poll-result-command-ended.json", "CommandEnded"),
        ("poll-result-spot-warning.json", "SpotWarning"),
        ("poll-result-instance-going.json", "InstanceGoing"),
        ("poll-result-reconcile.json", "Reconcile"),
    ] {
        let told = waiting::told(&event(name))
            .unwrap_or_else(|| panic!("{name} is not an event"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            format!("{told:?}").starts_with(expected),
            "{name}: {told:?}"
        );
    }
    assert!(!send.task_token.is_empty());

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
            step, failure, job, ..
        } => {
            assert_eq!(serde_json::to_value(&job).unwrap(), job_json);
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

/// The statements of one resource's policies (a function's `Policies`, a role's `Policies`).
fn statements_of(template: &Value, id: &str) -> Vec<Value> {
    let mut found = Vec::new();
    statements(
        &resources(template)[id]["Properties"]["Policies"],
        &mut found,
    );
    found
}

/// The statements, among `statements`, that allow `action`.
fn allowing<'a>(statements: &'a [Value], action: &str) -> Vec<&'a Value> {
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow" && strings(&s["Action"]).contains(&action))
        .collect()
}

fn string_set(value: &Value) -> BTreeSet<String> {
    strings(value).into_iter().map(String::from).collect()
}

fn stack_name() -> Value {
    json!({"Ref": "AWS::StackName"})
}

/// The ARN of the instance profile the instances run with: created here or given by name.
fn instance_profile_arn() -> Value {
    json!({"Fn::If": [
        "CreateInstanceProfile",
        {"Fn::GetAtt": ["InstanceProfile", "Arn"]},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:instance-profile/${InstanceProfileName}"},
    ]})
}

/// The staging bucket's name: created here or given.
fn bucket_name() -> Value {
    json!({"Fn::If": ["CreateStagingBucket", {"Ref": "StagingBucketCreated"}, {"Ref": "StagingBucket"}]})
}

/// An S3 ARN under the staging bucket, as the template spells it.
fn bucket_arn(suffix: &str) -> Value {
    json!({"Fn::Sub": [format!("arn:${{AWS::Partition}}:s3:::${{Bucket}}{suffix}"), {"Bucket": bucket_name()}]})
}

#[test]
fn instances_are_terminated_and_commanded_only_when_they_belong_to_this_stack() {
    let template = template();
    let mut everywhere = Vec::new();
    statements(&template, &mut everywhere);
    let terminating = allowing(&everywhere, "ec2:TerminateInstances");
    assert_eq!(terminating.len(), 2, "launch and cleanup terminate");
    for statement in terminating {
        assert_eq!(
            statement["Condition"]["StringEquals"]["aws:ResourceTag/spotstep:stack"],
            stack_name(),
            "{statement}"
        );
        assert_eq!(
            statement["Condition"]["ArnEquals"]["ec2:InstanceProfile"],
            instance_profile_arn(),
            "{statement}"
        );
    }
    for id in ["LaunchFunction", "CleanupFunction"] {
        assert_eq!(
            allowing(&statements_of(&template, id), "ec2:TerminateInstances").len(),
            1,
            "{id}"
        );
    }
    let sending = allowing(&everywhere, "ssm:SendCommand");
    let on_instances: Vec<&&Value> = sending
        .iter()
        .filter(|s| s["Resource"].to_string().contains(":instance/"))
        .collect();
    assert_eq!(on_instances.len(), 1);
    assert_eq!(
        on_instances[0]["Condition"],
        json!({"StringEquals": {"ssm:resourceTag/spotstep:stack": stack_name()}})
    );
    for statement in &sending {
        assert!(
            statement["Resource"].to_string().contains(":instance/")
                || statement["Resource"]
                    .to_string()
                    .contains("document/AWS-RunShellScript"),
            "{statement}"
        );
    }
    assert!(
        !serde_json::to_string(&template)
            .unwrap()
            .to_lowercase()
            .contains("tag/spotstep:job"),
        "no condition trusts the spotstep:job tag any more (any stack's instance has one)"
    );
}

#[test]
fn create_fleet_has_the_conditions_of_run_instances_and_the_stacks_launch_template() {
    let template = template();
    let launch = statements_of(&template, "LaunchFunction");
    let running = allowing(&launch, "ec2:RunInstances");
    let fleets = allowing(&launch, "ec2:CreateFleet");
    assert!(!running.is_empty());
    for statement in &running {
        assert!(
            fleets.contains(statement),
            "CreateFleet is allowed under every RunInstances statement's conditions: {statement}"
        );
    }
    let extra: Vec<&&Value> = fleets.iter().filter(|s| !running.contains(s)).collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert_eq!(
        extra[0]["Resource"],
        json!([{"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:fleet/*"}])
    );
    assert_eq!(
        strings(&extra[0]["Action"]),
        vec!["ec2:CreateFleet"],
        "the fleet statement allows nothing else"
    );
    let named: Vec<&&Value> = running
        .iter()
        .filter(|s| s["Resource"].to_string().contains(":launch-template/"))
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(
        named[0]["Resource"],
        json!([{"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:launch-template/${LaunchTemplate}"}]),
        "only the stack's own launch template"
    );

    let data = &resources(&template)["LaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(data["InstanceInitiatedShutdownBehavior"], "terminate");
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(
        data["MetadataOptions"]["InstanceMetadataTags"], "enabled",
        "the watchdog reads its max runtime from the instance's tags"
    );
    let user_data = data["UserData"]["Fn::Base64"].as_str().unwrap();
    use spotstep::naming::tags;
    assert!(
        user_data.contains(&format!("meta-data/tags/instance/{}", tags::MAX_RUNTIME)),
        "{user_data}"
    );
    assert!(user_data.contains("systemd-run --unit=spotstep-boot-watchdog"));
    assert!(
        user_data.contains("max=${max:-172800}"),
        "falls back to the longest max_runtime_seconds a manifest allows"
    );
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["SPOTSTEP_LAUNCH_TEMPLATE"],
        json!({"Ref": "LaunchTemplate"})
    );
}

#[test]
fn run_instances_is_limited_to_the_jobs_types_spot_market_network_and_stack_tags() {
    let template = template();
    let launch = statements_of(&template, "LaunchFunction");
    let running = allowing(&launch, "ec2:RunInstances");
    let resource_of = |s: &Value| s["Resource"].to_string();
    let one = |kind: &str| -> &Value {
        let found: Vec<&&Value> = running
            .iter()
            .filter(|s| resource_of(s).contains(&format!(":{kind}/")))
            .collect();
        assert_eq!(found.len(), 1, "one RunInstances statement names {kind}s");
        found[0]
    };
    let jobs = jobs();
    let types: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.spec.instance_types.iter().cloned())
        .collect();
    let mut markets = BTreeSet::from(["spot".to_string()]);
    if jobs
        .iter()
        .any(|j| j.spec.on_demand_fallback || j.spec.on_demand_after_reclaims.is_some())
    {
        markets.insert("on-demand".to_string());
    }
    use spotstep::naming::tags;
    let tag_keys: BTreeSet<String> = tags::ALL.iter().map(|k| k.to_string()).collect();

    let instance = one("instance");
    assert_eq!(
        instance["Resource"],
        json!([{"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"}])
    );
    let equals = &instance["Condition"]["StringEquals"];
    assert_eq!(
        string_set(&equals["ec2:InstanceType"]),
        types,
        "ec2:InstanceType vs the union of the jobs' instance_types"
    );
    assert_eq!(
        string_set(&equals["ec2:InstanceMarketType"]),
        markets,
        "ec2:InstanceMarketType vs the jobs' on_demand_fallback"
    );
    for statement in [instance, one("volume")] {
        assert_eq!(
            statement["Condition"]["StringEquals"]["aws:RequestTag/spotstep:stack"],
            stack_name(),
            "{statement}"
        );
        assert_eq!(
            string_set(&statement["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]),
            tag_keys,
            "{statement}"
        );
    }
    let subnets = one("subnet").to_string();
    assert!(subnets.contains(r#"{"Ref":"SubnetIds"}"#), "{subnets}");
    assert!(!subnets.contains("subnet/*"), "{subnets}");
    assert_eq!(
        one("security-group")["Resource"],
        json!([{"Fn::Sub": [
            "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:security-group/${Group}",
            {"Group": {"Fn::If": [
                "CreateSecurityGroup",
                {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]},
                {"Ref": "SecurityGroupId"},
            ]}},
        ]}])
    );

    let tagging = allowing(&launch, "ec2:CreateTags");
    assert_eq!(tagging.len(), 1);
    assert_eq!(
        tagging[0]["Condition"],
        json!({"StringEquals": {"ec2:CreateAction": ["CreateFleet", "RunInstances"]}})
    );
    let mut everywhere = Vec::new();
    statements(&template, &mut everywhere);
    let linked = allowing(&everywhere, "iam:CreateServiceLinkedRole");
    assert_eq!(linked.len(), 1);
    assert_eq!(
        linked[0]["Condition"],
        json!({"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}})
    );
    assert_eq!(
        strings(&linked[0]["Action"]),
        vec!["iam:CreateServiceLinkedRole"]
    );
}

/// `value` with every `Fn::If` on a condition of `chosen` replaced by its chosen branch.
fn resolve(value: &Value, chosen: &BTreeMap<&str, bool>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(parts) = map.get("Fn::If").and_then(Value::as_array) {
                if let Some(&truth) = parts[0].as_str().and_then(|c| chosen.get(c)) {
                    return resolve(&parts[if truth { 1 } else { 2 }], chosen);
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, chosen)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, chosen)).collect()),
        other => other.clone(),
    }
}

/// What `value` refers to: `Ref` and `Fn::GetAtt` targets and `${Name}` in `Fn::Sub` (not
/// `AWS::` pseudo parameters nor a `Fn::Sub`'s own variables).
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) if !name.starts_with("AWS::") => {
                        out.insert(name.clone());
                    }
                    ("Ref", _) => {}
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        out.insert(parts[0].as_str().unwrap().to_string());
                    }
                    ("Fn::Sub", sub) => {
                        let (text, locals) = match sub {
                            Value::Array(parts) => (parts[0].as_str().unwrap(), Some(&parts[1])),
                            other => (other.as_str().unwrap(), None),
                        };
                        for name in placeholders(text) {
                            let name = name.split('.').next().unwrap().to_string();
                            let local = locals.is_some_and(|l| l.get(&name).is_some());
                            if !local && !name.starts_with("AWS::") && !name.starts_with('!') {
                                out.insert(name);
                            }
                        }
                        if let Some(locals) = locals {
                            references(locals, out);
                        }
                    }
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The template as deployed with the prerequisite conditions set to `chosen`: resources
/// whose condition is false are gone, `Fn::If` on those conditions resolved.
fn deployed(template: &Value, chosen: &BTreeMap<&str, bool>) -> Value {
    let mut kept = serde_json::Map::new();
    for (id, resource) in resources(template) {
        let condition = resource.get("Condition").and_then(Value::as_str);
        if condition.and_then(|c| chosen.get(c)) != Some(&false) {
            kept.insert(id.clone(), resolve(resource, chosen));
        }
    }
    json!({
        "Globals": resolve(&template["Globals"], chosen),
        "Resources": kept,
        "Outputs": resolve(&template["Outputs"], chosen),
    })
}

/// Each prerequisite: its parameter, its condition, and the resources created for it.
const PREREQUISITES: [(&str, &str, &[&str]); 3] = [
    (
        "StagingBucket",
        "CreateStagingBucket",
        &["StagingBucketCreated", "StagingBucketCreatedPolicy"],
    ),
    (
        "SecurityGroupId",
        "CreateSecurityGroup",
        &["InstanceSecurityGroup"],
    ),
    (
        "InstanceProfileName",
        "CreateInstanceProfile",
        &["InstanceRole", "InstanceProfile"],
    ),
];

#[test]
fn each_prerequisite_is_created_when_its_parameter_is_empty_and_used_as_is_when_given() {
    let template = template();
    let conditions = &template["Conditions"];
    for (parameter, condition, created) in PREREQUISITES {
        assert_eq!(
            template["Parameters"][parameter]["Default"], "",
            "{parameter}"
        );
        for id in created {
            assert_eq!(resources(&template)[*id]["Condition"], condition, "{id}");
        }
        let empty = |p: &str| json!({"Fn::Equals": [{"Ref": p}, ""]});
        let expected = if parameter == "InstanceProfileName" {
            // The profile and its role are given together (the template's Rules say so).
            json!({"Fn::And": [empty("InstanceProfileName"), empty("InstanceRoleArn")]})
        } else {
            empty(parameter)
        };
        assert_eq!(conditions[condition], expected, "{condition}");
    }
    let rules = template["Rules"].to_string();
    assert!(rules.contains("InstanceRoleArn") && rules.contains("InstanceProfileName"));

    let names: BTreeSet<String> = resources(&template)
        .keys()
        .chain(template["Parameters"].as_object().unwrap().keys())
        .cloned()
        .collect();
    // Every combination: nothing refers to a resource that is not created, a created
    // resource replaces its parameter everywhere, a given one replaces the resource.
    for mask in 0..(1u32 << PREREQUISITES.len()) {
        let chosen: BTreeMap<&str, bool> = PREREQUISITES
            .iter()
            .enumerate()
            .map(|(i, (_, condition, _))| (*condition, mask & (1 << i) != 0))
            .collect();
        let stack = deployed(&template, &chosen);
        let mut used = BTreeSet::new();
        references(&stack, &mut used);
        for (parameter, condition, created) in PREREQUISITES {
            let create = chosen[condition];
            let given_parameters: &[&str] = if parameter == "InstanceProfileName" {
                &["InstanceProfileName", "InstanceRoleArn"]
            } else {
                &[parameter]
            };
            // The first created resource stands in for the parameter; the others (its
            // bucket policy, the profile's role) hang on it.
            assert_eq!(
                used.contains(created[0]),
                create,
                "{} with {condition}={create}",
                created[0]
            );
            for id in created {
                assert_eq!(stack["Resources"].get(*id).is_some(), create, "{id}");
            }
            for given in given_parameters {
                assert_eq!(
                    used.contains(*given),
                    !create,
                    "{given} with {condition}={create}"
                );
            }
        }
        for name in &used {
            assert!(
                names.contains(name) || stack["Resources"].get(name).is_some(),
                "{name} is referred to but does not exist ({chosen:?})"
            );
            if resources(&template).contains_key(name) {
                assert!(
                    stack["Resources"].get(name).is_some(),
                    "{name} is referred to but not created ({chosen:?})"
                );
            }
        }
    }
    // sam deploy --guided needs only the network: every other parameter has a default.
    let required: BTreeSet<&str> = template["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, p)| p.get("Default").is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(required, BTreeSet::from(["SubnetIds", "VpcId"]));
    let samconfig = std::fs::read_to_string(root().join("samconfig.toml")).unwrap();
    for parameter in ["StagingBucket=", "SecurityGroupId=", "InstanceProfileName="] {
        assert!(
            !samconfig.contains(parameter),
            "samconfig.toml sets {parameter}"
        );
    }
    assert!(samconfig.contains("\"SubnetIds=") && samconfig.contains("\"VpcId="));
}

#[test]
fn the_created_staging_bucket_expires_tmp_only_and_is_private_encrypted_and_tls_only() {
    let template = template();
    let bucket = &resources(&template)["StagingBucketCreated"];
    assert_eq!(
        bucket["DeletionPolicy"], "Retain",
        "logs/ and health/ are kept"
    );
    let properties = &bucket["Properties"];
    let rules = properties["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 2);
    for (rule, prefix) in rules.iter().zip(["tmp/", "checkpoints/"]) {
        assert_eq!(rule["Status"], "Enabled");
        assert_eq!(rule["Prefix"], prefix);
        assert_eq!(rule["ExpirationInDays"], 7);
    }
    assert_eq!(
        properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    let block = &properties["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting], true, "{setting}");
    }
    let policy = &resources(&template)["StagingBucketCreatedPolicy"]["Properties"];
    assert_eq!(policy["Bucket"], json!({"Ref": "StagingBucketCreated"}));
    let deny = &policy["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Principal"], "*");
    assert_eq!(
        deny["Condition"],
        json!({"Bool": {"aws:SecureTransport": "false"}})
    );
    assert_eq!(
        deny["Resource"],
        json!([
            {"Fn::GetAtt": ["StagingBucketCreated", "Arn"]},
            {"Fn::Sub": "${StagingBucketCreated.Arn}/*"},
        ])
    );
    let group = &resources(&template)["InstanceSecurityGroup"]["Properties"];
    assert_eq!(group["VpcId"], json!({"Ref": "VpcId"}));
    assert!(
        group.get("SecurityGroupIngress").is_none(),
        "no inbound rule"
    );
}

#[test]
fn the_created_instance_role_has_exactly_the_rights_the_steps_need() {
    let template = template();
    let role = &resources(&template)["InstanceRole"]["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"],
        json!({"Service": "ec2.amazonaws.com"})
    );
    let core =
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"});
    let managed = &role["ManagedPolicyArns"]["Fn::If"];
    assert_eq!(managed[0], "HasInstanceExtraPolicies");
    assert_eq!(managed[2], json!([core]));
    assert!(managed[1].to_string().contains(&core.to_string()));
    assert!(managed[1]
        .to_string()
        .contains(r#"{"Ref":"InstanceExtraPolicyArns"}"#));
    assert_eq!(
        template["Conditions"]["HasInstanceExtraPolicies"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "InstanceExtraPolicyArns"}]}, ""]}]})
    );
    assert_eq!(
        template["Parameters"]["InstanceExtraPolicyArns"]["Type"],
        "CommaDelimitedList"
    );

    let granted = statements_of(&template, "InstanceRole");
    let mut rights: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in &granted {
        for a in strings(&s["Action"]) {
            rights
                .entry(a.to_string())
                .or_default()
                .extend(s["Resource"].as_array().unwrap().iter().cloned());
        }
    }
    // The checkpointed jobs' prefixes (checkpoints/<job>/*), and only theirs.
    let checkpoints: Vec<Value> = jobs()
        .iter()
        .filter(|j| j.steps.iter().any(|s| s.checkpoint.is_some()))
        .map(|j| {
            bucket_arn(&format!(
                "/{}*",
                naming::checkpoint_job_prefix(&j.spec.name)
            ))
        })
        .collect();
    assert!(!checkpoints.is_empty(), "the train job checkpoints");
    let listed = allowing(&granted, "s3:ListBucket");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        string_set(&listed[0]["Condition"]["StringLike"]["s3:prefix"]),
        jobs()
            .iter()
            .filter(|j| j.steps.iter().any(|s| s.checkpoint.is_some()))
            .map(|j| format!("{}*", naming::checkpoint_job_prefix(&j.spec.name)))
            .collect()
    );
    let secrets = json!({"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SecretParameterPrefix}*"});
    let log_group = json!({"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroupName}:*"});
    let expected: BTreeMap<String, Vec<Value>> = [
        // The run's config, not the send markers (task tokens) beside it.
        (
            "s3:GetObject",
            [vec![bucket_arn(&format!("/{}", naming::staging_config_key("*", "*")))], checkpoints.clone()].concat(),
        ),
        ("s3:PutObject", [vec![bucket_arn("/logs/*"), bucket_arn("/health/*")], checkpoints.clone()].concat()),
        ("s3:DeleteObject", checkpoints),
        ("s3:ListBucket", vec![bucket_arn("")]),
        ("ssm:GetParameter", vec![secrets.clone()]),
        ("ssm:GetParameters", vec![secrets]),
        (
            "kms:Decrypt",
            vec![json!({"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"})],
        ),
        ("logs:CreateLogStream", vec![log_group.clone()]),
        ("logs:DescribeLogStreams", vec![log_group.clone()]),
        ("logs:PutLogEvents", vec![log_group]),
        (
            "logs:DescribeLogGroups",
            vec![json!({"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"})],
        ),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_string(), r))
    .collect();
    assert_eq!(rights, expected);
    let decrypt = allowing(&granted, "kms:Decrypt")[0];
    assert_eq!(
        decrypt["Condition"],
        json!({"StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}})
    );
    // The log rights exist only with a step log group.
    let policy = role["Policies"][0]["PolicyDocument"]["Statement"].to_string();
    assert_eq!(
        policy.matches(r#"{"Fn::If":["HasStepLogGroup","#).count(),
        2
    );
    assert_eq!(
        template["Parameters"]["SecretParameterPrefix"]["Default"],
        "/spotstep/"
    );
    let passed = allowing(&statements_of(&template, "LaunchFunction"), "iam:PassRole")[0].clone();
    assert_eq!(
        passed["Resource"],
        json!([{"Fn::If": ["CreateInstanceProfile", {"Fn::GetAtt": ["InstanceRole", "Arn"]}, {"Ref": "InstanceRoleArn"}]}])
    );
}

#[test]
fn every_checkov_exception_says_why() {
    let template = template();
    let mut skipped = BTreeMap::new();
    for (id, resource) in resources(&template) {
        let Some(skips) = resource["Metadata"]["checkov"]["skip"].as_array() else {
            continue;
        };
        for skip in skips {
            let check = skip["id"].as_str().unwrap_or_default();
            assert!(check.starts_with("CKV"), "{id}: {skip}");
            let comment = skip["comment"].as_str().unwrap_or_default();
            assert!(
                comment.trim().len() > 10,
                "{id}: {check} is skipped without a reason"
            );
            skipped.insert((id.clone(), check.to_string()), comment.to_string());
        }
    }
    assert!(!skipped.is_empty());
    // What is fixed is never skipped: encryption of the topic and the queue, the dead
    // letters of the asynchronously invoked function.
    for (id, check) in skipped.keys() {
        assert!(
            !["CKV_AWS_26", "CKV_AWS_27"].contains(&check.as_str()),
            "{id}: {check}"
        );
        assert!(
            !(id == "CleanupFunction" && check == "CKV_AWS_116"),
            "CleanupFunction has a dead-letter queue"
        );
    }
}

/// Functions that EventBridge rules or schedules invoke (asynchronously).
fn invoked_asynchronously(template: &Value) -> BTreeSet<String> {
    let mut targets = Vec::new();
    for (_, rule) in of_type(template, "AWS::Events::Rule") {
        targets.extend(rule["Properties"]["Targets"].as_array().unwrap().iter());
    }
    for (_, schedule) in of_type(template, "AWS::Scheduler::Schedule") {
        targets.push(&schedule["Properties"]["Target"]);
    }
    targets
        .iter()
        .filter_map(|t| t["Arn"]["Fn::GetAtt"][0].as_str())
        .filter(|id| resources(template)[*id]["Type"] == "AWS::Serverless::Function")
        .map(String::from)
        .collect()
}

#[test]
fn asynchronous_failures_land_in_an_encrypted_queue_that_alarms() {
    let template = template();
    let queue = json!({"Fn::GetAtt": ["UndeliveredQueue", "Arn"]});
    let asynchronous = invoked_asynchronously(&template);
    assert_eq!(
        asynchronous,
        BTreeSet::from([
            "CleanupFunction".to_string(),
            "PollResultFunction".to_string()
        ])
    );
    for id in &asynchronous {
        assert_eq!(
            resources(&template)[id]["Properties"]["DeadLetterQueue"],
            json!({"Type": "SQS", "TargetArn": queue}),
            "{id}"
        );
        assert_eq!(
            allowing(&statements_of(&template, id), "kms:GenerateDataKey")[0]["Resource"],
            json!([{"Fn::GetAtt": ["MessagesKey", "Arn"]}]),
            "{id} may encrypt its dead letters"
        );
    }
    // What EventBridge or the scheduler cannot deliver lands there too.
    for (id, rule) in of_type(&template, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_array().unwrap() {
            assert_eq!(target["DeadLetterConfig"]["Arn"], queue, "{id}: {target}");
        }
    }
    for (id, schedule) in of_type(&template, "AWS::Scheduler::Schedule") {
        let target = &schedule["Properties"]["Target"];
        assert_eq!(target["DeadLetterConfig"]["Arn"], queue, "{id}");
        let role = target["RoleArn"]["Fn::GetAtt"][0].as_str().unwrap();
        let granted = statements_of(&template, role);
        assert_eq!(
            allowing(&granted, "sqs:SendMessage")[0]["Resource"],
            json!([queue])
        );
        assert_eq!(allowing(&granted, "kms:GenerateDataKey").len(), 1, "{role}");
    }
    let queue_policy = &resources(&template)["UndeliveredQueuePolicy"]["Properties"];
    let statement = &queue_policy["PolicyDocument"]["Statement"][0];
    assert_eq!(
        statement["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    let rule_arns: Vec<Value> = of_type(&template, "AWS::Events::Rule")
        .iter()
        .map(|(id, _)| json!({"Fn::GetAtt": [id, "Arn"]}))
        .collect();
    let allowed = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_array()
        .unwrap();
    assert_eq!(allowed.len(), rule_arns.len(), "{allowed:?}");
    assert!(
        rule_arns.iter().all(|arn| allowed.contains(arn)),
        "{allowed:?}"
    );
    assert_eq!(
        resources(&template)["UndeliveredQueue"]["Properties"]["KmsMasterKeyId"],
        json!({"Fn::GetAtt": ["MessagesKey", "Arn"]})
    );
    let alarm = &resources(&template)["UndeliveredAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "QueueName", "Value": {"Fn::GetAtt": ["UndeliveredQueue", "QueueName"]}}])
    );
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(
        alarm["AlarmActions"],
        json!([{"Ref": "SpotstepNotifications"}])
    );
}

#[test]
fn notifications_are_encrypted_with_a_key_their_publishers_may_use() {
    let template = template();
    let topic = &resources(&template)["SpotstepNotifications"]["Properties"];
    assert_eq!(
        topic["KmsMasterKeyId"],
        json!({"Fn::GetAtt": ["MessagesKey", "Arn"]})
    );
    let key = &resources(&template)["MessagesKey"]["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let mut in_key = Vec::new();
    statements(&key["KeyPolicy"], &mut in_key);
    let publishers = in_key
        .iter()
        .find(|s| s["Principal"].get("Service").is_some())
        .unwrap();
    assert_eq!(
        string_set(&publishers["Principal"]["Service"]),
        BTreeSet::from([
            "cloudwatch.amazonaws.com".to_string(),
            "events.amazonaws.com".to_string()
        ])
    );
    assert_eq!(
        string_set(&publishers["Action"]),
        BTreeSet::from(["kms:Decrypt".to_string(), "kms:GenerateDataKey".to_string()])
    );
    // Every alarm notifies the topic, and the topic lets exactly those alarms publish.
    let alarms: Vec<Value> = of_type(&template, "AWS::CloudWatch::Alarm")
        .iter()
        .map(|(id, alarm)| {
            assert_eq!(
                alarm["Properties"]["AlarmActions"],
                json!([{"Ref": "SpotstepNotifications"}]),
                "{id}"
            );
            json!({"Fn::GetAtt": [id, "Arn"]})
        })
        .collect();
    let mut topic_policy = Vec::new();
    statements(
        &resources(&template)["SpotstepNotificationsPolicy"],
        &mut topic_policy,
    );
    let from_alarms = topic_policy
        .iter()
        .find(|s| s["Principal"] == json!({"Service": "cloudwatch.amazonaws.com"}))
        .unwrap();
    assert_eq!(
        from_alarms["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!(alarms)
    );
    // Failures are told by cleanup (its role may publish), not by the rule.
    assert!(!topic_policy
        .iter()
        .any(|s| s["Principal"] == json!({"Service": "events.amazonaws.com"})));
}

#[test]
fn a_week_without_the_weekly_jobs_last_heartbeat_alarms() {
    let template = template();
    let schedules = of_type(&template, "AWS::Scheduler::Schedule");
    let (_, weekly) = schedules
        .iter()
        .find(|(_, s)| s["Properties"]["Target"]["Arn"] == json!({"Ref": "DataWeeklyStateMachine"}))
        .unwrap();
    let input: Value =
        serde_json::from_str(weekly["Properties"]["Target"]["Input"].as_str().unwrap()).unwrap();
    let job = jobs()
        .into_iter()
        .find(|j| j.spec.name == "data-weekly")
        .unwrap();
    // The scheduled mode's last heartbeat: emitted only when its last heartbeat step succeeded.
    let last_heartbeat = job.spec.modes[input["mode"].as_str().unwrap()]
        .steps
        .iter()
        .rev()
        .find_map(|name| job.step(name).unwrap().heartbeats.last().cloned())
        .expect("the scheduled mode emits a heartbeat");
    let alarms = of_type(&template, "AWS::CloudWatch::Alarm");
    let (_, alarm) = alarms
        .iter()
        .find(|(_, a)| a["Properties"]["Namespace"] == "AlphaEngine")
        .expect("a dead man's switch on the heartbeat");
    let p = &alarm["Properties"];
    assert_eq!(p["MetricName"], "Heartbeat");
    assert_eq!(
        p["Dimensions"],
        json!([{"Name": "Process", "Value": last_heartbeat}])
    );
    assert_eq!(p["TreatMissingData"], "breaching");
    assert_eq!(p["Statistic"], "Sum");
    assert_eq!(p["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(p["Threshold"], 1);
    let period = p["Period"].as_u64().unwrap();
    let periods = p["EvaluationPeriods"].as_u64().unwrap();
    assert_eq!(p["DatapointsToAlarm"], periods, "every period silent");
    // CloudWatch: Period x EvaluationPeriods <= 7 days; periods under an hour <= 1 day.
    assert!(period >= 3600 && period % 60 == 0);
    assert_eq!(
        period * periods,
        7 * 86_400,
        "the longest silence CloudWatch can watch"
    );
    assert_eq!(p["AlarmActions"], json!([{"Ref": "SpotstepNotifications"}]));
    assert_eq!(p["OKActions"], json!([{"Ref": "SpotstepNotifications"}]));
}

#[test]
fn the_makefile_installs_the_pinned_build_tools() {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let pinned = |name: &str| -> String {
        let line = makefile
            .lines()
            .find(|l| l.starts_with(&format!("{name} := ")))
            .unwrap_or_else(|| panic!("{name} is not pinned"));
        let version = line.split(" := ").nth(1).unwrap().to_string();
        assert!(
            version.split('.').count() == 3
                && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{name} = {version} is not an exact version"
        );
        version
    };
    pinned("CARGO_LAMBDA_VERSION");
    pinned("ZIGLANG_VERSION");
    let (_, recipe) = &make_targets(&makefile)["build-tools"];
    let recipe = recipe.join("\n");
    for needed in [
        "cargo-lambda==$(CARGO_LAMBDA_VERSION)",
        "ziglang==$(ZIGLANG_VERSION)",
        "rustup target add aarch64-unknown-linux-gnu",
        "$(BUILD_TOOLS)",
    ] {
        assert!(recipe.contains(needed), "build-tools lacks {needed}");
    }
    assert!(makefile.contains("export PATH := $(BUILD_TOOLS)/bin:$(PATH)"));
}

#[test]
fn step_events_and_the_reconciler_reach_poll_result() {
    let template = template();
    let target = json!({"Fn::GetAtt": ["PollResultFunction", "Arn"]});
    let rules = of_type(&template, "AWS::Events::Rule");
    for (id, pattern) in waiting::events::rules() {
        let (_, rule) = rules
            .iter()
            .find(|(rid, _)| rid.as_str() == id)
            .unwrap_or_else(|| panic!("template.yaml has no {id}"));
        assert_eq!(rule["Properties"]["EventPattern"], pattern, "{id}");
        let targets = rule["Properties"]["Targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{id}");
        assert_eq!(targets[0]["Arn"], target, "{id}");
        let permitted = of_type(&template, "AWS::Lambda::Permission")
            .iter()
            .any(|(_, p)| {
                p["Properties"]["SourceArn"] == json!({"Fn::GetAtt": [id, "Arn"]})
                    && p["Properties"]["FunctionName"] == target
            });
        assert!(permitted, "{id} may invoke poll-result");
    }
    let schedules = of_type(&template, "AWS::Scheduler::Schedule");
    let (_, reconcile) = schedules
        .iter()
        .find(|(_, s)| s["Properties"]["Target"]["Arn"] == target)
        .expect("a schedule runs the reconciler");
    assert_eq!(
        reconcile["Properties"]["ScheduleExpression"],
        waiting::events::RECONCILE_SCHEDULE
    );
    let input: Value =
        serde_json::from_str(reconcile["Properties"]["Target"]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        waiting::told(&input).unwrap().unwrap(),
        waiting::Told::Reconcile
    );
}

#[test]
fn only_poll_result_and_send_step_may_answer_task_tokens() {
    let template = template();
    let mut answering: BTreeSet<String> = BTreeSet::new();
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::Serverless::Function" && resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let statements = statements_of(&template, id);
        for action in ["states:SendTaskSuccess", "states:SendTaskFailure"] {
            if !allowing(&statements, action).is_empty() {
                answering.insert(id.clone());
            }
        }
    }
    assert_eq!(
        answering,
        BTreeSet::from([
            "PollResultFunction".to_string(),
            "SendStepFunction".to_string()
        ])
    );
    assert!(allowing(
        &statements_of(&template, "PollResultFunction"),
        "states:SendTaskHeartbeat"
    )
    .is_empty());
}
