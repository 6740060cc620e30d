from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.mgmt.recoveryservicessiterecovery.models import Job

from airflow.triggers.base import TriggerEvent
from site_recovery.hooks.asr import summarize_job
from site_recovery.records import WaitEvent
from site_recovery.triggers import base as trigger_module
from site_recovery.triggers import vault_reads as vault_reads_module
from site_recovery.vocabulary import AsrJobState, WaitReason
from site_recovery.triggers.asr import AsrJobTrigger, JobProgress, job_event, timeout_event

JOB = "866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11"
START = 1_900_000_000.0
KWARGS = {
    "azure_conn_id": "azure_asr",
    "resource_group_name": "rg1",
    "vault_name": "vault1",
    "job_name": JOB,
    "poll_interval": 30,
    "end_time": START + 3600,
    "fail_on_partial_success": True,
    "wait_on_suspended": False,
    "first_poll_delay": 0,
    "cancel_on_kill": False,
    "suspend_at": None,
    "until_group": None,
}
ERROR = {
    "serviceErrorDetails": {
        "code": "150261",
        "message": "Replication policy creation failed.",
        "possibleCauses": "The VMM server is offline.",
        "recommendedAction": "Bring the VMM server online.",
    }
}


def make_job(state="InProgress", description=None, tasks=(), errors=(), allowed=("Cancel",)) -> Job:
    return Job(
        {
            "name": JOB,
            "properties": {
                "scenarioName": "TestFailover",
                "friendlyName": "Test failover",
                "targetObjectName": "VM1",
                "state": state,
                "stateDescription": description or state,
                "startTime": "2030-03-17T17:46:40Z",
                "endTime": "2030-03-17T17:48:20Z" if AsrJobState(state).is_terminal else "0001-01-01T00:00:00",
                "allowedActions": list(allowed),
                "tasks": [
                    {"name": name, "friendlyName": friendly, "state": task_state}
                    for name, friendly, task_state in tasks
                ],
                "errors": list(errors),
            },
        }
    )


def summary_of(state, description=None, **kwargs):
    return summarize_job(make_job(state, description, **kwargs))


def test_serialize():
    trigger = AsrJobTrigger(**KWARGS)

    classpath, kwargs = trigger.serialize()

    assert classpath == "site_recovery.triggers.asr.AsrJobTrigger"
    assert kwargs == KWARGS
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert AsrJobTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("state", "description", "fail_on_partial", "wait_on_suspended", "status", "message_part"),
    [
        ("NotStarted", None, True, False, None, None),
        ("InProgress", None, True, False, None, None),
        ("Other", None, True, False, None, None),
        ("Succeeded", "Completed", True, False, "success", "'Test failover' on VM1 (job 866dd326"),
        ("Succeeded", "PartiallySucceeded", True, False, "error", "only partially succeeded: [150261]"),
        ("Succeeded", "PartiallySucceeded", False, False, "success", "partially succeeded"),
        ("Failed", None, True, False, "error", "failed: [150261] Replication policy creation failed."),
        ("Cancelled", None, True, False, "error", "cancelled"),
        ("Suspended", None, True, False, "error", "waiting for a manual action (task 'Shut down VMs')"),
        ("Suspended", None, True, True, None, None),
    ],
)
def test_job_event(state, description, fail_on_partial, wait_on_suspended, status, message_part):
    summary = summary_of(
        state,
        description,
        tasks=[("Manual", "Shut down VMs", "Suspended" if state == "Suspended" else "Succeeded")],
        errors=[ERROR] if status == "error" or description == "PartiallySucceeded" else [],
    )

    event = job_event(summary, fail_on_partial_success=fail_on_partial, wait_on_suspended=wait_on_suspended)

    if status is None:
        assert event is None
        return
    assert event.status == status
    assert event.reason is (WaitReason.SUCCEEDED if status == "success" else WaitReason.FAILED)
    assert message_part in event.message
    assert event.job == summary
    assert json.loads(json.dumps(event.to_event())) == event.to_event()
    assert WaitEvent.from_event(event.to_event()) == event


