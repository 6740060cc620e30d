"""The Azure side of the deployment DAG: plan (1), Azure checks (2), vault (5), mappings (7), policy and pairing (8).

Each task ensures: it reads the vault through the hook, asks :mod:`site_recovery.deployment`
what differs from the site file, starts an ASR job only for that, and returns
:class:`~site_recovery.records.StepRecord` s (see :func:`~site_recovery.tasks.common.record`).
A task that starts a job names it in the record's ``job_name``; the step's
:class:`~site_recovery.sensors.deploy.OptionalAsrJobSensor` waits on it and does nothing when
there is none. The on-premises steps are :mod:`site_recovery.tasks.deploy_onprem`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from site_recovery.deployment import selected
from site_recovery.exceptions import DeploymentCheckFailed
from site_recovery.tasks.common import STEP_NOT_SELECTED, record, skip_step, sort_errors, table
from site_recovery.vocabulary import DeployAction, Scenario

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import StepRecord
    from site_recovery.site import Site

log = logging.getLogger(__name__)
_VAULT_WAIT_SECONDS = 600


def _site(site_name: str) -> Site:
    from site_recovery.site import load_site_named

    return load_site_named(site_name)


def _hook(site: Site) -> AzureSiteRecoveryHook:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


def _check(problem: str | None) -> None:
    if problem:
        raise DeploymentCheckFailed(problem)


@task
@sort_errors
def review_plan(site_name: str) -> list[StepRecord]:
    """Step 1: show both sites, the pairings, mappings and policy, and what exists in the vault."""
    from site_recovery.deployment import plan_rows, read_vault

    site = _site(site_name)
    hook = _hook(site)
    rows = plan_rows(hook, site, read_vault(hook, site))
    log.info("Deployment plan of site %s (%s -> %s):\n%s", site.name, site.primary.vmm.fqdn, site.recovery.vmm.fqdn,
             table(["what", "name", "in the vault now", "this run would"], rows))
    hosts = ", ".join(h.fqdn for h in site.recovery.hyperv_hosts)
    log.info("Step 4 checks the Hyper-V Replica settings of the recovery hosts: %s", hosts)
    changes = [r for r in rows if r[3] != "nothing"]
    # The plan itself changes nothing: "skipped" when a full run would change something.
    return [record("review_architecture", "plan", DeployAction.IN_PLACE if not changes else DeployAction.SKIPPED,
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
def check_azure(site_name: str) -> list[StepRecord]:
    """Step 2, Azure side: the connection authenticates, the subscription answers, the RP is registered."""
    from site_recovery.deployment import RESOURCE_PROVIDER
    from site_recovery.vocabulary import ResourceProviderState

    site = _site(site_name)
    if not selected(get_current_context(), "prerequisites"):
        skip_step("prerequisites", [record("prerequisites", "Azure", DeployAction.SKIPPED, STEP_NOT_SELECTED)])
    hook = _hook(site)
    az = site.azure
    failed = []
    if hook.settings.subscription_id.lower() != az.subscription_id.lower():
        failed.append(f"connection {az.conn_id} is for subscription {hook.settings.subscription_id}, "
                      f"the site file names {az.subscription_id}")
    state = hook.get_resource_provider_state(az.subscription_id, RESOURCE_PROVIDER)
    if state != ResourceProviderState.REGISTERED:
        failed.append(f"resource provider {RESOURCE_PROVIDER} is {state} in subscription {az.subscription_id}; "
                      f"register it (az provider register -n {RESOURCE_PROVIDER})")
    if failed:
        raise DeploymentCheckFailed("Azure prerequisites not met:\n- " + "\n- ".join(failed))
    return [record("prerequisites", "Azure", DeployAction.IN_PLACE,
                   f"signed in, subscription {az.subscription_id} answers, {RESOURCE_PROVIDER} registered")]


@task
@sort_errors
def ensure_vault(site_name: str) -> list[StepRecord]:
    """Step 5: the vault exists in the site file's region and is provisioned."""
    from site_recovery.deployment import vault_body, vault_provisioned, vault_region_problem

    site = _site(site_name)
    az = site.azure
    if not selected(get_current_context(), "vault"):
        skip_step("vault", [record("vault", az.vault_name, DeployAction.SKIPPED, STEP_NOT_SELECTED)])
    hook = _hook(site)
    vault = hook.get_vault_or_none(az.resource_group, az.vault_name)
    action = DeployAction.IN_PLACE
    if vault is None:
        log.info("Vault %s does not exist in %s; creating it in %s.", az.vault_name, az.resource_group, az.region)
        vault = hook.create_vault(az.resource_group, az.vault_name, vault_body(site))
        action = DeployAction.CREATED
    _check(vault_region_problem(site, vault))
    deadline = time.monotonic() + _VAULT_WAIT_SECONDS
    while not vault_provisioned(vault):
        if time.monotonic() > deadline:
            raise DeploymentCheckFailed(f"Vault {az.vault_name} still {vault.properties.provisioning_state}.")
        time.sleep(5)
        vault = hook.get_vault(az.resource_group, az.vault_name)
    return [record("vault", az.vault_name, action, f"{vault.location}, provisioned")]


