"""The triggerer's waits share one ARM client and one token per connection (site_recovery.hooks.shared)
and their job reads (site_recovery.triggers.vault_reads): a hundred job waits run on one event loop, as a
triggerer runs them, against the lab."""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from urllib.parse import unquote

import pytest

from site_recovery.hooks.shared import SHARED_HOOKS
from site_recovery.triggers.asr import AsrJobTrigger
from tests.labflows import Runbook, asr_client, create_vault, register_primary_vmm, start_policy_job, vault_client

pytestmark = pytest.mark.lab
WAITS = 100


async def run_waits(conn_id: str, runbook: Runbook, jobs: list[str]) -> list[dict]:
    async def one(job: str) -> dict:
        trigger = AsrJobTrigger(azure_conn_id=conn_id, resource_group_name=runbook.rg,
                                vault_name=runbook.vault_name, job_name=job, poll_interval=0.2,
                                end_time=time.time() + 60)
        return [event.payload async for event in trigger.run()][0]

    try:
        return await asyncio.gather(*(one(jobs[n % len(jobs)]) for n in range(WAITS)))
    finally:
        assert len(SHARED_HOOKS) == 1  # the entry lingers for the next waits...
        await SHARED_HOOKS.aclose()
        assert len(SHARED_HOOKS) == 0  # ...until the process lets it go


def test_a_hundred_waits_share_one_token_and_one_client(lab, lab_connection):
    runbook = Runbook(lab, asr_client(lab), vault_client(lab)).configured()
    jobs = []
    for n in range(5):
        poller, job = runbook.create_policy(f"policy-{n}")
        poller.result()
        jobs.append(job)
    client_id = lab["client_id"].lower()
    tokens_before = lab.identity()["token_requests"].get(client_id, 0)
    since = lab.last_request_seq()
    events = asyncio.run(run_waits(lab_connection, runbook, jobs))
    assert [e["reason"] for e in events] == ["succeeded"] * WAITS
    assert lab.identity()["token_requests"][client_id] - tokens_before == 1
    gets = lab.requests(since, method="GET", path="replicationJobs/")
    lists = [r for r in lab.requests(since, method="GET", path="replicationJobs$") if "jobStatus" in
             unquote(r["query"])]
    assert len(lists) == 1  # one look at the vault's running jobs answered a hundred waits
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in gets) == sorted(jobs)  # one GET per job, not per wait


