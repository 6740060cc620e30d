"""Trigger that waits in the triggerer for an Azure Site Recovery job to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from site_recovery.hooks.asr import (
    AsrJobState,
    AzureSiteRecoveryHook,
    describe_errors,
    is_transient,
    retry_after_seconds,
    summarize_job,
)


def describe_job(summary: Mapping[str, Any]) -> str:
    """Name a job the way a DR engineer reads it: what it does, on what, and its id."""
    label = summary.get("friendly_name") or summary.get("scenario_name") or "ASR job"
    target = f" on {summary['target']}" if summary.get("target") else ""
    return f"{label!r}{target} (job {summary.get('name')})"


def _errors_text(summary: Mapping[str, Any]) -> str:
    text = describe_errors(summary.get("errors"))
    return f": {text}" if text else "."


def _event(status: str, message: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"status": status, "message": message, "job": dict(summary)}


def job_event(
    summary: Mapping[str, Any], *, fail_on_partial_success: bool, wait_on_suspended: bool
) -> dict[str, Any] | None:
    """
    Turn a job summary into the trigger's event payload, or None while the job should be awaited.

    :param summary: Output of :func:`~site_recovery.hooks.asr.summarize_job`.
    :param fail_on_partial_success: Treat ``Succeeded`` with ``PartiallySucceeded`` as an error.
    :param wait_on_suspended: Keep waiting on a ``Suspended`` job (it waits for a manual action).
    :return: ``{"status": "success"|"error", "message": str, "job": summary}`` or None.
    """
    state, label = summary.get("state"), describe_job(summary)
    if state == AsrJobState.SUCCEEDED:
        if summary.get("state_description") != AsrJobState.PARTIALLY_SUCCEEDED:
            duration = summary.get("duration_seconds")
            took = f" in {duration:.0f}s" if duration is not None else ""
            return _event("success", f"{label} succeeded{took}.", summary)
        if fail_on_partial_success:
            return _event("error", f"{label} only partially succeeded{_errors_text(summary)}", summary)
        return _event("success", f"{label} partially succeeded{_errors_text(summary)}", summary)
    if state in AsrJobState.FAILURE_STATES:
        return _event("error", f"{label} {state.lower()}{_errors_text(summary)}", summary)
    if state == AsrJobState.SUSPENDED and not wait_on_suspended:
        waiting = [t["friendly_name"] or t["name"] for t in summary.get("tasks") or [] if t["state"] == state]
        on = f" (task {', '.join(map(repr, waiting))})" if waiting else ""
        return _event("error", f"{label} is suspended, waiting for a manual action{on}.", summary)
    return None


def timeout_event(summary: Mapping[str, Any], end_time: float) -> dict[str, Any]:
    """Build the error payload for a job still running at ``end_time``."""
    deadline = datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds")
    state = summary.get("state") or "unknown"
    return _event("error", f"Timeout: {describe_job(summary)} was still {state} at {deadline}.", summary)


class JobProgress:
    """Remember what was last seen of a job, to log only what changed between reads."""

    def __init__(self) -> None:
        self.job_state: str | None = None
        self.task_states: dict[str, str | None] = {}

    def update(self, summary: Mapping[str, Any]) -> list[str]:
        """Return log lines for the job's new state (if it changed) and for each task that changed."""
        lines = []
        if summary.get("state") != self.job_state:
            self.job_state = summary.get("state")
            lines.append(f"{describe_job(summary)} is {self.job_state}.")
        for index, task in enumerate(summary.get("tasks") or []):
            key = task.get("name") or str(index)
            if self.task_states.get(key, "") == task.get("state"):
                continue
            self.task_states[key] = task.get("state")
            name, took = task.get("friendly_name") or task.get("name"), task.get("duration_seconds")
            after = f" after {took:.0f}s" if took is not None else ""
            lines.append(f"Task {name!r} is {task.get('state')}{after}.")
        return lines


