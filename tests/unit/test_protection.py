"""The pure decisions of step 9: plan per VM, requested names, initial replication status to event."""

from __future__ import annotations

import pytest
from azure.mgmt.recoveryservicessiterecovery.models import ReplicationProtectedItem

from site_recovery.hooks.asr import summarize_protected_item
from site_recovery.protection import (
    ReplicationProgress, ScopeError, check_requested, classify, initial_replication_event,
    initial_replication_timeout_event,
)
from site_recovery.records import ProtectableVm
from site_recovery.vocabulary import ProtectionAction, WaitReason

ENABLE, WAIT, PROTECTED = ProtectionAction.ENABLE, ProtectionAction.WAIT, ProtectionAction.PROTECTED
NOT_PROTECTABLE, ATTENTION = ProtectionAction.NOT_PROTECTABLE, ProtectionAction.ATTENTION
PROVIDER = "HyperVReplica2012R2"
VM = ProtectableVm(name="1f0c", id="/x/1f0c", vm="SQL-PRD-01", protected=False, readiness_errors=[],
                   supported_providers=[PROVIDER])


def vm(**changes) -> ProtectableVm:
    return VM.model_copy(update=changes)


def is_enabling(summary) -> bool:
    return summary.is_enabling


def item(state="Protected", health="Normal", description=None, percent="0", scenario="None", job="None", errors=()):
    """A protected item as the SDK deserializes it from the wire, summarized."""
    wire = {
        "name": "1f0c", "id": "/x/replicationProtectedItems/1f0c",
        "properties": {
            "friendlyName": "SQL-PRD-01", "protectableItemId": "/x/replicationProtectableItems/1f0c",
            "protectionState": state, "protectionStateDescription": description or state,
            "replicationHealth": health, "healthErrors": list(errors), "allowedOperations": ["TestFailover"],
            "testFailoverState": "None", "activeLocation": "Primary",
            "currentScenario": {"scenarioName": scenario, "jobId": f"/x/replicationJobs/{job}",
                                "startTime": "1753-01-01T01:01:01Z"},
            "providerSpecificDetails": {
                "instanceType": "HyperVReplica2012R2", "lastReplicatedTime": "2026-11-25T08:00:00Z",
                "initialReplicationDetails": {"initialReplicationType": "OverNetwork",
                                              "initialReplicationProgressPercentage": percent}},
        },
    }
    return summarize_protected_item(ReplicationProtectedItem(wire))


def test_the_summary_reads_the_wire_shape():
    s = item("UnprotectedStatesBegin", description="Enabling protection", scenario="EnableDr", job="abc")
    assert (s.vm, s.scenario, s.scenario_job, s.initial_replication_percent) == ("SQL-PRD-01", "EnableDr", "abc", 0)
    assert s.last_replicated_time.isoformat() == "2026-11-25T08:00:00+00:00"
    idle = item()
    assert (idle.scenario, idle.scenario_job) == (None, None)  # ASR's "None" scenario and job


@pytest.mark.parametrize("vm, protected_item, action", [
    (VM, None, ENABLE),
    (VM, item(), PROTECTED),
    (VM, item("UnprotectedStatesBegin", description="Initial replication in progress", percent="40"), WAIT),
    (VM, item("InitialReplicationFailed", health="Critical"), ATTENTION),
    (vm(readiness_errors=["The virtual machine has shared virtual hard disks."]), None, NOT_PROTECTABLE),
    (vm(supported_providers=["HyperVReplica2012"]), None, NOT_PROTECTABLE),
    (vm(protected=True), None, ATTENTION),
])
def test_each_vm_gets_one_action(vm, protected_item, action):  # noqa: F811 (the parameter shadows vm())
    got, detail = classify(vm, protected_item, PROVIDER)
    assert got == action and detail


def test_a_not_protectable_vm_carries_asrs_reason():
    _, detail = classify(vm(readiness_errors=["It has a pass-through disk."]), None, PROVIDER)
    assert detail == "It has a pass-through disk."


def test_requested_names_are_checked_against_the_clouds_and_the_scope():
    clouds = {"Gold-Prod": ["SQL-PRD-01", "SQL-FCI-01"], "Silver-Prod": ["JUMP-01"]}
    assert check_requested(["sql-prd-01", " "], clouds, ["SQL-PRD-01", "SQL-FCI-01"]) == {"sql-prd-01"}
    with pytest.raises(ScopeError) as refused:
        check_requested(["NOPE", "JUMP-01"], clouds, ["SQL-PRD-01"])
    assert "not in any paired cloud (Gold-Prod, Silver-Prod): NOPE" in str(refused.value)
    assert "excluded by the site file's scope: JUMP-01 (Silver-Prod)" in str(refused.value)


def test_initial_replication_succeeds_only_when_protected_and_healthy():
    assert initial_replication_event(item("UnprotectedStatesBegin", percent="10"), "SQL-PRD-01") is None
    assert initial_replication_event(item(health="Warning"), "SQL-PRD-01") is None  # wait for delta cycles
    done = initial_replication_event(item(), "SQL-PRD-01")
    assert done.reason is WaitReason.SUCCEEDED and "delta replication healthy" in done.message


def test_a_failed_or_vanished_replication_is_an_error_with_asrs_words():
    error = {"errorCode": "70004", "errorMessage": "Replication failed.", "recommendedAction": "Resynchronize."}
    failed = initial_replication_event(item("InitialReplicationFailed", "Critical", errors=[error]), "SQL-PRD-01")
    assert failed.reason is WaitReason.FAILED
    assert "[70004] Replication failed. Recommended action: Resynchronize." in failed.message
    gone = initial_replication_event(None, "SQL-PRD-01")
    assert gone.reason is WaitReason.FAILED and "no longer protected" in gone.message


def test_the_timeout_says_where_replication_stood():
    stuck = item("UnprotectedStatesBegin", description="Initial replication in progress", percent="42")
    event = initial_replication_timeout_event(stuck, "FS-PRD-01", 0, "12h")
    assert event.reason is WaitReason.TIMED_OUT
    assert event.message.startswith("Timeout: initial replication of VM 'FS-PRD-01'")
    assert "(42%)" in event.message and "limit 12h" in event.message


def test_enabling_counts_enable_and_initial_replication_but_not_failures():
    assert is_enabling(item("UnprotectedStatesBegin"))
    assert not is_enabling(item())
    assert not is_enabling(item("InitialReplicationFailed"))


def test_progress_is_logged_only_when_it_changes():
    progress = ReplicationProgress()
    first = item("UnprotectedStatesBegin", description="Initial replication in progress", percent="10")
    assert progress.update(first, "SQL-PRD-01") == [
        "VM 'SQL-PRD-01': Initial replication in progress (10%), replication health Normal, "
        "last replicated 2026-11-25T08:00:00+00:00."]
    assert progress.update(first, "SQL-PRD-01") == []
    assert len(progress.update(item("UnprotectedStatesBegin", description="Initial replication in progress",
                                    percent="55"), "SQL-PRD-01")) == 1
