"""Identifiers and timestamps the way the real control plane spells them.

* Vault ids start with ``/subscriptions/`` (Recovery Services vault responses); every ASR
  id starts with ``/Subscriptions/`` (capital S), as in all recorded ASR traffic.
* Derived identities (fabric names, replica VM ids, policy GUIDs) are computed from stable
  inputs so that a rebuilt lab shows the same names for the same estate.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

_NAMESPACE = uuid.UUID("5d0b9f3e-8c1e-4f57-9a3c-2f1b7e0c4a11")

VAULT_TYPE = "Microsoft.RecoveryServices/vaults"


def vault_key(subscription: str, resource_group: str, vault: str) -> str:
    """The lookup key of a vault: its ARM id, lower-cased."""
    return f"/subscriptions/{subscription}/resourcegroups/{resource_group}/providers/microsoft.recoveryservices/vaults/{vault}".lower()


def vault_arm_id(subscription: str, resource_group: str, vault: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{VAULT_TYPE}/{vault}"


def asr_prefix(vault_id: str) -> str:
    """The vault id as ASR writes it in child resource ids (capital S)."""
    return "/Subscriptions/" + vault_id[len("/subscriptions/"):]


def fabric_name(vmm_id: str) -> str:
    """A VMM fabric's ARM name: 64 hex characters, stable for one VMM server."""
    return hashlib.sha256(f"vmm-fabric:{vmm_id.lower()}".encode()).hexdigest()


def derived_guid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(p.lower() for p in parts)))


def thumbprint(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest().upper()


def iso(moment: datetime) -> str:
    """ASR's timestamp spelling: UTC, fractional seconds, trailing ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_seconds(moment: datetime) -> str:
    """Whole-second spelling, as ASR writes job end times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
