"""The Azure side of the deployment DAG: plan (1), Azure checks (2), vault (5), mappings (7), policy and pairing (8).

Each task ensures: it reads the vault, compares with the site file, starts an ASR job only for
what differs, and returns records (see :mod:`deploy_common`). A task that starts a job returns
its name in ``job_name``; the step's :class:`~site_recovery.sensors.deploy.OptionalAsrJobSensor`
waits on it and does nothing when there is none.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk import get_current_context, task
from site_recovery.operators.deploy_common import (
    DeploymentCheckFailed, load_site_named, record, selected, sort_errors, table,
)

log = logging.getLogger(__name__)
_VAULT_WAIT_SECONDS = 600


def _hook(site):
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


def _fabrics(site, view) -> tuple[Any, Any]:
    primary, recovery = view.fabric_for(site.primary.vmm), view.fabric_for(site.recovery.vmm)
    missing = [s.vmm.fqdn for s, f in ((site.primary, primary), (site.recovery, recovery)) if f is None]
    if missing:
        raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} shows no fabric for {', '.join(missing)}: "
                                    "run step 6 (source_and_target) first.")
    return primary, recovery


def _find(where: dict, name: str, what: str, server: str):
    found = where.get(name.casefold())
    if found is None:
        raise DeploymentCheckFailed(f"{what} {name!r} is not known to the vault on {server}; "
                                    f"it knows: {', '.join(sorted(where)) or 'none'}.")
    return found


@task
@sort_errors
def review_plan(site_name: str) -> list[dict]:
    """Step 1: show both sites, the pairings, mappings and policy, and what exists in the vault."""
    from site_recovery.operators.deploy_vault import container_mapping_of, network_mapping_of, policy_differences
    from site_recovery.operators.deploy_vault import read_vault

    site = load_site_named(site_name)
    hook = _hook(site)
    view = read_vault(hook, site)
    rows: list[list[str]] = []
    az = site.azure
    rows.append(["vault", f"{az.vault_name} ({az.region}, {az.resource_group})",
                 "exists" if view.exists else "missing", "nothing" if view.exists else "create"])
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
    rows.append(["policy", site.replication_policy.name, "missing" if policy is None else
                 "differs: " + "; ".join(diffs) if diffs else "matches", "create" if policy is None else
                 "update" if diffs else "nothing"])
    for c in site.clouds:
        container = primary.containers.get(c.primary_cloud.casefold()) if primary else None
        found = container_mapping_of(hook, site, primary, container) if container is not None else None
        rows.append(["cloud pairing", f"{c.primary_cloud} -> {c.recovery_cloud}",
                     "exists" if found else "missing", "nothing" if found else "pair"])
    log.info("Deployment plan of site %s (%s -> %s):\n%s", site.name, site.primary.vmm.fqdn, site.recovery.vmm.fqdn,
             table(["what", "name", "in the vault now", "this run would"], rows))
    hosts = ", ".join(h.fqdn for h in site.recovery.hyperv_hosts)
    log.info("Step 4 checks the Hyper-V Replica settings of the recovery hosts: %s", hosts)
    changes = [r for r in rows if r[3] != "nothing"]
    return [record("review_architecture", "plan", "already in place" if not changes else "skipped",
                   f"{len(changes)} change(s) planned" if changes else "nothing to change in the vault")]


@task.short_circuit(ignore_downstream_trigger_rules=False)
def continue_after_plan() -> bool:
    """False (stop here) when the run was triggered with plan_only."""
    params = get_current_context()["params"]
    if params.get("plan_only"):
        log.info("plan_only is set: the plan above is all this run does; every later step is skipped.")
        return False
    return True


@task
@sort_errors
def check_azure(site_name: str) -> list[dict]:
    """Step 2, Azure side: the connection authenticates, the subscription answers, the RP is registered."""
    from site_recovery.operators.deploy_vault import resource_provider_state

    site = load_site_named(site_name)
    if not selected(get_current_context(), "prerequisites"):
        return [record("prerequisites", "Azure", "skipped", "step not selected")]
    hook = _hook(site)
    failed = []
    if hook.settings.subscription_id.lower() != site.azure.subscription_id.lower():
        failed.append(f"connection {site.azure.conn_id} is for subscription {hook.settings.subscription_id}, "
                      f"the site file names {site.azure.subscription_id}")
    state = resource_provider_state(hook, site.azure.subscription_id)
    if state != "Registered":
        failed.append(f"resource provider Microsoft.RecoveryServices is {state} in subscription "
                      f"{site.azure.subscription_id}; register it (az provider register -n Microsoft.RecoveryServices)")
    if failed:
        raise DeploymentCheckFailed("Azure prerequisites not met:\n- " + "\n- ".join(failed))
    return [record("prerequisites", "Azure", "already in place",
                   f"signed in, subscription {site.azure.subscription_id} answers, Microsoft.RecoveryServices registered")]


@task
@sort_errors
def ensure_vault(site_name: str) -> list[dict]:
    """Step 5: the vault exists in the site file's region and is provisioned."""
    site = load_site_named(site_name)
    if not selected(get_current_context(), "vault"):
        return [record("vault", site.azure.vault_name, "skipped", "step not selected")]
    from azure.core.exceptions import ResourceNotFoundError

    az, client = site.azure, _hook(site).vault_client
    try:
        vault = client.vaults.get(az.resource_group, az.vault_name)
        action = "already in place"
    except ResourceNotFoundError:
        log.info("Vault %s does not exist in %s; creating it in %s.", az.vault_name, az.resource_group, az.region)
        vault = client.vaults.begin_create_or_update(az.resource_group, az.vault_name, {
            "location": az.region, "sku": {"name": "Standard"},
            "properties": {"publicNetworkAccess": "Enabled"}}).result()
        action = "created"
    if vault.location.replace(" ", "").lower() != az.region:
        raise DeploymentCheckFailed(f"Vault {az.vault_name} exists in {vault.location}, the site file says "
                                    f"{az.region}; a vault cannot move: fix the site file or use another vault.")
    deadline = time.monotonic() + _VAULT_WAIT_SECONDS
    while (vault.properties.provisioning_state or "Succeeded") != "Succeeded":
        if time.monotonic() > deadline:
            raise DeploymentCheckFailed(f"Vault {az.vault_name} still {vault.properties.provisioning_state}.")
        time.sleep(5)
        vault = client.vaults.get(az.resource_group, az.vault_name)
    return [record("vault", az.vault_name, action, f"{vault.location}, provisioned")]


