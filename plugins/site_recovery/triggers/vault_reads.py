"""Reads shared by every wait in a triggerer: one job list per vault and one protected-item list per
cloud, instead of one GET per wait.

Each job wait (:class:`~site_recovery.triggers.asr.AsrJobTrigger`) still reads its own job and
decides on it with its own rules, and still yields its own event; what it reads comes from here.
While a job is ``InProgress`` its wait asks one question, "is it still running?", and the answer
is shared by every wait on the vault: one list of the vault's running jobs (``jobStatus eq
'InProgress'``, started no earlier than the oldest job watched), read at most once per
``max_age`` seconds however many waits ask. A job still listed has not changed state, so the wait
decides on what it read before (on its first read, on the job as listed: a thousand waits
deferred at once cost one list, not a thousand GETs); a job not listed ended, or was suspended,
or is one the list does not reach, and is read in full (waits on the same job share that GET).
A job in another state (not started, suspended) is read in full each time: few jobs wait there,
and the list would not say when they move. Waits that need a running job's tasks (a recovery
plan's boot groups and manual actions) read in full each time.

A VM's initial replication is awaited the same way: every wait on a cloud (protection
container) picks its item out of one list of the cloud's protected items, read at most once
per ``max_age`` seconds.

Reads adapt to ARM's budget. Every list answer says how many reads the principal has left
(``x-ms-ratelimit-remaining-subscription-reads``); :func:`read_interval` slows the waits down as
that runs low, before ARM has to refuse anything. A 429 is retried by azure-core no sooner than
its ``Retry-After``; if it still fails, the wait's loop treats it as transient and waits at least
as long as ARM said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

#: ARM's header of the principal's read bucket
REMAINING_READS_HEADER = "x-ms-ratelimit-remaining-subscription-reads"

#: (reads left below which, factor on the interval): the fewer left, the slower the reads
SLOWDOWN_STEPS = ((25, 8.0), (50, 4.0), (100, 2.0))

#: The list's start-time bound is this much before the oldest watched job's start (clock skew).
START_MARGIN = timedelta(minutes=5)


def read_interval(base: float, remaining_reads: int | None) -> float:
    """The interval between a wait's reads, given what ARM said is left of the principal's read bucket.

    Full speed while 100 or more reads are left (ARM's bucket holds 250 and refills 25 a second,
    so a healthy principal never gets near); then 2, 4 and 8 times slower as the bucket empties
    (below 100, 50 and 25 left). Unknown (no answer yet, or an ARM that sends no header): full speed.
    """
    if remaining_reads is not None:
        for below, factor in SLOWDOWN_STEPS:
            if remaining_reads < below:
                return base * factor
    return base


def reuse_last_read(last_state: str | None, listed: bool) -> bool:
    """Whether a wait may decide on the job it read before instead of reading it again: only a job
    last read ``InProgress`` and still in the list of running jobs (the list says nothing of the
    other states, and a job that left it ended or was suspended)."""
    return last_state == "InProgress" and listed


class ReadBudget:
    """What ARM last said is left of the principal's read bucket (every list answer says it)."""

    def __init__(self) -> None:
        self.remaining_reads: int | None = None

    def heard(self, response: Any) -> None:
        """A ``raw_response_hook``: note the answer's ``x-ms-ratelimit-remaining-subscription-reads``."""
        value = response.http_response.headers.get(REMAINING_READS_HEADER)
        if value is not None and value.strip().isdigit():
            self.remaining_reads = int(value)

    def interval(self, base: float) -> float:
        """:func:`read_interval` with what ARM said last."""
        return read_interval(base, self.remaining_reads)


