"""The deployment's rules: its steps, what the vault holds, and what differs from the site file.

The deployment DAG's tasks (:mod:`site_recovery.tasks.deploy`, :mod:`site_recovery.tasks.deploy_onprem`)
read through the hook and the VMM scripts, ask this module what to do, then act. Everything here
is a rule over what was read: it imports neither Airflow nor the Azure SDK, raises nothing of
Airflow's (a problem comes back as text for the task to raise), and the readers below only call
:class:`~site_recovery.hooks.asr.AzureSiteRecoveryHook` methods passed in. Names are the ones a
DR engineer knows (VMM server, cloud, VM network); ASR's GUID names are kept beside them for the
calls that need them.

The DAG files import :data:`STEPS`, so the module stays cheap to import (standard library and
:mod:`~site_recovery.vocabulary` only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from site_recovery.vocabulary import AsrJobState, ProviderConnectionState, ProvisioningState

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.scripts import PrerequisiteCheck, PrerequisiteReport, VmmInventory
    from site_recovery.site import Site, VmmServer, VmmSite

#: The documented steps, in order: (task group id, what a DR engineer reads in the trigger form).
STEPS: dict[str, str] = {
    "review_architecture": "1. Review the architecture: show the plan and what this run would change",
    "prerequisites": "2. Prerequisites: Azure access, resource provider, Test-AsrPrerequisites on both VMM servers",
    "plan_networking": "3. Plan networking: every VM network of in-scope VMs is mapped to an existing DR network",
    "prepare_vmm_and_hyperv": "4. Prepare VMM and Hyper-V: make the recovery hosts Hyper-V Replica servers",
    "vault": "5. Vault: ensure the Recovery Services vault exists in the right region",
    "source_and_target": "6. Source and target: install and register the ASR Provider on both VMM servers",
    "network_mapping": "7. Network mapping: map each production VM network to its DR network",
    "replication_policy_and_pairing": "8. Replication policy and pairing: ensure the policy, pair the clouds",
    "recovery_plans": "Recovery plans: create or update each plan of the site file (boot groups, scripts, "
                      "manual actions); report the vault's others",
}
SIDES = ("primary", "recovery")

RESOURCE_PROVIDER = "Microsoft.RecoveryServices"

#: Checks of Test-AsrPrerequisites on the recovery VMM that step 4 itself puts right.
FIXED_BY_STEP_4 = frozenset({"ReplicationPort"})
DEFAULT_REPLICA_STORAGE = "D:\\Hyper-V Replica"


def selected(context: Mapping[str, Any], step: str) -> bool:
    """True when the run carries out ``step``: in its ``steps`` param (empty or missing: all), and not ``plan_only``."""
    params = context.get("params") or {}
    if params.get("plan_only"):
        return False
    return step in (params.get("steps") or list(STEPS))


def site_side(site: Site, side: str) -> VmmSite:
    """The ``primary`` or ``recovery`` side of a site."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    return site.primary if side == "primary" else site.recovery


def authentication(site: Site) -> str:
    """Hyper-V Replica's name for the site's replication authentication (the scripts' parameter)."""
    return "Kerberos" if site.replication_policy.authentication == "kerberos" else "Certificate"


def mapping_name(left: str, right: str) -> str:
    """ASR resource name of a mapping: ``prod-app-to-dr-app`` (letters, digits and '-')."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{left}-to-{right}".lower()).strip("-")[:64]


def _same_id(left: str | None, right: str | None) -> bool:
    return (left or "").lower() == (right or "").lower()


# ------------------------------------------------------------------------------- the vault
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
    """What the vault holds for a site: its fabrics (by friendly name, casefold) and the site's policy."""

    exists: bool
    location: str | None = None
    provisioning_state: str | None = None
    fabrics: dict[str, FabricView] = field(default_factory=dict)  # friendly name (casefold) -> view
    policy: Any = None

    def fabric_for(self, server: VmmServer) -> FabricView | None:
        """The fabric of a site's VMM server (registered under its friendly name or fqdn)."""
        for key in (server.name_in_vault, server.fqdn):
            if key.casefold() in self.fabrics:
                return self.fabrics[key.casefold()]
        return None


def _friendly(resource: Any) -> str:
    return (resource.properties.friendly_name if resource.properties else None) or resource.name


