"""Step 6 end to end: vault credentials from ARM, Install-AsrProvider over WinRM, the fabric in ASR.

The product's pieces only (vault-credentials builder, VMM script hook over the real
PsrpHook, the real SDK), against the lab process; nothing is called in-process.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest
import structlog

from site_recovery.exceptions import VmmScriptError
from site_recovery.hooks.asr import AzureSiteRecoveryHook
from site_recovery.hooks.vmm import VmmScriptHook
from site_recovery.vault_credentials import issue_vault_credentials
from tests.labflows import PRIMARY_VMM, asr_client, create_vault

pytestmark = pytest.mark.lab
INSTALLER = r"\\fs-ams-01.corp.meridianpack.nl\software\ASR\AzureSiteRecoveryProvider.exe"


@pytest.fixture
def primary_vmm(lab, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WINRM_VMM_AMS_01", json.dumps(lab.psrp_connection(PRIMARY_VMM)))
    return VmmScriptHook("winrm_vmm_ams_01")


@pytest.fixture
def azure(lab_connection):
    return AzureSiteRecoveryHook(azure_conn_id=lab_connection)


def install_provider(vmm: VmmScriptHook, xml: str):
    return vmm.run_script("Install-AsrProvider", {"VaultCredentials": xml, "InstallerPath": INSTALLER,
                                                  "FriendlyName": "vmm-ams-01"})


def secrets_of(lab, xml: str) -> list[str]:
    key = ET.fromstring(xml).find("{*}ChannelIntegrityKey").text
    return [xml, key, lab["winrm_password"], lab["client_secret"]]


def test_registering_the_primary_vmm_makes_its_estate_appear_in_the_vault(lab, primary_vmm, azure, caplog, capsys):
    vault = create_vault(lab)
    creds = issue_vault_credentials(azure, vault.resource_group, vault.name)
    with caplog.at_level(logging.DEBUG), structlog.testing.capture_logs() as events:
        first = install_provider(primary_vmm, creds.xml)
    assert first.registered and not first.already_registered

    asr = asr_client(lab)
    (fabric,) = list(asr.replication_fabrics.list(vault.resource_group, vault.name))
    assert fabric.properties.friendly_name == PRIMARY_VMM
    (provider,) = list(asr.replication_recovery_services_providers.list_by_replication_fabrics(
        vault.resource_group, vault.name, fabric.name))
    assert provider.properties.connection_status == "Connected"
    clouds = {c.properties.friendly_name: c for c in asr.replication_protection_containers.list_by_replication_fabrics(
        vault.resource_group, vault.name, fabric.name)}
    assert {"Gold-Prod", "Silver-Prod"} <= clouds.keys()
    networks = {n.properties.friendly_name for n in asr.replication_networks.list_by_replication_fabrics(
        vault.resource_group, vault.name, fabric.name)}
    assert networks
    vms = list(asr.replication_protectable_items.list_by_replication_protection_containers(
        vault.resource_group, vault.name, fabric.name, clouds["Gold-Prod"].name))
    assert vms and all(vm.properties.protection_status == "Unprotected" for vm in vms)
    register_jobs = [j for j in asr.replication_jobs.list(vault.resource_group, vault.name)
                     if j.properties.scenario_name == "RegisterDra"]
    assert len(register_jobs) == 1

    second = install_provider(primary_vmm, creds.xml)
    assert second.already_registered and not second.registered and not second.installed
    assert len(list(asr.replication_fabrics.list(vault.resource_group, vault.name))) == 1
    assert len([j for j in asr.replication_jobs.list(vault.resource_group, vault.name)
                if j.properties.scenario_name == "RegisterDra"]) == 1

    printed = capsys.readouterr()
    seen = caplog.text + printed.out + printed.err + json.dumps(events, default=str) + repr(first) + repr(second)
    for secret in secrets_of(lab, creds.xml):
        assert secret not in seen
    invocations = json.dumps(lab.winrm_invocations(PRIMARY_VMM))
    assert creds.xml not in invocations


def test_expired_credentials_fail_with_drconfigurators_message(lab, primary_vmm, azure, caplog, capsys):
    vault = create_vault(lab)
    stale = issue_vault_credentials(azure, vault.resource_group, vault.name,
                                    now=datetime.now(timezone.utc) - timedelta(days=6))
    with caplog.at_level(logging.DEBUG), structlog.testing.capture_logs() as events, \
            pytest.raises(VmmScriptError) as failure:
        install_provider(primary_vmm, stale.xml)
    assert "The vault credentials file has expired." in str(failure.value)
    printed = capsys.readouterr()
    task_log = caplog.text + printed.out + printed.err + json.dumps(events, default=str)
    assert "The vault credentials file has expired." in task_log  # the script's own error record
    assert list(asr_client(lab).replication_fabrics.list(vault.resource_group, vault.name)) == []
    for secret in secrets_of(lab, stale.xml):
        assert secret not in str(failure.value) and secret not in task_log


def test_credentials_of_another_vault_are_refused_once_registered(lab, primary_vmm, azure):
    home = create_vault(lab)
    install_provider(primary_vmm, issue_vault_credentials(azure, home.resource_group, home.name).xml)
    other = create_vault(lab, name="rsv-dr-weu-02")
    foreign = issue_vault_credentials(azure, other.resource_group, other.name)

    with pytest.raises(VmmScriptError) as failure:
        install_provider(primary_vmm, foreign.xml)
    assert "already registered to the vault 'rsv-dr-weu-01'" in str(failure.value)
    assert list(asr_client(lab).replication_fabrics.list(other.resource_group, other.name)) == []


def test_tampered_credentials_are_refused(lab, primary_vmm, azure):
    vault = create_vault(lab)
    creds = issue_vault_credentials(azure, vault.resource_group, vault.name)
    key = ET.fromstring(creds.xml).find("{*}ChannelIntegrityKey").text
    tampered = creds.xml.replace(key, ("X" if key[0] != "X" else "Y") + key[1:])

    with pytest.raises(VmmScriptError, match="tampered"):
        install_provider(primary_vmm, tampered)
    assert list(asr_client(lab).replication_fabrics.list(vault.resource_group, vault.name)) == []


def test_credentials_stay_valid_when_more_are_issued_before_they_are_used(lab, primary_vmm, azure):
    # Two tasks issuing credentials for two servers of one vault must not void each other.
    vault = create_vault(lab)
    first = issue_vault_credentials(azure, vault.resource_group, vault.name)
    issue_vault_credentials(azure, vault.resource_group, vault.name, now=datetime.now(timezone.utc) + timedelta(seconds=1))

    assert install_provider(primary_vmm, first.xml).registered
