"""The poll loop every ASR wait shares: read, decide, sleep, until an event or the deadline.

Each trigger supplies only what differs: one read-and-decide step (:meth:`AsrPollTrigger.poll`,
which returns a :class:`~site_recovery.records.WaitEvent` once the wait is over) and the event
of a wait that ran out of time. The loop rides out throttling, 5xx and network errors
(waiting at least as long as ``Retry-After`` asks), stops at ``end_time`` with a
``timed_out`` event, and turns any other failure into an ``error`` event, so the task always
resumes with a reason to decide on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import WaitEvent


class AsrPollTrigger(BaseTrigger):
    """
    Base of the ASR waits: poll with the async client until :meth:`poll` decides or ``end_time`` passes.

    Subclasses set their own fields in ``__init__`` (all JSON-safe), list them in
    :meth:`serialize_kwargs`, and implement :meth:`poll` and :meth:`timeout_event`.

    :param azure_conn_id: Id of the ``azure`` connection.
    :param resource_group_name: Resource group of the Recovery Services vault.
    :param vault_name: Name of the Recovery Services vault.
    :param poll_interval: Seconds between reads.
    :param end_time: Epoch seconds after which the wait ends with a ``timed_out`` event.
    :param first_poll_delay: Seconds before the first read (the sensor has usually just read the same thing).
    """

    #: what is awaited, for log lines ("ASR job 1234", "the initial replication of VM 'X'")
    subject = "ASR"

    def __init__(self, *, azure_conn_id: str, resource_group_name: str, vault_name: str, poll_interval: float,
                 end_time: float, first_poll_delay: float = 0) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.first_poll_delay = first_poll_delay
        #: a delay ASR asked for during the last poll (``Retry-After`` on one of several reads)
        self.retry_after = 0.0

    def serialize_kwargs(self) -> dict[str, Any]:
        """The subclass's own ``__init__`` arguments (the shared ones are added by :meth:`serialize`)."""
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every ``__init__`` argument, so the triggerer rebuilds the same wait."""
        return (f"{self.__class__.__module__}.{self.__class__.__qualname__}", {
            "azure_conn_id": self.azure_conn_id, "resource_group_name": self.resource_group_name,
            "vault_name": self.vault_name, "poll_interval": self.poll_interval, "end_time": self.end_time,
            "first_poll_delay": self.first_poll_delay, **self.serialize_kwargs(),
        })

    async def poll(self, hook: AzureSiteRecoveryHook) -> WaitEvent | None:
        """Read ASR once; return the event when the wait is over, None to read again later."""
        raise NotImplementedError

    def timeout_event(self) -> WaitEvent:
        """The ``timed_out`` event, saying where things stood when ``end_time`` passed."""
        raise NotImplementedError

    def error_event(self, exc: BaseException) -> WaitEvent:
        """The ``error`` event of a wait that could not read ASR (a retry of the task may help)."""
        from site_recovery.records import WaitEvent
        from site_recovery.vocabulary import WaitReason

        return WaitEvent(reason=WaitReason.ERROR, message=f"Could not read {self.subject}: {exc}")

    def hook(self) -> contextlib.AbstractAsyncContextManager[AzureSiteRecoveryHook]:
        """The process's shared hook of the connection (one client and one token for every wait:
        see :mod:`site_recovery.hooks.shared`), for an ``async with`` block."""
        from site_recovery.hooks.shared import SHARED_HOOKS

        return SHARED_HOOKS.hook(self.azure_conn_id)

    async def _sleep_until(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self.end_time - time.time())))

    async def wait(self, hook: AzureSiteRecoveryHook) -> WaitEvent:
        """The poll loop; transient errors are logged and read again after ``Retry-After``."""
        from site_recovery.hooks.asr import is_transient, retry_after_seconds

        if self.first_poll_delay > 0:
            await self._sleep_until(self.first_poll_delay)
        while True:
            self.retry_after = 0.0
            try:
                event = await self.poll(hook)
                delay = max(self.poll_interval, self.retry_after)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = max(self.poll_interval, retry_after_seconds(exc) or 0)
                self.log.warning("Transient error reading %s, next try in %.0fs: %s", self.subject, delay, exc)
                event = None
            if event is not None:
                return event
            if time.time() >= self.end_time:
                return self.timeout_event()
            await self._sleep_until(delay)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait, then yield exactly one event (``status`` + ``reason`` + what was seen last)."""
        try:
            async with self.hook() as hook:
                event = await self.wait(hook)
        except Exception as exc:
            self.log.exception("Stopped waiting for %s.", self.subject)
            event = self.error_event(exc)
        yield TriggerEvent(event.to_event())
