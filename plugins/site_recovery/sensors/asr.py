"""Sensors that wait for Azure Site Recovery jobs to end: one job, or a batch of them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowSensorTimeout
from site_recovery.exceptions import AsrJobError, AsrJobFailed
from site_recovery.links import XCOM_JOB_LINK_KEY, XCOM_JOB_NAME_KEY, AsrJobLink, job_link_context
from site_recovery.vocabulary import WaitReason

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import JobSummary, WaitEvent

DEFAULT_TIMEOUT = 6 * 60 * 60


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: whether waits defer to the triggerer unless told otherwise."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def timeout_hours_from_params(context: Context) -> None:
    """A sensor's ``pre_execute`` taking its ``timeout`` (not a template field) from the run's ``timeout_hours``.

    Runs on the worker before every attempt and every resume, before the sensor reads ``timeout``.
    """
    context["task"].timeout = timedelta(hours=float(context["params"]["timeout_hours"])).total_seconds()


def raise_for_event(event: WaitEvent) -> None:
    """Fail a wait by the reason its event gives: a timeout, a final failure, or an error worth a retry."""
    if event.reason is WaitReason.TIMED_OUT:
        raise AirflowSensorTimeout(event.message)
    if event.reason is WaitReason.FAILED:
        raise AsrJobFailed(event.message)  # the outcome will not change on a retry
    if event.reason is WaitReason.ERROR:
        raise AsrJobError(event.message)


class AsrSensor(BaseSensorOperator):
    """Base of the ASR sensors: the vault they read, their hook, and deferral that follows Airflow's setting.

    :param resource_group_name: Resource group of the Recovery Services vault.
    :param vault_name: Name of the Recovery Services vault.
    :param azure_conn_id: Id of the ``azure`` connection.
    :param deferrable: Wait in the triggerer instead of poking from a worker (default:
        ``[operators] default_deferrable``). When False the sensor pokes, honouring ``mode``,
        ``exponential_backoff`` and ``soft_fail`` as any Airflow sensor does.
    """

    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, resource_group_name: str, vault_name: str, azure_conn_id: str = "azure_default",
                 deferrable: bool | None = None, poke_interval: float = 30, timeout: float = DEFAULT_TIMEOUT,
                 **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.azure_conn_id = azure_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    @cached_property
    def hook(self) -> AzureSiteRecoveryHook:
        """Sync hook used on the worker (first poke, poke mode, link facts)."""
        from site_recovery.hooks.asr import AzureSiteRecoveryHook

        return AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id)

    def defer_to(self, trigger: Any) -> None:
        """Defer on ``trigger``; its own ``end_time`` ends the wait first, with a message saying where it stood."""
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout + 60))


class AsrJobSensor(AsrSensor):
    """
    Wait for an ASR job to end; fail when it fails, is cancelled, partially succeeds or is suspended.

    Returns (and pushes to XCom) the job's :class:`~site_recovery.records.JobSummary`: state,
    duration, tasks and errors. Publishes the job name for the portal link before waiting.

    :param job_name: ASR job name, typically ``"{{ ti.xcom_pull(task_ids='start') }}"``.
    :param fail_on_partial_success: Fail when the job ends ``Succeeded``/``PartiallySucceeded``.
    :param wait_on_suspended: Keep waiting while the job is suspended for a manual action.
    :param cancel_on_kill: Cancel the job when a user marks or clears the deferred task (default: leave it).
    :param suspend_at: Wait only until a recovery plan's job waits on this manual action (the task
        name): done then, with the job's summary; fails when the job ends first.
    :param until_group: Wait only until this boot group of a recovery plan's job is up (its ASR group
        id, "1" boots first): done then, with the job's summary; fails when the group's task fails
        or the job ends first. Waits through the job's suspensions.

    The other parameters are :class:`AsrSensor`'s and ``BaseSensorOperator``'s (``poke_interval``
    is the time between job reads; ``timeout`` fails with ``AirflowSensorTimeout``, no retries).
    """

    template_fields: Sequence[str] = ("job_name", "resource_group_name", "vault_name", "azure_conn_id")
    operator_extra_links = (AsrJobLink(),)

    def __init__(self, *, job_name: str, fail_on_partial_success: bool = True, wait_on_suspended: bool = False,
                 cancel_on_kill: bool = False, suspend_at: str | None = None, until_group: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_name = job_name
        self.fail_on_partial_success = fail_on_partial_success
        self.wait_on_suspended = wait_on_suspended
        self.cancel_on_kill = cancel_on_kill
        self.suspend_at = suspend_at
        self.until_group = until_group

    @cached_property
    def _progress(self):
        from site_recovery.triggers.asr import JobProgress

        return JobProgress()

    def execute(self, context: Context) -> Any:
        """Publish the job for links, then wait: poke once and defer, or poke as any sensor does."""
        from site_recovery.triggers.asr import AsrJobTrigger

        # A template pulling a missing XCom renders as "None".
        if not self.job_name or self.job_name == "None":
            raise AsrJobError(f"No ASR job name to wait for (job_name={self.job_name!r}).")
        ti = context["ti"]
        ti.xcom_push(key=XCOM_JOB_NAME_KEY, value=self.job_name)
        ti.xcom_push(key=XCOM_JOB_LINK_KEY,
                     value=job_link_context(self.hook.settings, self.resource_group_name, self.vault_name))
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer_to(AsrJobTrigger(
            azure_conn_id=self.azure_conn_id, resource_group_name=self.resource_group_name,
            vault_name=self.vault_name, job_name=self.job_name, poll_interval=self.poke_interval,
            end_time=time.time() + self.timeout, fail_on_partial_success=self.fail_on_partial_success,
            wait_on_suspended=self.wait_on_suspended,
            first_poll_delay=self.poke_interval,  # the job was just read above
            cancel_on_kill=self.cancel_on_kill, suspend_at=self.suspend_at, until_group=self.until_group))

    def poke(self, context: Context) -> PokeReturnValue:
        """Read the job once; done with its summary when it succeeded, raise when it failed."""
        from site_recovery.hooks.asr import is_transient, summarize_job
        from site_recovery.triggers.asr import job_event

        try:
            summary = summarize_job(self.hook.get_job(self.resource_group_name, self.vault_name, self.job_name))
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.log.warning("Transient error on ASR job %s, will read it again: %s", self.job_name, exc)
            return PokeReturnValue(is_done=False)
        for line in self._progress.update(summary):
            self.log.info("%s", line)
        event = job_event(summary, fail_on_partial_success=self.fail_on_partial_success,
                          wait_on_suspended=self.wait_on_suspended, suspend_at=self.suspend_at,
                          until_group=self.until_group)
        if event is None:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, event))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return the job summary or raise by the event's reason."""
        from site_recovery.records import WaitEvent

        if not event:
            raise AsrJobError(f"No event from the trigger waiting for ASR job {self.job_name}.")
        return self._finish(context, WaitEvent.from_event(event))

    def _finish(self, context: Context, event: WaitEvent) -> Any:
        raise_for_event(event)
        self.log.info("%s", event.message)
        return self.done(context, event.job)

    def done(self, context: Context, job: JobSummary) -> Any:
        """What the wait returns once it has ended well: the job as last read."""
        return job