@task
@sort_errors
def ensure_network_mapping(site_name: str, index: int) -> dict:
    """Step 7: one VmmToVmm network mapping; start a job only when it is missing."""
    from site_recovery.operators.deploy_vault import mapping_name, network_mapping_of, read_vault, running_job

    site = load_site_named(site_name)
    m = site.network_mappings[index]
    item = f"{m.primary_network} -> {m.recovery_network}"
    if not selected(get_current_context(), "network_mapping"):
        return record("network_mapping", item, "skipped", "step not selected")
    hook = _hook(site)
    view = read_vault(hook, site)
    primary, recovery = _fabrics(site, view)
    network = _find(primary.networks, m.primary_network, "VM network", site.primary.vmm.fqdn)
    target = _find(recovery.networks, m.recovery_network, "VM network", site.recovery.vmm.fqdn)
    if (job := running_job(hook, site, "NetworkPairing", target_name=m.primary_network)):
        return record("network_mapping", item, "created",
                      "mapping started by an earlier run is still running; waiting on it", job)
    existing = network_mapping_of(hook, site, primary, network)
    if existing is not None:
        if (existing.properties.recovery_network_id or "").lower() == target.id.lower():
            return record("network_mapping", item, "already in place", f"mapping {existing.name}")
        raise DeploymentCheckFailed(f"{m.primary_network} is already mapped to "
                                    f"{existing.properties.recovery_network_friendly_name}, not {m.recovery_network}; "
                                    "remove that mapping in the vault or change the site file.")
    body = {"properties": {"recoveryFabricName": recovery.name, "recoveryNetworkId": target.id,
                           "fabricSpecificDetails": {"instanceType": "VmmToVmm"}}}
    job = hook.create_network_mapping(site.azure.resource_group, site.azure.vault_name, primary.name, network.name,
                                      mapping_name(m.primary_network, m.recovery_network), body)
    return record("network_mapping", item, "created", "mapping started", job)