def read_vault(hook: AzureSiteRecoveryHook, site: Site, *, details: bool = True) -> VaultView:
    """Read the vault, its fabrics with their providers (and clouds and networks), and the site's policy."""
    az = site.azure
    vault = hook.get_vault_or_none(az.resource_group, az.vault_name)
    if vault is None:
        return VaultView(exists=False)
    view = VaultView(True, vault.location, getattr(vault.properties, "provisioning_state", None))
    for fabric in hook.list_fabrics(az.resource_group, az.vault_name):
        providers = hook.list_recovery_services_providers(az.resource_group, az.vault_name, fabric.name)
        connected = any(p.properties and p.properties.connection_status == ProviderConnectionState.CONNECTED
                        for p in providers)
        fv = FabricView(fabric.name, _friendly(fabric), connected)
        if details:
            for container in hook.list_protection_containers(az.resource_group, az.vault_name, fabric.name):
                fv.containers[_friendly(container).casefold()] = container
            for network in hook.list_vm_networks(az.resource_group, az.vault_name, fabric.name):
                fv.networks[_friendly(network).casefold()] = network
        view.fabrics[fv.friendly_name.casefold()] = fv
    view.policy = hook.get_policy_or_none(az.resource_group, az.vault_name, site.replication_policy.name)
    return view


def network_mapping_of(hook: AzureSiteRecoveryHook, site: Site, fabric: FabricView, network: Any) -> Any:
    """The existing mapping of a primary VM network, or None."""
    found = hook.list_network_mappings(site.azure.resource_group, site.azure.vault_name, fabric.name, network.name)
    return found[0] if found else None


def container_mapping_of(hook: AzureSiteRecoveryHook, site: Site, fabric: FabricView, container: Any) -> Any:
    """The existing pairing of a primary cloud, or None."""
    found = hook.list_container_mappings(site.azure.resource_group, site.azure.vault_name, fabric.name,
                                         container.name)
    return found[0] if found else None


def running_job(hook: AzureSiteRecoveryHook, site: Site, scenario: str, *, target_name: str | None = None,
                affected: tuple[str, str] | None = None) -> str | None:
    """The name of a job of ``scenario`` still running on this target, if an earlier run left one.

    A run whose worker died after starting a job (or that was cleared while the job ran) must
    wait on that job, not start a second one that ASR would refuse or duplicate.

    :param target_name: Match the job's target object name (a VM network, a VM).
    :param affected: Match one of the job's affected object details, ``(key, value)``.
    """
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


# ------------------------------------------------------------------------ what differs
def fabric_status(view: VaultView, site: Site, server: VmmServer) -> tuple[bool, str]:
    """(connected, what a DR engineer reads) for a VMM server's fabric in the vault (step 6's wait)."""
    fabric = view.fabric_for(server) if view.exists else None
    if fabric is None:
        return False, f"vault {site.azure.vault_name} shows no fabric for {server.fqdn} yet"
    if not fabric.connected:
        return False, f"fabric {fabric.friendly_name} is there, its provider is not connected yet"
    return True, f"fabric {fabric.friendly_name} ({fabric.name}) has a connected provider"


def both_fabrics(site: Site, view: VaultView) -> tuple[FabricView | None, FabricView | None, str | None]:
    """(primary fabric, recovery fabric, problem): the problem names the servers the vault does not show."""
    primary, recovery = view.fabric_for(site.primary.vmm), view.fabric_for(site.recovery.vmm)
    missing = [s.vmm.fqdn for s, f in ((site.primary, primary), (site.recovery, recovery)) if f is None]
    if missing:
        return primary, recovery, (f"Vault {site.azure.vault_name} shows no fabric for {', '.join(missing)}: "
                                   "run step 6 (source_and_target) first.")
    return primary, recovery, None


def unknown_name(where: Mapping[str, Any], name: str, what: str, server: str) -> str | None:
    """None when ``where`` (casefold names) knows ``name``, else the problem, listing what it knows."""
    if name.casefold() in where:
        return None
    return f"{what} {name!r} is not known to the vault on {server}; it knows: {', '.join(sorted(where)) or 'none'}."


def policy_differences(site: Site, policy: Any) -> list[str]:
    """What differs between the vault's policy and the site file (empty: nothing)."""
    details = policy.properties.provider_specific_details
    as_dict = details.as_dict() if hasattr(details, "as_dict") else dict(details or {})
    return site.replication_policy.matches_provider_details(as_dict)


def network_mapping_conflict(existing: Any, target: Any, primary_network: str, recovery_network: str) -> str | None:
    """None when an existing network mapping already points at ``target``, else why it cannot stay."""
    if _same_id(existing.properties.recovery_network_id, target.id):
        return None
    return (f"{primary_network} is already mapped to {existing.properties.recovery_network_friendly_name}, "
            f"not {recovery_network}; remove that mapping in the vault or change the site file.")


