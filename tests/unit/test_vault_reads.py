"""The shared job reads of a vault (site_recovery.triggers.vault_reads): who reads what, and how the reads
slow down as ARM's read budget runs low. A vault stand-in answers GETs and lists from a dict of job states."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from azure.mgmt.recoveryservicessiterecovery.models import Job

from site_recovery.triggers.vault_reads import VaultJobReads, read_interval, reuse_last_read

T0 = datetime(2030, 3, 17, 17, 0, tzinfo=timezone.utc)


def job(name: str, state: str, started: datetime = T0) -> Job:
    return Job({"name": name, "properties": {"state": state, "startTime": started.isoformat(), "tasks": []}})


class Vault:
    """Job states by name; counts GETs and lists; says ``remaining`` reads in each list's header."""

    def __init__(self, states: dict[str, str], remaining: int | None = 240) -> None:
        self.states = dict(states)
        self.started = {name: T0 for name in states}
        self.remaining = remaining
        self.gets: list[str] = []
        self.filters: list[str] = []
        self.list_error: Exception | None = None

    async def aget_job(self, rg, vault, name):
        self.gets.append(name)
        await asyncio.sleep(0)
        return job(name, self.states[name], self.started[name])

    async def alist_jobs(self, rg, vault, *, filter=None, raw_response_hook=None):
        self.filters.append(filter)
        await asyncio.sleep(0.01)  # long enough for every concurrent reader to join this list
        if self.list_error is not None:
            raise self.list_error
        if raw_response_hook is not None:
            headers = {} if self.remaining is None else {"x-ms-ratelimit-remaining-subscription-reads":
                                                         str(self.remaining)}
            raw_response_hook(SimpleNamespace(http_response=SimpleNamespace(headers=headers)))
        since = datetime.fromisoformat(filter.split("'")[1]) if filter.startswith("startTime") else None
        return [job(n, s, self.started[n]) for n, s in self.states.items()
                if s == "InProgress" and (since is None or self.started[n] >= since)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reads_of(vault: Vault, clock: Clock) -> VaultJobReads:
    return VaultJobReads(vault, "rg", "vault", clock=clock)


async def read_all(reads: VaultJobReads, names, **kwargs) -> dict[str, str]:
    jobs = await asyncio.gather(*(reads.read(name, max_age=5, **kwargs) for name in names))
    return {j.name: j.properties.state for j in jobs}


@pytest.mark.parametrize("remaining, interval", [(None, 5), (250, 5), (100, 5), (99, 10), (50, 10), (49, 20),
                                                  (25, 20), (24, 40), (0, 40)])
def test_reads_slow_down_as_the_read_budget_runs_low(remaining, interval):
    assert read_interval(5, remaining) == interval


@pytest.mark.parametrize("state, listed, reuse", [("InProgress", True, True), ("InProgress", False, False),
                                                  ("Suspended", True, False), ("NotStarted", True, False),
                                                  ("Succeeded", False, False), (None, True, False)])
def test_only_a_running_job_still_listed_is_not_read_again(state, listed, reuse):
    assert reuse_last_read(state, listed) is reuse


def test_fifty_waits_share_one_list_and_read_only_the_jobs_that_changed():
    names = [f"job-{n}" for n in range(50)]
    vault, clock = Vault({name: "InProgress" for name in names}), Clock()
    reads = reads_of(vault, clock)

    async def scenario():
        assert set((await read_all(reads, names)).values()) == {"InProgress"}
        assert vault.gets == [] and len(vault.filters) == 1  # fifty waits deferred at once: one list
        clock.now += 5
        await read_all(reads, names)
        assert vault.gets == [] and len(vault.filters) == 2  # one list answered all fifty again
        vault.states["job-3"], vault.states["job-7"] = "Succeeded", "Suspended"
        clock.now += 5
        states = await read_all(reads, names)
        assert sorted(vault.gets) == ["job-3", "job-7"] and len(vault.filters) == 3
        assert (states["job-3"], states["job-7"]) == ("Succeeded", "Suspended")
        vault.gets.clear()
        clock.now += 5
        await read_all(reads, ["job-7", "job-8"])
        assert vault.gets == ["job-7"]  # a suspended job is read in full: the list would not show it resume

    asyncio.run(scenario())
    assert vault.filters[0] == "jobStatus eq 'InProgress'"  # nothing known yet: every running job
    assert vault.filters[1] == "startTime eq '2030-03-17T16:55:00+00:00' and jobStatus eq 'InProgress'"
    assert (reads.gets, reads.lists) == (3, 4)


def test_a_list_younger_than_max_age_is_reused_and_an_older_one_read_again():
    vault, clock = Vault({"a": "InProgress"}), Clock()
    reads = reads_of(vault, clock)

    async def scenario():
        await reads.read("a", max_age=5)
        for step in (0, 2, 2.9):
            clock.now += step
            await reads.read("a", max_age=5)
        assert len(vault.filters) == 1
        clock.now += 0.1  # five seconds after the list was read
        await reads.read("a", max_age=5)
        assert len(vault.filters) == 2

    asyncio.run(scenario())


def test_a_job_older_than_the_list_reaches_is_listed_again_from_its_start():
    vault, clock = Vault({"new": "InProgress", "old": "InProgress"}), Clock()
    vault.started["old"] = T0 - timedelta(hours=3)
    reads = reads_of(vault, clock)

    async def scenario():
        await reads.get_first("new")
        await reads.read("new", max_age=5)  # the list starts from "new"'s start: "old" is not in it
        await reads.read("old", max_age=5)  # so "old" is read in full...
        await reads.read("old", max_age=5)  # ...and then listed from its own start

    reads.get_first = lambda name: reads._get(name)
    asyncio.run(scenario())
    assert [f.split("'")[1] for f in vault.filters] == ["2030-03-17T16:55:00+00:00", "2030-03-17T13:55:00+00:00"]
    assert vault.gets == ["new", "old"]


def test_waits_on_a_plans_groups_read_the_job_in_full_each_time():
    vault, clock = Vault({"plan-job": "InProgress"}), Clock()
    reads = reads_of(vault, clock)

    async def scenario():
        for _ in range(3):
            await reads.read("plan-job", max_age=5, with_tasks=True)

    asyncio.run(scenario())
    assert vault.gets == ["plan-job"] * 3 and vault.filters == []


def test_a_failed_list_fails_every_wait_that_joined_it_and_the_next_read_lists_again():
    names = ["a", "b", "c"]
    vault, clock = Vault({name: "InProgress" for name in names}), Clock()
    reads = reads_of(vault, clock)

    async def scenario():
        await read_all(reads, names)
        vault.list_error = ConnectionError("reset by peer")
        clock.now += 5
        results = await asyncio.gather(*(reads.read(n, max_age=5) for n in names), return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionError] * 3 and len(vault.filters) == 2
        vault.list_error = None
        await read_all(reads, names)
        assert len(vault.filters) == 3

    asyncio.run(scenario())


def test_the_read_budget_ARM_reports_sets_the_interval():
    vault, clock = Vault({"a": "InProgress"}, remaining=30), Clock()
    reads = reads_of(vault, clock)
    assert reads.interval(5) == 5  # nothing heard yet

    async def scenario():
        await reads.read("a", max_age=5)
        await reads.read("a", max_age=5)

    asyncio.run(scenario())
    assert reads.remaining_reads == 30 and reads.interval(5) == 20


def test_a_finished_wait_lets_go_of_its_job():
    vault, clock = Vault({"a": "Succeeded"}), Clock()
    reads = reads_of(vault, clock)
    asyncio.run(reads.read("a", max_age=5))
    reads.forget("a")
    assert reads._jobs == {}


def test_waits_on_one_job_share_its_get():
    vault, clock = Vault({"a": "Succeeded"}), Clock()
    reads = reads_of(vault, clock)

    async def scenario():
        await asyncio.gather(*(reads.read("a", max_age=5) for _ in range(10)))

    asyncio.run(scenario())
    assert vault.gets == ["a"] and len(vault.filters) == 1


class Cloud:
    """A cloud's protected items by name; counts lists; says ``remaining`` reads in each answer."""

    def __init__(self, names, remaining: int = 40) -> None:
        self.names = list(names)
        self.remaining = remaining
        self.lists = 0

    async def alist_protected_items(self, rg, vault, fabric, container, raw_response_hook=None):
        self.lists += 1
        await asyncio.sleep(0.01)
        raw_response_hook(SimpleNamespace(http_response=SimpleNamespace(
            headers={"x-ms-ratelimit-remaining-subscription-reads": str(self.remaining)})))
        return [SimpleNamespace(name=name.upper()) for name in self.names]


def test_waits_on_one_cloud_pick_their_items_out_of_one_list():
    from site_recovery.triggers.vault_reads import shared_reads

    cloud, clock = Cloud([f"vm-{n}" for n in range(30)]), Clock()
    reads = shared_reads(cloud)
    items = reads.items("rg", "vault", "fabric", "Gold-Prod")
    items._items.clock = clock

    async def scenario():
        found = await asyncio.gather(*(items.read(f"vm-{n}", max_age=60) for n in range(31)))
        assert [f is not None for f in found] == [True] * 30 + [False]  # vm-30 is not protected
        assert cloud.lists == 1
        clock.now += 60
        await items.read("vm-1", max_age=60)
        assert cloud.lists == 2

    asyncio.run(scenario())
    assert reads.items("RG", "Vault", "Fabric", "gold-prod") is items  # names compare as ARM compares them
    # one budget for the principal: what the items' list heard slows the job waits too
    assert reads.budget.remaining_reads == 40 and reads.jobs("rg", "vault").interval(5) == 20
