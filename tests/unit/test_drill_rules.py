"""The drill's pure rules: what it may send, the readiness gate, leftovers, and a VM's report entry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from site_recovery.drill import drill_may_send, gate_reasons, has_leftover_test_failover, probes_for, vm_result

RPI = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationFabrics/f/" \
      "replicationProtectionContainers/c/replicationProtectedItems/vm1"
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)
READY = {"vm": "SQL-PRD-01", "protection_state": "Protected", "replication_health": "Normal", "health_errors": [],
         "scenario": None, "scenario_job": None, "allowed_operations": ["PlannedFailover", "TestFailover"],
         "last_replicated_time": (NOW - timedelta(minutes=3)).isoformat(), "test_failover_state": "None"}


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
    stale = {**READY, "replication_health": "Warning", "allowed_operations": ["DisableProtection"],
             "last_replicated_time": (NOW - timedelta(hours=2)).isoformat(),
             "health_errors": [{"code": "70004", "message": "Replication is paused."}]}
    reasons = gate_reasons(stale, allow_warning=False, max_age_seconds=900, now=NOW)
    assert reasons[0] == "replication health is Warning: [70004] Replication is paused."
    assert reasons[1].startswith("ASR does not allow TestFailover now")
    assert reasons[2].startswith("newest recovery point is 120m00s old") and "the gate allows 15m00s" in reasons[2]
    assert gate_reasons(stale, allow_warning=True, max_age_seconds=3 * 3600, now=NOW)[0].startswith("ASR does not")


def test_a_drill_still_active_is_named_as_such():
    busy = {**READY, "scenario": "TestFailover", "scenario_job": "j9", "allowed_operations": []}
    assert gate_reasons(busy, allow_warning=False, max_age_seconds=900, now=NOW) == [
        "a drill is still active on it (job j9)"]


def test_leftovers_are_test_failovers_that_still_allow_cleanup():
    assert has_leftover_test_failover({"test_failover_state": "WaitingForCompletion",
                                       "allowed_operations": ["TestFailoverCleanup"]})
    assert has_leftover_test_failover({"test_failover_state": "TestFailoverFailed",
                                       "allowed_operations": ["TestFailoverCleanup"]})
    assert not has_leftover_test_failover({"test_failover_state": "MarkedForDeletion", "allowed_operations": []})
    assert not has_leftover_test_failover(READY)


def test_probes_apply_by_vm_pattern():
    probes = [{"kind": "tcp", "port": 1433, "vm": "SQL-*"}, {"kind": "http", "port": 80, "vm": None}]
    assert [p["port"] for p in probes_for("sql-prd-01", probes)] == [1433, 80]
    assert [p["port"] for p in probes_for("WEB-PORTAL-01", probes)] == [80]


def test_a_vms_entry_measures_rto_from_failover_start_to_verification():
    job = {"state": "Succeeded", "state_description": "Completed", "start_time": "2026-11-28T01:00:00+00:00",
           "end_time": "2026-11-28T01:02:37+00:00",
           "protected_items": [{"test_vm_name": "SQL-PRD-01 - Test",
                                "recovery_point_time": "2026-11-28T00:56:00+00:00"}]}
    verify = {"ok": True, "state": "Running", "heartbeat": "OK", "ip_addresses": ["192.168.250.10"],
              "started_at": "2026-11-28T01:02:40+00:00", "verified_at": "2026-11-28T01:04:00+00:00", "probes": []}
    entry = vm_result({"vm": "SQL-PRD-01", "cloud": "Gold-Prod"}, failover_job=job, verify=verify,
                      cleanup_job=None, cleaned={"verified": True, "detail": "ok"}, error=None,
                      rto_target=1800, rpo_target=900)
    assert (entry["outcome"], entry["rto_seconds"], entry["rpo_achieved_seconds"]) == ("passed", 240.0, 240.0)
    assert entry["rto_met"] and entry["rpo_met"]
    partial = vm_result({"vm": "SQL-PRD-01"}, failover_job={**job, "state_description": "PartiallySucceeded"},
                        verify=verify, cleanup_job=None, cleaned={"verified": True}, error=None, rto_target=1800,
                        rpo_target=900)
    assert partial["outcome"] == "failed"
