"""Recovery Services vaults and what step 2 needs of them (certificate upload, extended info).

These are plain synchronous ARM resources (recoveryservices 4.3.0, api-version 2026-11-01):
a vault PUT answers 200/201 with ``provisioningState: Succeeded`` and no async headers, so
the SDK's poller finishes on the first response; a certificate PUT answers 200.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .base import BackendCore
from .errors import ArmError, InvalidRequestContent, ResourceNotFound
from .naming import derived_guid, vault_arm_id, vault_key
from .state import Certificate, ExtendedInfo, Vault

#: PowerShell names uploaded vault certificates "Windows Azure Tools"; the service keeps it.
CERT_SUBJECT = "CN=Windows Azure Tools"
#: A registration key (vault credentials) is valid for 5 days (VMM-to-VMM docs).
CREDENTIAL_LIFETIME = timedelta(days=5, minutes=10)


def _etag(moment: datetime) -> str:
    stamp = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%%3A%M%%3A%S.%fZ")
    return f"W/\"datetime'{stamp}'\""


def _normalise_location(location: str) -> str:
    return location.replace(" ", "").lower()


class VaultOperations(BackendCore):
    """create_or_update_vault, get_vault, list_vaults, upload_certificate, extended info."""

    def create_or_update_vault(self, subscription: str, resource_group: str, name: str,
                               body: dict[str, Any]) -> tuple[Vault, bool]:
        """PUT a vault; returns (vault, created)."""
        rg = self._check_scope(subscription, resource_group)
        location = body.get("location")
        if not isinstance(location, str) or not location.strip():
            raise ArmError("The location property is required for this definition.", code="LocationRequired")
        key = vault_key(subscription, resource_group, name)
        existing = self.state.vaults.get(key)
        now = self.now()
        sku = dict(body.get("sku") or {"name": "Standard"})
        sku_name = sku.get("name", "Standard")
        if sku_name not in ("Standard", "RS0"):
            raise InvalidRequestContent(f"The SKU '{sku_name}' is not valid. Valid SKUs are 'Standard' and 'RS0'.")
        properties = {k: v for k, v in (body.get("properties") or {}).items() if k != "provisioningState"}
        identity = body.get("identity") or {}
        identity_type = identity.get("type")
        if existing is not None:
            if _normalise_location(location) != existing.location:
                raise ArmError(
                    f"The resource '{name}' already exists in location '{existing.location}' in resource group "
                    f"'{rg}'. A resource with the same name cannot be created in location "
                    f"'{_normalise_location(location)}'. Please select a new resource name.",
                    code="InvalidResourceLocation")
            existing.sku = {"name": "RS0", "tier": "Standard"}
            existing.tags = dict(body.get("tags") or existing.tags)
            existing.properties.update(properties)
            if identity_type:
                existing.identity_type = identity_type
                existing.principal_id = existing.principal_id or str(uuid.uuid4())
            existing.etag = _etag(now)
            self._touch()
            return existing, False
        vault = Vault(
            id=vault_arm_id(self.estate.subscription_id, rg or resource_group, name),
            subscription=self.estate.subscription_id, resource_group=rg or resource_group, name=name,
            location=_normalise_location(location), sku={"name": "RS0", "tier": "Standard"},
            tags=dict(body.get("tags") or {}), properties={"publicNetworkAccess": "Enabled", **properties},
            identity_type=identity_type, principal_id=str(uuid.uuid4()) if identity_type else None,
            etag=_etag(now), created=now,
        )
        self.state.vaults[key] = vault
        self._touch()
        return vault, True

    def get_vault(self, subscription: str, resource_group: str, name: str) -> Vault:
        return self.vault_for(subscription, resource_group, name)

    def list_vaults(self, subscription: str, resource_group: str | None = None) -> list[Vault]:
        rg = self._check_scope(subscription, resource_group)
        vaults = list(self.state.vaults.values())
        if rg is not None:
            vaults = [v for v in vaults if v.resource_group.lower() == rg.lower()]
        return vaults

    # -- vault credentials (step 2) -------------------------------------------------------

    def upload_certificate(self, vault: Vault, name: str, body: dict[str, Any]) -> Certificate:
        """Store the certificate of a vault credentials file.

        Windows PowerShell uploads its own self-signed certificate; PowerShell Core sends no
        certificate and uses the one the service makes, so the lab makes one too.
        """
        props = body.get("properties") or {}
        auth_type = props.get("authType", "AAD")
        if auth_type not in ("AAD", "AzureActiveDirectory", "ACS", "AccessControlService", "Invalid"):
            raise InvalidRequestContent(f"The value '{auth_type}' is not valid for authType.")
        raw = props.get("certificate")
        now = self.now()
        if raw:
            try:
                der = base64.b64decode(raw, validate=True)
                cert = x509.load_der_x509_certificate(der)
            except ValueError as exc:
                raise InvalidRequestContent(f"The certificate is not a base64 DER X.509 certificate: {exc}") from None
        else:
            cert = _self_signed(now)
            der = cert.public_bytes(serialization.Encoding.DER)
        resource_id = int(hashlib.sha256(vault.id.lower().encode()).hexdigest()[:15], 16)
        record = Certificate(
            name=name, certificate=base64.b64encode(der).decode(),
            thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),
            subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
            valid_from=cert.not_valid_before_utc, valid_to=cert.not_valid_after_utc,
            resource_id=resource_id, client_id=derived_guid(vault.id, "spn-client"),
            object_id=derived_guid(vault.id, "spn-object"), uploaded=now,
        )
        vault.certificates[name.lower()] = record
        self._touch()
        return record

    def get_extended_info(self, vault: Vault) -> ExtendedInfo:
        if vault.extended_info is None:
            raise ResourceNotFound("Microsoft.RecoveryServices/vaults/extendedInformation", "vaultExtendedInfo",
                                   vault.resource_group)
        return vault.extended_info

    def put_extended_info(self, vault: Vault, body: dict[str, Any], *, merge: bool = False) -> ExtendedInfo:
        props = body.get("properties") or {}
        current = vault.extended_info if merge else None

        def pick(key: str) -> Any:
            if key in props:
                return props[key]
            return getattr(current, _SNAKE[key]) if current is not None else None

        vault.extended_info = ExtendedInfo(
            integrity_key=pick("integrityKey"), algorithm=pick("algorithm"),
            encryption_key=pick("encryptionKey"), encryption_key_thumbprint=pick("encryptionKeyThumbprint"),
            etag=str(uuid.uuid4()),
        )
        self._touch()
        return vault.extended_info

    def resource_provider(self, subscription: str) -> dict[str, Any]:
        """Microsoft.RecoveryServices as ARM's providers API shows it: always Registered."""
        self._check_scope(subscription)
        return {"namespace": "Microsoft.RecoveryServices", "registrationState": "Registered"}


_SNAKE = {"integrityKey": "integrity_key", "algorithm": "algorithm", "encryptionKey": "encryption_key",
          "encryptionKeyThumbprint": "encryption_key_thumbprint"}


def _self_signed(now: datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Windows Azure Tools")])
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now.replace(microsecond=0))
        .not_valid_after(now.replace(microsecond=0) + CREDENTIAL_LIFETIME)
        .sign(key, hashes.SHA256())
    )
