"""The on-premises side of the deployment DAG: VMM checks (2), networking (3), hosts (4), provider (6).

Read scripts (Get-VmmInventory, Test-AsrPrerequisites) run on every run; a mutating script
(Initialize-HyperVReplicaHost, Install-AsrProvider, Install-RecoveryServicesAgent) runs only
when what it would set is not in place, so a second run changes nothing. The rules (what blocks,
what step 4 must touch) are :mod:`site_recovery.deployment`'s; the Azure side is
:mod:`site_recovery.tasks.deploy`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from site_recovery.deployment import selected
from site_recovery.exceptions import DeploymentCheckFailed
from site_recovery.tasks.common import STEP_NOT_SELECTED, record, skip_step
from site_recovery.vocabulary import DeployAction

if TYPE_CHECKING:
    from site_recovery.hooks.vmm import VmmScriptHook
    from site_recovery.records import StepRecord
    from site_recovery.scripts import VmmInventory
    from site_recovery.site import Site

log = logging.getLogger(__name__)


def _site(site_name: str) -> Site:
    from site_recovery.site import load_site_named

    return load_site_named(site_name)


def _vmm(conn_id: str) -> VmmScriptHook:
    from site_recovery.hooks.vmm import VmmScriptHook

    return VmmScriptHook(conn_id)


def _inventory(conn_id: str) -> VmmInventory:
    return _vmm(conn_id).run_script("Get-VmmInventory", {})


@task
def vmm_prerequisites(site_name: str, side: str) -> dict[str, Any]:
    """Step 2, one VMM server: Test-AsrPrerequisites; failed checks stop the run (listed).

    Returns ``{"records": [StepRecord], "deferred": [{"name", "reason"}]}``: the checks step 4 puts right.
    """
    from site_recovery.deployment import authentication, site_side, sort_prerequisites

    site = _site(site_name)
    server = site_side(site, side).vmm
    context = get_current_context()
    if not selected(context, "prerequisites"):
        skip_step("prerequisites", {"records": [record("prerequisites", server.fqdn, DeployAction.SKIPPED,
                                                       STEP_NOT_SELECTED)], "deferred": []})
    clouds = [c.primary_cloud if side == "primary" else c.recovery_cloud for c in site.clouds]
    report = _vmm(server.psrp_conn_id).run_script("Test-AsrPrerequisites", {
        "ReplicationPort": site.replication_policy.replication_port, "Authentication": authentication(site),
        "VaultName": site.azure.vault_name, "CloudName": clouds})
    deferred, later, blocking = sort_prerequisites(report, side, selected(context, "prepare_vmm_and_hyperv"))
    for check in later:
        log.warning("%s on %s: %s -- needed only for reverse replication after a failover; not blocking deployment.",
                    check.name, server.fqdn, check.reason)
    for check in deferred:
        log.warning("%s on %s: %s -- step 4 (prepare_vmm_and_hyperv) sets this up.", check.name, server.fqdn,
                    check.reason)
    if blocking:
        raise DeploymentCheckFailed(f"Prerequisites not met on {server.fqdn}:\n- "
                                    + "\n- ".join(f"{c.name}: {c.reason}" for c in blocking))
    detail = f"{len(report.checks) - len(deferred)} of {len(report.checks)} checks passed"
    return {"records": [record("prerequisites", server.fqdn, DeployAction.IN_PLACE, detail)],
            "deferred": [{"name": c.name, "reason": c.reason} for c in deferred]}


@task
def check_networking(site_name: str) -> list[StepRecord]:
    """Step 3: every VM network of an in-scope VM is mapped; targets exist on the recovery side; drill is isolated."""
    from site_recovery.deployment import network_plan

    site = _site(site_name)
    if not selected(get_current_context(), "plan_networking"):
        skip_step("plan_networking",
                  [record("plan_networking", "network mappings", DeployAction.SKIPPED, STEP_NOT_SELECTED)])
    primary, recovery = _inventory(site.primary.vmm.psrp_conn_id), _inventory(site.recovery.vmm.psrp_conn_id)
    used, problems = network_plan(site, primary, recovery)
    if problems:
        raise DeploymentCheckFailed("Network plan does not hold:\n- " + "\n- ".join(problems))
    return [record("plan_networking", "network mappings", DeployAction.IN_PLACE,
                   f"{len(used)} VM network(s) used by in-scope VMs, all mapped; targets exist on {recovery.server}")]


@task
def plan_hosts(site_name: str, recovery_prerequisites: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Step 4a: which recovery hosts Initialize-HyperVReplicaHost must touch (by fqdn), from the inventory."""
    from site_recovery.deployment import host_plan

    site = _site(site_name)
    if not selected(get_current_context(), "prepare_vmm_and_hyperv"):
        skip_step("prepare_vmm_and_hyperv", {})
    inventory = _inventory(site.recovery.vmm.psrp_conn_id)
    closed = " ".join(d["reason"] for d in (recovery_prerequisites or {}).get("deferred", []))
    return host_plan(site, inventory, closed)


