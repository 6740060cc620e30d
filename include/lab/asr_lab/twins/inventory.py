"""Twin of Get-VmmInventory: what a VMM server manages, read from the estate and the lab state.

Clouds, hosts and VM networks come from the estate; the hosts' Hyper-V Replica settings from
:class:`~asr_lab.onprem.OnPremState` (step 4 changes them); the VMs from
:func:`~asr_lab.twins.vmm_view.managed_vms`, which adds replica and test failover VMs to the
estate's own. A cloud filter that names no cloud gets a warning, as ``Get-SCCloud -Name``
returning nothing does in the script.
"""

from __future__ import annotations

from typing import Any

from asr_lab.onprem import ReplicaServer
from asr_lab.twins.common import Param, ScriptRun, script_twin
from asr_lab.twins.vmm_view import cloud_host_groups, host_group, logical_network, managed_vms

SCRIPT = "Get-VmmInventory"
PARAMETERS = [Param("CloudName", list, aliases=("CloudNames",), not_empty=True)]


def replica_document(replica: ReplicaServer) -> dict[str, Any]:
    return {"enabled": replica.enabled, "authentication": replica.authentication,
            "kerberos_port": replica.kerberos_port, "certificate_port": replica.certificate_port,
            "storage_path": replica.storage_path, "allowed_from_any_server": replica.allowed_from_any_server}


@script_twin(SCRIPT, PARAMETERS)
def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    context.require_vmm()
    lab, site = context.lab, context.site
    lab.backend.settle()
    run.verbose(f"Connected to VMM server {site.vmm.fqdn} (version {site.vmm.version}).")

    clouds = list(site.clouds)
    if args["CloudName"]:
        wanted = {name.casefold() for name in args["CloudName"]}
        for name in args["CloudName"]:
            if not any(c.name.casefold() == name.casefold() for c in clouds):
                run.warn(f"No cloud named '{name}' on {site.vmm.fqdn}.")
        clouds = [c for c in clouds if c.name.casefold() in wanted]
    cloud_names = {c.name for c in clouds}
    run.verbose(f"Found {len(clouds)} cloud(s): {', '.join(c.name for c in clouds) or '(none)'}.")

    hosts = [h for h in site.hosts if h.cloud in cloud_names]
    host_documents = []
    for host in hosts:
        run.verbose(f"Reading the Hyper-V Replica settings of {host.fqdn}.")
        host_documents.append({
            "id": host.id, "fqdn": host.fqdn, "host_group": host_group(site, host.fqdn), "cluster": host.cluster,
            "os": host.os, "os_version": host.os_version, "hyperv_role": True,
            "logical_processors": host.logical_processors, "memory_gb": float(host.memory_gb),
            "replica": replica_document(lab.onprem.host(host.fqdn).replica),
        })

    vms = [vm for vm in managed_vms(lab, site) if vm["cloud"] in cloud_names]
    for cloud in clouds:
        count = sum(1 for vm in vms if vm["cloud"] == cloud.name)
        run.verbose(f"Cloud {cloud.name}: {count} virtual machine(s).")

    networks, logical = [], {}
    for network in site.networks:
        ln_id, ln_name, virtualized = logical_network(site, network)
        logical.setdefault(ln_id, {"id": ln_id, "name": ln_name, "network_virtualization": virtualized})
        networks.append({"id": network.id, "name": network.name, "logical_network": ln_name,
                         "isolation": network.isolation,
                         "subnets": [{"name": s.name, "address_prefix": s.address_prefix} for s in network.subnets]})

    run.info(f"Inventory of {site.vmm.fqdn}: {len(clouds)} cloud(s), {len(host_documents)} host(s), "
             f"{len(vms)} VM(s), {len(networks)} VM network(s).")
    return run.emit({
        "server": site.vmm.fqdn,
        "vmm_version": site.vmm.version,
        "clouds": [{"id": c.id, "name": c.name, "description": c.description,
                    "host_groups": cloud_host_groups(site, c.name)} for c in clouds],
        "hosts": host_documents,
        "vms": vms,
        "vm_networks": networks,
        "logical_networks": list(logical.values()),
    })
