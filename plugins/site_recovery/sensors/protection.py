"""Sensors of step 9: a VM's EnableDr job, then its initial replication."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue
from site_recovery.exceptions import AsrJobError
from site_recovery.sensors.asr import AsrSensor, OptionalAsrJobSensor, raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.records import ProtectedItemSummary, VmTarget, WaitEvent


class VmJobSensor(OptionalAsrJobSensor):
    """Wait on one VM's ASR job (none when nothing was started); ``target`` (the VM) labels the mapped task."""

    template_fields: Sequence[str] = (*OptionalAsrJobSensor.template_fields, "target")

    def __init__(self, *, target: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target


class InitialReplicationSensor(AsrSensor):
    """
    Wait until a VM's initial replication has completed and its delta replication is healthy.

    Reads the protected item once on the worker, then defers to
    :class:`~site_recovery.triggers.protection.InitialReplicationTrigger`, which logs the
    progress percentage as it changes (or, not deferrable, pokes as any sensor). Initial
    replication of a large VM takes hours; deferred, no worker slot is held meanwhile. Fails at
    once, without retries, when initial replication fails or the VM's protection goes away.
    Returns the VM's :class:`~site_recovery.records.ProtectedItemSummary`.

    :param target: The VM (a :class:`~site_recovery.records.VmTarget` or its JSON form).
    :param timeout_text: The limit as the site file writes it (``12h``), for the timeout message.
    """

    template_fields: Sequence[str] = ("target",)

    def __init__(self, *, target: Any, timeout_text: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.timeout_text = timeout_text

    @property
    def vm_target(self) -> VmTarget:
        from site_recovery.records import VmTarget

        return self.target if isinstance(self.target, VmTarget) else VmTarget.model_validate(self.target)

    def _read(self) -> ProtectedItemSummary | None:
        from site_recovery.hooks.asr import summarize_protected_item

        t = self.vm_target
        item = self.hook.get_protected_item_or_none(self.resource_group_name, self.vault_name, t.fabric, t.container,
                                                    t.item_name)
        return None if item is None else summarize_protected_item(item)

    def poke(self, context: Context) -> PokeReturnValue:
        """Read the protected item once; done when protected and healthy, raise when replication failed."""
        from site_recovery.protection import initial_replication_event

        item = self._read()
        if item is not None:
            self.log.info("VM %r: %s.", self.vm_target.vm, item.describe())
        event = initial_replication_event(item, self.vm_target.vm)
        if event is None:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(event))

    def execute(self, context: Context) -> Any:
        from site_recovery.triggers.protection import InitialReplicationTrigger

        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        t = self.vm_target
        self.defer_to(InitialReplicationTrigger(
            azure_conn_id=self.azure_conn_id, resource_group_name=self.resource_group_name,
            vault_name=self.vault_name, fabric_name=t.fabric, container_name=t.container, item_name=t.item_name,
            vm_name=t.vm, poll_interval=self.poke_interval, end_time=time.time() + self.timeout,
            timeout_text=self.timeout_text, first_poll_delay=self.poke_interval))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> ProtectedItemSummary:
        from site_recovery.records import WaitEvent

        if not event:
            raise AsrJobError(f"No event from the wait on VM {self.vm_target.vm!r}.")
        return self._finish(WaitEvent.from_event(event))

    def _finish(self, event: WaitEvent) -> ProtectedItemSummary:
        raise_for_event(event)
        self.log.info("%s", event.message)
        return event.item
