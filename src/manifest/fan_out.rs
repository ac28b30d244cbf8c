//! `[steps.fan_out]`: a workload step that runs once per shard on up to `instances` spot
//! instances at once. A static shard list (a file in the job folder) is read and checked
//! here, before anything launches; a dynamic one names the earlier workload step that writes
//! it, whose script then carries the file out in its output.

use super::{ManifestError, RawFanOut, StepKind, StepSpec};
use crate::fanout::{self, FanOut, MAX_INSTANCES};

/// Checks each fan-out (`raw`: step index and its table) and sets it on its step; a
/// dynamic list's writer gets the prelude that carries the file out.
pub(super) fn check_fan_outs(
    steps: &mut [StepSpec],
    raw: Vec<(usize, RawFanOut)>,
    read_script: &impl Fn(&str) -> Result<String, String>,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    for (i, f) in raw {
        let field = |name: &str| format!("steps[{i}].fan_out.{name}");
        if steps[i].kind != StepKind::Workload {
            return Err(err(
                &format!("steps[{i}].fan_out"),
                "only a workload step fans out (setup steps run on every instance)".into(),
            ));
        }
        if !(1..=MAX_INSTANCES).contains(&f.instances) {
            return Err(err(
                &field("instances"),
                format!("must be between 1 and {MAX_INSTANCES} (an Inline Map runs at most {MAX_INSTANCES} iterations at once)"),
            ));
        }
        let file_ok = !f.shards.is_empty()
            && f.shards.len() <= 100
            && !f.shards.starts_with('.')
            && f.shards
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            && !f
                .shards
                .split('/')
                .any(|part| part.is_empty() || part == "..");
        if !file_ok {
            return Err(err(
                &field("shards"),
                format!("`{}` must be a relative file name (letters, digits, '.', '_', '-', '/'; no '..')", f.shards),
            ));
        }
        let items = match &f.written_by {
            None => {
                let text = read_script(&f.shards).map_err(|e| {
                    err(
                        &field("shards"),
                        format!("cannot read `{}`: {e} (a list written at run time names its step in `written_by`)", f.shards),
                    )
                })?;
                fanout::check_list(&text)
                    .map_err(|p| err(&field("shards"), format!("`{}` {p}", f.shards)))?
            }
            Some(writer) => {
                let before = steps[..i]
                    .iter()
                    .position(|s| &s.name == writer && s.kind == StepKind::Workload);
                let Some(w) = before else {
                    return Err(err(
                        &field("written_by"),
                        format!(
                            "`{writer}` is not a workload step before `{}`",
                            steps[i].name
                        ),
                    ));
                };
                if f.shards.contains('/') {
                    return Err(err(
                        &field("shards"),
                        format!("`{}`: a list written at run time is a file in the writer's work folder, without '/'", f.shards),
                    ));
                }
                let body = std::mem::take(&mut steps[w].script);
                steps[w].script = fanout::writer_prelude(&f.shards) + &body;
                Vec::new()
            }
        };
        steps[i].fan_out = Some(FanOut {
            shards: f.shards,
            written_by: f.written_by,
            instances: f.instances,
            max_failed_shards: f.max_failed_shards,
            items,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Job;

    const SWEEP: &str = r#"
        name = "t"
        instance_name_prefix = "t"
        instance_types = ["t3.micro"]
        root_volume_gb = 8
        max_runtime_seconds = 7200
        config_source = "s3://b/c.yaml"
        default_mode = "a"
        [[steps]]
        name = "setup"
        kind = "setup"
        script = "s.sh"
        timeout_seconds = 60
        [[steps]]
        name = "plan"
        kind = "workload"
        script = "plan.sh"
        timeout_seconds = 60
        [[steps]]
        name = "sweep"
        kind = "workload"
        script = "sweep.sh"
        timeout_seconds = 60
        [steps.fan_out]
        FANOUT
        [modes.a]
        steps = ["plan", "sweep"]
    "#;

    fn parse(fan_out: &str, list: &str) -> Result<Job, String> {
        let text = SWEEP.replace("FANOUT", fan_out);
        let list = list.to_string();
        Job::parse(Path::new("jobs/t/job.toml"), &text, move |f| match f {
            "shards.json" => Ok(list.clone()),
            "plan.sh" => Ok("echo plan\n".into()),
            f if f.ends_with(".sh") => Ok("echo hi\n".into()),
            _ => Err("No such file or directory".into()),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_static_list_is_read_and_checked_before_anything_launches() {
        let job = parse(
            "shards = \"shards.json\"\ninstances = 3\nmax_failed_shards = 1",
            "[1, 2, 3]",
        )
        .unwrap();
        let f = job.steps[2].fan_out.as_ref().unwrap();
        assert_eq!((f.instances, f.max_failed_shards, f.items.len()), (3, 1, 3));
        assert_eq!(job.spec.fan_out_steps, vec!["sweep"]);
        assert!(job.steps[2]
            .without_script()
            .fan_out
            .unwrap()
            .items
            .is_empty());
        let e = parse("shards = \"shards.json\"\ninstances = 3", "{\"a\": 1}").unwrap_err();
        assert_eq!(
            e,
            "jobs/t/job.toml: field `steps[2].fan_out.shards`: `shards.json` must be a JSON array of shard items, not an object"
        );
        let e = parse("shards = \"missing.json\"\ninstances = 3", "[]").unwrap_err();
        assert!(e.contains("cannot read `missing.json`"), "{e}");
        let e = parse("shards = \"shards.json\"\ninstances = 41", "[1]").unwrap_err();
        assert!(
            e.contains("fan_out.instances`: must be between 1 and 40"),
            "{e}"
        );
        let e = parse("shards = \"../x.json\"\ninstances = 2", "[1]").unwrap_err();
        assert!(e.contains("relative file name"), "{e}");
        let e = parse("shard = \"x\"\ninstances = 2", "[1]").unwrap_err();
        assert!(e.contains("unknown field `shard`"), "{e}");
    }

    #[test]
    fn a_dynamic_list_names_an_earlier_workload_step_that_then_carries_it_out() {
        let job = parse(
            "shards = \"shards.json\"\nwritten_by = \"plan\"\ninstances = 2",
            "",
        )
        .unwrap();
        assert!(job.steps[2].fan_out.as_ref().unwrap().items.is_empty());
        let plan = &job.steps[1].script;
        assert!(
            plan.starts_with("# spotstep: carries shards.json out"),
            "{plan}"
        );
        assert!(plan.ends_with("echo plan\n"));
        let e = parse(
            "shards = \"shards.json\"\nwritten_by = \"setup\"\ninstances = 2",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("`setup` is not a workload step before `sweep`"),
            "{e}"
        );
    }
}
