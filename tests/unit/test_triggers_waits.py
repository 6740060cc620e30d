"""The other ASR waits: a batch of jobs, a VM's initial replication, a free replication slot.

Each trigger is run as the triggerer runs it (``run()`` on an event loop), against a scripted
async hook and a fake clock, and ends with exactly one event whose ``reason`` is the decision.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.mgmt.recoveryservicessiterecovery.models import Job, ReplicationProtectedItem

from site_recovery.records import WaitEvent
from site_recovery.triggers import base as base_module
from site_recovery.triggers import vault_reads as vault_reads_module
from site_recovery.triggers.asr import AsrJobsTrigger
from site_recovery.triggers.protection import InitialReplicationTrigger, ReplicationSlotTrigger
from site_recovery.vocabulary import WaitReason

START = 1_900_000_000.0
VAULT = {"azure_conn_id": "azure_asr", "resource_group_name": "rg1", "vault_name": "vault1"}


class FakeClock:
    def __init__(self):
        self.now = START
        self.sleeps: list[float] = []

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(base_module, "time", SimpleNamespace(time=lambda: clock.now))
    monkeypatch.setattr(base_module, "asyncio", SimpleNamespace(sleep=clock.sleep))
    monkeypatch.setattr(vault_reads_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    return clock


class Script:
    """Answers (or raises) in order; the last answer repeats."""

    def __init__(self, *answers):
        self.answers = list(answers)

    async def __call__(self, *args, **kwargs):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeHook:
    def __init__(self, **scripts):
        # the vault's list of running jobs shows none: every job read is a GET of the job, as each wait
        # read its own job before reads were shared (test_trigger_asr covers a job still listed)
        self.alist_jobs = mock.AsyncMock(return_value=[])
        for name, script in scripts.items():
            setattr(self, name, mock.AsyncMock(side_effect=script.__call__))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None


def wired(trigger, hook):
    trigger.hook = lambda: hook
    trigger._log = mock.MagicMock()
    return trigger


async def only_event(trigger) -> WaitEvent:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    payload = events[0].payload
    assert json.loads(json.dumps(payload)) == payload  # the triggerer stores it as JSON
    return WaitEvent.from_event(payload)


def job(name, state, target="VM1", scenario="TestFailoverCleanup", errors=()):
    return Job({"name": name, "properties": {
        "scenarioName": scenario, "friendlyName": "Cleanup test failover", "targetObjectName": target,
        "state": state, "stateDescription": state, "startTime": "2030-03-17T17:46:40Z",
        "endTime": "2030-03-17T17:48:20Z" if state in ("Succeeded", "Failed", "Cancelled") else "0001-01-01T00:00:00",
        "allowedActions": [], "tasks": [], "errors": list(errors)}})


def item(state="Protected", health="Normal", percent="100"):
    return ReplicationProtectedItem({
        "name": "1f0c", "properties": {
            "friendlyName": "SQL-PRD-01", "protectionState": state, "protectionStateDescription": state,
            "replicationHealth": health, "healthErrors": [], "allowedOperations": [], "testFailoverState": "None",
            "providerSpecificDetails": {"instanceType": "HyperVReplica2012R2",
                                        "initialReplicationDetails": {"initialReplicationProgressPercentage": percent}},
        }})


def throttled(seconds: int) -> HttpResponseError:
    class Answer:
        status_code, reason, headers, request = 429, "Too Many Requests", {"Retry-After": str(seconds)}, None

        def text(self, encoding=None):
            return '{"error": {"code": "TooManyRequests", "message": "slow down"}}'

    return HttpResponseError(response=Answer())


# ------------------------------------------------------------------------------- serialize
@pytest.mark.parametrize("trigger", [
    AsrJobsTrigger(**VAULT, job_names=["a", "b"], poll_interval=30, end_time=START + 60),
    InitialReplicationTrigger(**VAULT, fabric_name="f", container_name="c", item_name="i", vm_name="SQL-PRD-01",
                              poll_interval=60, end_time=START + 600, timeout_text="12h", first_poll_delay=60),
    ReplicationSlotTrigger(**VAULT, fabrics=["f1", "f2"], limit=3, poll_interval=30, end_time=START + 600),
], ids=lambda trigger: type(trigger).__name__)
def test_each_trigger_rebuilds_from_what_it_serializes(trigger):
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, name = classpath.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls is type(trigger)
    assert cls(**kwargs).serialize() == (classpath, kwargs)


# -------------------------------------------------------------------------------- job batch
@pytest.mark.asyncio
async def test_a_batch_succeeds_once_every_job_has(clock):
    hook = FakeHook(aget_job=Script(job("a", "InProgress"), job("b", "Succeeded"), job("a", "Succeeded")))
    event = await only_event(wired(AsrJobsTrigger(**VAULT, job_names=["a", "b"], poll_interval=30,
                                                  end_time=START + 600), hook))
    assert event.reason is WaitReason.SUCCEEDED
    assert set(event.jobs) == {"a", "b"} and all(e.succeeded for e in event.jobs.values())
    assert hook.aget_job.await_count == 3  # "b" is not read again once it has ended
    assert clock.sleeps == [30]


@pytest.mark.asyncio
async def test_a_batch_with_a_failed_job_fails_naming_it(clock):
    error = {"serviceErrorDetails": {"code": "28092", "message": "Cleanup failed."}}
    hook = FakeHook(aget_job=Script(job("a", "Failed", errors=[error]), job("b", "Succeeded")))
    event = await only_event(wired(AsrJobsTrigger(**VAULT, job_names=["a", "b"], poll_interval=30,
                                                  end_time=START + 600), hook))
    assert event.reason is WaitReason.FAILED
    assert event.jobs["a"].reason is WaitReason.FAILED and event.jobs["b"].succeeded
    assert "1 of 2 ASR job(s) did not succeed" in event.message and "[28092] Cleanup failed." in event.message


@pytest.mark.asyncio
async def test_a_batch_times_out_keeping_what_ended(clock):
    hook = FakeHook(aget_job=Script(job("a", "Succeeded"), job("b", "InProgress")))
    event = await only_event(wired(AsrJobsTrigger(**VAULT, job_names=["a", "b"], poll_interval=30,
                                                  end_time=START + 45), hook))
    assert event.reason is WaitReason.TIMED_OUT
    assert event.jobs["a"].succeeded and event.jobs["b"].reason is WaitReason.TIMED_OUT
    assert event.jobs["b"].job.state == "InProgress"
    assert clock.sleeps == [30, 15]


@pytest.mark.asyncio
async def test_a_batch_honours_retry_after_on_one_job_and_reads_the_others(clock):
    hook = FakeHook(aget_job=Script(throttled(90), job("b", "Succeeded"), job("a", "Succeeded")))
    event = await only_event(wired(AsrJobsTrigger(**VAULT, job_names=["a", "b"], poll_interval=30,
                                                  end_time=START + 600), hook))
    assert event.succeeded
    assert clock.sleeps == [90]


@pytest.mark.asyncio
async def test_a_batch_that_cannot_read_ends_with_an_error(clock):
    hook = FakeHook(aget_job=Script(PermissionError("denied")))
    event = await only_event(wired(AsrJobsTrigger(**VAULT, job_names=["a"], poll_interval=30,
                                                  end_time=START + 600), hook))
    assert event.reason is WaitReason.ERROR and "denied" in event.message
    assert event.jobs["a"].reason is WaitReason.ERROR


# -------------------------------------------------------------------- initial replication
def replication(end_in: float = 600, **kwargs) -> InitialReplicationTrigger:
    return InitialReplicationTrigger(**VAULT, fabric_name="f", container_name="c", item_name="1f0c",
                                     vm_name="SQL-PRD-01", poll_interval=60, end_time=START + end_in,
                                     timeout_text="10m", **kwargs)


@pytest.mark.asyncio
async def test_initial_replication_succeeds_when_protected_and_healthy(clock):
    hook = FakeHook(alist_protected_items=Script(
        [item("UnprotectedStatesBegin", percent="40")], ServiceRequestError("reset"), [item()]))
    trigger = wired(replication(), hook)
    event = await only_event(trigger)
    assert event.reason is WaitReason.SUCCEEDED and event.item.vm == "SQL-PRD-01"
    assert clock.sleeps == [60, 60]
    assert any("(40%)" in call.args[1] for call in trigger._log.info.call_args_list)


@pytest.mark.asyncio
async def test_initial_replication_fails_when_the_item_goes_away(clock):
    hook = FakeHook(alist_protected_items=Script([]))
    event = await only_event(wired(replication(), hook))
    assert event.reason is WaitReason.FAILED and "no longer protected" in event.message


@pytest.mark.asyncio
async def test_initial_replication_fails_when_it_failed(clock):
    hook = FakeHook(alist_protected_items=Script([item("InitialReplicationFailed", "Critical")]))
    event = await only_event(wired(replication(), hook))
    assert event.reason is WaitReason.FAILED and event.item.protection_state == "InitialReplicationFailed"


@pytest.mark.asyncio
async def test_initial_replication_times_out_saying_where_it_stood(clock):
    hook = FakeHook(alist_protected_items=Script([item("UnprotectedStatesBegin", percent="42")]))
    event = await only_event(wired(replication(end_in=100, first_poll_delay=60), hook))
    assert event.reason is WaitReason.TIMED_OUT
    assert "(42%)" in event.message and "limit 10m" in event.message
    assert clock.sleeps == [60, 40]


@pytest.mark.asyncio
async def test_initial_replication_that_cannot_read_is_an_error(clock):
    hook = FakeHook(alist_protected_items=Script(PermissionError("denied")))
    event = await only_event(wired(replication(), hook))
    assert event.reason is WaitReason.ERROR and "denied" in event.message


# -------------------------------------------------------------------------- replication slot
def enabling(vm: str) -> Job:
    return job(f"job-{vm}", "InProgress", target=vm, scenario="PrimaryIrCompletion")


@pytest.mark.asyncio
async def test_a_slot_frees_up_when_fewer_than_the_limit_replicate(clock):
    hook = FakeHook(alist_jobs=Script([enabling("A"), enabling("B")], [enabling("A")]))
    event = await only_event(wired(ReplicationSlotTrigger(**VAULT, fabrics=["f1"], limit=2, poll_interval=30,
                                                          end_time=START + 600), hook))
    assert event.reason is WaitReason.SUCCEEDED and event.busy == ["A"]
    assert clock.sleeps == [30, 30]  # the first count waits one interval: the task has just counted
    hook.alist_jobs.assert_awaited_with("rg1", "vault1", filter="jobStatus eq 'InProgress' and fabricId eq 'f1'")


@pytest.mark.asyncio
async def test_a_slot_wait_times_out_naming_who_holds_the_slots(clock):
    hook = FakeHook(alist_jobs=Script([enabling("A"), enabling("B")]))
    event = await only_event(wired(ReplicationSlotTrigger(**VAULT, fabrics=["f1"], limit=2, poll_interval=30,
                                                          end_time=START + 50), hook))
    assert event.reason is WaitReason.TIMED_OUT and event.busy == ["A", "B"]
    assert "(A, B)" in event.message


@pytest.mark.asyncio
async def test_a_slot_wait_that_cannot_count_is_an_error(clock):
    hook = FakeHook(alist_jobs=Script(PermissionError("denied")))
    event = await only_event(wired(ReplicationSlotTrigger(**VAULT, fabrics=["f1"], limit=2, poll_interval=30,
                                                          end_time=START + 600), hook))
    assert event.reason is WaitReason.ERROR
