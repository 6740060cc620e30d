"""Typed records: validated where they enter, named in every error, carried by XCom as themselves."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from azure.mgmt.recoveryservicessiterecovery.models import Job, ReplicationProtectedItem
from pydantic import ValidationError

from airflow.sdk.serde import deserialize, serialize
from site_recovery.exceptions import MalformedAsrAnswer
from site_recovery.hooks.asr import summarize_job, summarize_protected_item
from site_recovery.records import (
    DrillGate, GateSkip, JobSummary, ProtectedItemSummary, ProtectionPlanEntry, VmTarget, WaitEvent, format_seconds,
)
from site_recovery.vocabulary import (
    AsrJobState, ProtectionAction, ProtectionState, Scenario, TestFailoverState, WaitReason, WaitStatus,
)

TARGET = {"vm": "SQL-PRD-01", "cloud": "Gold-Prod", "fabric": "f1", "container": "c1", "item_name": "1f0c"}


def test_a_job_in_a_state_asr_never_writes_is_refused_naming_the_field():
    with pytest.raises(MalformedAsrAnswer) as refused:
        summarize_job(Job({"name": "j1", "properties": {"state": "Exploded", "tasks": [], "errors": []}}))
    assert "malformed job (JobSummary)" in str(refused.value)
    assert "state:" in str(refused.value) and "'Exploded'" in str(refused.value)


def test_a_job_without_a_name_is_refused_naming_the_field():
    with pytest.raises(MalformedAsrAnswer, match="name"):
        summarize_job(Job({"properties": {"state": "Succeeded"}}))


def test_a_protected_item_without_properties_is_refused_naming_it():
    with pytest.raises(MalformedAsrAnswer, match="protected item '1f0c' without its properties"):
        summarize_protected_item(ReplicationProtectedItem({"name": "1f0c"}))


def test_a_state_asr_may_add_is_kept_as_asr_wrote_it():
    item = ProtectedItemSummary(name="1f0c", protection_state="SomeFutureState", test_failover_state="None",
                                scenario="EnableDr", replication_health="Normal")
    assert item.protection_state == "SomeFutureState" and not isinstance(item.protection_state, ProtectionState)
    assert item.scenario is Scenario.ENABLE_PROTECTION
    assert item.test_failover_state is TestFailoverState.NONE and not item.in_test_failover
    assert not item.is_enabling and not item.is_protected


def test_naive_times_are_taken_as_utc():
    job = JobSummary(name="j", state="Succeeded", start_time="2026-12-01T10:00:00")
    assert job.start_time == datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    assert job.to_json()["start_time"] == "2026-12-01T10:00:00Z"


@pytest.mark.parametrize("missing", ["vm", "fabric", "container", "item_name"])
def test_a_target_missing_a_field_names_it(missing):
    with pytest.raises(ValidationError) as refused:
        VmTarget.model_validate({k: v for k, v in TARGET.items() if k != missing})
    assert refused.value.errors()[0]["loc"] == (missing,)


def test_a_record_refuses_fields_it_does_not_have():
    with pytest.raises(ValidationError, match="extra_field"):
        VmTarget.model_validate({**TARGET, "extra_field": 1})


def test_a_wait_event_without_a_reason_is_refused():
    with pytest.raises(ValidationError) as refused:
        WaitEvent.from_event({"status": "error", "message": "Timeout: something"})
    assert refused.value.errors()[0]["loc"] == ("reason",)


@pytest.mark.parametrize("reason, status", [
    (WaitReason.SUCCEEDED, WaitStatus.SUCCESS), (WaitReason.FAILED, WaitStatus.ERROR),
    (WaitReason.TIMED_OUT, WaitStatus.ERROR), (WaitReason.ERROR, WaitStatus.ERROR),
])
def test_the_event_status_follows_from_the_reason(reason, status):
    event = WaitEvent(reason=reason, message="m", job=JobSummary(name="j", state=AsrJobState.IN_PROGRESS))
    payload = event.to_event()
    assert payload["status"] == status and payload["reason"] == reason
    assert WaitEvent.from_event(payload) == event


@pytest.mark.parametrize("record", [
    JobSummary(name="j", state="Failed", scenario_name="TestFailover", start_time="2026-12-01T10:00:00Z"),
    VmTarget.model_validate(TARGET),
    ProtectionPlanEntry(vm="A", cloud="Gold", action=ProtectionAction.ENABLE, detail="d",
                        target=VmTarget.model_validate(TARGET)),
    WaitEvent(reason=WaitReason.TIMED_OUT, message="m", jobs={"a": WaitEvent(reason=WaitReason.SUCCEEDED,
                                                                              message="ok")}),
    DrillGate(checked=2, passed=1, skipped=[GateSkip(vm="B", reason="unhealthy")],
              targets=[VmTarget.model_validate(TARGET)]),
], ids=lambda record: type(record).__name__)
def test_xcom_carries_each_record_as_itself(record):
    """Airflow's serde stores a pydantic record and rebuilds the same class (registered in records.py)."""
    stored = serialize(record)
    assert deserialize(stored) == record
    assert type(deserialize(stored)) is type(record)


@pytest.mark.parametrize("seconds, text", [(None, "\u2014"), (4.4, "4s"), (65, "1m 05s"), (7800, "2h 10m")])
def test_one_duration_format(seconds, text):
    assert format_seconds(seconds) == text
