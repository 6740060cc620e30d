"""Fabrics, providers, clouds, VM networks and protectable items: what a registered VMM shows.

Registering the ASR Provider on a VMM server (DRConfigurator.exe /r on the real server;
``register_provider`` here, called by the lab's VMM twin or its admin API) is the only way
a fabric appears. Its clouds, VM networks and VMs are not stored again: they are read from
the estate whenever they are listed, so the two faces of the lab cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..estate import Cloud, Site, VirtualMachine, VmNetwork
from .base import BackendCore
from .errors import ArmError, ResourceNotFound
from .naming import derived_guid, fabric_name, thumbprint
from .state import Fabric, ProtectedItem, Vault

FABRIC_TYPE = "Microsoft.RecoveryServices/vaults/replicationFabrics"


@dataclass(frozen=True)
class FabricCloud:
    """A protection container: a VMM cloud seen through the fabric of its VMM server."""

    fabric: Fabric
    site: Site
    cloud: Cloud


@dataclass(frozen=True)
class FabricNetwork:
    fabric: Fabric
    site: Site
    network: VmNetwork


class FabricOperations(BackendCore):
    """register_provider and the read-only views of what a registration brings."""

    def register_provider(self, vault_id: str, vmm_server: str) -> dict[str, Any]:
        """Register the ASR Provider of an estate VMM server in a vault (idempotent).

        :param vault_id: ARM id of the vault (any casing).
        :param vmm_server: the VMM server's FQDN as the estate names it.
        :return: the fabric and the RegisterDra job (``created`` False on a repeat call).
        :raise ArmError: unknown vault or VMM server.
        """
        vault = self.vault_by_id(vault_id)
        site = self.estate.site_of_vmm(vmm_server)
        if site is None:
            known = ", ".join(s.vmm.fqdn for s in self.estate.sites)
            raise ArmError(f"The VMM server '{vmm_server}' is not part of the estate (known: {known}).",
                           status=404, code="VmmServerNotFound")
        name = fabric_name(site.vmm.id)
        existing = vault.fabrics.get(name)
        if existing is not None:
            return self._registration(vault, existing, job=None)
        now = self.now()
        fabric = Fabric(name=name, vmm_fqdn=site.vmm.fqdn, vmm_id=site.vmm.id, registered=now,
                        kek_thumbprint=thumbprint(vault.id, site.vmm.id, "kek"),
                        kek_expiry=now + timedelta(days=3 * 365))
        vault.fabrics[name] = fabric
        job = self._start_job(
            vault, "RegisterDra", target_object_id=site.vmm.id, target_object_name=site.vmm.fqdn,
            target_path=f"replicationFabrics/{name}", result="resource",
            affected={"primaryVmmId": site.vmm.id, "primaryVmmName": site.vmm.fqdn,
                      "primaryFabricProviderId": "VMM"},
        )
        return self._registration(vault, fabric, job=job)

    def _registration(self, vault: Vault, fabric: Fabric, job) -> dict[str, Any]:
        return {
            "vaultId": vault.id,
            "fabric": fabric.name,
            "fabricId": self.asr_id(vault, f"replicationFabrics/{fabric.name}"),
            "friendlyName": fabric.vmm_fqdn,
            "provider": fabric.vmm_id,
            "job": job.name if job else None,
            "jobId": self.asr_id(vault, f"replicationJobs/{job.name}") if job else None,
            "created": job is not None,
        }

    # -- fabrics and providers ------------------------------------------------------------

    def list_fabrics(self, vault: Vault) -> list[Fabric]:
        return list(vault.fabrics.values())

    def get_fabric(self, vault: Vault, name: str) -> Fabric:
        fabric = vault.fabrics.get(name.lower())
        if fabric is None:
            raise ResourceNotFound(FABRIC_TYPE, name, vault.resource_group)
        return fabric

    def site_of(self, fabric: Fabric) -> Site:
        site = self.estate.site_of_vmm(fabric.vmm_fqdn)
        assert site is not None, f"fabric {fabric.name} names a VMM server missing from the estate"
        return site

    def list_providers(self, vault: Vault, fabric: str | None = None) -> list[Fabric]:
        """Providers are one per fabric (the DRA on the VMM server), named by the VMM id."""
        return [self.get_fabric(vault, fabric)] if fabric else self.list_fabrics(vault)

    def get_provider(self, vault: Vault, fabric: str, name: str) -> Fabric:
        found = self.get_fabric(vault, fabric)
        if found.vmm_id != name.lower():
            raise ResourceNotFound(f"{FABRIC_TYPE}/replicationRecoveryServicesProviders", name, vault.resource_group)
        return found

    # -- clouds ---------------------------------------------------------------------------

    def list_containers(self, vault: Vault, fabric: str | None = None) -> list[FabricCloud]:
        fabrics = [self.get_fabric(vault, fabric)] if fabric else self.list_fabrics(vault)
        found = []
        for f in fabrics:
            site = self.site_of(f)
            found += [FabricCloud(f, site, cloud) for cloud in site.clouds]
        return found

    def get_container(self, vault: Vault, fabric: str, name: str) -> FabricCloud:
        f = self.get_fabric(vault, fabric)
        site = self.site_of(f)
        for cloud in site.clouds:
            if cloud.id == name.lower():
                return FabricCloud(f, site, cloud)
        raise ResourceNotFound(f"{FABRIC_TYPE}/replicationProtectionContainers", name, vault.resource_group)

    def container_role(self, vault: Vault, fabric: str, container: str) -> tuple[str, str]:
        """(pairingStatus, role) of a cloud, derived from the container mappings."""
        for mapping in vault.container_mappings.values():
            if mapping.fabric == fabric and mapping.container == container:
                return "Paired", "Primary"
            if mapping.target_fabric == fabric and mapping.target_container == container:
                return "Paired", "Recovery"
        return "NotPaired", ""

    def items_in_container(self, vault: Vault, fabric: str, container: str) -> list[ProtectedItem]:
        return [i for i in vault.protected_items.values() if i.fabric == fabric and i.container == container]

    # -- VM networks ----------------------------------------------------------------------

    def list_networks(self, vault: Vault, fabric: str | None = None) -> list[FabricNetwork]:
        fabrics = [self.get_fabric(vault, fabric)] if fabric else self.list_fabrics(vault)
        found = []
        for f in fabrics:
            site = self.site_of(f)
            found += [FabricNetwork(f, site, n) for n in site.networks]
        return found

    def get_network(self, vault: Vault, fabric: str, name: str) -> FabricNetwork:
        f = self.get_fabric(vault, fabric)
        site = self.site_of(f)
        for network in site.networks:
            if network.id == name.lower():
                return FabricNetwork(f, site, network)
        raise ResourceNotFound(f"{FABRIC_TYPE}/replicationNetworks", name, vault.resource_group)

    # -- protectable items ----------------------------------------------------------------

    def list_protectable_items(self, vault: Vault, fabric: str, container: str,
                               filters: dict[str, str] | None = None) -> list[VirtualMachine]:
        """VMs of the cloud; ``$filter`` understands ``state`` / ``protectionStatus``."""
        where = self.get_container(vault, fabric, container)
        vms = [vm for vm in where.site.vms if vm.cloud == where.cloud.name]
        wanted = (filters or {}).get("state") or (filters or {}).get("protectionstatus")
        if wanted:
            vms = [vm for vm in vms if self.protection_status(vault, vm).lower() == wanted.lower()]
        return vms

    def get_protectable_item(self, vault: Vault, fabric: str, container: str, name: str) -> VirtualMachine:
        where = self.get_container(vault, fabric, container)
        for vm in where.site.vms:
            if vm.id == name.lower() and vm.cloud == where.cloud.name:
                return vm
        raise ResourceNotFound(f"{FABRIC_TYPE}/replicationProtectionContainers/replicationProtectableItems",
                               name, vault.resource_group)

    def protected_item_of_vm(self, vault: Vault, vm_id: str) -> ProtectedItem | None:
        for item in vault.protected_items.values():
            if item.vm_id == vm_id:
                return item
        return None

    def protection_status(self, vault: Vault, vm: VirtualMachine) -> str:
        return "Protected" if self.protected_item_of_vm(vault, vm.id) else "Unprotected"

    def recovery_network_for(self, vault: Vault, fabric: str, network_id: str) -> str | None:
        """The recovery VM network a primary network is mapped to, if any."""
        for mapping in vault.network_mappings.values():
            if mapping.fabric == fabric and mapping.network == network_id:
                return mapping.recovery_network
        return None

    def replica_nic_id(self, vm_id: str, nic_id: str) -> str:
        return derived_guid(vm_id, nic_id, "replica-nic")
