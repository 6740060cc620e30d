"""The real recovery's pure rules: where a VM stands, why a run may not start, what each step may send."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from site_recovery.drill import drill_may_send
from site_recovery.failover import (
    assess_vm,
    assessment_markdown,
    data_loss_seconds,
    last_sync_runs,
    plan_problems,
    plan_stage,
    plan_stage_problems,
    recovery_guard,
    resume_guard,
    run_outcome,
    run_problems,
    stage_of,
    step_runs_on,
    verification_markdown,
    vm_problems,
)
from site_recovery.records import (
    ProtectedItemSummary,
    RecoveryApproval,
    RecoveryAssessment,
    RecoveryVm,
    RecoveryVmResult,
    TestVmCheck,
    VmmAnswer,
    VmTarget,
)
from site_recovery.vocabulary import FailoverDirection, FailoverKind, RecoveryStage, RecoveryStep

P2R, R2P = FailoverDirection.PRIMARY_TO_RECOVERY, FailoverDirection.RECOVERY_TO_PRIMARY
RPI = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationFabrics/f/" \
      "replicationProtectionContainers/c/replicationProtectedItems/vm1"
PLAN = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationRecoveryPlans/p1"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
TARGET = VmTarget(vm="LIC-SRV-01", cloud="Gold-Prod", fabric="f", container="c", item_name="vm1")
IDLE = ["PlannedFailover", "UnplannedFailover", "DisableProtection", "TestFailover"]


def item(**fields) -> ProtectedItemSummary:
    base = {"name": "vm1", "vm": "LIC-SRV-01", "protection_state": "Protected",
            "protection_state_description": "Protected", "replication_health": "Normal",
            "allowed_operations": IDLE, "active_location": "Primary", "test_failover_state": "None",
            "last_replicated_time": (NOW - timedelta(minutes=4)).isoformat()}
    return ProtectedItemSummary.model_validate({**base, **fields})


FAILED_OVER = dict(protection_state="CommitPendingStatesBegin",
                   protection_state_description="Planned failover finished",
                   allowed_operations=["Commit", "ReverseReplicate", "CancelFailover", "DisableProtection"],
                   active_location="Recovery")
COMMITTED = dict(protection_state="CommitFailoverCompleted", protection_state_description="Failover committed",
                 allowed_operations=["ReverseReplicate", "DisableProtection"], active_location="Recovery")


@pytest.mark.parametrize("fields, direction, stage", [
    ({}, P2R, RecoveryStage.READY),
    ({"scenario": "PlannedFailover", "scenario_job": "j1", "allowed_operations": []}, P2R, RecoveryStage.FAILING_OVER),
    (FAILED_OVER, P2R, RecoveryStage.FAILED_OVER),
    ({**FAILED_OVER, "scenario": "CommitFailover", "scenario_job": "j2", "allowed_operations": []}, P2R,
     RecoveryStage.COMMITTING),
    (COMMITTED, P2R, RecoveryStage.COMMITTED),
    ({**COMMITTED, "scenario": "ReverseReplication", "scenario_job": "j3"}, P2R, RecoveryStage.REPROTECTING),
    ({"active_location": "Recovery"}, P2R, RecoveryStage.REPROTECTED),
    # the same VM, protected the other way, is where a failback starts
    ({"active_location": "Recovery"}, R2P, RecoveryStage.READY),
    ({}, R2P, RecoveryStage.REPROTECTED),
    ({"scenario": "TestFailover", "scenario_job": "j4"}, P2R, RecoveryStage.BLOCKED),
    ({"test_failover_state": "WaitingForCompletion", "allowed_operations": ["TestFailoverCleanup"]}, P2R,
     RecoveryStage.BLOCKED),
    ({"protection_state": "InitialReplicationFailed", "allowed_operations": ["DisableProtection"]}, P2R,
     RecoveryStage.BLOCKED),
])
def test_where_a_vm_stands_comes_from_asrs_fields(fields, direction, stage):
    assert stage_of(item(**fields), direction) == stage


def test_a_vm_in_a_drill_or_another_operation_is_named_with_the_reason():
    drilled = item(scenario="TestFailover", scenario_job="j4")
    [problem] = vm_problems(drilled, stage_of(drilled, P2R), FailoverKind.PLANNED)
    assert problem.startswith("a drill's test failover is active on it (job j4)")
    waiting = item(test_failover_state="WaitingForCompletion", allowed_operations=["TestFailoverCleanup"])
    assert "run the drill's cleanup first" in vm_problems(waiting, stage_of(waiting, P2R), FailoverKind.PLANNED)[0]
    no_planned = item(allowed_operations=["UnplannedFailover"])
    [problem] = vm_problems(no_planned, stage_of(no_planned, P2R), FailoverKind.PLANNED)
    assert problem == "ASR does not allow a planned failover now (Protected; allowed: UnplannedFailover)"
    assert vm_problems(no_planned, stage_of(no_planned, P2R), FailoverKind.UNPLANNED) == []


def test_a_planned_failover_loses_nothing_an_unplanned_one_loses_since_the_newest_recovery_point():
    assert data_loss_seconds(item(), FailoverKind.PLANNED, NOW) == 0.0
    assert data_loss_seconds(item(), FailoverKind.UNPLANNED, NOW) == 240.0
    assert data_loss_seconds(item(last_replicated_time=None), FailoverKind.UNPLANNED, NOW) is None
    assert assess_vm(item(**FAILED_OVER), TARGET, P2R, FailoverKind.UNPLANNED, NOW).data_loss_seconds is None


def test_every_run_problem_is_named_at_once():
    problems = run_problems(site="lab", confirmation=" lbа ", approvers=[], requested=["LIC-SRV-01", "NOPE-01"],
                            known=["LIC-SRV-01", "FS-PRD-01"],
                            busy_runs={"asr_test_failover_drill__lab": 1, "asr_failback__lab": 0},
                            kind=FailoverKind.PLANNED, source_answered=False)
    assert problems == [
        "the confirmation 'lbа' is not the site's name; type 'lab' to confirm this is the site to recover",
        "the site file names no failover.approvers: no step that changes production may run without a named person "
        "approving it",
        "not protected in this site's clouds: NOPE-01 (protected: FS-PRD-01, LIC-SRV-01)",
        "1 run(s) of asr_test_failover_drill__lab active: one drill, failover or failback per site at a time",
        "a planned failover needs the site it leaves: its VMM server does not answer (shut down cleanly and sync the "
        "VMs); if that site is down, run an unplanned failover",
    ]
    assert run_problems(site="lab", confirmation="lab", approvers=["admin"], requested=["lic-srv-01"],
                        known=["LIC-SRV-01"], busy_runs={}, kind=FailoverKind.UNPLANNED, source_answered=False) == []
    assert "no VM or recovery plan named" in run_problems(
        site="lab", confirmation="lab", approvers=["admin"], requested=[], known=["LIC-SRV-01"], busy_runs={},
        kind=FailoverKind.PLANNED, source_answered=True)[0]


def _body(direction: str | None) -> dict:
    return {"properties": {"failoverDirection": direction}} if direction else {}


@pytest.mark.parametrize("steps, method, path, body, allowed", [
    ((), "GET", RPI, None, True),
    ((), "POST", f"{RPI}/plannedFailover", _body("PrimaryToRecovery"), False),
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/plannedFailover", _body("PrimaryToRecovery"), True),
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/unplannedFailover?api-version=2025-08-01", _body("PrimaryToRecovery"),
     True),
    ((RecoveryStep.FAILOVER,), "POST", f"{PLAN}/plannedFailover", _body("PrimaryToRecovery"), True),
    # the other direction, or none named, is refused: a failover DAG never fails back
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/plannedFailover", _body("RecoveryToPrimary"), False),
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/plannedFailover", None, False),
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/failoverCommit", None, False),
    ((RecoveryStep.FAILOVER,), "POST", f"{RPI}/testFailover", _body("PrimaryToRecovery"), False),
    ((RecoveryStep.FAILOVER,), "POST", "/subscriptions/s/.../vaults/v/replicationJobs/j1/cancel", None, False),
    # a plan's job is resumed only by the task answering its pause (resume_guard), never by a step
    ((RecoveryStep.FAILOVER,), "POST", "/subscriptions/s/.../vaults/v/replicationJobs/j1/resume", None, False),
    ((RecoveryStep.COMMIT,), "POST", f"{RPI}/failoverCommit", None, True),
    ((RecoveryStep.COMMIT,), "POST", f"{RPI}/failoverCancel", None, False),
    ((RecoveryStep.CANCEL,), "POST", f"{RPI}/failoverCancel", None, True),
    # reprotect replicates from the site the VMs now run on: the opposite of the failover's direction
    ((RecoveryStep.REPROTECT,), "POST", f"{RPI}/reProtect", _body("RecoveryToPrimary"), True),
    ((RecoveryStep.REPROTECT,), "POST", f"{RPI}/reProtect", _body("PrimaryToRecovery"), False),
    ((RecoveryStep.REPROTECT,), "POST", f"{RPI}/reProtect", None, False),
    ((RecoveryStep.REPROTECT,), "POST", f"{PLAN}/reProtect", None, True),  # the SDK's plan reprotect has no body
    ((RecoveryStep.REPROTECT,), "POST", f"{PLAN}/reProtect", _body("PrimaryToRecovery"), False),
    ((RecoveryStep.REPROTECT,), "DELETE", RPI, None, False),
    ((RecoveryStep.REPROTECT,), "PUT", RPI, _body("RecoveryToPrimary"), False),
    ((RecoveryStep.REPROTECT,), "POST", f"{RPI}/remove", None, False),
])
def test_each_step_may_send_only_its_own_writes_in_its_direction(steps, method, path, body, allowed):
    assert recovery_guard(P2R, *steps)(method, path, body) is allowed


def test_a_failback_guard_is_the_mirror_image():
    guard = recovery_guard(R2P, RecoveryStep.FAILOVER, RecoveryStep.REPROTECT)
    assert guard("POST", f"{RPI}/plannedFailover", _body("RecoveryToPrimary"))
    assert not guard("POST", f"{RPI}/plannedFailover", _body("PrimaryToRecovery"))
    assert guard("POST", f"{RPI}/reProtect", _body("PrimaryToRecovery"))


@pytest.mark.parametrize("action", ["plannedFailover", "unplannedFailover", "failoverCommit", "failoverCancel",
                                    "reProtect"])
def test_a_drill_still_sends_none_of_them(action):
    for path in (f"{RPI}/{action}", f"{PLAN}/{action}"):
        assert drill_may_send("POST", path, _body("PrimaryToRecovery")) is False


def test_the_approver_reads_every_vm_and_both_vmm_servers():
    assessment = RecoveryAssessment(
        site="lab", direction=P2R, kind=FailoverKind.UNPLANNED, assessed_at=NOW,
        source_vmm=VmmAnswer(server="vmm-ams-01", answered=False, detail="no answer in 60s"),
        target_vmm=VmmAnswer(server="vmm-rtm-01", answered=True, detail="VMM 4.1"),
        vms=[assess_vm(item(), TARGET, P2R, FailoverKind.UNPLANNED, NOW),
             assess_vm(item(vm="A|B", scenario="TestFailover", scenario_job="j4"),
                       TARGET.model_copy(update={"vm": "A|B"}), P2R, FailoverKind.UNPLANNED, NOW)])
    text = assessment_markdown(assessment)
    assert text.startswith("**Unplanned failover of site lab**: primary site to recovery site (PrimaryToRecovery)")
    assert "vmm-ams-01: does not answer (no answer in 60s)" in text
    assert "ASR is told not to touch it; each VM starts from its newest recovery point" in text
    assert "| LIC-SRV-01 | itself | ready to fail over | Protected | Normal | 2026-12-04T11:56:00+00:00 | 4m |" in text
    assert "| A\\|B | itself | blocked |" in text  # a name cannot break the table
    assert assessment.all_problems()[0].startswith("VM A|B: a drill's test failover is active on it")


def test_the_last_sync_runs_unless_an_unplanned_failover_leaves_a_silent_site():
    assert last_sync_runs(FailoverKind.PLANNED, source_answered=False)
    assert last_sync_runs(FailoverKind.UNPLANNED, source_answered=True)
    assert not last_sync_runs(FailoverKind.UNPLANNED, source_answered=False)


def test_the_verification_table_escapes_names_and_says_what_was_seen():
    checks = [TestVmCheck(vm_name="LIC-SRV-01", ok=True, detail="Running, heartbeat OK"),
              TestVmCheck(vm_name="A|B", ok=False, detail="no heartbeat")]
    table = verification_markdown({"LIC-SRV-01": RecoveryStage.FAILED_OVER, "A|B": RecoveryStage.FAILED_OVER,
                                   "FS-PRD-01": RecoveryStage.COMMITTED}, checks)
    assert table.splitlines()[2:] == [
        "| LIC-SRV-01 | failed over, commit pending | verified: Running, heartbeat OK |",
        "| A\\|B | failed over, commit pending | NOT verified: no heartbeat |",
        "| FS-PRD-01 | committed | not verified |"]


def _result(vm: str, stage: RecoveryStage) -> RecoveryVmResult:
    return RecoveryVmResult(vm=vm, stage=stage)


def _assessment(**changes) -> RecoveryAssessment:
    answer = VmmAnswer(server="vmm", answered=True, detail="")
    return RecoveryAssessment(site="lab", direction=P2R, kind=FailoverKind.PLANNED, assessed_at=NOW,
                              source_vmm=answer, target_vmm=answer, vms=[], **changes)


@pytest.mark.parametrize("approvals, stages, expected", [
    ({}, [RecoveryStage.REPROTECTED] * 2, (True, "every VM failed over, verified, committed and protected again")),
    ({RecoveryStep.FAILOVER: RecoveryApproval(step=RecoveryStep.FAILOVER, decision="Reject", detail="rejected")},
     [RecoveryStage.READY], (False, "stopped at the failover approval (rejected); nothing further changed")),
    ({RecoveryStep.COMMIT: RecoveryApproval(step=RecoveryStep.COMMIT, decision=None, detail="no answer: 4h")},
     [RecoveryStage.FAILED_OVER], (False, "stopped at the commit approval (no answer: 4h); nothing further changed")),
    # an approval with nothing to approve did not stop anything
    ({RecoveryStep.FAILOVER: RecoveryApproval(step=RecoveryStep.FAILOVER, needed=False)},
     [RecoveryStage.REPROTECTED], (True, "every VM failed over, verified, committed and protected again")),
    ({RecoveryStep.COMMIT: RecoveryApproval(step=RecoveryStep.COMMIT, decision="Cancel failover", by="admin")},
     [RecoveryStage.READY], (True, "failover cancelled by admin: every VM is back where it was")),
    ({}, [RecoveryStage.REPROTECTED, RecoveryStage.FAILED_OVER],
     (False, "stopped: a reprotected, b failed over, commit pending")),
])
def test_a_runs_outcome_says_where_it_stopped(approvals, stages, expected):
    vms = [_result(name, stage) for name, stage in zip("ab", stages)]
    assert run_outcome(_assessment(), approvals, vms) == expected


def test_a_refused_or_missing_assessment_is_the_outcome():
    assert run_outcome(None, {}, []) == (False, "stopped before the assessment")
    assert run_outcome(_assessment(problems=["x", "y"]), {}, []) == (
        False, "refused at the assessment: 2 problem(s), nothing changed")


PLANS = {"order-portal": ["SQL-PRD-01", "APP-ERP-01"], "file-and-print": ["FS-PRD-01", "SQL-PRD-01"]}


def test_every_plan_problem_is_named_at_once():
    problems = plan_problems(["Order-Portal", "file-and-print", "payroll"], ["app-erp-01", "LIC-SRV-01"], PLANS,
                             vault_plans=["order-portal"])
    assert problems == [
        "no recovery plan payroll in the site file (plans: file-and-print, order-portal)",
        "recovery plan(s) file-and-print not in the vault: run the deployment DAG first",
        "VM SQL-PRD-01 is in both recovery plans order-portal and file-and-print: recover it with one of them",
        "named both one by one and through a recovery plan: app-erp-01 (plan order-portal); name each VM once",
    ]
    assert plan_problems(["order-portal"], ["LIC-SRV-01"], PLANS, ["order-portal", "file-and-print"]) == []
    assert run_problems(site="lab", confirmation="lab", approvers=["admin"], requested=[], known=["SQL-PRD-01"],
                        busy_runs={}, kind=FailoverKind.PLANNED, source_answered=True,
                        requested_plans=["order-portal"], plans=PLANS, vault_plans=["order-portal"]) == []


def _member(name: str, stage: RecoveryStage) -> RecoveryVm:
    target = VmTarget(vm=name, cloud="c", fabric="f", container="k", item_name=name.lower(), item_id="i",
                      protectable_item_id="p", policy_id="pol")
    return RecoveryVm(vm=name, stage=stage, target=target, protection="Protected", plan="order-portal")


def test_a_plan_takes_a_step_as_one_job_only_when_its_members_stand_together():
    together = [_member("SQL-PRD-01", RecoveryStage.READY), _member("APP-ERP-01", RecoveryStage.READY)]
    assert plan_stage(together) == RecoveryStage.READY
    assert plan_stage_problems("order-portal", together, ["SQL-PRD-01", "APP-ERP-01"]) == []
    apart = [_member("SQL-PRD-01", RecoveryStage.FAILED_OVER), _member("APP-ERP-01", RecoveryStage.READY)]
    assert plan_stage(apart) is None
    assert plan_stage_problems("order-portal", apart, ["SQL-PRD-01", "APP-ERP-01", "WEB-PORTAL-01"]) == [
        "recovery plan order-portal: WEB-PORTAL-01 not protected in this site's clouds",
        "recovery plan order-portal: its VMs stand at different stages (SQL-PRD-01: failed over, commit pending, "
        "APP-ERP-01: ready to fail over); recover them one by one with the 'vms' param",
    ]


def test_a_pause_may_resume_its_plans_job_and_nothing_else():
    guard = resume_guard("J1")
    jobs = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationJobs"
    assert guard("GET", f"{jobs}/j2", None)
    assert guard("POST", f"{jobs}/j1/resume?api-version=2025-08-01", {"properties": {"comments": "ok"}})
    assert not guard("POST", f"{jobs}/j2/resume", None)  # another plan's job, or a drill's
    assert not guard("POST", f"{jobs}/j1/cancel", None)
    assert not guard("POST", f"{RPI}/plannedFailover", _body("PrimaryToRecovery"))


def test_a_step_runs_while_the_vms_are_active_where_it_starts():
    assert step_runs_on(RecoveryStep.FAILOVER, P2R) == "Primary" and step_runs_on(RecoveryStep.FAILOVER, R2P) == \
        "Recovery"
    assert [step_runs_on(step, P2R) for step in (RecoveryStep.COMMIT, RecoveryStep.CANCEL, RecoveryStep.REPROTECT)] \
        == ["Recovery"] * 3
