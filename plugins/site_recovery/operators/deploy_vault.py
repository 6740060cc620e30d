"""What the vault holds, read once per task, for the plan (step 1) and the "ensure" steps (5-8).

Reading only: nothing here changes Azure. Names are the ones a DR engineer knows (VMM server,
cloud, VM network); ASR's GUID names are kept beside them for the calls that need them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

log = logging.getLogger(__name__)


@dataclass
class FabricView:
    """A registered VMM server: its fabric, provider state, clouds (containers) and VM networks."""

    name: str
    friendly_name: str
    connected: bool
    containers: dict[str, Any] = field(default_factory=dict)  # cloud name (casefold) -> ProtectionContainer
    networks: dict[str, Any] = field(default_factory=dict)  # VM network name (casefold) -> Network


@dataclass
class VaultView:
    exists: bool
    location: str | None = None
    provisioning_state: str | None = None
    fabrics: dict[str, FabricView] = field(default_factory=dict)  # friendly name (casefold) -> view
    policy: Any = None

    def fabric_for(self, server) -> FabricView | None:
        """The fabric of a site's VMM server (registered under its friendly name or fqdn)."""
        for key in (server.name_in_vault, server.fqdn):
            if key.casefold() in self.fabrics:
                return self.fabrics[key.casefold()]
        return None


def read_vault(hook, site, *, details: bool = True) -> VaultView:
    """Read the vault, its fabrics with their providers, clouds and networks, and the site's policy."""
    az = site.azure
    try:
        vault = hook.vault_client.vaults.get(az.resource_group, az.vault_name)
    except ResourceNotFoundError:
        return VaultView(exists=False)
    props = vault.properties
    view = VaultView(True, vault.location, getattr(props, "provisioning_state", None))
    asr = hook.connection
    for fabric in asr.replication_fabrics.list(az.resource_group, az.vault_name):
        friendly = (fabric.properties.friendly_name if fabric.properties else None) or fabric.name
        providers = asr.replication_recovery_services_providers.list_by_replication_fabrics(
            az.resource_group, az.vault_name, fabric.name)
        connected = any(p.properties and p.properties.connection_status == "Connected" for p in providers)
        fv = FabricView(fabric.name, friendly, connected)
        if details:
            for c in asr.replication_protection_containers.list_by_replication_fabrics(
                    az.resource_group, az.vault_name, fabric.name):
                fv.containers[(c.properties.friendly_name or c.name).casefold()] = c
            for n in asr.replication_networks.list_by_replication_fabrics(
                    az.resource_group, az.vault_name, fabric.name):
                fv.networks[(n.properties.friendly_name or n.name).casefold()] = n
        view.fabrics[friendly.casefold()] = fv
    try:
        view.policy = asr.replication_policies.get(az.resource_group, az.vault_name, site.replication_policy.name)
    except ResourceNotFoundError:
        view.policy = None
    return view


def network_mapping_of(hook, site, fabric: FabricView, network) -> Any:
    """The existing mapping of a primary VM network, or None."""
    az = site.azure
    found = list(hook.connection.replication_network_mappings.list_by_replication_networks(
        az.resource_group, az.vault_name, fabric.name, network.name))
    return found[0] if found else None


def container_mapping_of(hook, site, fabric: FabricView, container) -> Any:
    """The existing pairing of a primary cloud, or None."""
    az = site.azure
    found = list(hook.connection.replication_protection_container_mappings.list_by_replication_protection_containers(
        az.resource_group, az.vault_name, fabric.name, container.name))
    return found[0] if found else None


def policy_differences(site, policy) -> list[str]:
    """What differs between the vault's policy and the site file (empty: nothing)."""
    details = policy.properties.provider_specific_details
    as_dict = details.as_dict() if hasattr(details, "as_dict") else dict(details or {})
    return site.replication_policy.matches_provider_details(as_dict)


def mapping_name(left: str, right: str) -> str:
    """ASR resource name of a mapping: ``prod-app-to-dr-app`` (letters, digits and '-')."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", f"{left}-to-{right}".lower()).strip("-")[:64]


def resource_provider_state(hook, subscription_id: str) -> str:
    """``registrationState`` of Microsoft.RecoveryServices in the subscription."""
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", f"/subscriptions/{subscription_id}/providers/Microsoft.RecoveryServices",
                          params={"api-version": "2021-04-01"})
    response = hook.vault_client.send_request(request)
    response.raise_for_status()
    return response.json().get("registrationState", "Unknown")


def running_job(hook, site, scenario: str, *, target_name: str | None = None,
                affected: tuple[str, str] | None = None) -> str | None:
    """The name of a job of ``scenario`` still running on this target, if an earlier run left one.

    A run whose worker died after starting a job (or that was cleared while the job ran) must
    wait on that job, not start a second one that ASR would refuse or duplicate.
    """
    from site_recovery.hooks.asr import AsrJobState

    for job in hook.list_jobs(site.azure.resource_group, site.azure.vault_name):
        props = job.properties
        if props is None or props.scenario_name != scenario:
            continue
        if props.state not in (AsrJobState.NOT_STARTED, AsrJobState.IN_PROGRESS):
            continue
        if target_name is not None and (props.target_object_name or "").lower() == target_name.lower():
            return job.name
        if affected is not None and props.custom_details is not None:
            details = {k.lower(): v for k, v in (props.custom_details.affected_object_details or {}).items()}
            if (details.get(affected[0].lower()) or "").lower() == affected[1].lower():
                return job.name
    return None
