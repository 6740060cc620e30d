"""A recovery plan's manual action in a real failover or failback: what the person reads, what a refusal does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from site_recovery.exceptions import ApprovalRefused, DrillFailed
from site_recovery.operators.drill import ManualActionOperator
from site_recovery.operators.recovery import RecoveryManualActionOperator


def _operator(cls, **extra):
    return cls(task_id="manual_confirm_licence_server", site_name="lab", plan="order-portal",
               action="Confirm licence server", instructions="Check LIC-SRV-01.", approvers=["admin"],
               job_name="j1", response_timeout=timedelta(minutes=5), **extra)


@pytest.mark.parametrize(("direction", "what"), [("PrimaryToRecovery", "The failover"),
                                                 ("RecoveryToPrimary", "The failback")])
def test_the_person_reads_which_recovery_waits_and_that_a_refusal_undoes_nothing(direction, what):
    operator = _operator(RecoveryManualActionOperator, direction=direction)
    assert operator.body.startswith(f"{what} of recovery plan **order-portal** waits for this manual action")
    assert "stops the run; the plan's job stays suspended at this action and a rerun of the DAG asks again" \
        in operator.body
    refusal = operator.refusal("admin rejected the manual action 'Confirm licence server'")
    assert isinstance(refusal, ApprovalRefused)
    assert "stays suspended there; rerun the DAG to answer again" in str(refusal)


def test_a_drills_manual_action_still_reads_as_the_drills():
    operator = _operator(ManualActionOperator)
    assert operator.body.startswith("The drill of recovery plan **order-portal** waits for this manual action")
    assert isinstance(operator.refusal("nobody confirmed"), DrillFailed)


@pytest.mark.parametrize("reached", [None, "None"])
def test_a_job_that_does_not_wait_at_the_action_asks_nobody(reached):
    operator = _operator(RecoveryManualActionOperator, direction="PrimaryToRecovery", reached=reached)
    assert operator.execute({"ti": None}) is None
