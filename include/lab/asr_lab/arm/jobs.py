"""Site Recovery jobs: their shape and how they move through their tasks on lab time.

Every mutation in ASR is a job. A job is a list of tasks that run one after the other; the
job is what clients poll (``replicationJobs/{name}``) and what the async-operation status
reflects. The lab keeps one absolute "due" instant per running job - the end of the task in
progress - in a heap. ``JobRunner.settle(now)`` pops only what is due, so reading state is
O(due events) and nothing ever sleeps. A restarted lab rebuilds the heap from the persisted
``due`` instants and carries on.

What a job *does* (create a policy, start a test VM, ...) is not here: the runner reports
task and job transitions to a callback, and the backend applies the effects. That keeps
this module about time and shape only.

The catalogue of scenarios is in scenarios.py, injected faults in faults.py.
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

from ..clock import Clock
from .naming import iso
from .scenarios import SCENARIOS

#: What the service shows for a task that has not started / not ended (no ``Z``).
NOT_SET = "0001-01-01T00:00:00"

RUNNING_STATES = frozenset({"NotStarted", "InProgress", "Suspended"})
FAULT_OUTCOMES = ("Failed", "PartiallySucceeded", "Cancelled", "Stuck", "Suspended")


@dataclass
class Task:
    task_id: str
    name: str
    friendly_name: str
    seconds: float
    task_type: str = "TaskDetails"
    skip: bool = False
    state: str = "NotStarted"
    state_description: str = "NotStarted"
    start_time: datetime | None = None
    end_time: datetime | None = None
    errors: list[dict] = field(default_factory=list)
    #: the task's customDetails beyond its instanceType (a recovery plan's group, script or manual action)
    details: dict[str, Any] = field(default_factory=dict)
    #: a task that waits for a person: the job suspends when it is reached, until resumed
    manual: bool = False
    #: group task of a recovery plan: the per-VM child tasks (wire form)
    children: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class JobPlan:
    """How an injected fault bends one job: what happens, at which task, with which error."""

    outcome: str
    task: int
    error: dict
    fault_id: str


@dataclass
class Job:
    name: str
    vault: str
    kind: str
    scenario_name: str
    friendly_name: str
    target_instance_type: str
    details_type: str
    target_object_id: str
    target_object_name: str
    #: vault-relative path of the resource the operation acts on (Location / operationresults)
    target_path: str
    #: what operationresults answers when done: "resource" (200 + body), "none" (204), "job"
    result: str
    start_time: datetime
    tasks: list[Task]
    activity_id: str
    affected: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    rollback: dict[str, Any] = field(default_factory=dict)
    plan: JobPlan | None = None
    state: str = "NotStarted"
    state_description: str = "NotStarted"
    end_time: datetime | None = None
    errors: list[dict] = field(default_factory=list)
    current: int = 0
    due: datetime | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def allowed_actions(self) -> list[str]:
        """Running jobs offer Cancel (recorded); finished ones offer nothing (recorded, even
        when Failed - restart is still accepted through the API)."""
        if self.state == "Suspended":
            return ["Cancel", "Resume"]
        if self.state in ("InProgress", "NotStarted"):
            return ["Cancel"]
        return []

    def task_index(self, ref: int | str | None) -> int:
        """Resolve a task reference (index, or taskId/name/friendly name); None = last task."""
        last = len(self.tasks) - 1
        if ref is None:
            return last
        if isinstance(ref, int):
            return max(0, min(last, ref if ref >= 0 else len(self.tasks) + ref))
        wanted = ref.lower()
        for i, task in enumerate(self.tasks):
            if wanted in (task.task_id.lower(), task.name.lower(), task.friendly_name.lower()):
                return i
        return last


def new_job(
    kind: str,
    *,
    vault: str,
    at: datetime,
    target_object_id: str,
    target_object_name: str,
    target_path: str,
    result: str,
    affected: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    durations: dict[int, float] | None = None,
    skip: Iterable[int] = (),
    client_request_id: str | None = None,
    tasks: list[Task] | None = None,
) -> Job:
    """Build a job of a catalogued scenario; it does not run until ``JobRunner.start``.

    ``tasks`` replaces the scenario's own (a recovery plan's job is built from the plan).
    """
    scenario = SCENARIOS[kind]
    skipped = set(skip)
    tasks = list(tasks) if tasks is not None else []
    for i, spec in enumerate(() if tasks else scenario.tasks):
        tasks.append(Task(
            task_id=spec.task_id or str(uuid.uuid4()),
            name=spec.name,
            friendly_name=spec.friendly_name,
            seconds=(durations or {}).get(i, spec.seconds),
            task_type="GroupTaskDetails" if spec.group else "TaskDetails",
            skip=spec.group or i in skipped,
        ))
    activity = f"{client_request_id or uuid.uuid4()} ActivityId: {uuid.uuid4()}"
    return Job(
        name=str(uuid.uuid4()), vault=vault, kind=kind, scenario_name=scenario.name,
        friendly_name=scenario.friendly_name, target_instance_type=scenario.target_instance_type,
        details_type=scenario.details_type, target_object_id=target_object_id,
        target_object_name=target_object_name, target_path=target_path, result=result,
        start_time=at, tasks=tasks, activity_id=activity, affected=dict(affected or {}),
        details=dict(details or {}), params=dict(params or {}),
    )


def job_error(
    error: dict, *, at: datetime, activity_id: str, task_id: str | None, level: str = "Error"
) -> dict:
    """A ``JobErrorDetails`` entry (serviceErrorDetails + int providerErrorDetails.errorCode)."""
    return {
        "serviceErrorDetails": {
            "code": str(error.get("code", "")),
            "message": error.get("message", ""),
            "possibleCauses": error.get("possibleCauses", ""),
            "recommendedAction": error.get("recommendedAction", ""),
            "activityId": activity_id,
        },
        "providerErrorDetails": {
            "errorCode": int(error.get("providerErrorCode", 0)),
            "errorMessage": error.get("providerErrorMessage"),
            "errorId": str(uuid.uuid4()),
            "possibleCauses": "",
            "recommendedAction": "",
        },
        "errorLevel": level,
        "creationTime": iso(at),
        "taskId": task_id,
    }


#: Events the runner reports: (job, event, task index or None).
JobEventHandler = Callable[[Job, str, "int | None"], None]


class JobRunner:
    """Advances jobs through their tasks as lab time passes, using a heap of due instants.

    Events reported to ``on_event``: ``task_done`` (with the task index), ``succeeded``,
    ``failed``, ``cancelled``, ``suspended``. New jobs started from inside a handler are
    scheduled at the instant of the event that caused them, so a chain of jobs keeps a
    realistic timeline however late the lab is read.
    """

    def __init__(self, clock: Clock, lookup: Callable[[str, str], Job | None], on_event: JobEventHandler,
                 task_error: Callable[[Job, int], dict | None] | None = None) -> None:
        self.clock = clock
        self._lookup = lookup
        self._on_event = on_event
        #: asked as a task ends whether it failed on its own (a recovery plan's script): the error, or None
        self._task_error = task_error
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0

    # -- scheduling ---------------------------------------------------------------------

    def start(self, job: Job) -> None:
        """Put a fresh job in progress at its start time."""
        job.state, job.state_description = "InProgress", "InProgress"
        job.current = 0
        self._enter_task(job, job.start_time)

    def resume(self, job: Job, at: datetime) -> None:
        """Finish the suspended task now and carry on with the next one."""
        task = job.tasks[job.current]
        task.state, task.state_description, task.end_time = "Succeeded", "Completed", at
        job.state, job.state_description = "InProgress", "InProgress"
        if job.plan is not None and job.plan.task == job.current:
            job.plan = None  # the fault that suspended it is spent; a fault planned for a later task still holds
        self._on_event(job, "task_done", job.current)
        job.current += 1
        self._enter_task(job, at)

    def cancel(self, job: Job, at: datetime) -> None:
        """Stop a running job now: the task in progress is Cancelled, the rest skipped."""
        self._finish_abnormally(job, at, "Cancelled", error=None)

    def reschedule(self, job: Job) -> None:
        if job.due is not None:
            self._seq += 1
            heapq.heappush(self._heap, (job.due.timestamp(), self._seq, job.vault, job.name))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    # -- progression --------------------------------------------------------------------

    def settle(self, now: datetime) -> int:
        """Apply every task boundary due at ``now``; return how many were applied."""
        applied = 0
        limit = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] <= limit:
            due_ts, _, vault, name = heapq.heappop(heap)
            job = self._lookup(vault, name)
            if job is None or job.due is None or job.due.timestamp() != due_ts:
                continue  # finished, cancelled or rescheduled since it was pushed
            self._complete_current_task(job)
            applied += 1
        return applied

    def _enter_task(self, job: Job, at: datetime) -> None:
        """Start the task at ``job.current`` (skipping skipped ones) or finish the job."""
        while job.current < len(job.tasks) and job.tasks[job.current].skip:
            skipped = job.tasks[job.current]
            skipped.state, skipped.state_description = "Other", "Skipped"
            job.current += 1
        if job.current >= len(job.tasks):
            self._succeed(job, at)
            return
        task = job.tasks[job.current]
        task.state, task.state_description, task.start_time = "InProgress", "InProgress", at
        if task.manual:
            # A manual action: the job waits, with no due instant, until someone resumes it.
            task.state, task.state_description = "Suspended", "WaitingForManualAction"
            job.state, job.state_description = "Suspended", "WaitingForManualAction"
            self._on_event(job, "suspended", job.current)
            return
        job.due = at + self.clock.duration(task.seconds)
        self.reschedule(job)

    def _complete_current_task(self, job: Job) -> None:
        at = job.due
        assert at is not None
        job.due = None
        task = job.tasks[job.current]
        plan = job.plan
        if plan is not None and plan.task == job.current:
            if plan.outcome == "Failed":
                self._finish_abnormally(job, at, "Failed", error=plan.error)
                return
            if plan.outcome == "Cancelled":
                self._finish_abnormally(job, at, "Cancelled", error=None)
                return
            if plan.outcome == "Stuck":
                return  # the task never ends; only a cancel moves this job again
            if plan.outcome == "Suspended":
                task.state, task.state_description = "Suspended", "WaitingForManualAction"
                job.state, job.state_description = "Suspended", "WaitingForManualAction"
                self._on_event(job, "suspended", job.current)
                return
            if plan.outcome == "PartiallySucceeded":
                warning = job_error(plan.error, at=at, activity_id=job.activity_id,
                                    task_id=task.task_id, level="Warning")
                task.errors.append(warning)
                job.errors.append(warning)
                task.state, task.state_description, task.end_time = "Succeeded", "CompletedWithInformation", at
                self._on_event(job, "task_done", job.current)
                job.current += 1
                self._enter_task(job, at)
                return
        error = self._task_error(job, job.current) if self._task_error is not None else None
        if error is not None:
            self._finish_abnormally(job, at, "Failed", error=error)
            return
        task.state, task.state_description, task.end_time = "Succeeded", "Completed", at
        self._on_event(job, "task_done", job.current)
        job.current += 1
        self._enter_task(job, at)

    def _succeed(self, job: Job, at: datetime) -> None:
        job.due = None
        job.state = "Succeeded"
        partial = job.plan is not None and job.plan.outcome == "PartiallySucceeded"
        job.state_description = "PartiallySucceeded" if partial else "Completed"
        job.end_time = at
        self._on_event(job, "succeeded", None)

    def _finish_abnormally(self, job: Job, at: datetime, outcome: str, error: dict | None) -> None:
        job.due = None
        index = min(job.current, len(job.tasks) - 1)
        detail = None
        if error is not None:
            detail = job_error(error, at=at, activity_id=job.activity_id, task_id=job.tasks[index].task_id)
            job.errors.append(detail)
        for i, task in enumerate(job.tasks):
            if i == index:
                task.state = task.state_description = outcome
                task.start_time = task.start_time or at
                task.end_time = at
                if detail is not None:
                    task.errors.append(detail)
            elif i > index and task.state in ("NotStarted", "InProgress"):
                task.state, task.state_description = "Other", "Skipped"
        job.state = job.state_description = outcome
        job.end_time = at
        self._on_event(job, "failed" if outcome == "Failed" else "cancelled", index)

    def reject(self, job: Job, at: datetime, error: dict) -> None:
        """End a job before any task ran, as ASR does when the item is busy (all Skipped)."""
        for task in job.tasks:
            task.state, task.state_description = "Other", "Skipped"
        job.state = job.state_description = "Failed"
        job.end_time = at
        job.errors.append(job_error(error, at=at, activity_id=job.activity_id, task_id=None))
