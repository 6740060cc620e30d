"""Triggers of step 9: a VM's initial replication, and a free initial-replication slot.

Both poll ASR with the async client in the triggerer, so a VM that replicates for hours, or
waits for its turn on the WAN link, holds no worker slot. The decisions are the pure
functions of :mod:`site_recovery.protection`; these classes only read and sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from airflow.triggers.base import BaseTrigger, TriggerEvent
from site_recovery.hooks.asr import (
    AzureSiteRecoveryHook,
    is_transient,
    retry_after_seconds,
    summarize_job,
    summarize_protected_item,
)
from site_recovery.protection import (
    ReplicationProgress,
    enabling_vms,
    initial_replication_event,
    initial_replication_timeout_event,
    running_enable_jobs_filter,
)


class InitialReplicationTrigger(BaseTrigger):
    """
    Poll one protected item until its initial replication completes with healthy replication.

    Logs the progress percentage and state as they change; yields one event (see
    :func:`~site_recovery.protection.initial_replication_event`), or a timeout error at ``end_time``.

    :param azure_conn_id: Id of the ``azure`` connection.
    :param resource_group_name: Resource group of the vault.
    :param vault_name: Name of the vault.
    :param fabric_name: Primary fabric (VMM server) of the VM.
    :param container_name: Primary protection container (cloud) of the VM.
    :param item_name: Name of the protected item (the VM's GUID).
    :param vm_name: The VM's name, for logs and messages.
    :param poll_interval: Seconds between reads.
    :param end_time: Epoch seconds after which the trigger yields a timeout error.
    :param timeout_text: The configured limit as written in the site file, for the timeout message.
    """

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, fabric_name: str,
                 container_name: str, item_name: str, vm_name: str, poll_interval: float, end_time: float,
                 timeout_text: str = "", first_poll_delay: float = 0) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.fabric_name = fabric_name
        self.container_name = container_name
        self.item_name = item_name
        self.vm_name = vm_name
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.timeout_text = timeout_text
        self.first_poll_delay = first_poll_delay
        self._item: dict[str, Any] | None = None
        self._progress = ReplicationProgress()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{self.__class__.__module__}.{self.__class__.__qualname__}", {
            "azure_conn_id": self.azure_conn_id, "resource_group_name": self.resource_group_name,
            "vault_name": self.vault_name, "fabric_name": self.fabric_name, "container_name": self.container_name,
            "item_name": self.item_name, "vm_name": self.vm_name, "poll_interval": self.poll_interval,
            "end_time": self.end_time, "timeout_text": self.timeout_text, "first_poll_delay": self.first_poll_delay,
        })

    async def _poll(self, hook: AzureSiteRecoveryHook) -> tuple[dict[str, Any] | None, float]:
        try:
            item = await hook.aget_protected_item(self.resource_group_name, self.vault_name, self.fabric_name,
                                                  self.container_name, self.item_name)
        except ResourceNotFoundError:
            return initial_replication_event(None, self.vm_name), self.poll_interval
        except Exception as e:
            if not is_transient(e):
                raise
            delay = max(self.poll_interval, retry_after_seconds(e) or 0)
            self.log.warning("Transient error reading VM %s, next try in %.0fs: %s", self.vm_name, delay, e)
            return None, delay
        self._item = summarize_protected_item(item)
        for line in self._progress.update(self._item, self.vm_name):
            self.log.info("%s", line)
        return initial_replication_event(self._item, self.vm_name), self.poll_interval

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id) as hook:
                if self.first_poll_delay > 0:  # the sensor has just read the item itself
                    await asyncio.sleep(min(self.first_poll_delay, max(self.end_time - time.time(), 0)))
                while True:
                    event, delay = await self._poll(hook)
                    if event is not None:
                        break
                    remaining = self.end_time - time.time()
                    if remaining <= 0:
                        event = initial_replication_timeout_event(self._item, self.vm_name, self.end_time,
                                                                  self.timeout_text)
                        break
                    await asyncio.sleep(min(delay, remaining))
        except Exception as e:
            self.log.exception("Stopped waiting for the initial replication of VM %s.", self.vm_name)
            event = {"status": "error", "item": self._item,
                     "message": f"Could not read the replication of VM {self.vm_name!r}: {e}"}
        yield TriggerEvent(event)


class ReplicationSlotTrigger(BaseTrigger):
    """
    Wait until fewer than ``limit`` VMs of the given VMM servers are enabling or initially replicating.

    Counts from ASR's running jobs (EnableDr and the initial replication jobs), not from Airflow,
    so initial replications started by an earlier run, another tool or by hand also hold their
    slot on the WAN link. One filtered job list per server and poll, whatever the number of VMs.

    :param fabrics: Fabric names of the site's primary VMM servers.
    :param limit: At most this many initial replications at once.
    :param poll_interval: Seconds between counts.
    :param end_time: Epoch seconds after which the trigger yields a timeout error.
    """

    def __init__(self, azure_conn_id: str, resource_group_name: str, vault_name: str, fabrics: list[str],
                 limit: int, poll_interval: float, end_time: float) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.fabrics = list(fabrics)
        self.limit = limit
        self.poll_interval = poll_interval
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{self.__class__.__module__}.{self.__class__.__qualname__}", {
            "azure_conn_id": self.azure_conn_id, "resource_group_name": self.resource_group_name,
            "vault_name": self.vault_name, "fabrics": self.fabrics, "limit": self.limit,
            "poll_interval": self.poll_interval, "end_time": self.end_time,
        })

    async def _enabling(self, hook: AzureSiteRecoveryHook) -> list[str]:
        jobs = []
        for fabric in self.fabrics:
            jobs += await hook.alist_jobs(self.resource_group_name, self.vault_name,
                                          filter=running_enable_jobs_filter(fabric))
        return enabling_vms(summarize_job(job) for job in jobs)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        busy: list[str] = []
        try:
            async with AzureSiteRecoveryHook(azure_conn_id=self.azure_conn_id) as hook:
                while True:
                    await asyncio.sleep(min(self.poll_interval, max(self.end_time - time.time(), 0)))
                    try:
                        busy = await self._enabling(hook)
                    except Exception as e:
                        if not is_transient(e):
                            raise
                        self.log.warning("Transient error counting initial replications: %s", e)
                        await asyncio.sleep(retry_after_seconds(e) or 0)
                    else:
                        if len(busy) < self.limit:
                            event = {"status": "success", "busy": busy,
                                     "message": f"{len(busy)} of {self.limit} initial replications running."}
                            break
                    if time.time() >= self.end_time:
                        event = {"status": "error", "busy": busy,
                                 "message": f"Timeout: all {self.limit} initial replication slots stayed busy "
                                            f"({', '.join(busy)}); none freed in time."}
                        break
        except Exception as e:
            self.log.exception("Stopped waiting for a free initial replication slot.")
            event = {"status": "error", "busy": busy, "message": f"Could not count initial replications: {e}"}
        yield TriggerEvent(event)
