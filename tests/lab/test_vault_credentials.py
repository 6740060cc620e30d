"""Vault credentials built by the product against the lab's vault (step 6's registration key)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from site_recovery.hooks.asr import AzureSiteRecoveryHook
from site_recovery.vault_credentials import VaultCredentialsError, issue_vault_credentials
from tests.labflows import create_vault, vault_client

pytestmark = pytest.mark.lab
NS = {"c": "http://schemas.datacontract.org/2004/07/Microsoft.Azure.Portal.RecoveryServices.Models.Common"}


@pytest.fixture
def vault(lab):
    return create_vault(lab)


@pytest.fixture
def hook(lab_connection):
    return AzureSiteRecoveryHook(azure_conn_id=lab_connection)


def field(document: str, path: str) -> str:
    return ET.fromstring(document).find(path, NS).text or ""


def test_credentials_name_the_vault_and_carry_the_uploaded_certificate(lab, vault, hook):
    creds = issue_vault_credentials(hook, vault.resource_group, vault.name)

    assert field(creds.xml, "c:VaultDetails/c:ResourceName") == vault.name
    assert field(creds.xml, "c:VaultDetails/c:ResourceGroup") == vault.resource_group
    assert field(creds.xml, "c:VaultDetails/c:SubscriptionId") == lab["subscription_id"]
    assert field(creds.xml, "c:ManagementCert")
    info = vault_client(lab).vault_extended_info.get(vault.resource_group, vault.name)
    assert field(creds.xml, "c:ChannelIntegrityKey") == info.properties.integrity_key
    assert len(info.properties.integrity_key) == 128 and info.properties.algorithm == "None"
    puts = lab.requests(method="PUT", path="/certificates/")
    assert len(puts) == 1 and puts[0]["status"] == 200


def test_a_second_issue_keeps_the_vaults_integrity_key(lab, vault, hook):
    first = issue_vault_credentials(hook, vault.resource_group, vault.name)
    second = issue_vault_credentials(hook, vault.resource_group, vault.name)

    assert field(first.xml, "c:ChannelIntegrityKey") == field(second.xml, "c:ChannelIntegrityKey")
    assert len(lab.requests(method="PUT", path="/extendedInformation/")) == 1


def test_a_portal_made_integrity_key_is_refused_with_the_reason(lab, vault, hook):
    vault_client(lab).vault_extended_info.create_or_update(
        vault.resource_group, vault.name, {"properties": {"integrityKey": "k" * 128, "algorithm": "HMACSHA256"}})

    with pytest.raises(VaultCredentialsError, match="HMACSHA256"):
        issue_vault_credentials(hook, vault.resource_group, vault.name)


def test_the_document_never_shows_in_repr_or_description(vault, hook):
    creds = issue_vault_credentials(hook, vault.resource_group, vault.name)
    key = field(creds.xml, "c:ChannelIntegrityKey")

    assert key not in repr(creds) and key not in creds.describe()
    assert creds.thumbprint in creds.describe()