class OptionalAsrJobSensor(AsrJobSensor):
    """:class:`AsrJobSensor` that succeeds at once when its start task started no job (nothing changed)."""

    def execute(self, context: Context) -> Any:
        if not self.job_name or self.job_name == "None":
            self.log.info("Nothing was started, so there is no ASR job to wait for.")
            return None
        return super().execute(context)


class AsrJobsSensor(AsrSensor):
    """
    Wait until every ASR job of ``job_names`` has ended; an empty list is done at once.

    One read per job and poke, one trigger for the whole batch (a drill's cleanups). Pushes each
    job's last summary under ``jobs`` (job name -> :class:`~site_recovery.records.JobSummary`)
    whatever the outcome, for the report, and returns the batch's
    :class:`~site_recovery.records.WaitEvent`.

    :param job_names: ASR job names (typically an upstream task's XCom).
    :param fail_on_error: Fail when a job fails, partially succeeds or the wait times out; when
        False the outcome is only reported (a teardown's wait must let the report run).
    """

    template_fields: Sequence[str] = ("job_names", "resource_group_name", "vault_name", "azure_conn_id")

    def __init__(self, *, job_names: Any, fail_on_error: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_names = job_names
        self.fail_on_error = fail_on_error

    def _names(self) -> list[str]:
        return [name for name in (self.job_names or []) if name]


    def execute(self, context: Context) -> Any:
        if not self._names():
            self.log.info("No ASR job to wait for.")
            return self._finish(context, None)
        if not self.deferrable:
            return super().execute(context)
        from site_recovery.triggers.asr import AsrJobsTrigger

        self.defer_to(AsrJobsTrigger(
            azure_conn_id=self.azure_conn_id, resource_group_name=self.resource_group_name,
            vault_name=self.vault_name, job_names=self._names(), poll_interval=self.poke_interval,
            end_time=time.time() + self.timeout))

    def poke(self, context: Context) -> PokeReturnValue:
        """Read every job once (poke mode); done when all have ended."""
        from site_recovery.hooks.asr import is_transient, summarize_job
        from site_recovery.triggers.asr import job_event, jobs_event

        events = {}
        for name in self._names():
            try:
                summary = summarize_job(self.hook.get_job(self.resource_group_name, self.vault_name, name))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("Transient error on ASR job %s, will read it again: %s", name, exc)
                return PokeReturnValue(is_done=False)
            events[name] = job_event(summary, fail_on_partial_success=True, wait_on_suspended=False)
            if events[name] is None:
                return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, jobs_event(events)))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> WaitEvent:
        from site_recovery.records import WaitEvent

        if not event:
            event = WaitEvent(reason=WaitReason.ERROR, message="No event from the trigger.")
        return self._finish(context, WaitEvent.from_event(event))

    def _finish(self, context: Context, event: WaitEvent | None) -> WaitEvent:
        from site_recovery.records import WaitEvent

        event = event or WaitEvent(reason=WaitReason.SUCCEEDED, message="No ASR job to wait for.")
        context["ti"].xcom_push(key="jobs", value={name: e.job for name, e in event.jobs.items() if e.job})
        if self.fail_on_error:
            raise_for_event(event)
        self.log.info("%s", event.message)
        return event
