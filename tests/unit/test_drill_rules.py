"""The drill's pure rules: what it may send, the readiness gate, leftovers, and a VM's report entry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from site_recovery.drill import drill_may_send, gate_reasons, has_leftover_test_failover, probes_for, vm_result
from site_recovery.records import (
    CleanupCheck,
    JobSummary,
    ProtectedItemSummary,
    TestVmCheck,
    VmTarget,
    format_seconds,
)
from site_recovery.site import Probe
from site_recovery.vocabulary import DrillOutcome

RPI = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationFabrics/f/" \
      "replicationProtectionContainers/c/replicationProtectedItems/vm1"
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)
READY = ProtectedItemSummary.model_validate(
    {"name": "vm1", "vm": "SQL-PRD-01", "protection_state": "Protected", "replication_health": "Normal",
     "health_errors": [], "scenario": None, "scenario_job": None,
     "allowed_operations": ["PlannedFailover", "TestFailover"],
     "last_replicated_time": (NOW - timedelta(minutes=3)).isoformat(), "test_failover_state": "None"})
TARGET = VmTarget(vm="SQL-PRD-01", cloud="Gold-Prod", fabric="f", container="c", item_name="vm1")


def item(**changes) -> ProtectedItemSummary:
    """READY with ``changes``, validated as the hook would (ASR's strings become vocabulary members)."""
    return ProtectedItemSummary.model_validate({**READY.model_dump(), **changes})


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", RPI, True),
    ("POST", f"{RPI}/testFailover", True),
    ("POST", f"{RPI}/testFailoverCleanup?api-version=2025-08-01", True),
    ("POST", "/subscriptions/s/.../vaults/v/replicationJobs/j1/cancel", True),
    ("POST", f"{RPI}/plannedFailover", False),
    ("POST", f"{RPI}/unplannedFailover", False),
    ("POST", f"{RPI}/failoverCommit", False),
    ("POST", f"{RPI}/reProtect", False),
    ("POST", f"{RPI}/failoverCancel", False),
    ("POST", f"{RPI}/remove", False),
    ("DELETE", RPI, False),
    ("PUT", RPI, False),
    ("PATCH", RPI, False),
    ("POST", f"{RPI}/testFailover/../plannedFailover", False),
])
def test_a_drill_may_only_read_test_failover_clean_up_and_cancel(method, path, allowed):
    assert drill_may_send(method, path) is allowed


def test_a_ready_vm_passes_the_gate():
    assert gate_reasons(READY, allow_warning=False, max_age_seconds=900, now=NOW) == []


def test_the_gate_names_every_reason():
    stale = item(replication_health="Warning", allowed_operations=["DisableProtection"],
                 last_replicated_time=NOW - timedelta(hours=2),
                 health_errors=[{"code": "70004", "message": "Replication is paused."}])
    reasons = gate_reasons(stale, allow_warning=False, max_age_seconds=900, now=NOW)
    assert reasons[0] == "replication health is Warning: [70004] Replication is paused."
    assert reasons[1].startswith("ASR does not allow TestFailover now")
    assert reasons[2].startswith(f"newest recovery point is {format_seconds(7200)} old")
    assert f"the gate allows {format_seconds(900)}" in reasons[2]
    assert gate_reasons(stale, allow_warning=True, max_age_seconds=3 * 3600, now=NOW)[0].startswith("ASR does not")


def test_a_drill_still_active_is_named_as_such():
    busy = item(scenario="TestFailover", scenario_job="j9", allowed_operations=[])
    assert gate_reasons(busy, allow_warning=False, max_age_seconds=900, now=NOW) == [
        "a drill is still active on it (job j9)"]


def test_leftovers_are_test_failovers_that_still_allow_cleanup():
    assert has_leftover_test_failover(item(test_failover_state="WaitingForCompletion",
                                           allowed_operations=["TestFailoverCleanup"]))
    assert has_leftover_test_failover(item(test_failover_state="TestFailoverFailed",
                                           allowed_operations=["TestFailoverCleanup"]))
    assert not has_leftover_test_failover(item(test_failover_state="MarkedForDeletion", allowed_operations=[]))
    assert not has_leftover_test_failover(READY)


def test_probes_apply_by_vm_pattern():
    probes = [Probe(kind="tcp", port=1433, vm="SQL-*"), Probe(kind="http", port=80, vm=None)]
    assert [p.port for p in probes_for("sql-prd-01", probes)] == [1433, 80]
    assert [p.port for p in probes_for("WEB-PORTAL-01", probes)] == [80]


def test_a_vms_entry_measures_rto_from_failover_start_to_verification():
    job = JobSummary.model_validate(
        {"name": "j1", "state": "Succeeded", "state_description": "Completed",
         "start_time": "2026-11-28T01:00:00+00:00", "end_time": "2026-11-28T01:02:37+00:00",
         "protected_items": [{"test_vm_name": "SQL-PRD-01 - Test", "recovery_point_time": "2026-11-28T00:56:00+00:00"}]})
    verify = TestVmCheck.model_validate(
        {"vm_name": "SQL-PRD-01 - Test", "ok": True, "state": "Running", "heartbeat": "OK",
         "ip_addresses": ["192.168.250.10"], "started_at": "2026-11-28T01:02:40+00:00",
         "verified_at": "2026-11-28T01:04:00+00:00", "probes": []})
    entry = vm_result(TARGET, failover_job=job, verify=verify, cleanup_job=None,
                      cleaned=CleanupCheck(verified=True, detail="ok"), rto_target=1800, rpo_target=900)
    assert (entry.outcome, entry.rto_seconds, entry.rpo_achieved_seconds) == (DrillOutcome.PASSED, 240.0, 240.0)
    assert entry.rto_met and entry.rpo_met
    partial = vm_result(TARGET, failover_job=job.model_copy(update={"state_description": "PartiallySucceeded"}),
                        verify=verify, cleanup_job=None, cleaned=CleanupCheck(verified=True, detail=""),
                        rto_target=1800, rpo_target=900)
    assert partial.outcome == DrillOutcome.FAILED


def test_a_failed_test_failover_fails_the_vm_with_asrs_words_and_no_rto():
    failed = JobSummary.model_validate(
        {"name": "j2", "state": "Failed", "start_time": "2026-11-28T01:00:00+00:00",
         "end_time": "2026-11-28T01:01:00+00:00",
         "errors": [{"code": "70038", "message": "The test failover could not complete."}]})
    entry = vm_result(TARGET, failover_job=failed, verify=None, cleanup_job=None,
                      cleaned=CleanupCheck(verified=True, detail="ok"), rto_target=1800, rpo_target=900)
    assert entry.outcome == DrillOutcome.FAILED and "70038" in entry.error
    assert [job.kind for job in entry.jobs] == ["TestFailover"] and entry.rto_seconds is None
    assert [span.phase for span in entry.timeline] == ["test_failover"]


def test_a_vm_without_a_verified_test_vm_or_cleanup_does_not_pass():
    job = JobSummary.model_validate({"name": "j1", "state": "Succeeded", "start_time": "2026-11-28T01:00:00+00:00"})
    unverified = vm_result(TARGET, failover_job=job, verify=None, cleanup_job=None,
                           cleaned=CleanupCheck(verified=True, detail="ok"), rto_target=1800, rpo_target=900)
    assert unverified.outcome == DrillOutcome.FAILED and "not verified" in unverified.error
    not_started = vm_result(TARGET, failover_job=None, verify=None, cleanup_job=None, cleaned=None,
                            rto_target=1800, rpo_target=900)
    assert not_started.outcome == DrillOutcome.FAILED and not_started.jobs == [] and not_started.timeline == []
