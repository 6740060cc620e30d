"""Vault credentials: the registration key an ASR Provider registers a VMM server with.

There is no REST call that returns a ``.VaultCredentials`` file; Azure PowerShell's
``Get-AzRecoveryServicesVaultSettingsFile`` builds it on the client: it uploads a fresh
self-signed certificate to the vault, reads (or creates) the vault's channel integrity key
and writes both, with the vault's coordinates, into an XML document. This module does the
same through :class:`~site_recovery.hooks.asr.AzureSiteRecoveryHook`'s methods (this module
makes no Azure call of its own and imports no Azure SDK).

The document is a secret: whoever holds it can register a server with the vault. It is
built inside the task that uses it, masked at once, and never returned to XCom or logged;
only :meth:`VaultCredentials.describe` (no secret in it) is fit for a log line.
"""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from airflow.sdk.log import mask_secret

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

#: A registration key is valid for 5 days (VMM-to-VMM documentation).
VALIDITY = timedelta(days=5)
CERT_SUBJECT = "Windows Azure Tools"
INTEGRITY_KEY_LENGTH = 128
_NAMESPACE = "http://schemas.datacontract.org/2004/07/Microsoft.Azure.Portal.RecoveryServices.Models.Common"


class VaultCredentialsError(Exception):
    """The vault cannot issue credentials the provider would accept."""


@dataclass(frozen=True)
class VaultCredentials:
    """A vault credentials document and the non-secret facts about it."""

    vault_id: str
    vault_name: str
    certificate_name: str
    thumbprint: str
    valid_to: datetime
    xml: str = field(repr=False)

    def describe(self) -> str:
        return (f"vault credentials for {self.vault_name} (certificate {self.thumbprint}, "
                f"valid until {self.valid_to:%Y-%m-%d %H:%M} UTC)")


def issue_vault_credentials(hook: AzureSiteRecoveryHook, resource_group_name: str, vault_name: str,
                            *, site_name: str = "", now: datetime | None = None) -> VaultCredentials:
    """
    Upload a new vault certificate and build the vault credentials document around it.

    :param hook: Hook on the ``azure`` connection of the vault's subscription.
    :param resource_group_name: Resource group of the Recovery Services vault.
    :param vault_name: Name of the Recovery Services vault.
    :param site_name: Hyper-V site name (empty for VMM servers, as in VMM-to-VMM).
    :raise VaultCredentialsError: The vault's integrity key was made by the portal and cannot
        be used by a provider registered this way.
    """
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    vault = hook.get_vault(resource_group_name, vault_name)
    settings = hook.settings
    # PowerShell names the certificate by day; a second issue on the same day would replace the
    # first certificate and so void credentials another task is still using. The time keeps
    # every issue's certificate, and with it every issued document, valid.
    certificate_name = f"{vault_name}{settings.subscription_id}-{now:%-m-%-d-%Y-%H%M%S}-vaultcredentials"
    der = _self_signed_certificate(now)
    uploaded = hook.upload_vault_certificate(resource_group_name, vault_name, certificate_name, der)
    integrity_key = _channel_integrity_key(hook, resource_group_name, vault_name)
    mask_secret(integrity_key)
    props = uploaded.properties
    xml = _document(
        subscription_id=settings.subscription_id, resource_group=resource_group_name, vault_name=vault_name,
        resource_id=str(props.resource_id), location=vault.location,
        management_cert=base64.b64encode(props.certificate or der).decode(),
        aad_authority=getattr(props, "aad_authority", None) or settings.authority,
        aad_tenant_id=getattr(props, "aad_tenant_id", None) or settings.tenant_id or "",
        client_id=getattr(props, "service_principal_client_id", None) or "",
        audience=getattr(props, "aad_audience", None)
        or f"https://RecoveryServiceVault/{vault.location}/{vault_name}/{props.resource_id}",
        arm_endpoint=settings.resource_manager_endpoint, integrity_key=integrity_key, site_name=site_name,
    )
    mask_secret(xml)
    return VaultCredentials(
        vault_id=vault.id, vault_name=vault_name, certificate_name=certificate_name,
        thumbprint=props.thumbprint or "", valid_to=props.valid_to or now + VALIDITY, xml=xml,
    )


def _self_signed_certificate(now: datetime) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_SUBJECT)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _channel_integrity_key(hook: AzureSiteRecoveryHook, resource_group_name: str, vault_name: str) -> str:
    """Read the vault's integrity key, creating it as PowerShell does when there is none."""
    info = hook.get_vault_extended_info_or_none(resource_group_name, vault_name)
    if info is not None and info.properties and info.properties.integrity_key:
        if (info.properties.algorithm or "None") != "None":
            raise VaultCredentialsError(
                f"Vault {vault_name} has an integrity key generated with algorithm "
                f"{info.properties.algorithm!r} (made by the portal); providers cannot register with "
                "credentials built from it. Download the vault credentials from the portal instead."
            )
        return info.properties.integrity_key
    alphabet = string.ascii_letters + string.digits
    key = "".join(secrets.choice(alphabet) for _ in range(INTEGRITY_KEY_LENGTH))
    hook.create_or_update_vault_extended_info(
        resource_group_name, vault_name, {"properties": {"integrityKey": key, "algorithm": "None"}},
    )
    # Another task may have created a key at the same moment; the vault keeps the last one
    # written, and only that one makes valid credentials.
    return hook.get_vault_extended_info(resource_group_name, vault_name).properties.integrity_key


def _document(*, subscription_id: str, resource_group: str, vault_name: str, resource_id: str, location: str,
              management_cert: str, aad_authority: str, aad_tenant_id: str, client_id: str, audience: str,
              arm_endpoint: str, integrity_key: str, site_name: str) -> str:
    def element(tag: str, value: str) -> str:
        return f"<{tag}>{escape(value)}</{tag}>"

    return (
        f'<RSVaultAsrCreds xmlns="{_NAMESPACE}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<VaultDetails>"
        + element("SubscriptionId", subscription_id) + element("ResourceGroup", resource_group)
        + element("ResourceName", vault_name) + element("ResourceId", resource_id) + element("Location", location)
        + element("ResourceType", "Microsoft.RecoveryServices/vaults")
        + element("ProviderNamespace", "Microsoft.RecoveryServices")
        + "</VaultDetails>"
        + element("ManagementCert", management_cert) + element("Version", "2.0")
        + "<AadDetails>"
        + element("AadAuthority", aad_authority) + element("AadTenantId", aad_tenant_id)
        + element("ServicePrincipalClientId", client_id) + element("AadVaultAudience", audience)
        + element("ArmManagementEndpoint", arm_endpoint)
        + "</AadDetails>"
        + element("ChannelIntegrityKey", integrity_key) + element("SiteId", "") + element("SiteName", site_name)
        + element("PrivateEndpointStateForSiteRecovery", "None")
        + "</RSVaultAsrCreds>"
    )