def test_failure_message_carries_asr_advice():
    event = job_event(summary_of("Failed", errors=[ERROR]), fail_on_partial_success=True, wait_on_suspended=False)

    assert event.message == (
        "'Test failover' on VM1 (job 866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11) failed: [150261] Replication policy "
        "creation failed. Possible causes: The VMM server is offline. Recommended action: Bring the VMM server online."
    )


def test_timeout_event():
    event = timeout_event(summary_of("InProgress"), START)

    assert event.reason is WaitReason.TIMED_OUT
    assert event.message.startswith("Timeout: 'Test failover' on VM1")
    assert "still InProgress at 2030-03-17T17:46:40+00:00" in event.message


def test_only_the_reason_says_timeout_not_the_message():
    """An ASR error whose text says "Timeout" is a failed job, not a timed-out wait."""
    error = {"serviceErrorDetails": {"code": "1", "message": "Timeout waiting for the VMM server."}}
    event = job_event(summary_of("Failed", errors=[error]), fail_on_partial_success=True, wait_on_suspended=False)
    assert event.reason is WaitReason.FAILED and "Timeout" in event.message


def test_job_progress_reports_each_change_once():
    progress = JobProgress()
    first = summary_of("InProgress", tasks=[("a", "Check", "InProgress"), ("b", "Create test VM", "NotStarted")])
    second = summary_of("InProgress", tasks=[("a", "Check", "Succeeded"), ("b", "Create test VM", "NotStarted")])
    second.tasks[0].duration_seconds = 42.4

    assert progress.update(first) == [
        "'Test failover' on VM1 (job 866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11) is InProgress.",
        "Task 'Check' is InProgress.",
        "Task 'Create test VM' is NotStarted.",
    ]
    assert progress.update(second) == ["Task 'Check' is Succeeded after 42s."]
    assert progress.update(second) == []


def test_job_progress_tells_apart_a_plans_tasks_of_the_same_name():
    """Every group's "start VMs" task of a plan's job has the same name; each is reported on its own."""
    progress = JobProgress()
    tasks = [("StartVms", "Group 1: Start virtual machines", "Succeeded"),
             ("StartVms", "Group 2: Start virtual machines", "NotStarted")]
    progress.update(summary_of("InProgress", tasks=tasks))
    later = summary_of("InProgress", tasks=[tasks[0], ("StartVms", "Group 2: Start virtual machines", "Succeeded")])

    assert progress.update(later) == ["Task 'Group 2: Start virtual machines' is Succeeded."]


PLAN_TASKS = [("Preflight", "Recovery plan preflight checks", "Succeeded"),
              ("Manual", "Confirm licence server", "Suspended"),
              ("StartVms", "Group 2: Start virtual machines", "NotStarted")]


@pytest.mark.parametrize(("state", "tasks", "reason", "says"), [
    ("Suspended", PLAN_TASKS, WaitReason.SUSPENDED, "waits for the manual action 'Confirm licence server'"),
    ("Suspended", [(n, "Check the firewall", s) for n, _, s in PLAN_TASKS[1:2]], WaitReason.FAILED,
     "waits for the manual action(s) 'Check the firewall', not 'Confirm licence server'"),
    ("InProgress", [(n, f, "InProgress" if s == "Suspended" else s) for n, f, s in PLAN_TASKS], None, None),
    ("Failed", PLAN_TASKS[:1], WaitReason.FAILED, "failed before reaching the manual action 'Confirm licence server'"),
    ("Succeeded", PLAN_TASKS[:1], WaitReason.FAILED,
     "succeeded before reaching the manual action 'Confirm licence server'"),
])
def test_a_wait_for_a_manual_action_ends_when_the_job_waits_on_it(state, tasks, reason, says):
    event = job_event(summary_of(state, tasks=tasks), fail_on_partial_success=True, wait_on_suspended=False,
                      suspend_at="Confirm licence server")

    assert (event.reason if event else None) is reason
    assert event is None or says in event.message


