"""Reading and checking a vault credentials file the way the ASR Provider's DRConfigurator does.

The file is the XML DataContract ``RSVaultAsrCreds`` that Get-AzRecoveryServicesVaultSettingsFile
(and the product) writes. It is read namespace-tolerantly, by local element names, as the
provider's DataContract serializer is tolerant of prefixes. The checks follow what the provider
verifies before it registers: the vault exists; the management certificate is one uploaded to
that vault (else the file was tampered with) and has not expired; the channel integrity key
matches the vault's extended info (else tampered).

Nothing here ever puts the document, the certificate or the integrity key into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime

from asr_lab.arm.errors import ArmError

DOWNLOAD_AGAIN = "Download a new vault credentials file from the vault and retry."
TAMPERED = "The vault credentials file is invalid or has been tampered with."
EXPIRED = f"The vault credentials file has expired. {DOWNLOAD_AGAIN}"


class CredentialsUnreadable(ValueError):
    """The document is not a vault credentials file at all (checked by the script, before DRConfigurator)."""


class CredentialsRejected(ValueError):
    """DRConfigurator refuses the credentials; the message is DRConfigurator's."""


@dataclass(frozen=True)
class VaultCredentialsFile:
    """The fields of a vault credentials file the provider uses."""

    subscription_id: str
    resource_group: str
    vault_name: str
    management_cert: str = field(repr=False)
    integrity_key: str = field(repr=False)
    site_name: str = ""

    @property
    def vault_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.RecoveryServices/vaults/{self.vault_name}")


def parse_vault_credentials(document: str) -> VaultCredentialsFile:
    """Read the vault's coordinates and secrets from the XML.

    :raise CredentialsUnreadable: not XML, or no vault named in it (the message quotes nothing of it).
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        raise CredentialsUnreadable(
            f"The vault credentials are not a valid vault credentials file (not XML). {DOWNLOAD_AGAIN}") from None
    values: dict[str, str] = {}
    for element in root.iter():
        values.setdefault(element.tag.rsplit("}", 1)[-1], (element.text or "").strip())
    if _local(root.tag) != "RSVaultAsrCreds" or not all(
            values.get(k) for k in ("SubscriptionId", "ResourceGroup", "ResourceName")):
        raise CredentialsUnreadable(
            "The vault credentials are not a valid vault credentials file (no SubscriptionId, ResourceGroup and "
            f"ResourceName under VaultDetails). {DOWNLOAD_AGAIN}")
    return VaultCredentialsFile(
        subscription_id=values["SubscriptionId"], resource_group=values["ResourceGroup"],
        vault_name=values["ResourceName"], management_cert=values.get("ManagementCert", ""),
        integrity_key=values.get("ChannelIntegrityKey", ""), site_name=values.get("SiteName", ""),
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def certificate_thumbprint(management_cert: str) -> str | None:
    """SHA-1 thumbprint (upper-case hex, as Windows shows it) of a base64 DER certificate."""
    try:
        der = base64.b64decode(management_cert, validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha1(der).hexdigest().upper() if der else None


def check_with_vault(credentials: VaultCredentialsFile, backend, now: datetime):
    """The vault the credentials are good for, checked as DRConfigurator checks them.

    :raise CredentialsRejected: unknown vault, foreign or expired certificate, wrong integrity key.
    """
    try:
        vault = backend.vault_for(credentials.subscription_id, credentials.resource_group, credentials.vault_name)
    except ArmError:
        raise CredentialsRejected(
            f"The vault '{credentials.vault_name}' in resource group '{credentials.resource_group}' was not found in "
            f"subscription {credentials.subscription_id}. Check that the vault exists. {DOWNLOAD_AGAIN}") from None
    thumbprint = certificate_thumbprint(credentials.management_cert)
    certificate = next((c for c in vault.certificates.values() if thumbprint and c.thumbprint.upper() == thumbprint),
                       None)
    if certificate is None:
        raise CredentialsRejected(TAMPERED)
    if certificate.valid_to <= now:
        raise CredentialsRejected(EXPIRED)
    info = vault.extended_info
    if info is None or not info.integrity_key or info.integrity_key != credentials.integrity_key:
        raise CredentialsRejected(TAMPERED)
    return vault
