"""Every script of include/powershell, run through the real PsrpHook on the lab's servers.

Normal answers parse into each script's contract; the failure modes a DR engineer meets
(wrong password, a server that stops answering) surface as the hook's clear errors.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from asr_lab.client import winrm_conn_id
from site_recovery.exceptions import VmmAuthenticationError, VmmTransportError
from site_recovery.hooks.vmm import VmmScriptHook
from site_recovery.scripts import SCRIPTS
from tests.labflows import Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab
PRIMARY_VMM = "vmm-ams-01.corp.meridianpack.nl"
RECOVERY_VMM = "vmm-rtm-01.corp.meridianpack.nl"
RECOVERY_HOST = "hv-rtm-01.corp.meridianpack.nl"
PRIMARY_HOST = "hv-ams-01.corp.meridianpack.nl"

RUNS = {
    "Get-VmmInventory": (PRIMARY_VMM, {}),
    "Test-AsrPrerequisites": (PRIMARY_VMM, {"ReplicationPort": 8083, "Authentication": "Kerberos"}),
    "Initialize-HyperVReplicaHost": (RECOVERY_HOST, {"ReplicationPort": 8083, "Authentication": "Kerberos",
                                                     "StoragePath": r"C:\ClusterStorage\Replica01"}),
    "Install-RecoveryServicesAgent": (PRIMARY_HOST, {
        "InstallerPath": r"\\fs-ams-01.corp.meridianpack.nl\software\ASR\MARSAgentInstaller.exe"}),
    "Get-TestVmStatus": (RECOVERY_VMM, {"VmName": "ams-sql-01 - Test"}),
    # No test failover here: "not found" is an answer (test_probing_a_drills_test_vm runs one).
    "Test-TestVmEndpoint": (RECOVERY_VMM, {"VmName": "SQL-PRD-01 - Test", "Kind": "tcp", "Port": 1433}),
}


def hook_for(lab, monkeypatch, fqdn: str, extra: dict | None = None, **kwargs) -> VmmScriptHook:
    conn_id = winrm_conn_id(fqdn)
    conn = lab.psrp_connection(fqdn)
    conn["extra"].update(extra or {})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return VmmScriptHook(conn_id, **kwargs)


def test_every_script_is_exercised_here_or_end_to_end():
    assert set(RUNS) | {"Install-AsrProvider"} == set(SCRIPTS)  # Install-AsrProvider: test_provider_registration


@pytest.mark.parametrize("script", sorted(RUNS))
def test_script_answers_with_its_contract(lab, monkeypatch, script):
    fqdn, parameters = RUNS[script]
    result = hook_for(lab, monkeypatch, fqdn).run_script(script, parameters)

    assert isinstance(result, SCRIPTS[script].model)
    assert result.summary()
    (invocation,) = lab.winrm_invocations(fqdn)
    assert invocation["state"] == "Completed" or invocation["error_records"] == 0


def test_inventory_reports_the_estate_of_the_server_it_ran_on(lab, monkeypatch):
    inventory = hook_for(lab, monkeypatch, PRIMARY_VMM).run_script("Get-VmmInventory")
    dumped = inventory.model_dump_json()
    assert "Gold-Prod" in dumped and "Gold-DR" not in dumped


def test_initializing_a_replica_host_twice_changes_nothing_the_second_time(lab, monkeypatch):
    fqdn, parameters = RUNS["Initialize-HyperVReplicaHost"]
    hook = hook_for(lab, monkeypatch, fqdn)
    first, second = hook.run_script("Initialize-HyperVReplicaHost", parameters), \
        hook.run_script("Initialize-HyperVReplicaHost", parameters)
    assert first.changed and not second.changed


def test_probing_a_drills_test_vm(lab, monkeypatch):
    """A test failover through the real SDK, then the drill's probes through the real VmmScriptHook."""
    runbook = Runbook(lab, asr_client(lab), vault_client(lab)).configured()
    runbook.enable("SQL-PRD-01")[0].result()
    runbook.begin(runbook.asr.replication_protected_items.begin_test_failover, *runbook.item_args("SQL-PRD-01"),
                  runbook.test_failover_input())[0].result()
    hook = hook_for(lab, monkeypatch, RECOVERY_VMM)

    def probe(**parameters):
        return hook.run_script("Test-TestVmEndpoint", {"VmName": "SQL-PRD-01 - Test", **parameters})

    status = hook.run_script("Get-TestVmStatus", {"ProtectedItemName": "SQL-PRD-01"})
    opened, closed = probe(Kind="tcp", Port=1433, TimeoutSeconds=5), probe(Kind="tcp", Port=3389)
    assert status.healthy and [opened.address] == status.ip_addresses
    assert opened.ok and opened.summary() == (
        f"tcp {opened.address}:1433 on 'SQL-PRD-01 - Test': open in {opened.elapsed_ms} ms")
    assert not closed.ok and closed.address == opened.address and "connection refused" in closed.detail
    not_http = probe(Kind="http", Port=1433, Path="/")
    assert (not_http.ok, not_http.status_code) == (False, None) and not_http.detail.startswith("no HTTP answer")
    invocations = lab.winrm_invocations(RECOVERY_VMM)
    assert [i["state"] for i in invocations] == ["Completed"] * 4


def test_a_wrong_password_is_a_permanent_authentication_error(lab, monkeypatch):
    conn = lab.psrp_connection(PRIMARY_VMM)
    conn["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_WINRM_WRONG", json.dumps(conn))
    with pytest.raises(VmmAuthenticationError) as failure:
        VmmScriptHook("winrm_wrong").run_script("Get-VmmInventory")
    assert "not-the-password" not in str(failure.value) and lab["winrm_password"] not in str(failure.value)


def test_a_server_that_stops_answering_mid_run_fails_within_the_timeout(lab, monkeypatch):
    # pypsrp re-sends a timed-out read with growing back-off; the connection bounds that here.
    hook = hook_for(lab, monkeypatch, PRIMARY_VMM, extra={"reconnection_retries": 1, "reconnection_backoff": 0.5},
                    operation_timeout=1, read_timeout=2)
    lab.winrm_controls(PRIMARY_VMM, hold_pipelines=True)  # the script starts, then produces nothing
    # ... and once the server has accepted it, the server goes silent altogether, as a hung WinRM service does.
    accepted = threading.Event()

    def silence_once_accepted() -> None:
        while not accepted.wait(0.05):
            if lab.winrm_invocations(PRIMARY_VMM):
                lab.winrm_controls(PRIMARY_VMM, answering=False)
                accepted.set()

    silencer = threading.Thread(target=silence_once_accepted, daemon=True)
    started = time.monotonic()
    silencer.start()
    try:
        with pytest.raises(VmmTransportError) as failure:
            hook.run_script("Get-VmmInventory")
    finally:
        accepted.set()
        silencer.join()
        lab.winrm_controls(PRIMARY_VMM, answering=True, hold_pipelines=False)
    assert time.monotonic() - started < 90  # bounded: ~45 s here with these settings
    assert "did not answer within 2 s" in str(failure.value)
    assert "safe to run again" in str(failure.value)  # an inventory may be retried; an install may not
    (invocation,) = lab.winrm_invocations(PRIMARY_VMM)  # it did start: not safe to retry blindly
    assert "Get-VmmInventory" in json.dumps(invocation)
    assert invocation["state"] in ("Running", "Completed", "Stopped")
