"""Sensors of step 9: a VM's EnableDr job, then its initial replication."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout
from site_recovery.sensors.deploy import OptionalAsrJobSensor

if TYPE_CHECKING:
    from airflow.sdk import Context


class InitialReplicationFailed(AirflowFailException):
    """A VM's initial replication failed or its protection went away: final, a retry will not change it."""


class VmJobSensor(OptionalAsrJobSensor):
    """Wait on one VM's ASR job (none when nothing was started); ``target`` (the VM) labels the mapped task."""

    template_fields: Sequence[str] = (*OptionalAsrJobSensor.template_fields, "target")

    def __init__(self, *, target: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target


class InitialReplicationSensor(BaseSensorOperator):
    """
    Wait until a VM's initial replication has completed and its delta replication is healthy.

    Reads the protected item once on the worker, then defers to
    :class:`~site_recovery.triggers.protection.InitialReplicationTrigger`, which logs the
    progress percentage as it changes. Initial replication of a large VM takes hours; no worker
    slot is held meanwhile. Returns the protected item's summary.

    :param target: The VM's plan target: ``vm``, ``fabric``, ``container``, ``item_name``.
    :param timeout_text: The limit as the site file writes it (``12h``), for the timeout message.
    """

    template_fields: Sequence[str] = ("target",)
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, target: dict[str, Any], azure_conn_id: str, resource_group_name: str, vault_name: str,
                 timeout_text: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.timeout_text = timeout_text

    def _read(self) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        from site_recovery.hooks.asr import AzureSiteRecoveryHook, summarize_protected_item

        hook = AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id)
        t = self.target
        try:
            return summarize_protected_item(hook.get_protected_item(
                self.resource_group_name, self.vault_name, t["fabric"], t["container"], t["item_name"]))
        except ResourceNotFoundError:
            return None

    def execute(self, context: Context) -> Any:
        from site_recovery.protection import describe_item, initial_replication_event
        from site_recovery.triggers.protection import InitialReplicationTrigger

        vm = self.target["vm"]
        item = self._read()
        if item is not None:
            self.log.info("VM %r: %s.", vm, describe_item(item))
        event = initial_replication_event(item, vm)
        if event is not None:
            return self._finish(event)
        self.defer(
            trigger=InitialReplicationTrigger(
                azure_conn_id=self.azure_conn_id, resource_group_name=self.resource_group_name,
                vault_name=self.vault_name, fabric_name=self.target["fabric"],
                container_name=self.target["container"], item_name=self.target["item_name"], vm_name=vm,
                poll_interval=self.poke_interval, end_time=time.time() + self.timeout,
                timeout_text=self.timeout_text, first_poll_delay=self.poke_interval),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),  # the trigger's own end_time comes first, with a message
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise InitialReplicationFailed(f"No event from the wait on VM {self.target['vm']!r}.")
        return self._finish(event)

    def _finish(self, event: dict[str, Any]) -> dict[str, Any]:
        message = event.get("message") or ""
        if event.get("status") != "success":
            if message.startswith("Timeout"):
                raise AirflowSensorTimeout(message)
            raise InitialReplicationFailed(message)
        self.log.info("%s", message)
        return event["item"]
