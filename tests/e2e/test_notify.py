"""The on-call engineer is told which state failed, with which error and cause: the
status-change event names none of them, so cleanup reads them from the execution and its
history and publishes the message (src/notification.rs) to the stack's topic."""


def test_a_failed_run_is_told_with_its_state_error_cause_link_and_redrive(e2e):
    before = len(e2e.stack.notifications())
    outcome = e2e.run("notify", {"mode": "failing"}, rule=False)
    assert outcome.status == "FAILED" and outcome.error == "StepFailed"
    assert e2e.stack.notifications()[before:] == [], "told before the status-change rule ran"

    report = e2e.rule(outcome)
    assert report["notified"] is True, report
    [(subject, message)] = e2e.stack.notifications()[before:]
    assert subject == f"spotstep spotstep-demo: {outcome.name} FAILED at fail: failed", subject
    assert "Failed state: fail: failed\nError: StepFailed\n" in message, message
    assert "    step `fail` failed: status Failed (Failed), exit code 3" in message, message
    assert f"#/v2/executions/details/{outcome.arn}\n" in message, message
    assert f"aws stepfunctions redrive-execution --execution-arn {outcome.arn}\n" in message, message
    # With the run's cost, as its ledger record (written by the same cleanup) says it.
    assert report["cost"] and f"\nCost: {report['cost']}\n" in message, (report, message)
    assert report["cost"].startswith("$"), report

    # A late copy of the same event for a run that was redriven meanwhile tells nobody.
    e2e.harness.redrive(outcome.arn)
    again = e2e.harness.status_change_rule(e2e.harness.logical_arn(outcome.arn), "FAILED")
    assert "notified" not in again or again["notified"] is False, again
