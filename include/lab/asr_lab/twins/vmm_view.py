"""The estate as a VMM server shows it: host groups, logical networks, and every VM it manages.

A VMM server manages more than the estate lists: once replication is enabled, the recovery
site holds a replica of each protected VM, and a test failover adds a "<vm> - Test" VM there.
The ARM backend owns those (protected items and their test VMs), so this module derives them
from it; Get-VmmInventory and Get-TestVmStatus then report the same VMs with the same ids.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from asr_lab.arm.naming import derived_guid
from asr_lab.estate import Site, VirtualMachine, VmNetwork

#: Hyper-V's VM states as VMM's VirtualMachineState spells them.
VMM_STATES = {"Running": "Running", "Off": "PowerOff", "Saved": "Saved", "Paused": "Paused"}


def vmm_state(hyperv_state: str) -> str:
    return VMM_STATES.get(hyperv_state, hyperv_state)


def host_group(site: Site, host_fqdn: str) -> str:
    """The VMM host group path of a host: one group per cluster under the site's city."""
    host = next(h for h in site.hosts if h.fqdn == host_fqdn)
    return f"All Hosts\\{site.city}\\{host.cluster or 'Standalone'}"


def cloud_host_groups(site: Site, cloud: str) -> list[str]:
    return list(dict.fromkeys(host_group(site, h.fqdn) for h in site.hosts_in(cloud)))


def logical_network(site: Site, network: VmNetwork) -> tuple[str, str, bool]:
    """(id, name, network virtualization) of the logical network a VM network sits on."""
    if network.isolation == "WindowsNetworkVirtualization":
        name, virtualized = f"{site.city} Provider Address", True
    elif network.isolation == "VLANBased":
        name, virtualized = f"{site.city} VLANs", False
    else:
        name, virtualized = f"{site.city} Datacenter", False
    return derived_guid(site.vmm.id, "logical-network", name), name, virtualized


def test_vm_address(vm_id: str, network: VmNetwork) -> str:
    """The address a running test VM gets from the drill network's first subnet (stable per VM)."""
    subnet = ipaddress.ip_network(network.subnets[0].address_prefix)
    usable = max(1, min(subnet.num_addresses - 3, 200))
    offset = 20 + int(hashlib.sha256(vm_id.encode()).hexdigest(), 16) % usable
    return str(subnet.network_address + min(offset, subnet.num_addresses - 2))


def site_of_host(lab: Any, host_fqdn: str) -> Site | None:
    return next((s for s in lab.estate.sites if any(h.fqdn == host_fqdn for h in s.hosts)), None)


def _disks(vm: VirtualMachine, copy_of: str | None = None) -> list[dict[str, Any]]:
    return [{"id": derived_guid(d.id, copy_of) if copy_of else d.id, "name": d.file, "size_gb": float(d.size_gb),
             "bus": d.controller, "role": d.role, "shared": d.shared, "passthrough": d.passthrough}
            for d in vm.disks]


def _vm(vm: VirtualMachine, *, vm_id: str, name: str, cloud: str | None, host: str, state: str,
        disks: list[dict[str, Any]], nics: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": vm_id, "name": name, "cloud": cloud, "host": host, "generation": vm.generation,
            "state": vmm_state(state), "os": vm.os, "cpu_count": vm.cpu_count, "memory_mb": vm.memory_mb,
            "disks": disks, "nics": nics}


def managed_vms(lab: Any, site: Site) -> list[dict[str, Any]]:
    """Every VM the site's VMM server manages, as Get-VmmInventory reports it.

    The caller settles the backend first, so job effects due by now are applied.
    """
    backend = lab.backend
    items = [(vault, item) for vault in backend.state.vaults.values() for item in vault.protected_items.values()]
    primary_state = {item.vm_id: item.primary_vm_state for _, item in items}
    found = []
    for vm in site.vms:
        nics = [{"id": n.id, "mac": n.mac, "vm_network": n.network,
                 "ip_addresses": [n.ip_address] if n.ip_address and primary_state.get(vm.id, "Running") == "Running"
                 else []} for n in vm.nics]
        found.append(_vm(vm, vm_id=vm.id, name=vm.name, cloud=vm.cloud, host=vm.host,
                         state=primary_state.get(vm.id, "Running"), disks=_disks(vm), nics=nics))
    for vault, item in items:
        source = lab.estate.vm(item.vm_id)
        recovery = lab.estate.cloud(item.recovery_container)
        if source is None or recovery is None or recovery[0] is not site or item.ir_start is None:
            continue  # the replica VM exists once enabling replication has created it
        vm = source[1]
        nics = []
        for nic in vm.nics:  # without a network mapping the replica's NIC is not connected
            mapped = backend.recovery_network_for(vault, item.fabric, source[0].network_named(nic.network).id)
            target = lab.estate.network(mapped) if mapped else None
            # A failed-over replica running on a mapped network takes an address from its VMM IP pool.
            addressed = target is not None and item.replica_vm_state == "Running" and target[1].subnets
            nics.append({"id": backend.replica_nic_id(vm.id, nic.id), "mac": nic.mac,
                         "vm_network": target[1].name if target else None,
                         "ip_addresses": [test_vm_address(backend.replica_nic_id(vm.id, nic.id), target[1])]
                         if addressed else []})
        found.append(_vm(vm, vm_id=item.replica_vm_id, name=vm.name, cloud=recovery[1].name,
                         host=backend._replica_host(item), state=item.replica_vm_state,
                         disks=_disks(vm, copy_of=item.replica_vm_id), nics=nics))
    for test in test_vms_on(lab, site):
        found.append(test_vm_document(lab, test))
    return found


def test_vms_on(lab: Any, site: Site) -> list[dict[str, Any]]:
    """The backend's test failover VMs whose host belongs to ``site``."""
    return [t for t in lab.backend.test_vms() if site_of_host(lab, t["host"]) is site]


def test_vm_document(lab: Any, test: dict[str, Any]) -> dict[str, Any]:
    """A test failover VM (an entry of ``ArmBackend.test_vms()``) as Get-VmmInventory reports it."""
    source = lab.estate.vm(test["sourceVmId"])
    vm = source[1]
    network = lab.estate.network(test["networkId"]) if test.get("networkId") else None
    addresses = [test_vm_address(test["id"], network[1])] if network and test["state"] == "Running" else []
    nics = [{"id": derived_guid(test["id"], nic.id), "mac": nic.mac,
             "vm_network": network[1].name if network else None, "ip_addresses": addresses if i == 0 else []}
            for i, nic in enumerate(vm.nics)]
    return _vm(vm, vm_id=test["id"], name=test["name"], cloud=test.get("cloud"), host=test["host"],
               state=test["state"], disks=_disks(vm, copy_of=test["id"]), nics=nics)
