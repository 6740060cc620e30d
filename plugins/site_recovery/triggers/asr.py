"""Trigger that waits in the triggerer for an Azure Site Recovery job to end."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from site_recovery.triggers.base import AsrPollTrigger
from site_recovery.vocabulary import AsrJobState, WaitReason

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import JobSummary, WaitEvent


def _errors_text(summary: JobSummary) -> str:
    text = summary.errors_text()
    return f": {text}" if text else "."


def _event(reason: WaitReason, message: str, summary: JobSummary) -> WaitEvent:
    from site_recovery.records import WaitEvent

    return WaitEvent(reason=reason, message=message, job=summary)


def job_event(summary: JobSummary, *, fail_on_partial_success: bool, wait_on_suspended: bool,
              suspend_at: str | None = None, until_group: str | None = None) -> WaitEvent | None:
    """
    Decide a job wait from one read of the job: its event, or None while the job should be awaited.

    :param summary: The job as :func:`~site_recovery.hooks.asr.summarize_job` read it.
    :param fail_on_partial_success: Treat ``Succeeded`` with ``PartiallySucceeded`` as a failure.
    :param wait_on_suspended: Keep waiting on a ``Suspended`` job (it waits for a manual action).
    :param suspend_at: The manual action (task name) a recovery plan's job is awaited to reach: the
        wait ends ``suspended`` once the job waits on it, and ``failed`` when the job ends first or
        waits on another one.
    :param until_group: The boot group (its ASR group id: "1", "2"...) a recovery plan's job is awaited
        to have started: the wait ends ``succeeded`` once the group's task has succeeded (its VMs are
        up, while later groups boot), and ``failed`` when that task fails or the job ends first. A
        suspended job is awaited: its manual action is answered elsewhere.
    :return: A ``succeeded``, ``suspended`` or ``failed`` event, or None.
    """
    state, label = summary.state, summary.label
    if until_group is not None:
        return _group_event(summary, until_group)
    if suspend_at is not None:
        waiting = [task.label for task in summary.tasks if task.state == AsrJobState.SUSPENDED]
        if state is AsrJobState.SUSPENDED and suspend_at in waiting:
            return _event(WaitReason.SUSPENDED, f"{label} waits for the manual action {suspend_at!r}.", summary)
        if state is AsrJobState.SUSPENDED:
            return _event(WaitReason.FAILED, f"{label} waits for the manual action(s) {', '.join(map(repr, waiting))}"
                                             f", not {suspend_at!r}.", summary)
        if summary.ended:
            outcome = state.value.lower() if state else "ended"
            return _event(WaitReason.FAILED, f"{label} {outcome} before reaching the manual action {suspend_at!r}"
                                             f"{_errors_text(summary)}", summary)
        return None
    if state is AsrJobState.SUCCEEDED:
        if not summary.partially_succeeded:
            took = f" in {summary.duration_seconds:.0f}s" if summary.duration_seconds is not None else ""
            return _event(WaitReason.SUCCEEDED, f"{label} succeeded{took}.", summary)
        if fail_on_partial_success:
            return _event(WaitReason.FAILED, f"{label} only partially succeeded{_errors_text(summary)}", summary)
        return _event(WaitReason.SUCCEEDED, f"{label} partially succeeded{_errors_text(summary)}", summary)
    if state is not None and state.is_failure:
        return _event(WaitReason.FAILED, f"{label} {state.value.lower()}{_errors_text(summary)}", summary)
    if state is AsrJobState.SUSPENDED and not wait_on_suspended:
        waiting = [task.label for task in summary.tasks if task.state == AsrJobState.SUSPENDED]
        on = f" (task {', '.join(map(repr, waiting))})" if waiting else ""
        return _event(WaitReason.FAILED, f"{label} is suspended, waiting for a manual action{on}.", summary)
    return None


def _group_event(summary: JobSummary, group: str) -> WaitEvent | None:
    """:func:`job_event` for a wait on one boot group of a recovery plan's job."""
    from site_recovery.vocabulary import JobTaskDetails

    tasks = [task for task in summary.tasks if task.details_type == JobTaskDetails.PLAN_GROUP
             and task.group_id == group]
    label = f"Group {group} of {summary.label}"
    failed = [task for task in tasks if isinstance(task.state, AsrJobState) and task.state.is_failure]
    if failed:
        return _event(WaitReason.FAILED, f"{label}: task {failed[0].label!r} {str(failed[0].state).lower()}"
                                         f"{_errors_text(summary)}", summary)
    if tasks and all(task.state is AsrJobState.SUCCEEDED for task in tasks):
        vms = sorted({vm for task in tasks for vm in task.vms})
        return _event(WaitReason.SUCCEEDED, f"{label} is up ({', '.join(vms) or 'no VMs'}).", summary)
    if summary.ended:
        outcome = summary.state.value.lower() if summary.state else "ended"
        if not tasks:
            return _event(WaitReason.FAILED, f"{summary.label} {outcome} and has no group {group}.", summary)
        return _event(WaitReason.FAILED, f"{summary.label} {outcome} before group {group} was up"
                                         f"{_errors_text(summary)}", summary)
    return None


