"""Tasks of the enable-replication DAG (step 9): the plan, and the report at the end.

The plan reads ASR for every paired cloud of the site: which VMs the site file puts in scope,
which of them ASR can protect, and which are already protected or on their way. Each VM to
work on becomes one mapped task group (enable, wait for EnableDr, wait for initial
replication). The report reads ASR again at the end, so it says where every VM stands, not
what the run hoped for.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow.sdk import get_current_context, task
from site_recovery.exceptions import DeploymentCheckFailed
from site_recovery.site import load_site_named
from site_recovery.tasks.common import sort_errors, table

if TYPE_CHECKING:
    from site_recovery.records import JobSummary, ProtectionReportRow, VmTarget

log = logging.getLogger(__name__)


def _hook(site):
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


@task
@sort_errors
def plan_protection(site_name: str) -> list[VmTarget]:
    """Decide per in-scope VM: enable, wait for an earlier enable, or report (protected, not protectable, ...).

    Returns the targets to map over; pushes ``records`` (every VM in scope), ``clouds`` and
    ``dry_run`` as XComs of their own for the enable tasks and the report.
    """
    from site_recovery.hooks.asr import summarize_protectable_item, summarize_protected_item
    from site_recovery.pairings import paired_clouds
    from site_recovery.protection import ScopeError, check_requested, classify
    from site_recovery.records import ProtectionPlanEntry, VmTarget
    from site_recovery.vocabulary import ProtectionAction

    context = get_current_context()
    params = context.get("params") or {}
    dry_run = bool(params.get("dry_run"))
    site = load_site_named(site_name)
    hook, az = _hook(site), site.azure
    provider = site.replication_policy.provider
    vms_by_cloud: dict[str, list[str]] = {}
    candidates = []
    clouds = paired_clouds(hook, site)
    for cloud in clouds:
        protectable = [summarize_protectable_item(p) for p in hook.list_protectable_items(
            az.resource_group, az.vault_name, cloud.fabric, cloud.container)]
        vms_by_cloud[cloud.cloud] = [p.vm for p in protectable]
        in_scope = [p for p in protectable if site.scope.covers(cloud.cloud, p.vm)]
        if not in_scope:
            continue
        items = {}
        for raw in hook.list_protected_items(az.resource_group, az.vault_name, cloud.fabric, cloud.container):
            item = summarize_protected_item(raw)
            items[item.protectable_item_name] = item
        candidates += [(cloud, vm, items.get(vm.name.casefold())) for vm in in_scope]
    scope_names = [vm.vm for _, vm, _ in candidates]
    try:
        wanted = check_requested(params.get("vms") or [], vms_by_cloud, scope_names)
    except ScopeError as exc:
        raise DeploymentCheckFailed(str(exc)) from None

    records: list[ProtectionPlanEntry] = []
    for cloud, vm, item in candidates:
        if wanted and vm.vm.casefold() not in wanted:
            continue
        action, detail = classify(vm, item, provider)
        target = VmTarget(vm=vm.vm, cloud=cloud.cloud, fabric=cloud.fabric, container=cloud.container,
                          item_name=vm.name, protectable_item_id=vm.id, policy_id=cloud.policy_id) \
            if action.has_target else None
        records.append(ProtectionPlanEntry(vm=vm.vm, cloud=cloud.cloud, action=action, detail=detail,
                                           target=target))
    counts = {a: sum(r.action is a for r in records) for a in ProtectionAction}
    log.info("Replication plan for site %s%s:\n%s", site.name,
             " (dry run: nothing will change)" if dry_run else "",
             table(["VM", "Cloud", "Action", "Detail"], [[r.vm, r.cloud, r.action, r.detail] for r in records])
             if records else "  (no VM in scope)")
    log.info("In scope: %d VM(s): %s.", len(records), ", ".join(f"{n} {a}" for a, n in counts.items() if n))
    ti = context["ti"]
    ti.xcom_push(key="records", value=records)
    ti.xcom_push(key="clouds", value=[[c.fabric, c.container] for c in clouds])
    ti.xcom_push(key="dry_run", value=dry_run)
    return [] if dry_run else [r.target for r in records if r.target is not None]


def _latest_enable_jobs(jobs: list[JobSummary]) -> dict[str, dict[str, JobSummary]]:
    """The latest EnableDr / PrimaryIrCompletion / SecondaryIrCompletion job per VM (casefolded name)."""
    from site_recovery.vocabulary import ENABLE_SCENARIOS

    latest: dict[str, dict[str, JobSummary]] = {}
    for job in jobs:
        if job.scenario_name not in ENABLE_SCENARIOS or not job.target:
            continue
        per_vm = latest.setdefault(job.target.casefold(), {})
        seen = per_vm.get(job.scenario_name)
        if seen is None or (job.start_time and (seen.start_time is None or job.start_time > seen.start_time)):
            per_vm[job.scenario_name] = job
    return latest


def _initial_replication_took(jobs: dict[str, JobSummary]) -> str:
    from site_recovery.records import format_seconds, seconds_between
    from site_recovery.vocabulary import Scenario

    first = jobs.get(Scenario.PRIMARY_INITIAL_REPLICATION)
    second = jobs.get(Scenario.SECONDARY_INITIAL_REPLICATION)
    if not first:
        return "-"
    if second and second.end_time and first.start_time:
        return f"{second.outcome} in {format_seconds(max(0.0, seconds_between(first.start_time, second.end_time)))}"
    return (second or first).took()


@task(trigger_rule="all_done")
@sort_errors
def report_protection(site_name: str) -> list[ProtectionReportRow]:
    """Per VM: what the run did, job durations, replication health now, last replication, what is left to fix."""
    from site_recovery.hooks.asr import summarize_job, summarize_protected_item
    from site_recovery.records import ProtectionPlanEntry, ProtectionReportRow
    from site_recovery.vocabulary import ProtectionAction, ReplicationHealth, Scenario

    ti = get_current_context()["ti"]
    pulled = ti.xcom_pull(task_ids="plan_protection", key="records")
    if pulled is None:
        raise DeploymentCheckFailed("The plan did not run (see plan_protection): there is nothing to report on.")
    records = [ProtectionPlanEntry.model_validate(r) if isinstance(r, dict) else r for r in pulled]
    dry_run = bool(ti.xcom_pull(task_ids="plan_protection", key="dry_run"))
    site = load_site_named(site_name)
    hook, az = _hook(site), site.azure
    clouds = {(r.target.fabric, r.target.container) for r in records if r.target}
    items = {}
    for fabric, container in sorted(clouds):
        for raw in hook.list_protected_items(az.resource_group, az.vault_name, fabric, container):
            item = summarize_protected_item(raw)
            items[(item.vm or "").casefold()] = item
    jobs = _latest_enable_jobs([summarize_job(job) for job in hook.list_jobs(az.resource_group, az.vault_name)]) \
        if clouds else {}
    rows = []
    for r in records:
        key = r.vm.casefold()
        item, vm_jobs = items.get(key), jobs.get(key, {})
        enable_job = vm_jobs.get(Scenario.ENABLE_PROTECTION)
        if not r.action.has_target or dry_run:
            done = f"would {r.action}" if dry_run and r.action.has_target else str(r.action)
        elif item is None:
            done = "enable failed" if enable_job and enable_job.state and enable_job.state.is_failure \
                else "not enabled"
        elif item.is_protected:
            done = "enabled" if r.action is ProtectionAction.ENABLE else "enabled (earlier run's job)"
        else:
            done = "enabling" if item.is_enabling else "failed"
        fix = ""
        if r.action in (ProtectionAction.NOT_PROTECTABLE, ProtectionAction.ATTENTION):
            fix = r.detail
        elif not dry_run and r.action.has_target:
            if item is None and enable_job and enable_job.errors:
                e = enable_job.errors[0]
                fix = f"EnableDr failed: [{e.code}] {e.message} {e.recommended_action or ''}".strip()
            elif item is None:
                fix = "not protected: see the VM's enable task log"
            elif item.is_enabling:
                fix = f"initial replication not finished: {item.describe()}"
        if item is not None and item.replication_health not in (ReplicationHealth.NORMAL, None) and not fix:
            fix = item.health_errors_text() or f"replication health {item.replication_health}"
        rows.append(ProtectionReportRow(
            vm=r.vm, cloud=r.cloud, planned=r.action, result=done,
            enable_job=enable_job.took() if enable_job else "-",
            initial_replication=_initial_replication_took(vm_jobs),
            health=str(item.replication_health) if item and item.replication_health else "-",
            last_replicated=item.last_replicated_time.isoformat() if item and item.last_replicated_time else "-",
            to_fix=fix,
        ))
    title = f"Enable replication, site {site.name}" + (" (dry run: nothing was changed)" if dry_run else "")
    body = table(["VM", "Cloud", "Result", "EnableDr", "Initial replication", "Health", "Last replicated",
                  "To fix"],
                 [[x.vm, x.cloud, x.result, x.enable_job, x.initial_replication, x.health, x.last_replicated,
                   x.to_fix] for x in rows]) if rows else "(no VM in scope)"
    left = [x for x in rows if x.to_fix]
    log.info("%s\n%s\n%s", title, body, f"{len(left)} VM(s) need attention." if left else "Nothing left to fix.")
    return rows