@task
@sort_errors
def ensure_network_mapping(site_name: str, index: int) -> StepRecord:
    """Step 7: one VmmToVmm network mapping; start a job only when it is missing."""
    from site_recovery.deployment import (
        both_fabrics,
        mapping_name,
        network_mapping_body,
        network_mapping_conflict,
        network_mapping_of,
        read_vault,
        running_job,
        unknown_name,
    )

    site = _site(site_name)
    m = site.network_mappings[index]
    item = f"{m.primary_network} -> {m.recovery_network}"
    if not selected(get_current_context(), "network_mapping"):
        skip_step("network_mapping", record("network_mapping", item, DeployAction.SKIPPED, STEP_NOT_SELECTED))
    hook = _hook(site)
    view = read_vault(hook, site)
    primary, recovery, problem = both_fabrics(site, view)
    _check(problem)
    _check(unknown_name(primary.networks, m.primary_network, "VM network", site.primary.vmm.fqdn))
    _check(unknown_name(recovery.networks, m.recovery_network, "VM network", site.recovery.vmm.fqdn))
    network = primary.networks[m.primary_network.casefold()]
    target = recovery.networks[m.recovery_network.casefold()]
    if (job := running_job(hook, site, Scenario.MAP_NETWORKS, target_name=m.primary_network)):
        return record("network_mapping", item, DeployAction.CREATED,
                      "mapping started by an earlier run is still running; waiting on it", job)
    existing = network_mapping_of(hook, site, primary, network)
    if existing is not None:
        _check(network_mapping_conflict(existing, target, m.primary_network, m.recovery_network))
        return record("network_mapping", item, DeployAction.IN_PLACE, f"mapping {existing.name}")
    job = hook.create_network_mapping(site.azure.resource_group, site.azure.vault_name, primary.name, network.name,
                                      mapping_name(m.primary_network, m.recovery_network),
                                      network_mapping_body(recovery, target))
    return record("network_mapping", item, DeployAction.CREATED, "mapping started", job)


@task
@sort_errors
def ensure_policy(site_name: str) -> StepRecord:
    """Step 8a: the replication policy exists and matches the site file (PATCH when it differs)."""
    from site_recovery.deployment import policy_create_body, policy_differences, policy_update_body

    site = _site(site_name)
    policy = site.replication_policy
    if not selected(get_current_context(), "replication_policy_and_pairing"):
        skip_step("replication_policy_and_pairing", record("replication_policy_and_pairing", policy.name,
                                                           DeployAction.SKIPPED, STEP_NOT_SELECTED))
    hook = _hook(site)
    az = site.azure
    existing = hook.get_policy_or_none(az.resource_group, az.vault_name, policy.name)
    if existing is None:
        job = hook.create_policy(az.resource_group, az.vault_name, policy.name, policy_create_body(site))
        return record("replication_policy_and_pairing", policy.name, DeployAction.CREATED, policy.provider, job)
    diffs = policy_differences(site, existing)
    if not diffs:
        return record("replication_policy_and_pairing", policy.name, DeployAction.IN_PLACE, "matches the site file")
    log.info("Policy %s differs from the site file:\n- %s", policy.name, "\n- ".join(diffs))
    job = hook.update_policy(az.resource_group, az.vault_name, policy.name, policy_update_body(site))
    return record("replication_policy_and_pairing", policy.name, DeployAction.UPDATED, "; ".join(diffs), job)