def plan_job(state: str, groups: list[tuple[str, str]], manual: str | None = None) -> Job:
    """A recovery plan's test failover job: its Failover group, then one task per boot group (id, state)."""
    def group_task(group: str, task_state: str) -> dict:
        return {"name": "RecoveryPlanGroupTask", "friendlyName": f"Group {group}: Start virtual machines",
                "state": task_state,
                "groupTaskCustomDetails": {"instanceType": "RecoveryPlanGroupTaskDetails", "groupId": group,
                                           "rpGroupType": "Boot",
                                           "childTasks": [{"friendlyName": f"VM-{group}-{n}"} for n in (1, 2)]}}

    tasks = [group_task("Failover", "Succeeded"), *(group_task(g, s) for g, s in groups)]
    if manual:
        tasks.insert(2, {"name": "ManualActionTask", "friendlyName": manual, "state": "Suspended"})
    job = make_job(state)
    job.properties.tasks = Job({"name": JOB, "properties": {"tasks": tasks}}).properties.tasks
    return job


@pytest.mark.parametrize(("state", "groups", "manual", "reason", "says"), [
    ("InProgress", [("1", "InProgress"), ("2", "NotStarted")], None, None, None),
    ("InProgress", [("1", "Succeeded"), ("2", "InProgress")], None, WaitReason.SUCCEEDED,
     f"Group 1 of 'Test failover' on VM1 (job {JOB}) is up (VM-1-1, VM-1-2)."),
    # a manual action before the group: the job waits for a person, and so does this wait
    ("Suspended", [("1", "NotStarted"), ("2", "NotStarted")], "Confirm licence server", None, None),
    ("Failed", [("1", "Failed"), ("2", "NotStarted")], None, WaitReason.FAILED, "task 'Group 1: Start virtual "
                                                                                "machines' failed"),
    ("Cancelled", [("1", "InProgress"), ("2", "NotStarted")], None, WaitReason.FAILED, "cancelled before group 1 "
                                                                                       "was up"),
    ("Succeeded", [("2", "Succeeded")], None, WaitReason.FAILED, "succeeded and has no group 1"),
    ("Succeeded", [("1", "Succeeded"), ("2", "Succeeded")], None, WaitReason.SUCCEEDED, "Group 1 of"),
])
def test_a_wait_for_a_boot_group_ends_when_the_groups_task_has_succeeded(state, groups, manual, reason, says):
    event = job_event(summarize_job(plan_job(state, groups, manual)), fail_on_partial_success=True,
                      wait_on_suspended=False, until_group="1")

    assert (event.reason if event else None) is reason
    assert event is None or says in event.message


class FakeClock:
    def __init__(self):
        self.now = START
        self.sleeps: list[float] = []

    def time(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class FakeHook:
    """Async stand-in for AzureSiteRecoveryHook: aget_job answers (or raises) from a script."""

    def __init__(self, *answers, running_lists=()):
        self.answers = list(answers)
        self.aget_job = mock.AsyncMock(side_effect=self._next)
        self.acancel_job = mock.AsyncMock(return_value=JOB)
        # the vault's running jobs, one answer per list (then nothing running): by default no job is
        # listed, so every read is a GET of the job, as when each wait read its own job
        self.running_lists = list(running_lists)
        self.alist_jobs = mock.AsyncMock(side_effect=self._running)
        self.closed = False

    async def _running(self, *args, filter=None, raw_response_hook=None):
        return self.running_lists.pop(0) if self.running_lists else []

    async def _next(self, *args):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.closed = True


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(trigger_module, "time", SimpleNamespace(time=clock.time))
    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=clock.sleep))
    monkeypatch.setattr(vault_reads_module, "time", SimpleNamespace(monotonic=clock.time))
    return clock


def start(hook: FakeHook, **overrides) -> AsrJobTrigger:
    trigger = AsrJobTrigger(**(KWARGS | overrides))
    trigger.hook = lambda: hook
    trigger._log = mock.MagicMock()
    return trigger