class _Refreshed(Generic[_T]):
    """A list read at most once per ``max_age`` seconds; askers meanwhile share the read in flight."""

    def __init__(self, clock: Callable[[], float] | None) -> None:
        self.clock = clock
        self.value: _T | None = None
        self._read_at = float("-inf")
        self._pending: asyncio.Future | None = None

    def now(self) -> float:
        return (self.clock or time.monotonic)()

    async def get(self, max_age: float, fetch: Callable[[], Awaitable[_T]],
                  enough: Callable[[_T], bool] = lambda value: True) -> _T:
        """The value, read again if it is ``max_age`` old (or not ``enough`` for the asker)."""
        if self.value is not None and self.now() - self._read_at < max_age and enough(self.value):
            return self.value
        if self._pending is None:
            started = self.now()
            self._pending = asyncio.ensure_future(fetch())
            self._pending.add_done_callback(lambda done: self._done(done, started))
        return await asyncio.shield(self._pending)

    def _done(self, done: asyncio.Future, started: float) -> None:
        self._pending = None
        if not done.cancelled() and done.exception() is None:
            self.value, self._read_at = done.result(), started  # its age counts from when it was asked


class _RunningJobs:
    """One list of a vault's running jobs: the jobs by name (without their tasks), and how far back it reached."""

    def __init__(self, jobs: dict[str, Any], since: datetime | None) -> None:
        self.jobs = jobs
        self.since = since

    def reaches(self, started: datetime | None) -> bool:
        return started is None or self.since is None or self.since <= started