@task(map_index_template="{{ host_label }}")
def prepare_host(site_name: str, host: dict[str, str], plan: dict[str, dict[str, Any]]) -> StepRecord:
    """Step 4b, one recovery host: Initialize-HyperVReplicaHost, only when the plan found something missing."""
    from site_recovery.deployment import DEFAULT_REPLICA_STORAGE, authentication

    context = get_current_context()
    context["host_label"] = host["fqdn"]
    site = _site(site_name)
    if not selected(context, "prepare_vmm_and_hyperv"):
        skip_step("prepare_vmm_and_hyperv",
                  record("prepare_vmm_and_hyperv", host["fqdn"], DeployAction.SKIPPED, STEP_NOT_SELECTED))
    entry = (plan or {}).get(host["fqdn"]) or {"reasons": ["not in the recovery inventory"],
                                               "storage_path": DEFAULT_REPLICA_STORAGE}
    if not entry["reasons"]:
        return record("prepare_vmm_and_hyperv", host["fqdn"], DeployAction.IN_PLACE,
                      f"replica server for {authentication(site)} on TCP {site.replication_policy.replication_port}")
    log.info("%s needs Hyper-V Replica set up: %s", host["fqdn"], "; ".join(entry["reasons"]))
    result = _vmm(host["psrp_conn_id"]).run_script("Initialize-HyperVReplicaHost", {
        "ReplicationPort": site.replication_policy.replication_port, "Authentication": authentication(site),
        "StoragePath": entry["storage_path"]})
    action = DeployAction.UPDATED if result.changed else DeployAction.IN_PLACE
    return record("prepare_vmm_and_hyperv", host["fqdn"], action, "; ".join(result.changed) or result.summary())


@task
def install_provider(site_name: str, side: str) -> StepRecord:
    """Step 6, one VMM server: when its fabric is not connected, issue vault credentials here and register it."""
    from site_recovery import vault_credentials
    from site_recovery.deployment import read_vault, site_side
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.tasks.common import sort_errors

    site = _site(site_name)
    server = site_side(site, side).vmm
    if not selected(get_current_context(), "source_and_target"):
        skip_step("source_and_target", record("source_and_target", server.fqdn, DeployAction.SKIPPED,
                                              STEP_NOT_SELECTED))
    hook = AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)

    @sort_errors
    def run() -> StepRecord:
        view = read_vault(hook, site, details=False)
        fabric = view.fabric_for(server) if view.exists else None
        if fabric is not None and fabric.connected:
            return record("source_and_target", server.fqdn, DeployAction.IN_PLACE,
                          f"fabric {fabric.friendly_name} with a connected provider")
        if not view.exists:
            raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} does not exist: run step 5 (vault) first.")
        # The credentials live only in this function: never returned, pushed or logged.
        credentials = vault_credentials.issue_vault_credentials(hook, site.azure.resource_group,
                                                                site.azure.vault_name)
        log.info("Registering %s with %s.", server.fqdn, credentials.describe())
        result = _vmm(server.psrp_conn_id).run_script("Install-AsrProvider", {
            "VaultCredentials": credentials.xml, "InstallerPath": server.provider_installer,
            "FriendlyName": server.name_in_vault})
        del credentials
        return record("source_and_target", server.fqdn, DeployAction.CREATED, result.summary())

    return run()


@task
def install_agents(site_name: str) -> list[StepRecord]:
    """Step 6, last part: the Recovery Services agent on the primary hosts, when the site file asks for it."""
    site = _site(site_name)
    agent = site.recovery_services_agent
    if not selected(get_current_context(), "source_and_target"):
        skip_step("source_and_target", [record("source_and_target", "Recovery Services agent",
                                               DeployAction.SKIPPED, STEP_NOT_SELECTED)])
    if not agent.install:
        return [record("source_and_target", "Recovery Services agent", DeployAction.SKIPPED,
                       "recovery_services_agent.install is false")]
    records = []
    for host in site.primary.hyperv_hosts:
        result = _vmm(host.psrp_conn_id).run_script("Install-RecoveryServicesAgent",
                                                    {"InstallerPath": agent.installer_path})
        action = DeployAction.IN_PLACE if result.already_installed else DeployAction.CREATED
        records.append(record("source_and_target", f"agent on {host.fqdn}", action, result.summary()))
    return records
