"""The deployment's recovery plans step: each plan of the site file exists in the vault as written.

A plan ASR does not have is created; one that differs is updated in place (the differences are
logged and recorded); one that matches is left alone, so a second run makes no mutating call. A
plan whose VMs are not all protected yet waits (recorded, not failed): the deployment runs before
enable replication, which ensures the plans again at its end. A plan the vault holds that the site
file does not name is reported, never deleted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from site_recovery.deployment import selected
from site_recovery.tasks.common import STEP_NOT_SELECTED, record, skip_step, sort_errors
from site_recovery.vocabulary import DeployAction

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import ProtectedItemSummary, StepRecord
    from site_recovery.site import Site

log = logging.getLogger(__name__)
STEP = "recovery_plans"


def fabric_id(site: Site, fabric: str) -> str:
    """A fabric's ARM id, as a recovery plan names its primary and recovery fabrics."""
    az = site.azure
    return (f"/subscriptions/{az.subscription_id}/resourceGroups/{az.resource_group}/providers/"
            f"Microsoft.RecoveryServices/vaults/{az.vault_name}/replicationFabrics/{fabric}")


def protected_items_by_vm(hook: AzureSiteRecoveryHook, site: Site) -> dict[str, ProtectedItemSummary]:
    """The protected items of the site's paired clouds, by VM name casefolded."""
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.pairings import paired_clouds

    found: dict[str, ProtectedItemSummary] = {}
    for cloud in paired_clouds(hook, site):
        for item in hook.list_protected_items(site.azure.resource_group, site.azure.vault_name, cloud.fabric,
                                              cloud.container):
            summary = summarize_protected_item(item)
            if summary.vm:
                found[summary.vm.casefold()] = summary
    return found


def ensure_plans(site: Site, hook: AzureSiteRecoveryHook) -> list[StepRecord]:
    """Each plan of the site file as ASR should hold it, and the plans ASR holds that the site file does not name."""
    from site_recovery.deployment import both_fabrics, read_vault
    from site_recovery.exceptions import DeploymentCheckFailed
    from site_recovery.recovery_plans import create_body, desired_groups, members, plan_differences, update_body

    az = site.azure
    primary, recovery, problem = both_fabrics(site, read_vault(hook, site, details=False))
    if problem:
        raise DeploymentCheckFailed(problem)
    items = protected_items_by_vm(hook, site)
    names = {item.id.casefold(): item.vm for item in items.values() if item.id and item.vm}
    held = {plan.name.casefold(): plan for plan in hook.list_recovery_plans(az.resource_group, az.vault_name)}
    records: list[StepRecord] = []
    for plan in site.recovery_plans:
        ids, missing = members(plan, items)
        if missing:
            records.append(record(STEP, plan.name, DeployAction.WAITING,
                                  f"not protected yet: {', '.join(missing)}; run enable replication, which "
                                  "ensures the plans again"))
            continue
        groups = desired_groups(plan, ids)
        existing = held.get(plan.name.casefold())
        if existing is None:
            job = hook.create_recovery_plan(az.resource_group, az.vault_name, plan.name,
                                            create_body(groups, fabric_id(site, primary.name),
                                                        fabric_id(site, recovery.name)))
            records.append(record(STEP, plan.name, DeployAction.CREATED,
                                  f"{len(groups)} boot groups, {len(plan.vms)} VMs", job))
            continue
        if existing.scenario_job:
            raise DeploymentCheckFailed(f"Recovery plan {plan.name} is busy with ASR job {existing.scenario_job}; "
                                        "run the deployment again once it has ended.")
        diffs = plan_differences(groups, existing, names)
        if not diffs:
            records.append(record(STEP, plan.name, DeployAction.IN_PLACE, "matches the site file"))
            continue
        log.info("Recovery plan %s differs from the site file:\n- %s", plan.name, "\n- ".join(diffs))
        job = hook.update_recovery_plan(az.resource_group, az.vault_name, plan.name, update_body(groups))
        records.append(record(STEP, plan.name, DeployAction.UPDATED, "; ".join(diffs), job))
    wanted = {plan.name.casefold() for plan in site.recovery_plans}
    for key, plan in sorted(held.items()):
        if key not in wanted:
            records.append(record(STEP, plan.name, DeployAction.NOT_IN_SITE_FILE,
                                  "left as it is: add it to the site file to manage it, or delete it in the vault"))
    return records


@task
@sort_errors
def ensure_recovery_plans(site_name: str) -> list[StepRecord]:
    """Recovery plans: create or update each plan of the site file; report the vault's other plans.

    Returns the records, and pushes the jobs it started under ``job_names`` for the step's wait.
    """
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.site import load_site_named

    site = load_site_named(site_name)
    context = get_current_context()
    context["ti"].xcom_push(key="job_names", value=[])
    if (context.get("params") or {}).get("dry_run"):  # the enable-replication DAG's dry run changes nothing
        context["ti"].xcom_push(key="return_value", value=[
            record(STEP, plan.name, DeployAction.SKIPPED, "dry run") for plan in site.recovery_plans])
        raise AirflowSkipException("Dry run: the recovery plans are left as they are.")
    if not selected(context, STEP):
        skip_step(STEP, [record(STEP, plan.name, DeployAction.SKIPPED, STEP_NOT_SELECTED)
                         for plan in site.recovery_plans])
    records = ensure_plans(site, AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id))
    context["ti"].xcom_push(key="job_names", value=[r.job_name for r in records if r.job_name])
    return records