def timeout_event(summary: JobSummary, end_time: float) -> WaitEvent:
    """The ``timed_out`` event of a job still running at ``end_time``."""
    deadline = datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds")
    state = summary.state.value if summary.state else "unknown"
    return _event(WaitReason.TIMED_OUT, f"Timeout: {summary.label} was still {state} at {deadline}.", summary)


class JobProgress:
    """Remember what was last seen of a job, to log only what changed between reads."""

    def __init__(self) -> None:
        self.job_state: str | None = None
        self.task_states: dict[str, str | None] = {}

    def update(self, summary: JobSummary) -> list[str]:
        """Return log lines for the job's new state (if it changed) and for each task that changed."""
        lines = []
        if summary.state != self.job_state:
            self.job_state = summary.state
            lines.append(f"{summary.label} is {summary.state}.")
        for index, task in enumerate(summary.tasks):
            # A plan's job repeats task names (each group's "start VMs" task): its position tells them apart.
            key = f"{index}:{task.name}"
            if self.task_states.get(key, "") == task.state:
                continue
            self.task_states[key] = task.state
            after = f" after {task.duration_seconds:.0f}s" if task.duration_seconds is not None else ""
            vms = f" ({', '.join(task.vms)})" if task.vms else ""
            lines.append(f"Task {task.label!r}{vms} is {task.state}{after}.")
        return lines


