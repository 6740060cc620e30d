"""Cloud pairing (container mappings, step 6) and VM network mapping (step 8).

Both are PUTs that start a job and materialise the mapping when the job succeeds.
References that cannot be resolved (a policy, a recovery cloud or network that does not
exist) are refused at once: ASR needs them to even describe the job (its target is the
policy for a pairing). Conflicts with existing pairings are refused the same way.
Repeating the exact PUT of an existing mapping answers the mapping (200) and starts
nothing, so "ensure" code can re-run safely.
"""

from __future__ import annotations

import re
from typing import Any

from .base import effects
from .errors import AsrError, AsrErrors, ResourceNotFound
from .fabrics import FabricOperations
from .jobs import Job
from .policies import PolicyOperations
from .state import ContainerMapping, NetworkMapping, Vault

_CONTAINER_ID = re.compile(
    r"/replicationFabrics/(?P<fabric>[^/]+)/replicationProtectionContainers/(?P<container>[^/]+)/?$", re.I)
_NETWORK_ID = re.compile(r"/replicationFabrics/(?P<fabric>[^/]+)/replicationNetworks/(?P<network>[^/]+)/?$", re.I)

MAPPING_TYPE = "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/" \
               "replicationProtectionContainerMappings"
NETWORK_MAPPING_TYPE = "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationNetworks/" \
                       "replicationNetworkMappings"


def _properties(body: dict[str, Any], *required: str) -> dict[str, Any]:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise AsrError(AsrErrors.INVALID_INPUT, parameter="properties", reason="properties is required.")
    for key in required:
        if not isinstance(props.get(key), str) or not props[key]:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter=key, reason=f"properties.{key} is required.")
    return props


