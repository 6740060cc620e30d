"""The triggerer's waits share one ARM client and one token per connection (site_recovery.hooks.shared)
and their job reads (site_recovery.triggers.vault_reads): a hundred job waits run on one event loop, as a
triggerer runs them, against the lab."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote

import pytest

from site_recovery.hooks.shared import SHARED_HOOKS
from site_recovery.triggers.asr import AsrJobTrigger
from tests.labflows import Runbook, asr_client, vault_client

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