def pairing_conflict(existing: Any, target: Any, policy: Any, primary_cloud: str) -> str | None:
    """None when an existing pairing already joins ``target`` with ``policy``, else why it cannot stay."""
    props = existing.properties
    if _same_id(props.target_protection_container_id, target.id) and _same_id(props.policy_id, policy.id):
        return None
    return (f"{primary_cloud} is already paired with {props.target_protection_container_friendly_name} "
            f"(policy {props.policy_friendly_name}); unpair it in the vault or change the site file.")


def vault_region_problem(site: Site, vault: Any) -> str | None:
    """None when the vault is in the site file's region, else the problem (a vault cannot move)."""
    if vault.location.replace(" ", "").lower() == site.azure.region:
        return None
    return (f"Vault {site.azure.vault_name} exists in {vault.location}, the site file says {site.azure.region}; "
            "a vault cannot move: fix the site file or use another vault.")


def vault_provisioned(vault: Any) -> bool:
    """The vault's provisioning has finished (a vault that reports no state is taken as provisioned)."""
    return (vault.properties.provisioning_state or ProvisioningState.SUCCEEDED) == ProvisioningState.SUCCEEDED


def plan_rows(hook: AzureSiteRecoveryHook, site: Site, view: VaultView) -> list[list[str]]:
    """Step 1's table: (what, name, in the vault now, this run would) for the vault, servers, mappings, policy, pairings."""
    az = site.azure
    rows = [["vault", f"{az.vault_name} ({az.region}, {az.resource_group})",
             "exists" if view.exists else "missing", "nothing" if view.exists else "create"]]
    for side in (site.primary, site.recovery):
        fabric = view.fabric_for(side.vmm) if view.exists else None
        state = "connected" if fabric and fabric.connected else "registered, not connected" if fabric else "missing"
        rows.append(["VMM server", side.vmm.fqdn, state, "nothing" if state == "connected" else "install provider"])
    primary = view.fabric_for(site.primary.vmm) if view.exists else None
    for m in site.network_mappings:
        network = primary.networks.get(m.primary_network.casefold()) if primary else None
        found = network_mapping_of(hook, site, primary, network) if network is not None else None
        rows.append(["network mapping", f"{m.primary_network} -> {m.recovery_network}",
                     "exists" if found else "missing", "nothing" if found else "create"])
    policy = view.policy
    diffs = policy_differences(site, policy) if policy is not None else []
    rows.append(["policy", site.replication_policy.name,
                 "missing" if policy is None else "differs: " + "; ".join(diffs) if diffs else "matches",
                 "create" if policy is None else "update" if diffs else "nothing"])
    for c in site.clouds:
        container = primary.containers.get(c.primary_cloud.casefold()) if primary else None
        found = container_mapping_of(hook, site, primary, container) if container is not None else None
        rows.append(["cloud pairing", f"{c.primary_cloud} -> {c.recovery_cloud}",
                     "exists" if found else "missing", "nothing" if found else "pair"])
    return rows


# ------------------------------------------------------------------------- request bodies
def vault_body(site: Site) -> dict[str, Any]:
    """The PUT body of a new Recovery Services vault in the site's region."""
    return {"location": site.azure.region, "sku": {"name": "Standard"},
            "properties": {"publicNetworkAccess": "Enabled"}}


def network_mapping_body(recovery_fabric: FabricView, target_network: Any) -> dict[str, Any]:
    """The PUT body of a VMM-to-VMM network mapping to ``target_network``."""
    return {"properties": {"recoveryFabricName": recovery_fabric.name, "recoveryNetworkId": target_network.id,
                           "fabricSpecificDetails": {"instanceType": "VmmToVmm"}}}


def pairing_body(target_container: Any, policy: Any) -> dict[str, Any]:
    """The PUT body of a cloud pairing (container mapping) to ``target_container`` with ``policy``."""
    return {"properties": {"targetProtectionContainerId": target_container.id, "policyId": policy.id,
                           "providerSpecificInput": {"instanceType": "ReplicationProviderSpecificContainerMappingInput"}}}


def policy_create_body(site: Site) -> dict[str, Any]:
    """The PUT body of the site's replication policy."""
    return {"properties": {"providerSpecificInput": site.replication_policy.to_provider_input()}}


def policy_update_body(site: Site) -> dict[str, Any]:
    """The PATCH body that brings the vault's policy to the site file."""
    return {"properties": {"replicationProviderSettings": site.replication_policy.to_provider_input()}}


