"""A plan's pause already answered when a rerun adopts its job: neither the manual action nor the check asks again."""

from __future__ import annotations

from datetime import timedelta

from site_recovery.operators.drill import ManualActionOperator
from site_recovery.operators.recovery import RecoveryManualActionOperator
from site_recovery.records import JobSummary


class _Ti:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def _job(manual_state: str) -> JobSummary:
    return JobSummary.model_validate({"name": "j1", "state": "InProgress", "tasks": [
        {"name": "Manual", "friendly_name": "Confirm licence server", "state": manual_state}]})


def _operator(cls, **extra):
    return cls(task_id="manual_confirm_licence_server", site_name="lab", plan="order-portal",
               action="Confirm licence server", instructions="Check LIC-SRV-01.", approvers=["admin"],
               job_name="j1", response_timeout=timedelta(minutes=5), **extra)


def test_a_job_past_the_manual_action_is_not_asked_about_again():
    for cls, extra in ((ManualActionOperator, {}), (RecoveryManualActionOperator, {"direction": "PrimaryToRecovery"})):
        operator = _operator(cls, reached=_job("Succeeded"), **extra)
        ti = _Ti()
        outcome = operator.answered_before({"ti": ti})
        assert outcome is not None and outcome.confirmed and outcome.comment.startswith("answered before")
        assert ti.pushed["outcome"] == outcome


def test_a_job_waiting_at_the_manual_action_is_asked_about():
    operator = _operator(ManualActionOperator, reached=_job("Suspended").model_dump())
    assert operator.answered_before({"ti": _Ti()}) is None
    assert _operator(ManualActionOperator, reached="None").answered_before({"ti": _Ti()}) is None


def test_a_failover_manual_action_tells_the_approver_what_a_refusal_does():
    operator = _operator(RecoveryManualActionOperator, direction="PrimaryToRecovery")
    assert operator.body.startswith("The failover of recovery plan **order-portal** waits for this manual action")
    assert "a rerun of the DAG asks again" in operator.body
    refusal = operator.refusal("admin rejected the manual action 'Confirm licence server'")
    assert "stays suspended there; rerun the DAG to answer again" in str(refusal)