@task
@sort_errors
def ensure_pairing(site_name: str, index: int) -> StepRecord:
    """Step 8b: one cloud pairing with the site's policy; start a job only when it is missing."""
    from site_recovery.deployment import (
        both_fabrics,
        container_mapping_of,
        mapping_name,
        pairing_body,
        pairing_conflict,
        read_vault,
        running_job,
        unknown_name,
    )

    site = _site(site_name)
    c = site.clouds[index]
    item = f"{c.primary_cloud} -> {c.recovery_cloud}"
    if not selected(get_current_context(), "replication_policy_and_pairing"):
        skip_step("replication_policy_and_pairing", record("replication_policy_and_pairing", item,
                                                           DeployAction.SKIPPED, STEP_NOT_SELECTED))
    hook = _hook(site)
    view = read_vault(hook, site)
    primary, recovery, problem = both_fabrics(site, view)
    _check(problem)
    if view.policy is None:
        raise DeploymentCheckFailed(f"Policy {site.replication_policy.name} is not in the vault; run step 8 whole.")
    _check(unknown_name(primary.containers, c.primary_cloud, "Cloud", site.primary.vmm.fqdn))
    _check(unknown_name(recovery.containers, c.recovery_cloud, "Cloud", site.recovery.vmm.fqdn))
    source = primary.containers[c.primary_cloud.casefold()]
    target = recovery.containers[c.recovery_cloud.casefold()]
    if (job := running_job(hook, site, Scenario.PAIR_CLOUDS, affected=("primaryCloudName", c.primary_cloud))):
        return record("replication_policy_and_pairing", item, DeployAction.CREATED,
                      "pairing started by an earlier run is still running; waiting on it", job)
    existing = container_mapping_of(hook, site, primary, source)
    if existing is not None:
        _check(pairing_conflict(existing, target, view.policy, c.primary_cloud))
        return record("replication_policy_and_pairing", item, DeployAction.IN_PLACE, f"pairing {existing.name}")
    job = hook.create_container_mapping(site.azure.resource_group, site.azure.vault_name, primary.name, source.name,
                                        mapping_name(c.primary_cloud, c.recovery_cloud),
                                        pairing_body(target, view.policy))
    return record("replication_policy_and_pairing", item, DeployAction.CREATED,
                  f"policy {site.replication_policy.name}", job)


def _flatten(value: Any) -> list[StepRecord]:
    """The step records in one task's XCom: a record, a list of them, mapped tasks' lists, or ``{"records": [...]}``."""
    from site_recovery.records import StepRecord

    if value is None or isinstance(value, (str, bytes)):
        return []
    if isinstance(value, StepRecord):
        return [value]
    if isinstance(value, dict):
        return [StepRecord.model_validate(value)] if "action" in value else _flatten(value.get("records"))
    return [r for item in value for r in _flatten(item)]


@task(trigger_rule="all_done")
def summary(site_name: str, record_task_ids: list[str]) -> dict[str, Any]:
    """Last: what was already in place, what changed (with links to the ASR jobs), "no changes" when nothing did.

    Returns ``{"changes": <how many>, "records": [StepRecord, ...], "text": <the summary>}``.
    """
    from site_recovery.links import asr_job_portal_url
    from site_recovery.tasks.common import CHANGES, summarize

    context = get_current_context()
    records: list[StepRecord] = []
    for task_id in record_task_ids:
        records += _flatten(context["ti"].xcom_pull(task_ids=task_id))
    site = _site(site_name)
    links: dict[str, str] = {}
    jobs = [r.job_name for r in records if r.job_name]
    if jobs:
        settings = _hook(site).settings
        for job in jobs:
            links[job] = asr_job_portal_url(
                portal_url=settings.portal_url, tenant_id=settings.tenant_id, subscription_id=settings.subscription_id,
                resource_group_name=site.azure.resource_group, vault_name=site.azure.vault_name, job_name=job)
    text = summarize(records, links)
    log.info("Deployment of site %s:\n%s", site.name, text)
    changed = sum(r.action in CHANGES for r in records)
    return {"changes": changed, "records": records, "text": text}
