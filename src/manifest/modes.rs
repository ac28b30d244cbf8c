//! The modes of a manifest: which workload steps each runs, and that each fits in one
//! instance's life.

use std::collections::BTreeMap;

use super::{mode_list, ManifestError, ModeSpec, StepKind, StepSpec};
use crate::naming;

/// Every mode fits in one instance's life: the setup steps plus the mode's workload steps,
/// each at its full timeout, within `max_runtime_seconds` (after which the watchdog shuts
/// the instance down, which would cut a step that was still within its own timeout).
pub(super) fn check_fit(
    modes: &BTreeMap<String, ModeSpec>,
    steps: &[StepSpec],
    max_runtime_seconds: u64,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    let setup: u64 = steps
        .iter()
        .filter(|s| s.kind == StepKind::Setup)
        .map(|s| s.timeout_seconds)
        .sum();
    for (mode, spec) in modes {
        let work: u64 = steps
            .iter()
            .filter(|s| spec.steps.contains(&s.name))
            .map(|s| s.timeout_seconds)
            .sum();
        if setup + work > max_runtime_seconds {
            return Err(err(
                &format!("modes.{mode}"),
                format!(
                    "setup ({setup} s) plus its steps ({work} s) take {} s, more than \
                     max_runtime_seconds ({max_runtime_seconds}): the watchdog would stop the \
                     instance first; shorten step timeouts or raise max_runtime_seconds",
                    setup + work
                ),
            ));
        }
    }
    Ok(())
}

/// The modes: each lists workload steps of this job in manifest order, every workload step
/// is in a mode, and the default mode exists.
pub(super) fn check_modes(
    modes: &BTreeMap<String, ModeSpec>,
    workload_steps: &[String],
    default_mode: &str,
    err: &dyn Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    if modes.is_empty() {
        return Err(err("modes", "must define at least one mode".into()));
    }
    for (mode, spec) in modes {
        naming::check_name(mode).map_err(|p| err(&format!("modes.{mode}"), p))?;
        if spec.steps.is_empty() {
            return Err(err(
                &format!("modes.{mode}.steps"),
                "must list at least one workload step".into(),
            ));
        }
        for (j, step) in spec.steps.iter().enumerate() {
            let field = format!("modes.{mode}.steps[{j}]");
            if !workload_steps.contains(step) {
                return Err(err(
                    &field,
                    format!("`{step}` is not a workload step of this job"),
                ));
            }
            if spec.steps[..j].contains(step) {
                return Err(err(&field, format!("`{step}` is listed twice")));
            }
            let position = |name: &String| workload_steps.iter().position(|w| w == name);
            if j > 0 && position(step) < position(&spec.steps[j - 1]) {
                return Err(err(
                    &field,
                    format!(
                        "`{step}` comes before `{}` in the manifest: a mode lists its steps in manifest order (the order they run in)",
                        spec.steps[j - 1]
                    ),
                ));
            }
        }
    }
    if let Some(unused) = workload_steps
        .iter()
        .find(|w| !modes.values().any(|m| m.steps.contains(w)))
    {
        return Err(err(
            "modes",
            format!("no mode runs workload step `{unused}`"),
        ));
    }
    if !modes.contains_key(default_mode) {
        return Err(err(
            "default_mode",
            format!(
                "`{}` is not one of the modes ({})",
                default_mode,
                mode_list(modes)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, parse, GOOD};

    #[test]
    fn a_mode_must_fit_in_the_max_runtime() {
        let long = GOOD.replace("timeout_seconds = 600", "timeout_seconds = 1741");
        assert_eq!(
            error(&long),
            "jobs/demo/job.toml: field `modes.all`: setup (60 s) plus its steps (1741 s) take \
             1801 s, more than max_runtime_seconds (1800): the watchdog would stop the instance \
             first; shorten step timeouts or raise max_runtime_seconds"
        );
        parse(&GOOD.replace("timeout_seconds = 600", "timeout_seconds = 1740")).unwrap();
    }

    #[test]
    fn modes_follow_manifest_order_and_every_workload_step_has_a_mode() {
        let two = format!(
            "{GOOD}\n[[steps]]\nname = \"more\"\nkind = \"workload\"\nscript = \"steps/more.sh\"\ntimeout_seconds = 60\n"
        );
        assert!(error(&two).contains("field `modes`: no mode runs workload step `more`"));
        let reversed = two.replace("steps = [\"work\"]", "steps = [\"more\", \"work\"]");
        assert!(error(&reversed)
            .contains("field `modes.all.steps[1]`: `work` comes before `more` in the manifest"));
        parse(&two.replace("steps = [\"work\"]", "steps = [\"work\", \"more\"]")).unwrap();
    }
}
