"""The drill's cleanup proof against the lab, through the hook, the SDK and WinRM: it finds what a drill left.

The drill DAG tests only ever see a clean estate at the proof; here one VM is left in its test
failover with its test VM running, and another is cleaned up, so the proof must tell them apart.
"""

from __future__ import annotations

import json

import pytest

from site_recovery.hooks.asr import AzureSiteRecoveryHook
from site_recovery.hooks.vmm import VmmScriptHook
from site_recovery.records import VmTarget
from site_recovery.site import load_site_named
from site_recovery.tasks.drill import prove_cleanup
from tests.labflows import Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab

LEFT, CLEANED, NEVER = "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"


@pytest.fixture
def site(lab, monkeypatch):
    site = load_site_named("lab")
    for conn_id, conn in lab.airflow_connections(site.azure.conn_id).items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return site


def test_the_proof_names_a_vm_left_in_its_test_failover_and_its_test_vm(lab, site):
    book = Runbook(lab, asr_client(lab), vault_client(lab)).configured()
    for poller, _ in [book.enable(vm) for vm in (LEFT, CLEANED, NEVER)]:
        poller.result()
    items = book.asr.replication_protected_items
    for vm in (LEFT, CLEANED):
        book.begin(items.begin_test_failover, *book.item_args(vm), book.test_failover_input())[0].result()
    book.begin(items.begin_test_failover_cleanup, *book.item_args(CLEANED),
               {"properties": {"comments": "cleaned"}})[0].result()
    drilled = [VmTarget(vm=vm, cloud="Gold-Prod", fabric=fabric, container=container, item_name=item)
               for vm in (LEFT, CLEANED, NEVER) for fabric, container, item in [book.item_args(vm)]]
    before = lab.last_request_seq()

    proof = prove_cleanup(site, AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id),
                          VmmScriptHook(site.recovery.vmm.psrp_conn_id), drilled)

    assert proof.items_in_test_failover == [LEFT]
    assert proof.test_vms_left == [f"{LEFT} - Test"]
    assert not proof.per_vm[LEFT].verified
    assert "test failover still" in proof.per_vm[LEFT].detail and "still on" in proof.per_vm[LEFT].detail
    assert proof.per_vm[CLEANED].verified and proof.per_vm[NEVER].verified, proof.per_vm
    # one list of the cloud's items, not a read per VM
    reads = [r for r in lab.requests(since=before, method="GET") if "/replicationProtectedItems" in r["path"]]
    assert len(reads) == 1, [r["path"] for r in reads]