class PairingOperations(FabricOperations, PolicyOperations):
    """Container mappings and network mappings: create, remove/purge/delete, get, list."""

    # -- cloud pairing --------------------------------------------------------------------

    def list_container_mappings(self, vault: Vault, fabric: str | None = None,
                                container: str | None = None) -> list[ContainerMapping]:
        if fabric is not None and container is not None:
            self.get_container(vault, fabric, container)
            return [m for m in vault.container_mappings.values()
                    if m.fabric == fabric.lower() and m.container == container.lower()]
        return list(vault.container_mappings.values())

    def get_container_mapping(self, vault: Vault, fabric: str, container: str, name: str) -> ContainerMapping:
        self.get_container(vault, fabric, container)
        mapping = vault.container_mappings.get(f"{fabric}/{container}/{name}".lower())
        if mapping is None:
            raise ResourceNotFound(MAPPING_TYPE, name, vault.resource_group)
        return mapping

    def create_container_mapping(self, vault: Vault, fabric: str, container: str, name: str,
                                 body: dict[str, Any]) -> Job | ContainerMapping:
        source = self.get_container(vault, fabric, container)
        props = _properties(body, "targetProtectionContainerId", "policyId")
        policy = self.policy_from_id(vault, props["policyId"])
        found = _CONTAINER_ID.search(props["targetProtectionContainerId"])
        target = None
        if found:
            try:
                target = self.get_container(vault, found["fabric"], found["container"])
            except ResourceNotFound:
                target = None
        if target is None:
            raise AsrError(AsrErrors.CONTAINER_NOT_FOUND, container=props["targetProtectionContainerId"])
        src_key = (source.fabric.name, source.cloud.id)
        dst_key = (target.fabric.name, target.cloud.id)
        existing = vault.container_mappings.get(f"{fabric}/{container}/{name}".lower())
        if existing is not None and (existing.target_fabric, existing.target_container) == dst_key \
                and existing.policy == policy.name.lower():
            return existing
        if src_key == dst_key:
            raise AsrError(AsrErrors.INVALID_PAIRING, cloud=source.cloud.name,
                           reason="The primary and the recovery cloud are the same cloud.")
        for m in list(vault.container_mappings.values()) + self._pending_pairings(vault):
            if (m.fabric, m.container) == src_key:
                paired = self.estate.cloud(m.target_container)
                raise AsrError(AsrErrors.CLOUD_ALREADY_PAIRED, cloud=source.cloud.name,
                               paired_with=paired[1].name if paired else m.target_container)
            if (m.target_fabric, m.target_container) == src_key:
                raise AsrError(AsrErrors.INVALID_PAIRING, cloud=source.cloud.name,
                               reason=f"The cloud '{source.cloud.name}' is already a recovery cloud.")
            if (m.fabric, m.container) == dst_key or (m.target_fabric, m.target_container) == dst_key:
                raise AsrError(AsrErrors.INVALID_PAIRING, cloud=source.cloud.name,
                               reason=f"The recovery cloud '{target.cloud.name}' is already used by another pairing.")
        refusal = None
        disabled = [h.fqdn for h in target.site.hosts_in(target.cloud.name) if not h.replica.enabled]
        if disabled:
            refusal = AsrErrors.INVALID_PAIRING.render(
                cloud=source.cloud.name,
                reason=f"Hyper-V Replica isn't enabled as a replica server on {', '.join(disabled)}.")
        return self._start_job(
            vault, "AssociateProtectionProfile", target_object_id=policy.guid, target_object_name=policy.name,
            target_path=f"replicationFabrics/{source.fabric.name}/replicationProtectionContainers/"
                        f"{source.cloud.id}/replicationProtectionContainerMappings/{name}",
            result="resource", refusal=refusal,
            affected={
                "primaryCloudId": source.cloud.id, "primaryCloudName": source.cloud.name,
                "recoveryCloudId": target.cloud.id, "recoveryCloudName": target.cloud.name,
                "primaryVmmId": source.site.vmm.id, "primaryVmmName": source.site.vmm.fqdn,
                "recoveryVmmId": target.site.vmm.id, "recoveryVmmName": target.site.vmm.fqdn,
                "protectionProfileId": policy.guid,
                "primaryFabricProviderId": "VMM", "recoveryFabricProviderId": "VMM",
            },
            params={"name": name, "fabric": src_key[0], "container": src_key[1], "target_fabric": dst_key[0],
                    "target_container": dst_key[1], "policy": policy.name.lower()},
        )

    def _pending_pairings(self, vault: Vault) -> list[ContainerMapping]:
        """Pairings whose job is still running count as taken."""
        pending = []
        for job in vault.jobs.values():
            if job.kind == "AssociateProtectionProfile" and job.running:
                p = job.params
                pending.append(ContainerMapping(p["name"], p["fabric"], p["container"], p["target_fabric"],
                                                p["target_container"], p["policy"], job.start_time))
        return pending

    def remove_container_mapping(self, vault: Vault, fabric: str, container: str, name: str,
                                 *, purge: bool = False) -> Job:
        mapping = self.get_container_mapping(vault, fabric, container, name)
        if not purge:
            protected = [i for i in self.items_in_container(vault, mapping.fabric, mapping.container)
                         if i.policy == mapping.policy]
            if protected:
                cloud = self.estate.cloud(mapping.container)
                raise AsrError(AsrErrors.MAPPING_IN_USE, cloud=cloud[1].name if cloud else mapping.container,
                               count=len(protected))
        policy = vault.policies.get(mapping.policy)
        source, target = self.estate.cloud(mapping.container), self.estate.cloud(mapping.target_container)
        return self._start_job(
            vault, "DissociateProtectionProfile",
            target_object_id=policy.guid if policy else mapping.policy,
            target_object_name=policy.name if policy else mapping.policy,
            target_path=f"replicationFabrics/{mapping.fabric}/replicationProtectionContainers/{mapping.container}/"
                        f"replicationProtectionContainerMappings/{mapping.name}",
            result="none",
            affected={"primaryCloudId": mapping.container, "primaryCloudName": source[1].name if source else "",
                      "recoveryCloudId": mapping.target_container,
                      "recoveryCloudName": target[1].name if target else "",
                      "primaryFabricProviderId": "VMM", "recoveryFabricProviderId": "VMM"},
            params={"key": f"{mapping.fabric}/{mapping.container}/{mapping.name}".lower()},
        )

    @effects("AssociateProtectionProfile", "DissociateProtectionProfile")
    def _apply_pairing_job(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        if event != "succeeded":
            return
        p = job.params
        if job.kind == "DissociateProtectionProfile":
            vault.container_mappings.pop(p["key"], None)
            return
        vault.container_mappings[f"{p['fabric']}/{p['container']}/{p['name']}".lower()] = ContainerMapping(
            name=p["name"], fabric=p["fabric"], container=p["container"], target_fabric=p["target_fabric"],
            target_container=p["target_container"], policy=p["policy"], created=job.end_time or self.now())

    # -- network mapping ------------------------------------------------------------------

    def list_network_mappings(self, vault: Vault, fabric: str | None = None,
                              network: str | None = None) -> list[NetworkMapping]:
        if fabric is not None and network is not None:
            self.get_network(vault, fabric, network)
            return [m for m in vault.network_mappings.values()
                    if m.fabric == fabric.lower() and m.network == network.lower()]
        return list(vault.network_mappings.values())

    def get_network_mapping(self, vault: Vault, fabric: str, network: str, name: str) -> NetworkMapping:
        self.get_network(vault, fabric, network)
        mapping = vault.network_mappings.get(f"{fabric}/{network}/{name}".lower())
        if mapping is None:
            raise ResourceNotFound(NETWORK_MAPPING_TYPE, name, vault.resource_group)
        return mapping

    def create_network_mapping(self, vault: Vault, fabric: str, network: str, name: str,
                               body: dict[str, Any]) -> Job | NetworkMapping:
        primary = self.get_network(vault, fabric, network)
        props = _properties(body, "recoveryNetworkId")
        details = props.get("fabricSpecificDetails") or {"instanceType": "VmmToVmm"}
        if details.get("instanceType") != "VmmToVmm":
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="fabricSpecificDetails.instanceType",
                           reason=f"'{details.get('instanceType')}' isn't valid for mapping networks between VMM "
                                  f"sites. Use VmmToVmm.")
        found = _NETWORK_ID.search(props["recoveryNetworkId"])
        recovery = None
        if found:
            try:
                recovery = self.get_network(vault, found["fabric"], found["network"])
            except ResourceNotFound:
                recovery = None
        if recovery is None:
            raise AsrError(AsrErrors.NETWORK_NOT_FOUND, network=props["recoveryNetworkId"])
        named_fabric = props.get("recoveryFabricName")
        if named_fabric and named_fabric.lower() != recovery.fabric.name:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="recoveryFabricName",
                           reason=f"The recovery network belongs to the fabric '{recovery.fabric.name}'.")
        key = f"{primary.fabric.name}/{primary.network.id}/{name}".lower()
        existing = vault.network_mappings.get(key)
        if existing is not None and existing.recovery_network == recovery.network.id:
            return existing
        for m in vault.network_mappings.values():
            if m.fabric == primary.fabric.name and m.network == primary.network.id:
                mapped = self.estate.network(m.recovery_network)
                raise AsrError(AsrErrors.NETWORK_ALREADY_MAPPED, network=primary.network.name,
                               mapped_to=mapped[1].name if mapped else m.recovery_network)
        return self._start_job(
            vault, "NetworkPairing", target_object_id=primary.network.id, target_object_name=primary.network.name,
            target_path=f"replicationFabrics/{primary.fabric.name}/replicationNetworks/{primary.network.id}/"
                        f"replicationNetworkMappings/{name}",
            result="resource",
            affected={
                "primaryNetworkId": primary.network.id, "primaryNetworkName": primary.network.name,
                "recoveryNetworkId": recovery.network.id, "recoveryNetworkName": recovery.network.name,
                "primaryVmmId": primary.site.vmm.id, "primaryVmmName": primary.site.vmm.fqdn,
                "recoveryVmmId": recovery.site.vmm.id, "recoveryVmmName": recovery.site.vmm.fqdn,
                "primaryFabricProviderId": "VMM", "recoveryFabricProviderId": "VMM",
            },
            params={"key": key, "name": name, "fabric": primary.fabric.name, "network": primary.network.id,
                    "recovery_fabric": recovery.fabric.name, "recovery_network": recovery.network.id},
        )

    def delete_network_mapping(self, vault: Vault, fabric: str, network: str, name: str) -> Job:
        mapping = self.get_network_mapping(vault, fabric, network, name)
        primary = self.estate.network(mapping.network)
        return self._start_job(
            vault, "NetworkUnpairing", target_object_id=mapping.network,
            target_object_name=primary[1].name if primary else mapping.network,
            target_path=f"replicationFabrics/{mapping.fabric}/replicationNetworks/{mapping.network}/"
                        f"replicationNetworkMappings/{mapping.name}",
            result="none",
            affected={"primaryNetworkId": mapping.network, "recoveryNetworkId": mapping.recovery_network,
                      "primaryFabricProviderId": "VMM", "recoveryFabricProviderId": "VMM"},
            params={"key": f"{mapping.fabric}/{mapping.network}/{mapping.name}".lower()},
        )

    @effects("NetworkPairing", "NetworkUnpairing")
    def _apply_network_job(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        if event != "succeeded":
            return
        p = job.params
        if job.kind == "NetworkUnpairing":
            vault.network_mappings.pop(p["key"], None)
            return
        vault.network_mappings[p["key"]] = NetworkMapping(
            name=p["name"], fabric=p["fabric"], network=p["network"], recovery_fabric=p["recovery_fabric"],
            recovery_network=p["recovery_network"], created=job.end_time or self.now())