async def events_of(trigger: AsrJobTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def logged(trigger: AsrJobTrigger, level: str) -> list[str]:
    return [call.args[0] % call.args[1:] for call in getattr(trigger._log, level).call_args_list]


@pytest.mark.asyncio
async def test_run_logs_task_transitions_and_succeeds(clock):
    hook = FakeHook(
        make_job(tasks=[("check", "Prerequisites check", "InProgress"), ("create", "Create test VM", "NotStarted")]),
        make_job(tasks=[("check", "Prerequisites check", "Succeeded"), ("create", "Create test VM", "NotStarted")]),
        make_job(
            "Succeeded",
            "Completed",
            tasks=[("check", "Prerequisites check", "Succeeded"), ("create", "Create test VM", "Succeeded")],
            allowed=(),
        ),
    )
    trigger = start(hook)

    events = await events_of(trigger)

    assert len(events) == 1
    assert events[0].payload["status"] == "success"
    assert events[0].payload["job"]["state"] == "Succeeded"
    assert json.loads(json.dumps(events[0].payload)) == events[0].payload
    assert clock.sleeps == [30, 30]
    assert hook.closed
    info = logged(trigger, "info")
    assert info.count("Task 'Prerequisites check' is Succeeded.") == 1
    assert info.count("Task 'Create test VM' is NotStarted.") == 1
    assert info.count("Task 'Create test VM' is Succeeded.") == 1
    assert "'Test failover' on VM1 (job 866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11) is InProgress." in info


@pytest.mark.asyncio
async def test_run_rides_out_transient_errors_honouring_retry_after(clock):
    class Throttled:
        status_code, reason, headers, request = 429, "Too Many Requests", {"Retry-After": "120"}, None

        def text(self, encoding=None):
            return '{"error": {"code": "TooManyRequests", "message": "slow down"}}'

    hook = FakeHook(
        ServiceRequestError("connection reset"),
        HttpResponseError(response=Throttled()),
        make_job("Succeeded", "Completed", allowed=()),
    )
    trigger = start(hook)

    events = await events_of(trigger)

    assert events[0].payload["status"] == "success"
    assert clock.sleeps == [30, 120]
    assert hook.aget_job.await_count == 3
    assert len(logged(trigger, "warning")) == 2


@pytest.mark.asyncio
async def test_run_stops_on_a_permanent_error(clock):
    class Missing:
        status_code, reason, headers, request = 404, "Not Found", {}, None

        def text(self, encoding=None):
            return '{"error": {"code": "NotFound", "message": "no such job"}}'

    hook = FakeHook(ResourceNotFoundError(response=Missing()))
    events = await events_of(start(hook))

    assert len(events) == 1
    assert events[0].payload["status"] == "error"
    assert "no such job" in events[0].payload["message"]
    assert events[0].payload["reason"] == "error"
    assert (events[0].payload["job"]["name"], events[0].payload["job"]["state"]) == (JOB, None)
    assert hook.aget_job.await_count == 1
    assert clock.sleeps == []
    assert hook.closed


@pytest.mark.asyncio
async def test_run_reports_a_failed_job(clock):
    hook = FakeHook(make_job("Failed", errors=[ERROR], allowed=()))
    events = await events_of(start(hook))

    assert (events[0].payload["status"], events[0].payload["reason"]) == ("error", "failed")
    assert "[150261]" in events[0].payload["message"]
    assert "Recommended action: Bring the VMM server online." in events[0].payload["message"]


@pytest.mark.asyncio
async def test_run_times_out_at_end_time(clock):
    hook = FakeHook(make_job("InProgress"))
    events = await events_of(start(hook, poll_interval=25, end_time=START + 60))

    assert len(events) == 1
    assert events[0].payload["status"] == "error"
    assert events[0].payload["reason"] == "timed_out"
    assert events[0].payload["message"].startswith("Timeout")
    assert events[0].payload["job"]["state"] == "InProgress"
    assert clock.sleeps == [25, 25, 10]
    assert hook.aget_job.await_count == 4


@pytest.mark.asyncio
async def test_run_keeps_waiting_on_suspended_when_asked(clock):
    hook = FakeHook(make_job("Suspended"), make_job("Succeeded", allowed=()))
    events = await events_of(start(hook, wait_on_suspended=True))

    assert events[0].payload["status"] == "success"


@pytest.mark.asyncio
@pytest.mark.parametrize(("allowed", "cancelled"), [(("Cancel",), True), ((), False), (("Restart",), False)])
async def test_on_kill_cancels_only_when_asked_and_asr_allows_it(allowed, cancelled):
    hook = FakeHook(make_job("InProgress", allowed=allowed))
    trigger = start(hook, cancel_on_kill=True)

    await trigger.on_kill()

    assert hook.acancel_job.await_count == int(cancelled)
    if cancelled:
        hook.acancel_job.assert_awaited_once_with("rg1", "vault1", JOB)
    assert hook.closed


@pytest.mark.asyncio
async def test_on_kill_leaves_the_job_running_by_default():
    """Airflow calls on_kill on clear too: a deployment's job must survive a cleared wait."""
    hook = FakeHook(make_job("InProgress", allowed=("Cancel",)))
    await start(hook).on_kill()
    assert hook.acancel_job.await_count == 0


@pytest.mark.asyncio
async def test_cleanup_never_cancels():
    hook = FakeHook(make_job("InProgress"))
    trigger = start(hook)

    await trigger.cleanup()

    hook.aget_job.assert_not_awaited()
    hook.acancel_job.assert_not_awaited()


class FakeSupervisor:
    """What the triggerer's supervisor answers a trigger asking for task states (GetTaskStates)."""

    def __init__(self, states: dict | Exception):
        self.states, self.asked = states, []

    def send(self, msg):
        from airflow.sdk.execution_time.comms import TaskStatesResult

        self.asked.append(msg)
        if isinstance(self.states, Exception):
            raise self.states
        return TaskStatesResult(task_states=self.states)


@pytest.mark.asyncio
@pytest.mark.parametrize(("state", "cancelled"), [
    ("deferred", False),  # another triggerer took the wait over: Airflow 3.3 calls on_kill all the same
    ("failed", True), ("success", True), (None, True),  # marked failed, marked succeeded, cleared
])
async def test_on_kill_cancels_only_when_the_task_is_no_longer_deferred(monkeypatch, state, cancelled):
    import airflow.sdk.execution_time.task_runner as task_runner

    supervisor = FakeSupervisor({"manual__1": {"drill_vm.wait_test_failover_3": state}})
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    hook = FakeHook(make_job("InProgress", allowed=("Cancel",)))
    trigger = start(hook, cancel_on_kill=True)
    trigger.task_instance = SimpleNamespace(dag_id="asr_test_failover_drill__lab", task="",
                                            task_id="drill_vm.wait_test_failover", run_id="manual__1", map_index=3)

    await trigger.on_kill()

    assert hook.acancel_job.await_count == int(cancelled)
    (asked,) = supervisor.asked
    assert (asked.dag_id, asked.task_ids, asked.run_ids, asked.map_index) == (
        "asr_test_failover_drill__lab", ["drill_vm.wait_test_failover"], ["manual__1"], 3)


@pytest.mark.asyncio
async def test_on_kill_leaves_the_job_running_when_the_task_state_cannot_be_read(monkeypatch):
    import airflow.sdk.execution_time.task_runner as task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", FakeSupervisor(ConnectionError("gone")), raising=False)
    hook = FakeHook(make_job("InProgress", allowed=("Cancel",)))
    trigger = start(hook, cancel_on_kill=True)
    trigger.task_instance = SimpleNamespace(dag_id="d", task="", task_id="t", run_id="r", map_index=-1)
    await trigger.on_kill()
    assert hook.acancel_job.await_count == 0


@pytest.mark.asyncio
async def test_a_job_the_vaults_list_shows_running_is_not_read_again(clock):
    running = make_job("InProgress")  # as the list shows it: no tasks
    hook = FakeHook(make_job("Succeeded", "Completed", allowed=()), running_lists=[[running]] * 3)
    trigger = start(hook)

    events = await events_of(trigger)

    assert events[0].payload["status"] == "success", events[0].payload["message"]
    assert clock.sleeps == [30, 30, 30]  # four polls...
    assert hook.alist_jobs.await_count == 4  # ...each a look at the vault's shared list of running jobs...
    assert hook.aget_job.await_count == 1  # ...and one GET, once the job had left it
    filters = [call.kwargs["filter"] for call in hook.alist_jobs.await_args_list]
    assert filters[0] == "jobStatus eq 'InProgress'"
    assert set(filters[1:]) == {"startTime eq '2030-03-17T17:41:40+00:00' and jobStatus eq 'InProgress'"}