# ------------------------------------------------------------------------- on-premises
def sort_prerequisites(report: PrerequisiteReport, side: str, step_4_runs: bool
                       ) -> tuple[list[PrerequisiteCheck], list[PrerequisiteCheck], list[PrerequisiteCheck]]:
    """Sort a VMM server's failed checks: (step 4 fixes them, needed only after a failover, blocking).

    Step 4 opens the replication port on the recovery hosts, so on the recovery side a failed
    ``ReplicationPort`` waits for it when it runs. Primary hosts receive replication only after a
    failover (reverse replication), which this DAG does not set up.
    """
    failed = report.failed()
    deferred = [c for c in failed if step_4_runs and side == "recovery" and c.name in FIXED_BY_STEP_4]
    later = [c for c in failed if side == "primary" and c.name in FIXED_BY_STEP_4]
    blocking = [c for c in failed if c not in deferred and c not in later]
    return deferred, later, blocking


def network_plan(site: Site, primary: VmmInventory, recovery: VmmInventory) -> tuple[dict[str, list[str]], list[str]]:
    """Step 3: (VM network -> in-scope VMs using it, problems) from both servers' inventories.

    Every VM network of an in-scope VM must be mapped, every mapping's networks must exist, and
    the drill network must be a recovery VM network that production does not map to.
    """
    mapped = {m.primary_network.casefold(): m for m in site.network_mappings}
    primary_nets = {n.name.casefold() for n in primary.vm_networks}
    recovery_nets = {n.name.casefold() for n in recovery.vm_networks}
    paired = {c.primary_cloud.casefold() for c in site.clouds}
    problems: list[str] = []
    used: dict[str, list[str]] = {}
    for vm in primary.vms:
        if vm.cloud and vm.cloud.casefold() in paired and site.scope.covers(vm.cloud, vm.name):
            for nic in vm.nics:
                if nic.vm_network:
                    used.setdefault(nic.vm_network, []).append(vm.name)
    for network, vms in sorted(used.items()):
        if network.casefold() not in mapped:
            problems.append(f"VM network {network} (used by {', '.join(sorted(vms)[:5])}) has no mapping; "
                            "after failover these NICs would come up unconnected")
    for m in site.network_mappings:
        if m.primary_network.casefold() not in primary_nets:
            problems.append(f"{m.primary_network} is not a VM network on {primary.server}")
        if m.recovery_network.casefold() not in recovery_nets:
            problems.append(f"{m.recovery_network} is not a VM network on {recovery.server}")
    test = site.drill.test_network
    if test:
        if test.casefold() in {m.recovery_network.casefold() for m in site.network_mappings} | set(mapped):
            problems.append(f"the drill network {test} is a production network (in network_mappings)")
        if test.casefold() not in recovery_nets:
            problems.append(f"the drill network {test} is not a VM network on {recovery.server}")
    return used, problems


def host_plan(site: Site, inventory: VmmInventory, closed: str) -> dict[str, dict[str, Any]]:
    """Step 4a: for each recovery host (by fqdn), why Initialize-HyperVReplicaHost must run and where replicas go.

    :param inventory: Get-VmmInventory of the recovery VMM server.
    :param closed: The reasons of step 2's deferred checks (they name the hosts whose port does not answer).
    """
    hosts = {h.fqdn.casefold(): h for h in inventory.hosts}
    port, auth = site.replication_policy.replication_port, authentication(site)
    closed = closed.casefold()
    plan = {}
    for host in site.recovery.hyperv_hosts:
        found = hosts.get(host.fqdn)
        replica = found.replica if found else None
        reasons = []
        if replica is None:
            reasons.append("its replica settings could not be read")
        else:
            if not replica.enabled:
                reasons.append("not a replica server")
            if replica.authentication not in (auth, "CertificateAndKerberos"):
                reasons.append(f"authentication {replica.authentication}")
            if (replica.kerberos_port if auth == "Kerberos" else replica.certificate_port) != port:
                reasons.append(f"{auth} port is not {port}")
            if not replica.storage_path:
                reasons.append("no replica storage location")
            if not replica.allowed_from_any_server:
                reasons.append("replication not allowed from the primary servers")
        if host.fqdn.casefold() in closed:
            reasons.append(f"TCP {port} does not answer (firewall)")
        storage = replica.storage_path if replica and replica.storage_path else DEFAULT_REPLICA_STORAGE
        plan[host.fqdn] = {"reasons": reasons, "storage_path": storage}
    return plan
