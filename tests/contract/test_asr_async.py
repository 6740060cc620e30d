"""The async SDK client (what Airflow triggers use) against the lab: LROs, job reads, paging."""

from __future__ import annotations

import pytest
from azure.mgmt.recoveryservicessiterecovery import models
from azure.mgmt.recoveryservicessiterecovery.aio import SiteRecoveryManagementClient

from tests.labflows import Runbook, client_kwargs, job_name_from

pytestmark = pytest.mark.lab


@pytest.mark.asyncio
async def test_async_drill_and_job_polling(runbook: Runbook, lab, async_credential):
    runbook.configured()
    runbook.enable("APP-ERP-01")[0].result()
    fabric, container, item = runbook.item_args("APP-ERP-01")
    captured: list = []

    def hook(response) -> None:
        if not captured:
            captured.append(response.http_response.headers)

    async with async_credential, SiteRecoveryManagementClient(async_credential, lab["subscription_id"],
                                                              **client_kwargs(lab)) as client:
        poller = await client.replication_protected_items.begin_test_failover(
            runbook.rg, runbook.vault_name, fabric, container, item, runbook.test_failover_input(),
            raw_response_hook=hook)
        result = await poller.result()
        assert isinstance(result, models.ReplicationProtectedItem)
        assert result.properties.test_failover_state == "WaitingForCompletion"

        job_name = job_name_from(captured[0])
        job = await client.replication_jobs.get(runbook.rg, runbook.vault_name, job_name)
        assert (job.properties.scenario_name, job.properties.state) == ("TestFailover", "Succeeded")
        assert all(t.state == "Succeeded" for t in job.properties.tasks)

        scenarios = [j.properties.scenario_name async for j in client.replication_jobs.list(
            runbook.rg, runbook.vault_name, filter="jobStatus eq 'Succeeded'")]
        assert scenarios[0] == "TestFailover" and "EnableDr" in scenarios

        protectable = [p.properties.friendly_name async for p in
                       client.replication_protectable_items.list_by_replication_protection_containers(
                           runbook.rg, runbook.vault_name, fabric, container)]
        assert len(protectable) == 8  # two pages followed through nextLink