class AsrJobTrigger(BaseTrigger):
    """
    Poll one ASR job with the async client until it ends or ``end_time`` passes.

    Logs each job task as it changes state and yields one event (see :func:`job_event`).
    Transient errors (throttling, 5xx, network) are logged and ridden out until ``end_time``.

    :param azure_conn_id: Id of the ``azure`` connection.
    :param resource_group_name: Resource group of the Recovery Services vault.
    :param vault_name: Name of the Recovery Services vault.
    :param job_name: ASR job name (a GUID).
    :param poll_interval: Seconds between polls.
    :param end_time: Epoch seconds after which the trigger yields a timeout error.
    :param fail_on_partial_success: Treat a ``PartiallySucceeded`` job as an error.
    :param wait_on_suspended: Keep waiting on a suspended job instead of failing.
    :param first_poll_delay: Seconds before the first read (the sensor has just read the job itself).
    :param cancel_on_kill: Cancel the job when a user stops the waiting task. Airflow calls ``on_kill``
        on mark-failed, mark-success *and* clear alike, so only waits whose job may be abandoned
        (a drill's test failover) set it; a deployment's or an enable's job must survive a clear.
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
    ) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.job_name = job_name
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.fail_on_partial_success = fail_on_partial_success
        self.wait_on_suspended = wait_on_suspended
        self.first_poll_delay = first_poll_delay
        self.cancel_on_kill = cancel_on_kill
        self._summary: dict[str, Any] = {"name": job_name}
        self._progress = JobProgress()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialize the trigger's class path and arguments."""
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "azure_conn_id": self.azure_conn_id,
                "resource_group_name": self.resource_group_name,
                "vault_name": self.vault_name,
                "job_name": self.job_name,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "fail_on_partial_success": self.fail_on_partial_success,
                "wait_on_suspended": self.wait_on_suspended,
                "first_poll_delay": self.first_poll_delay,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> AzureSiteRecoveryHook:
        return AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id)

    async def _poll(self, hook: AzureSiteRecoveryHook) -> tuple[dict[str, Any] | None, float]:
        """Read the job once; return the event if it is done, and the delay before the next read."""
        try:
            job = await hook.aget_job(self.resource_group_name, self.vault_name, self.job_name)
        except Exception as e:
            if not is_transient(e):
                raise
            delay = max(self.poll_interval, retry_after_seconds(e) or 0)
            self.log.warning("Transient error on ASR job %s, next try in %.0fs: %s", self.job_name, delay, e)
            return None, delay
        self._summary = summarize_job(job)
        for line in self._progress.update(self._summary):
            self.log.info("%s", line)
        event = job_event(
            self._summary,
            fail_on_partial_success=self.fail_on_partial_success,
            wait_on_suspended=self.wait_on_suspended,
        )
        return event, self.poll_interval

    async def _wait(self, hook: AzureSiteRecoveryHook) -> dict[str, Any]:
        if self.first_poll_delay > 0:
            await asyncio.sleep(min(self.first_poll_delay, max(self.end_time - time.time(), 0)))
        while True:
            event, delay = await self._poll(hook)
            if event is not None:
                return event
            remaining = self.end_time - time.time()
            if remaining <= 0:
                return timeout_event(self._summary, self.end_time)
            await asyncio.sleep(min(delay, remaining))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the job until it ends, fails or ``end_time`` passes; yield one event."""
        try:
            async with self._hook() as hook:
                event = await self._wait(hook)
        except Exception as e:
            self.log.exception("Stopped waiting for ASR job %s.", self.job_name)
            event = _event("error", f"Could not read ASR job {self.job_name}: {e}", self._summary)
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """Cancel the ASR job when a user stops the deferred task, if asked to and ASR still allows it."""
        if not self.cancel_on_kill:
            self.log.info("The task was stopped; ASR job %s keeps running (this wait does not cancel it).",
                          self.job_name)
            return
        async with self._hook() as hook:
            job = await hook.aget_job(self.resource_group_name, self.vault_name, self.job_name)
            allowed = summarize_job(job)["allowed_actions"]
            if AsrJobState.CANCEL_ACTION not in allowed:
                self.log.info("ASR job %s cannot be cancelled (allowed actions: %s).", self.job_name, allowed)
                return
            self.log.info("Task killed: cancelling ASR job %s.", self.job_name)
            await hook.acancel_job(self.resource_group_name, self.vault_name, self.job_name)


class AsrJobsTrigger(BaseTrigger):
    """
    Poll several ASR jobs until every one has ended (or ``end_time`` passes); yield one event.

    For waits over a batch (a drill's cleanups): one trigger instead of one per job. The event
    is ``{"status": "success"|"error", "message": str, "jobs": {name: job event}}``; it is an
    error when any job failed, partially succeeded, or was still running at ``end_time``.
    """

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, job_names: list[str],
                 poll_interval: float, end_time: float, fail_on_partial_success: bool = True) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.job_names = list(job_names)
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.fail_on_partial_success = fail_on_partial_success

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{self.__class__.__module__}.{self.__class__.__qualname__}", {
            "azure_conn_id": self.azure_conn_id, "resource_group_name": self.resource_group_name,
            "vault_name": self.vault_name, "job_names": self.job_names, "poll_interval": self.poll_interval,
            "end_time": self.end_time, "fail_on_partial_success": self.fail_on_partial_success,
        })

    async def run(self) -> AsyncIterator[TriggerEvent]:
        done: dict[str, dict[str, Any]] = {}
        last: dict[str, dict[str, Any]] = {name: {"name": name} for name in self.job_names}
        progress = {name: JobProgress() for name in self.job_names}
        try:
            async with AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id) as hook:
                while True:
                    delay = self.poll_interval
                    for name in [n for n in self.job_names if n not in done]:
                        try:
                            job = await hook.aget_job(self.resource_group_name, self.vault_name, name)
                        except Exception as e:
                            if not is_transient(e):
                                raise
                            delay = max(delay, retry_after_seconds(e) or 0)
                            self.log.warning("Transient error on ASR job %s: %s", name, e)
                            continue
                        last[name] = summarize_job(job)
                        for line in progress[name].update(last[name]):
                            self.log.info("%s", line)
                        event = job_event(last[name], fail_on_partial_success=self.fail_on_partial_success,
                                          wait_on_suspended=False)
                        if event is not None:
                            done[name] = event
                    if len(done) == len(self.job_names) or time.time() >= self.end_time:
                        break
                    await asyncio.sleep(min(delay, max(self.end_time - time.time(), 0)))
        except Exception as e:
            self.log.exception("Stopped waiting for ASR jobs %s.", ", ".join(self.job_names))
            yield TriggerEvent({"status": "error", "message": f"Could not read the ASR jobs: {e}",
                                "jobs": {n: done.get(n) or _event("error", str(e), last[n]) for n in self.job_names}})
            return
        for name in self.job_names:
            if name not in done:
                done[name] = timeout_event(last[name], self.end_time)
        failed = [e["message"] for e in done.values() if e["status"] != "success"]
        message = (f"{len(failed)} of {len(done)} ASR job(s) did not succeed: " + " | ".join(failed)) if failed \
            else f"All {len(done)} ASR job(s) succeeded."
        yield TriggerEvent({"status": "error" if failed else "success", "message": message, "jobs": done})
