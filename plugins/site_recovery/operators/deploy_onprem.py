"""The on-premises side of the deployment DAG: VMM checks (2), networking (3), hosts (4), provider (6).

Read scripts (Get-VmmInventory, Test-AsrPrerequisites) run on every run; a mutating script
(Initialize-HyperVReplicaHost, Install-AsrProvider, Install-RecoveryServicesAgent) runs only
when what it would set is not in place, so a second run changes nothing.
"""

from __future__ import annotations

import logging

from airflow.sdk import get_current_context, task
from site_recovery.operators.deploy_common import DeploymentCheckFailed, load_site_named, record, selected

log = logging.getLogger(__name__)
#: Checks of Test-AsrPrerequisites on the recovery VMM that step 4 itself puts right.
FIXED_BY_STEP_4 = {"ReplicationPort"}
DEFAULT_REPLICA_STORAGE = "D:\\Hyper-V Replica"


def _vmm(conn_id: str):
    from site_recovery.hooks.vmm import VmmScriptHook

    return VmmScriptHook(conn_id)


def _authentication(site) -> str:
    return "Kerberos" if site.replication_policy.authentication == "kerberos" else "Certificate"


def _side(site, side: str):
    return site.primary if side == "primary" else site.recovery


@task
def vmm_prerequisites(site_name: str, side: str) -> dict:
    """Step 2, one VMM server: Test-AsrPrerequisites; failed checks stop the run (listed)."""
    site = load_site_named(site_name)
    server = _side(site, side).vmm
    if not selected(get_current_context(), "prerequisites"):
        return {"records": [record("prerequisites", server.fqdn, "skipped", "step not selected")], "deferred": []}
    clouds = [c.primary_cloud if side == "primary" else c.recovery_cloud for c in site.clouds]
    report = _vmm(server.psrp_conn_id).run_script("Test-AsrPrerequisites", {
        "ReplicationPort": site.replication_policy.replication_port, "Authentication": _authentication(site),
        "VaultName": site.azure.vault_name, "CloudName": clouds})
    step4 = selected(get_current_context(), "prepare_vmm_and_hyperv") and side == "recovery"
    deferred = [c for c in report.failed() if step4 and c.name in FIXED_BY_STEP_4]
    # Primary hosts receive replication only after a failover (reverse replication), which this DAG does not set up.
    later = [c for c in report.failed() if side == "primary" and c.name in FIXED_BY_STEP_4]
    for check in later:
        log.warning("%s on %s: %s -- needed only for reverse replication after a failover; not blocking deployment.",
                    check.name, server.fqdn, check.reason)
    blocking = [c for c in report.failed() if c not in deferred and c not in later]
    for check in deferred:
        log.warning("%s on %s: %s -- step 4 (prepare_vmm_and_hyperv) sets this up.", check.name, server.fqdn,
                    check.reason)
    if blocking:
        raise DeploymentCheckFailed(f"Prerequisites not met on {server.fqdn}:\n- "
                                    + "\n- ".join(f"{c.name}: {c.reason}" for c in blocking))
    detail = f"{len(report.checks) - len(deferred)} of {len(report.checks)} checks passed"
    return {"records": [record("prerequisites", server.fqdn, "already in place", detail)],
            "deferred": [{"name": c.name, "reason": c.reason} for c in deferred]}


def _inventories(site):
    return (_vmm(site.primary.vmm.psrp_conn_id).run_script("Get-VmmInventory", {}),
            _vmm(site.recovery.vmm.psrp_conn_id).run_script("Get-VmmInventory", {}))


@task
def check_networking(site_name: str) -> list[dict]:
    """Step 3: every VM network of an in-scope VM is mapped; targets exist on the recovery side; drill is isolated."""
    site = load_site_named(site_name)
    if not selected(get_current_context(), "plan_networking"):
        return [record("plan_networking", "network mappings", "skipped", "step not selected")]
    primary, recovery = _inventories(site)
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
    if problems:
        raise DeploymentCheckFailed("Network plan does not hold:\n- " + "\n- ".join(problems))
    return [record("plan_networking", "network mappings", "already in place",
                   f"{len(used)} VM network(s) used by in-scope VMs, all mapped; targets exist on {recovery.server}")]