class VaultJobReads:
    """The job reads of one vault in one process, shared by its waits.

    :param hook: The (shared) hook: its ``aget_job`` and ``alist_jobs`` are used.
    :param budget: What ARM says is left of the reads (shared by every read of the hook).
    :param clock: Seconds (default ``time.monotonic``, looked up when read; tests pass their own).
    """

    def __init__(self, hook: Any, resource_group_name: str, vault_name: str, budget: ReadBudget | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.hook = hook
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.budget = budget or ReadBudget()
        #: ARM reads sent from here (GETs and list pages), for the log and the tests
        self.gets = 0
        self.lists = 0
        self._jobs: dict[str, Any] = {}
        self._running: _Refreshed[_RunningJobs] = _Refreshed(clock)
        self._getting: dict[str, asyncio.Future] = {}

    @property
    def remaining_reads(self) -> int | None:
        return self.budget.remaining_reads

    def interval(self, base: float) -> float:
        return self.budget.interval(base)

    async def read(self, job_name: str, *, max_age: float, with_tasks: bool = False) -> Any:
        """The job as it stands now, to within ``max_age`` seconds (the SDK's ``Job``)."""
        job = self._jobs.get(job_name)
        if not with_tasks and (job is None or _state(job) == "InProgress"):
            started = _start(job) if job is not None else None
            running = await self._running.get(max_age, lambda: self._list(self._since(started)),
                                              lambda listed: listed.reaches(started))
            listed = running.jobs.get(job_name)
            if job is None and listed is not None:  # a wait's first read: running, as the list shows it
                self._jobs[job_name] = listed
                return listed
            if job is not None and reuse_last_read(_state(job), listed is not None):
                return job
        return await self._get(job_name)

    def forget(self, job_name: str) -> None:
        """The wait on ``job_name`` ended: stop keeping its job."""
        self._jobs.pop(job_name, None)

    async def _get(self, job_name: str) -> Any:
        """GET the job; waits asking for the same job meanwhile share the answer."""
        pending = self._getting.get(job_name)
        if pending is None:
            self.gets += 1
            pending = self._getting[job_name] = asyncio.ensure_future(
                self.hook.aget_job(self.resource_group_name, self.vault_name, job_name))
            pending.add_done_callback(lambda done: self._got(job_name, done))
        return await asyncio.shield(pending)

    def _got(self, job_name: str, done: asyncio.Future) -> None:
        self._getting.pop(job_name, None)
        if not done.cancelled() and done.exception() is None:
            self._jobs[job_name] = done.result()

    def _since(self, started: datetime | None) -> datetime | None:
        starts = [s for s in (_start(j) for j in self._jobs.values() if _state(j) == "InProgress") if s]
        if started is not None:
            starts.append(started)
        return min(starts) - START_MARGIN if starts else None

    async def _list(self, since: datetime | None) -> _RunningJobs:
        terms = ["jobStatus eq 'InProgress'"]
        if since is not None:
            terms.insert(0, f"startTime eq '{since.isoformat()}'")
        pages = 0

        def heard(response: Any) -> None:
            nonlocal pages
            pages += 1
            self.budget.heard(response)

        jobs = await self.hook.alist_jobs(self.resource_group_name, self.vault_name, filter=" and ".join(terms),
                                          raw_response_hook=heard)
        self.lists += max(1, pages)
        return _RunningJobs({job.name: job for job in jobs}, since)


class ContainerItemReads:
    """The protected-item reads of one cloud (protection container) in one process, shared by its waits.

    :param hook: The (shared) hook: its ``alist_protected_items`` is used.
    """

    def __init__(self, hook: Any, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
                 budget: ReadBudget | None = None, clock: Callable[[], float] | None = None) -> None:
        self.hook = hook
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.fabric_name = fabric_name
        self.container_name = container_name
        self.budget = budget or ReadBudget()
        self.lists = 0
        self._items: _Refreshed[dict[str, Any]] = _Refreshed(clock)

    def interval(self, base: float) -> float:
        return self.budget.interval(base)

    async def read(self, item_name: str, *, max_age: float) -> Any | None:
        """The protected item as the cloud's list showed it within ``max_age`` seconds; None when the
        list does not hold it (the VM is not protected: what a GET's 404 says)."""
        items = await self._items.get(max_age, self._list)
        return items.get(item_name.lower())

    async def _list(self) -> dict[str, Any]:
        pages = 0

        def heard(response: Any) -> None:
            nonlocal pages
            pages += 1
            self.budget.heard(response)

        items = await self.hook.alist_protected_items(self.resource_group_name, self.vault_name, self.fabric_name,
                                                      self.container_name, raw_response_hook=heard)
        self.lists += max(1, pages)
        return {item.name.lower(): item for item in items}


def _state(job: Any) -> str | None:
    return getattr(getattr(job, "properties", None), "state", None)


def _start(job: Any) -> datetime | None:
    return getattr(getattr(job, "properties", None), "start_time", None)


class SharedReads:
    """Every shared read of one hook (so, per process and connection: the hook is shared), and the
    principal's read budget they all report to."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.budget = ReadBudget()
        self._jobs: dict[tuple[str, str], VaultJobReads] = {}
        self._items: dict[tuple[str, ...], ContainerItemReads] = {}

    def jobs(self, resource_group_name: str, vault_name: str) -> VaultJobReads:
        key = (resource_group_name.lower(), vault_name.lower())
        if key not in self._jobs:
            self._jobs[key] = VaultJobReads(self.hook, resource_group_name, vault_name, self.budget)
        return self._jobs[key]

    def items(self, resource_group_name: str, vault_name: str, fabric_name: str,
              container_name: str) -> ContainerItemReads:
        key = tuple(part.lower() for part in (resource_group_name, vault_name, fabric_name, container_name))
        if key not in self._items:
            self._items[key] = ContainerItemReads(self.hook, resource_group_name, vault_name, fabric_name,
                                                  container_name, self.budget)
        return self._items[key]


def shared_reads(hook: Any) -> SharedReads:
    """The hook's :class:`SharedReads` (they live on the hook, and go with it)."""
    reads = hook.__dict__.get("_shared_reads")
    if reads is None:
        reads = hook.__dict__["_shared_reads"] = SharedReads(hook)
    return reads


def vault_job_reads(hook: Any, resource_group_name: str, vault_name: str) -> VaultJobReads:
    """The :class:`VaultJobReads` of the vault on this hook."""
    return shared_reads(hook).jobs(resource_group_name, vault_name)