class AsrJobTrigger(AsrPollTrigger):
    """
    Poll one ASR job with the async client until it ends or ``end_time`` passes.

    Logs each job task as it changes state and yields one event (see :func:`job_event`).

    :param job_name: ASR job name (a GUID).
    :param fail_on_partial_success: Treat a ``PartiallySucceeded`` job as a failure.
    :param wait_on_suspended: Keep waiting on a suspended job instead of failing.
    :param suspend_at: End the wait (``suspended``) when the job waits on this manual action (see :func:`job_event`).
    :param until_group: End the wait (``succeeded``) once this boot group of a plan's job is up (see :func:`job_event`).
    :param cancel_on_kill: Cancel the job when a user stops the waiting task. Airflow calls ``on_kill``
        on mark-failed, mark-success *and* clear alike, so only waits whose job may be abandoned
        (a drill's test failover) set it; a deployment's or an enable's job must survive a clear.

    The other parameters are :class:`~site_recovery.triggers.base.AsrPollTrigger`'s.
    """

    def __init__(
        self,
        azure_conn_id: str,
        resource_group_name: str,
        vault_name: str,
        job_name: str,
        poll_interval: float,
        end_time: float,
        fail_on_partial_success: bool = True,
        wait_on_suspended: bool = False,
        first_poll_delay: float = 0,
        cancel_on_kill: bool = False,
        suspend_at: str | None = None,
        until_group: str | None = None,
    ) -> None:
        super().__init__(azure_conn_id=azure_conn_id, resource_group_name=resource_group_name,
                         vault_name=vault_name, poll_interval=poll_interval, end_time=end_time,
                         first_poll_delay=first_poll_delay)
        self.job_name = job_name
        self.fail_on_partial_success = fail_on_partial_success
        self.wait_on_suspended = wait_on_suspended
        self.cancel_on_kill = cancel_on_kill
        self.suspend_at = suspend_at
        self.until_group = until_group
        self._summary: JobSummary | None = None
        self._progress = JobProgress()

    @property
    def subject(self) -> str:  # type: ignore[override]
        return f"ASR job {self.job_name}"

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"job_name": self.job_name, "fail_on_partial_success": self.fail_on_partial_success,
                "wait_on_suspended": self.wait_on_suspended, "cancel_on_kill": self.cancel_on_kill,
                "suspend_at": self.suspend_at, "until_group": self.until_group}

    def _last_seen(self) -> JobSummary:
        from site_recovery.records import JobSummary

        return self._summary or JobSummary(name=self.job_name)

    async def poll(self, hook: AzureSiteRecoveryHook) -> WaitEvent | None:
        from site_recovery.hooks.asr import summarize_job
        from site_recovery.triggers.vault_reads import vault_job_reads

        reads = vault_job_reads(hook, self.resource_group_name, self.vault_name)
        # a plan's boot groups and manual actions are in the job's tasks, which only a full read shows
        job = await reads.read(self.job_name, max_age=self.poll_interval,
                               with_tasks=self.until_group is not None or self.suspend_at is not None)
        self._summary = summarize_job(job)
        for line in self._progress.update(self._summary):
            self.log.info("%s", line)
        self.retry_after = max(self.retry_after, reads.interval(self.poll_interval))
        event = job_event(self._summary, fail_on_partial_success=self.fail_on_partial_success,
                          wait_on_suspended=self.wait_on_suspended, suspend_at=self.suspend_at,
                          until_group=self.until_group)
        if event is not None:
            reads.forget(self.job_name)
        return event

    def timeout_event(self) -> WaitEvent:
        return timeout_event(self._last_seen(), self.end_time)

    def error_event(self, exc: BaseException) -> WaitEvent:
        return _event(WaitReason.ERROR, f"Could not read ASR job {self.job_name}: {exc}", self._last_seen())

    async def on_kill(self) -> None:
        """Cancel the ASR job when a user stops the deferred task, if asked to and ASR still allows it."""
        from site_recovery.hooks.asr import summarize_job

        if not self.cancel_on_kill:
            self.log.info("The task was stopped; ASR job %s keeps running (this wait does not cancel it).",
                          self.job_name)
            return
        if await self._still_deferred():
            self.log.info("The task still waits on ASR job %s (another triggerer took this wait over): the job "
                          "keeps running.", self.job_name)
            return
        async with self.hook() as hook:
            job = summarize_job(await hook.aget_job(self.resource_group_name, self.vault_name, self.job_name))
            if not job.cancellable:
                self.log.info("ASR job %s cannot be cancelled (allowed actions: %s).", self.job_name,
                              [str(action) for action in job.allowed_actions])
                return
            self.log.info("Task killed: cancelling ASR job %s.", self.job_name)
            await hook.acancel_job(self.resource_group_name, self.vault_name, self.job_name)


    async def _still_deferred(self) -> bool:
        """Whether the waiting task is still deferred, as the API server has it now.

        Airflow 3.3 calls ``on_kill`` not only when a user marks the task failed, marks it
        succeeded or clears it, but also when a triggerer hands one of its triggers over to
        another (triggers are rebalanced when a triggerer misses its heartbeats, or when two
        picked up the same trigger), with the same "user action" cancel. Only the first must
        cancel the job; a task that is still deferred was not stopped by anyone. When the state
        cannot be read, the job is left running: the drill's teardown cancels a test failover
        still running anyway, so not cancelling here never leaves one behind.
        """
        ti = getattr(self, "task_instance", None)
        if ti is None:  # run outside a triggerer (tests, dag.test): no rebalancing there
            return False
        from asgiref.sync import sync_to_async

        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        try:
            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, map_index=ti.map_index, task_ids=[ti.task_id], run_ids=[ti.run_id])
        except Exception as exc:  # the API server unreachable, an older API: do not cancel on a guess
            self.log.warning("Could not read the state of %s (%s); ASR job %s is not cancelled here.",
                             ti.task_id, type(exc).__name__, self.job_name)
            return True
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        return states.get(ti.run_id, {}).get(key) == "deferred"


