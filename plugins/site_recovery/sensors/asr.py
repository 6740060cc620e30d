"""Sensor that waits for an Azure Site Recovery job to end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout
from site_recovery.exceptions import AsrJobError, AsrJobFailed
from site_recovery.hooks.asr import AsrJobState, AzureSiteRecoveryHook, is_transient, summarize_job
from site_recovery.links import XCOM_JOB_LINK_KEY, XCOM_JOB_NAME_KEY, AsrJobLink, job_link_context
from site_recovery.triggers.asr import AsrJobTrigger, JobProgress, job_event

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_TIMEOUT = 6 * 60 * 60
_FINAL_STATES = AsrJobState.TERMINAL_STATES | {AsrJobState.SUSPENDED}


class AsrJobSensor(BaseSensorOperator):
    """
    Wait for an ASR job to end; fail when it fails, is cancelled, partially succeeds or is suspended.

    Deferrable by default, so no worker is held while ASR works. Returns (and pushes to XCom) the
    job summary: state, duration, tasks and errors.

    :param job_name: ASR job name, typically ``"{{ ti.xcom_pull(task_ids='start', key='asr_job_name') }}"``.
    :param resource_group_name: Resource group of the Recovery Services vault.
    :param vault_name: Name of the Recovery Services vault.
    :param azure_conn_id: Id of the ``azure`` connection.
    :param deferrable: Wait in the triggerer (default) instead of poking from a worker.
    :param fail_on_partial_success: Fail when the job ends ``Succeeded``/``PartiallySucceeded``.
    :param wait_on_suspended: Keep waiting while the job is suspended for a manual action.
    :param poke_interval: Seconds between job reads.
    :param timeout: Seconds to wait before failing with :class:`AirflowSensorTimeout` (no retries).
    :param cancel_on_kill: Cancel the job when a user marks or clears the deferred task (default: leave it).
    """

    template_fields: Sequence[str] = ("job_name", "resource_group_name", "vault_name", "azure_conn_id")
    operator_extra_links = (AsrJobLink(),)
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        job_name: str,
        resource_group_name: str,
        vault_name: str,
        azure_conn_id: str = AzureSiteRecoveryHook.default_conn_name,
        deferrable: bool = True,
        fail_on_partial_success: bool = True,
        wait_on_suspended: bool = False,
        poke_interval: float = 30,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.job_name = job_name
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.azure_conn_id = azure_conn_id
        self.deferrable = deferrable
        self.fail_on_partial_success = fail_on_partial_success
        self.wait_on_suspended = wait_on_suspended
        self.cancel_on_kill = cancel_on_kill
        self._progress = JobProgress()

    @cached_property
    def hook(self) -> AzureSiteRecoveryHook:
        """Sync hook used on the worker (first poke, poke mode, link facts)."""
        return AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id)

    def execute(self, context: Context) -> Any:
        """Publish the job for links, poke once, then defer (or keep poking when not deferrable)."""
        # A template pulling a missing XCom renders as "None".
        if not self.job_name or self.job_name == "None":
            raise AsrJobError(f"No ASR job name to wait for (job_name={self.job_name!r}).")
        ti = context["ti"]
        ti.xcom_push(key=XCOM_JOB_NAME_KEY, value=self.job_name)
        ti.xcom_push(
            key=XCOM_JOB_LINK_KEY,
            value=job_link_context(self.hook.settings, self.resource_group_name, self.vault_name),
        )
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=AsrJobTrigger(
                azure_conn_id=self.azure_conn_id,
                resource_group_name=self.resource_group_name,
                vault_name=self.vault_name,
                job_name=self.job_name,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
                fail_on_partial_success=self.fail_on_partial_success,
                wait_on_suspended=self.wait_on_suspended,
                first_poll_delay=self.poke_interval,  # the job was just read above
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Read the job once; done with its summary when it succeeded, raise when it failed."""
        try:
            job = self.hook.get_job(self.resource_group_name, self.vault_name, self.job_name)
        except Exception as e:
            if not is_transient(e):
                raise
            self.log.warning("Transient error on ASR job %s, will read it again: %s", self.job_name, e)
            return PokeReturnValue(is_done=False)
        summary = summarize_job(job)
        for line in self._progress.update(summary):
            self.log.info("%s", line)
        event = job_event(
            summary,
            fail_on_partial_success=self.fail_on_partial_success,
            wait_on_suspended=self.wait_on_suspended,
        )
        if event is None:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(event))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the job summary or raise with ASR's reason."""
        if not event:
            raise AsrJobError(f"No event from the trigger waiting for ASR job {self.job_name}.")
        return self._finish(event)

    def _finish(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            message = event.get("message") or f"ASR job {self.job_name} did not succeed."
            if message.startswith("Timeout"):
                raise AirflowSensorTimeout(message)
            if (event.get("job") or {}).get("state") in _FINAL_STATES:
                raise AsrJobFailed(message)  # the job's outcome will not change on a retry
            raise AsrJobError(message)
        self.log.info("%s", event["message"])
        return event["job"]