@task
def plan_hosts(site_name: str, recovery_prerequisites: dict | None) -> dict:
    """Step 4a: which recovery hosts Initialize-HyperVReplicaHost must touch (by fqdn), from the inventory."""
    site = load_site_named(site_name)
    if not selected(get_current_context(), "prepare_vmm_and_hyperv"):
        return {}
    inventory = _vmm(site.recovery.vmm.psrp_conn_id).run_script("Get-VmmInventory", {})
    hosts = {h.fqdn.casefold(): h for h in inventory.hosts}
    port, auth = site.replication_policy.replication_port, _authentication(site)
    closed = " ".join(d["reason"] for d in (recovery_prerequisites or {}).get("deferred", [])).casefold()
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
        storage = (replica.storage_path if replica and replica.storage_path else DEFAULT_REPLICA_STORAGE)
        plan[host.fqdn] = {"reasons": reasons, "storage_path": storage}
    return plan


@task(map_index_template="{{ host_label }}")
def prepare_host(site_name: str, host: dict, plan: dict) -> dict:
    """Step 4b, one recovery host: Initialize-HyperVReplicaHost, only when the plan found something missing."""
    get_current_context()["host_label"] = host["fqdn"]
    site = load_site_named(site_name)
    if not selected(get_current_context(), "prepare_vmm_and_hyperv"):
        return record("prepare_vmm_and_hyperv", host["fqdn"], "skipped", "step not selected")
    entry = (plan or {}).get(host["fqdn"]) or {"reasons": ["not in the recovery inventory"],
                                               "storage_path": DEFAULT_REPLICA_STORAGE}
    if not entry["reasons"]:
        return record("prepare_vmm_and_hyperv", host["fqdn"], "already in place",
                      f"replica server for {_authentication(site)} on TCP {site.replication_policy.replication_port}")
    log.info("%s needs Hyper-V Replica set up: %s", host["fqdn"], "; ".join(entry["reasons"]))
    result = _vmm(host["psrp_conn_id"]).run_script("Initialize-HyperVReplicaHost", {
        "ReplicationPort": site.replication_policy.replication_port, "Authentication": _authentication(site),
        "StoragePath": entry["storage_path"]})
    action = "updated" if result.changed else "already in place"
    return record("prepare_vmm_and_hyperv", host["fqdn"], action, "; ".join(result.changed) or result.summary())


@task
def install_provider(site_name: str, side: str) -> dict:
    """Step 6, one VMM server: when its fabric is not connected, issue vault credentials here and register it."""
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.operators.deploy_common import sort_errors
    from site_recovery.operators.deploy_vault import read_vault
    from site_recovery.vault_credentials import issue_vault_credentials

    site = load_site_named(site_name)
    server = _side(site, side).vmm
    if not selected(get_current_context(), "source_and_target"):
        return record("source_and_target", server.fqdn, "skipped", "step not selected")
    hook = AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)

    @sort_errors
    def run() -> dict:
        view = read_vault(hook, site, details=False)
        fabric = view.fabric_for(server) if view.exists else None
        if fabric is not None and fabric.connected:
            return record("source_and_target", server.fqdn, "already in place",
                          f"fabric {fabric.friendly_name} with a connected provider")
        if not view.exists:
            raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} does not exist: run step 5 (vault) first.")
        # The credentials live only in this function: never returned, pushed or logged.
        credentials = issue_vault_credentials(hook, site.azure.resource_group, site.azure.vault_name)
        log.info("Registering %s with %s.", server.fqdn, credentials.describe())
        result = _vmm(server.psrp_conn_id).run_script("Install-AsrProvider", {
            "VaultCredentials": credentials.xml, "InstallerPath": server.provider_installer,
            "FriendlyName": server.name_in_vault})
        del credentials
        return record("source_and_target", server.fqdn, "created", result.summary())

    return run()


@task
def install_agents(site_name: str) -> list[dict]:
    """Step 6, last part: the Recovery Services agent on the primary hosts, when the site file asks for it."""
    site = load_site_named(site_name)
    agent = site.recovery_services_agent
    if not selected(get_current_context(), "source_and_target") or not agent.install:
        reason = "step not selected" if agent.install else "recovery_services_agent.install is false"
        return [record("source_and_target", "Recovery Services agent", "skipped", reason)]
    records = []
    for host in site.primary.hyperv_hosts:
        result = _vmm(host.psrp_conn_id).run_script("Install-RecoveryServicesAgent",
                                                    {"InstallerPath": agent.installer_path})
        action = "already in place" if result.already_installed else "created"
        records.append(record("source_and_target", f"agent on {host.fqdn}", action, result.summary()))
    return records