def jobs_event(events: Mapping[str, WaitEvent]) -> WaitEvent:
    """One event for a batch of job waits: ``succeeded`` only when every job's own event is."""
    from site_recovery.records import WaitEvent

    failed = [event.message for event in events.values() if not event.succeeded]
    if failed:
        message = f"{len(failed)} of {len(events)} ASR job(s) did not succeed: " + " | ".join(failed)
        timed_out = all(event.reason is WaitReason.TIMED_OUT for event in events.values() if not event.succeeded)
        reason = WaitReason.TIMED_OUT if timed_out else WaitReason.FAILED
        if any(event.reason is WaitReason.ERROR for event in events.values()):
            reason = WaitReason.ERROR
    else:
        message, reason = f"All {len(events)} ASR job(s) succeeded.", WaitReason.SUCCEEDED
    return WaitEvent(reason=reason, message=message, jobs=dict(events))


class AsrJobsTrigger(AsrPollTrigger):
    """
    Poll several ASR jobs until every one has ended (or ``end_time`` passes); yield one event.

    For waits over a batch (a drill's cleanups): one trigger instead of one per job. The event's
    ``jobs`` holds each job's own event by job name (see :func:`jobs_event`); a transient error on
    one job does not hold up reading the others.

    :param job_names: ASR job names.
    :param fail_on_partial_success: Treat a ``PartiallySucceeded`` job as a failure.
    """

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, job_names: list[str],
                 poll_interval: float, end_time: float, fail_on_partial_success: bool = True,
                 first_poll_delay: float = 0) -> None:
        super().__init__(azure_conn_id=azure_conn_id, resource_group_name=resource_group_name,
                         vault_name=vault_name, poll_interval=poll_interval, end_time=end_time,
                         first_poll_delay=first_poll_delay)
        self.job_names = list(job_names)
        self.fail_on_partial_success = fail_on_partial_success
        self._done: dict[str, WaitEvent] = {}
        self._last: dict[str, JobSummary] = {}
        self._progress = {name: JobProgress() for name in self.job_names}

    @property
    def subject(self) -> str:  # type: ignore[override]
        return f"ASR jobs {', '.join(self.job_names)}"

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"job_names": self.job_names, "fail_on_partial_success": self.fail_on_partial_success}

    def _last_seen(self, name: str) -> JobSummary:
        from site_recovery.records import JobSummary

        return self._last.get(name) or JobSummary(name=name)

    async def poll(self, hook: AzureSiteRecoveryHook) -> WaitEvent | None:
        from site_recovery.hooks.asr import is_transient, retry_after_seconds, summarize_job
        from site_recovery.triggers.vault_reads import vault_job_reads

        reads = vault_job_reads(hook, self.resource_group_name, self.vault_name)
        for name in [n for n in self.job_names if n not in self._done]:
            try:
                summary = summarize_job(await reads.read(name, max_age=self.poll_interval))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("Transient error on ASR job %s: %s", name, exc)
                self.retry_after = max(self.retry_after, retry_after_seconds(exc) or 0)
                continue
            self._last[name] = summary
            for line in self._progress[name].update(summary):
                self.log.info("%s", line)
            event = job_event(summary, fail_on_partial_success=self.fail_on_partial_success, wait_on_suspended=False)
            if event is not None:
                self._done[name] = event
                reads.forget(name)
        self.retry_after = max(self.retry_after, reads.interval(self.poll_interval))
        if len(self._done) == len(self.job_names):
            return jobs_event({name: self._done[name] for name in self.job_names})
        return None

    def timeout_event(self) -> WaitEvent:
        return jobs_event({name: self._done.get(name) or timeout_event(self._last_seen(name), self.end_time)
                           for name in self.job_names})

    def error_event(self, exc: BaseException) -> WaitEvent:
        from site_recovery.records import WaitEvent

        events = {name: self._done.get(name) or _event(WaitReason.ERROR, str(exc), self._last_seen(name))
                  for name in self.job_names}
        return WaitEvent(reason=WaitReason.ERROR, message=f"Could not read the ASR jobs: {exc}", jobs=events)
