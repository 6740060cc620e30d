"""A deployment re-run finds the ASR job an earlier run left running and waits on it.

When a worker dies after starting a pairing or a network mapping (or a run is cleared while
the job runs), starting a second job would be refused by ASR or duplicate work.
"""

from __future__ import annotations

import pytest

from site_recovery.hooks.asr import AzureSiteRecoveryHook
from site_recovery.deployment import running_job
from site_recovery.site import load_sites
from tests.labflows import Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab


@pytest.fixture
def runbook(lab):
    book = Runbook(lab, asr_client(lab), vault_client(lab))
    book.create_vault()
    book.register()
    poller, _ = book.create_policy()
    poller.result()
    return book


@pytest.fixture
def site_and_hook(lab_connection):
    site = load_sites()[0]["lab"]
    return site, AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


def test_a_pairing_still_running_is_found_by_its_cloud(lab, runbook, site_and_hook):
    site, hook = site_and_hook
    lab.add_job_fault("AssociateProtectionProfile", "Stuck")
    _, job = runbook.pair("Gold-Prod", "Gold-DR")

    assert running_job(hook, site, "AssociateProtectionProfile", affected=("primaryCloudName", "Gold-Prod")) == job
    assert running_job(hook, site, "AssociateProtectionProfile", affected=("primaryCloudName", "Silver-Prod")) is None


def test_a_finished_job_is_not_waited_on_again(lab, runbook, site_and_hook):
    site, hook = site_and_hook
    poller, _ = runbook.map_network("Prod-App", "DR-App")
    poller.result()

    assert running_job(hook, site, "NetworkPairing", target_name="Prod-App") is None