@task
@sort_errors
def ensure_policy(site_name: str) -> dict:
    """Step 8a: the replication policy exists and matches the site file (PATCH when it differs)."""
    from site_recovery.operators.deploy_vault import policy_differences, read_vault

    site = load_site_named(site_name)
    policy = site.replication_policy
    if not selected(get_current_context(), "replication_policy_and_pairing"):
        return record("replication_policy_and_pairing", policy.name, "skipped", "step not selected")
    hook = _hook(site)
    az = site.azure
    existing = read_vault(hook, site, details=False).policy
    if existing is None:
        job = hook.create_policy(az.resource_group, az.vault_name, policy.name,
                                 {"properties": {"providerSpecificInput": policy.to_provider_input()}})
        return record("replication_policy_and_pairing", policy.name, "created", policy.provider, job)
    diffs = policy_differences(site, existing)
    if not diffs:
        return record("replication_policy_and_pairing", policy.name, "already in place", "matches the site file")
    log.info("Policy %s differs from the site file:\n- %s", policy.name, "\n- ".join(diffs))
    job = hook.update_policy(az.resource_group, az.vault_name, policy.name,
                             {"properties": {"replicationProviderSettings": policy.to_provider_input()}})
    return record("replication_policy_and_pairing", policy.name, "updated", "; ".join(diffs), job)


@task
@sort_errors
def ensure_pairing(site_name: str, index: int) -> dict:
    """Step 8b: one cloud pairing with the site's policy; start a job only when it is missing."""
    from site_recovery.operators.deploy_vault import container_mapping_of, mapping_name, read_vault, running_job

    site = load_site_named(site_name)
    c = site.clouds[index]
    item = f"{c.primary_cloud} -> {c.recovery_cloud}"
    if not selected(get_current_context(), "replication_policy_and_pairing"):
        return record("replication_policy_and_pairing", item, "skipped", "step not selected")
    hook = _hook(site)
    view = read_vault(hook, site)
    primary, recovery = _fabrics(site, view)
    if view.policy is None:
        raise DeploymentCheckFailed(f"Policy {site.replication_policy.name} is not in the vault; run step 8 whole.")
    source = _find(primary.containers, c.primary_cloud, "Cloud", site.primary.vmm.fqdn)
    target = _find(recovery.containers, c.recovery_cloud, "Cloud", site.recovery.vmm.fqdn)
    if (job := running_job(hook, site, "AssociateProtectionProfile", affected=("primaryCloudName", c.primary_cloud))):
        return record("replication_policy_and_pairing", item, "created",
                      "pairing started by an earlier run is still running; waiting on it", job)
    existing = container_mapping_of(hook, site, primary, source)
    if existing is not None:
        props = existing.properties
        if (props.target_protection_container_id or "").lower() == target.id.lower() \
                and (props.policy_id or "").lower() == view.policy.id.lower():
            return record("replication_policy_and_pairing", item, "already in place", f"pairing {existing.name}")
        raise DeploymentCheckFailed(f"{c.primary_cloud} is already paired with "
                                    f"{props.target_protection_container_friendly_name} (policy "
                                    f"{props.policy_friendly_name}); unpair it in the vault or change the site file.")
    body = {"properties": {"targetProtectionContainerId": target.id, "policyId": view.policy.id,
                           "providerSpecificInput": {"instanceType": "ReplicationProviderSpecificContainerMappingInput"}}}
    job = hook.create_container_mapping(site.azure.resource_group, site.azure.vault_name, primary.name, source.name,
                                        mapping_name(c.primary_cloud, c.recovery_cloud), body)
    return record("replication_policy_and_pairing", item, "created", f"policy {site.replication_policy.name}", job)


def _flatten(value: Any) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value] if "action" in value else _flatten(value.get("records"))
    if isinstance(value, (str, bytes)):
        return []
    return [r for item in value for r in _flatten(item)]


@task(trigger_rule="all_done")
def summary(site_name: str, record_task_ids: list[str]) -> dict:
    """Last: what was already in place, what changed (with links to the ASR jobs), "no changes" when nothing did."""
    from site_recovery.links import asr_job_portal_url
    from site_recovery.operators.deploy_common import summarize

    context = get_current_context()
    records = []
    for task_id in record_task_ids:
        records += _flatten(context["ti"].xcom_pull(task_ids=task_id))
    site = load_site_named(site_name)
    links: dict[str, str] = {}
    jobs = [r["job_name"] for r in records if r.get("job_name")]
    if jobs:
        from site_recovery.hooks.asr import AzureSiteRecoveryHook

        settings = AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id).settings
        for job in jobs:
            links[job] = asr_job_portal_url(
                portal_url=settings.portal_url, tenant_id=settings.tenant_id, subscription_id=settings.subscription_id,
                resource_group_name=site.azure.resource_group, vault_name=site.azure.vault_name, job_name=job)
    text = summarize(records, links)
    log.info("Deployment of site %s:\n%s", site.name, text)
    changed = sum(r["action"] in ("created", "updated") for r in records)
    return {"changes": changed, "records": records, "text": text}
