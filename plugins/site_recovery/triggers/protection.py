"""Triggers of step 9: a VM's initial replication, and a free initial-replication slot.

Both poll ASR with the async client in the triggerer, so a VM that replicates for hours, or
waits for its turn on the WAN link, holds no worker slot. The decisions are the pure
functions of :mod:`site_recovery.protection`; these classes only read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from site_recovery.triggers.base import AsrPollTrigger

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import ProtectedItemSummary, WaitEvent


class InitialReplicationTrigger(AsrPollTrigger):
    """
    Poll one protected item until its initial replication completes with healthy replication.

    The item is read from its cloud's list of protected items, which every wait on the cloud in
    this triggerer shares (:class:`~site_recovery.triggers.vault_reads.ContainerItemReads`).

    Logs the progress percentage and state as they change; yields one event (see
    :func:`~site_recovery.protection.initial_replication_event`), or a ``timed_out`` event at ``end_time``.

    :param fabric_name: Primary fabric (VMM server) of the VM.
    :param container_name: Primary protection container (cloud) of the VM.
    :param item_name: Name of the protected item (the VM's GUID).
    :param vm_name: The VM's name, for logs and messages.
    :param timeout_text: The configured limit as written in the site file, for the timeout message.

    The other parameters are :class:`~site_recovery.triggers.base.AsrPollTrigger`'s.
    """

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, fabric_name: str,
                 container_name: str, item_name: str, vm_name: str, poll_interval: float, end_time: float,
                 timeout_text: str = "", first_poll_delay: float = 0) -> None:
        from site_recovery.protection import ReplicationProgress

        super().__init__(azure_conn_id=azure_conn_id, resource_group_name=resource_group_name,
                         vault_name=vault_name, poll_interval=poll_interval, end_time=end_time,
                         first_poll_delay=first_poll_delay)
        self.fabric_name = fabric_name
        self.container_name = container_name
        self.item_name = item_name
        self.vm_name = vm_name
        self.timeout_text = timeout_text
        self._item: ProtectedItemSummary | None = None
        self._progress = ReplicationProgress()

    @property
    def subject(self) -> str:  # type: ignore[override]
        return f"the replication of VM {self.vm_name!r}"

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"fabric_name": self.fabric_name, "container_name": self.container_name,
                "item_name": self.item_name, "vm_name": self.vm_name, "timeout_text": self.timeout_text}

    async def poll(self, hook: AzureSiteRecoveryHook) -> WaitEvent | None:
        from site_recovery.hooks.asr import summarize_protected_item
        from site_recovery.protection import initial_replication_event
        from site_recovery.triggers.vault_reads import shared_reads

        # every wait on the cloud picks its item out of one list of the cloud's items (see vault_reads)
        reads = shared_reads(hook).items(self.resource_group_name, self.vault_name, self.fabric_name,
                                         self.container_name)
        item = await reads.read(self.item_name, max_age=self.poll_interval)
        self.retry_after = max(self.retry_after, reads.interval(self.poll_interval))
        if item is None:
            return initial_replication_event(None, self.vm_name)
        self._item = summarize_protected_item(item)
        for line in self._progress.update(self._item, self.vm_name):
            self.log.info("%s", line)
        return initial_replication_event(self._item, self.vm_name)

    def timeout_event(self) -> WaitEvent:
        from site_recovery.protection import initial_replication_timeout_event

        return initial_replication_timeout_event(self._item, self.vm_name, self.end_time, self.timeout_text)

    def error_event(self, exc: BaseException) -> WaitEvent:
        event = super().error_event(exc)
        return event.model_copy(update={"item": self._item})


class ReplicationSlotTrigger(AsrPollTrigger):
    """
    Wait until fewer than ``limit`` VMs of the given VMM servers are enabling or initially replicating.

    Counts from ASR's running jobs (EnableDr and the initial replication jobs), not from Airflow,
    so initial replications started by an earlier run, another tool or by hand also hold their
    slot on the WAN link. One filtered job list per server and poll, whatever the number of VMs.
    The first count comes one ``poll_interval`` after deferring: the task has just counted.

    :param fabrics: Fabric names of the site's primary VMM servers.
    :param limit: At most this many initial replications at once.

    The other parameters are :class:`~site_recovery.triggers.base.AsrPollTrigger`'s.
    """

    subject = "the running initial replications"

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, fabrics: list[str],
                 limit: int, poll_interval: float, end_time: float, first_poll_delay: float | None = None) -> None:
        super().__init__(azure_conn_id=azure_conn_id, resource_group_name=resource_group_name,
                         vault_name=vault_name, poll_interval=poll_interval, end_time=end_time,
                         first_poll_delay=poll_interval if first_poll_delay is None else first_poll_delay)
        self.fabrics = list(fabrics)
        self.limit = limit
        self._busy: list[str] = []

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"fabrics": self.fabrics, "limit": self.limit}

    async def poll(self, hook: AzureSiteRecoveryHook) -> WaitEvent | None:
        from site_recovery.hooks.asr import summarize_job
        from site_recovery.protection import enabling_vms, running_enable_jobs_filter, slot_event

        jobs = []
        for fabric in self.fabrics:
            jobs += await hook.alist_jobs(self.resource_group_name, self.vault_name,
                                          filter=running_enable_jobs_filter(fabric))
        self._busy = enabling_vms(summarize_job(job) for job in jobs)
        return slot_event(self._busy, self.limit)

    def timeout_event(self) -> WaitEvent:
        from site_recovery.protection import slot_timeout_event

        return slot_timeout_event(self._busy, self.limit)

    def error_event(self, exc: BaseException) -> WaitEvent:
        event = super().error_event(exc)
        return event.model_copy(update={"busy": self._busy})