def policy_jobs(lab, vaults, count: int, seed: int, failing_every: int = 0) -> dict[str, object]:
    """``count`` policy-creation jobs spread over ``vaults``, created in batches at random time scales (so
    they end in another order than they began); every ``failing_every``-th batch makes two jobs fail.
    Returns {job name: vault}."""
    rng = random.Random(seed)
    asr = asr_client(lab)
    jobs: dict[str, object] = {}
    per_batch = 20
    for batch in range(count // per_batch):
        lab.set_time_scale(rng.choice([0.25, 0.5, 1, 1.5]))
        failing = 2 if failing_every and batch % failing_every == 0 else 0
        if failing:
            lab.add_job_fault("AddProtectionProfile", "Failed", count=failing)
        for n in range(per_batch):
            vault = vaults[n % len(vaults)]
            jobs[start_policy_job(lab, vault, policy=f"policy-{batch}-{n}", asr=asr)] = vault
    return jobs


def wait_all(conn_id: str, jobs: dict[str, object], poll: float = 1.0) -> dict[str, tuple[float, dict]]:
    """Wait on every job at once on one event loop, as a triggerer does; {job: (when its wait ended, event)}."""
    async def one(name: str, vault) -> tuple[str, float, dict]:
        trigger = AsrJobTrigger(azure_conn_id=conn_id, resource_group_name=vault.resource_group,
                                vault_name=vault.name, job_name=name, poll_interval=poll, end_time=time.time() + 120)
        payload = [event.payload async for event in trigger.run()][0]
        return name, time.time(), payload

    async def scenario():
        try:
            return await asyncio.gather(*(one(name, vault) for name, vault in jobs.items()))
        finally:
            await SHARED_HOOKS.aclose()

    return {name: (ended, payload) for name, ended, payload in asyncio.run(scenario())}


def test_two_hundred_waits_on_two_vaults_each_get_their_own_jobs_event(lab, lab_connection):
    lab.set_throttle(enabled=False)  # the set-up's 200 policies at once; the waits below run throttled
    vaults = [create_vault(lab, name=f"vault-{n}") for n in (1, 2)]
    for vault in vaults:
        register_primary_vmm(lab, vault)
    jobs = policy_jobs(lab, vaults, 200, seed=13, failing_every=3)
    lab.set_throttle(enabled=True)
    since = lab.last_request_seq()
    events = wait_all(lab_connection, jobs)
    requests = lab.requests(since)  # the waits' own (the checks below read the jobs again)
    asr = asr_client(lab)
    for name, vault in jobs.items():
        payload = events[name][1]
        assert payload["job"]["name"] == name, (name, payload["job"]["name"])
        state = asr.replication_jobs.get(vault.resource_group, vault.name, name).properties.state
        assert payload["reason"] == ("succeeded" if state == "Succeeded" else "failed"), (name, state, payload)
    reasons = [payload["reason"] for _, payload in events.values()]
    assert reasons.count("failed") == 8, reasons  # two in each of batches 0, 3, 6 and 9
    order = sorted(jobs, key=lambda name: events[name][0])
    assert order != list(jobs), "the jobs ended in the order they began: the test proves nothing about routing"
    assert not [r for r in requests if r["status"] == 429]
    gets = [r for r in requests if r["method"] == "GET" and "/replicationJobs/" in r["path"]]
    assert len(gets) <= len(jobs) + 20, len(gets)  # about one GET per job, when it has left the running list


def test_waits_stopped_mid_wait_resume_from_their_serialized_form(lab, lab_connection):
    """A triggerer that stops cancels its triggers; another builds them again from what they serialized."""
    vault = create_vault(lab)
    register_primary_vmm(lab, vault)
    lab.set_time_scale(1)  # 8 s jobs
    asr = asr_client(lab)
    names = [start_policy_job(lab, vault, policy=f"policy-{n}", asr=asr) for n in range(50)]
    triggers = [AsrJobTrigger(azure_conn_id=lab_connection, resource_group_name=vault.resource_group,
                              vault_name=vault.name, job_name=name, poll_interval=1, end_time=time.time() + 120)
                for name in names]

    async def stopped_after(seconds: float) -> None:
        waits = [asyncio.ensure_future(trigger.run().__anext__()) for trigger in triggers]
        await asyncio.sleep(seconds)
        assert not any(wait.done() for wait in waits)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    asyncio.run(stopped_after(2))
    assert len(SHARED_HOOKS) == 0  # the loop that ended closed what it held
    again = []
    for trigger in triggers:
        path, kwargs = trigger.serialize()
        module, _, name = path.rpartition(".")
        again.append(getattr(importlib.import_module(module), name)(**kwargs))

    async def resumed() -> list[dict]:
        try:
            return [(await trigger.run().__anext__()).payload for trigger in again]
        finally:
            await SHARED_HOOKS.aclose()

    payloads = asyncio.run(resumed())
    assert [(p["reason"], p["job"]["name"]) for p in payloads] == [("succeeded", name) for name in names]


def test_a_token_expiring_mid_wait_is_fetched_again_once_for_all_the_waits(lab, lab_connection):
    vault = create_vault(lab)
    register_primary_vmm(lab, vault)
    lab.set_time_scale(2)  # 16 s jobs
    asr = asr_client(lab)
    jobs = {start_policy_job(lab, vault, policy=f"policy-{n}", asr=asr): vault for n in range(100)}
    lab.set_token_lifetime(5)
    client_id = lab["client_id"].lower()
    before = lab.identity()["token_requests"].get(client_id, 0)
    started = time.monotonic()
    events = wait_all(lab_connection, jobs)
    wall = time.monotonic() - started
    tokens = lab.identity()["token_requests"][client_id] - before
    assert {payload["reason"] for _, payload in events.values()} == {"succeeded"}
    assert wall > 10, wall  # the tokens expired at least twice while the waits ran
    # one token at the start, then one each time it expired (azure-identity may refresh once more early)
    assert 2 < tokens <= 2 + wall / 5, (tokens, wall)
    expired = [r for r in lab.requests() if r["status"] == 401]
    assert expired == [], "a wait sent an expired token"
