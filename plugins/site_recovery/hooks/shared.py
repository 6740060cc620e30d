"""One async ARM client and one credential per connection in a triggerer, shared by all its waits.

A triggerer runs every trigger of its process on one event loop. Built one per wait, a thousand
waits were a thousand SDK clients, a thousand TLS connections and a thousand token requests to
Entra (issue 13's measurement: 1,001 token requests for 1,000 waits). Shared, the waits of one
connection use one :class:`~site_recovery.hooks.asr.AzureSiteRecoveryHook`: one credential (whose
token is cached until near its expiry and refreshed once for everybody), one client, one
connection pool.

An entry is keyed by the event loop and the connection's settings as read when a wait starts: a
connection whose secret was rotated gets a new entry for the waits that start from then on, and
the old one closes when its last wait ends. An entry nobody uses any more lingers a little
(:data:`LINGER_SECONDS`) before it closes, so a drill's next wait (the cleanup after the test
failover) finds the token still there.

Sharing is safe because a trigger never keeps state in the hook: the hook's async side is its
clients, and azure-core's async clients serve concurrent requests on one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from site_recovery.hooks.asr import ArmConnectionSettings, AzureSiteRecoveryHook

#: How long an entry no wait uses stays open (seconds) before its client and credential close.
LINGER_SECONDS = 120.0


@dataclass
class _Entry:
    hook: AzureSiteRecoveryHook
    loop: asyncio.AbstractEventLoop
    users: int = 0
    #: ``time.monotonic()`` when its last user left
    idle_since: float = 0.0
    #: set when a newer entry replaced it (rotated settings): it closes with its last user, no linger
    retired: bool = False
    ready: asyncio.Lock = field(default_factory=asyncio.Lock)


class SharedHooks:
    """The entries of one process, by (event loop, connection settings), and a keeper task per loop
    that closes idle entries after the linger, and every entry when its loop ends (a triggerer
    stopping, or ``asyncio.run`` finishing in ``dag.test``)."""

    def __init__(self, linger_seconds: float = LINGER_SECONDS) -> None:
        self.linger_seconds = linger_seconds
        self._entries: dict[tuple[int, ArmConnectionSettings], _Entry] = {}
        self._current: dict[tuple[int, str], ArmConnectionSettings] = {}
        self._keepers: dict[int, asyncio.Task] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hook(self, azure_conn_id: str) -> AsyncIterator[AzureSiteRecoveryHook]:
        """The shared hook of ``azure_conn_id`` on this loop, its clients ready, for as long as the block runs."""
        from site_recovery.hooks.asr import AzureSiteRecoveryHook

        reader = AzureSiteRecoveryHook(azure_conn_id=azure_conn_id)
        settings = await reader.aget_settings()  # read per wait, so a rotated secret is seen
        loop = asyncio.get_running_loop()
        await self._keep(loop)
        key = (id(loop), settings)
        previous = self._current.get((id(loop), azure_conn_id))
        self._current[(id(loop), azure_conn_id)] = settings
        older = self._entries.get((id(loop), previous)) if previous is not None and previous != settings else None
        if older is not None and older.loop is loop:
            await self._retire(older)
        entry = self._entries.get(key)
        if entry is not None and entry.loop is not loop:  # left by a loop that ended (its id was reused)
            entry = None
        if entry is None:
            reader._async_settings = settings
            entry = self._entries[key] = _Entry(reader, loop)
        entry.users += 1
        try:
            async with entry.ready:  # the first user builds the clients; the others wait for them
                await entry.hook.get_async_conn()
            yield entry.hook
        finally:
            entry.users -= 1
            if entry.users == 0:
                entry.idle_since = time.monotonic()
                if entry.retired or self.linger_seconds <= 0:
                    await self._close(entry)

    async def _retire(self, entry: _Entry) -> None:
        entry.retired = True
        if entry.users == 0:
            await self._close(entry)

    async def _close(self, entry: _Entry) -> None:
        for key, held in list(self._entries.items()):
            if held is entry:
                del self._entries[key]
        await entry.hook.close()

    async def _keep(self, loop: asyncio.AbstractEventLoop) -> None:
        keeper = self._keepers.get(id(loop))
        if keeper is None or keeper.done() or keeper.get_loop() is not loop:
            # What a loop that ended left (its keeper never ran its close: the loop died first) is dropped.
            for key, entry in list(self._entries.items()):
                if entry.loop is not loop and (entry.loop.is_closed() or key[0] == id(loop)):
                    del self._entries[key]
            for key in [k for k in self._current if k[0] == id(loop)]:
                del self._current[key]
            self._keepers = {k: t for k, t in self._keepers.items() if not t.done() and not t.get_loop().is_closed()}
            self._keepers[id(loop)] = loop.create_task(self._sweep(loop), name="site_recovery shared ARM clients")
            await asyncio.sleep(0)  # let it start, so that a loop ending cancels it inside its try

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                await asyncio.sleep(max(1.0, self.linger_seconds / 4))
                now = time.monotonic()
                for entry in [e for e in list(self._entries.values()) if e.loop is loop]:
                    if entry.users == 0 and now - entry.idle_since >= self.linger_seconds:
                        await self._close(entry)
        finally:  # the loop is ending: close what it holds, in use or not
            for entry in [e for e in list(self._entries.values()) if e.loop is loop]:
                with contextlib.suppress(Exception):
                    await self._close(entry)

    async def aclose(self) -> None:
        """Close every entry of the running loop and stop its keeper (tests)."""
        loop = asyncio.get_running_loop()
        keeper = self._keepers.pop(id(loop), None)
        if keeper is not None and not keeper.done():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        for entry in [e for e in list(self._entries.values()) if e.loop is loop]:
            await self._close(entry)


#: The process's shared hooks: every trigger of a triggerer process uses these.
SHARED_HOOKS = SharedHooks()
