"""Tasks of the enable-replication DAG (step 9): plan, enable one VM, report.

The plan reads ASR for every paired cloud of the site: which VMs the site file puts in scope,
which of them ASR can protect, and which are already protected or on their way. Each VM to
work on becomes one mapped task group (enable, wait for EnableDr, wait for initial
replication). The report reads ASR again at the end, so it says where every VM stands, not
what the run hoped for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, get_current_context, task
from site_recovery.operators.deploy_common import DeploymentCheckFailed, load_site_named, sort_errors, table

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)
ENABLE_BODY_PROVIDER = {"instanceType": "EnableProtectionProviderSpecificInput"}


def _hook(site):
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


# --------------------------------------------------------------------------- known VMs (form)
def known_vms_file(site_name: str) -> Path:
    """Where the plan keeps the in-scope VM names, which the DAG offers in its trigger form.

    ``$SITE_RECOVERY_STATE_DIR/<site>/vms.json`` (default: ``include/state``). Parsing the DAG
    reads this small local file instead of asking VMM or ASR (no network I/O at parse time).
    """
    from site_recovery.site import default_sites_dir

    folder = os.environ.get("SITE_RECOVERY_STATE_DIR")
    base = Path(folder).expanduser() if folder else default_sites_dir().parent / "state"
    return base / site_name / "vms.json"


def read_known_vms(site_name: str) -> list[str]:
    """The in-scope VM names the last plan saw, or [] (never raises: a DAG must parse without it)."""
    try:
        names = json.loads(known_vms_file(site_name).read_text()).get("vms", [])
        return [n for n in names if isinstance(n, str)][:1000]
    except (OSError, ValueError, AttributeError):
        return []


def _remember_vms(site_name: str, names: list[str]) -> None:
    path = known_vms_file(site_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps({"vms": sorted(names, key=str.casefold)}))
        os.replace(temp, path)
    except OSError as exc:  # the form loses its suggestions; the run goes on
        log.warning("Could not keep the VM list for the trigger form in %s: %s", path, exc)


# ------------------------------------------------------------------------------------- plan
def paired_clouds(hook, site) -> list[dict[str, Any]]:
    """Each pairing of the site as ASR has it: primary fabric, container and the pairing's policy."""
    from site_recovery.operators.deploy_vault import container_mapping_of, read_vault

    view = read_vault(hook, site)
    if not view.exists:
        raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} does not exist: run asr_deploy__{site.name} first.")
    primary = view.fabric_for(site.primary.vmm)
    if primary is None:
        raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} shows no fabric for {site.primary.vmm.fqdn}: run "
                                    f"asr_deploy__{site.name} first (step 6).")
    clouds = []
    for pairing in site.clouds:
        container = primary.containers.get(pairing.primary_cloud.casefold())
        mapping = container_mapping_of(hook, site, primary, container) if container is not None else None
        if mapping is None:
            raise DeploymentCheckFailed(f"Cloud {pairing.primary_cloud} is not paired with {pairing.recovery_cloud} "
                                        f"in vault {site.azure.vault_name}: run asr_deploy__{site.name} first "
                                        "(step 8).")
        clouds.append({"cloud": pairing.primary_cloud, "recovery_cloud": pairing.recovery_cloud,
                       "fabric": primary.name, "container": container.name,
                       "policy_id": mapping.properties.policy_id})
    return clouds


@task
@sort_errors
def plan_protection(site_name: str) -> list[dict[str, Any]]:
    """Decide per in-scope VM: enable, wait for an earlier enable, or report (protected, not protectable, ...).

    Returns the targets to map over; pushes ``records`` (every VM in scope), ``clouds`` and
    ``dry_run`` as XComs of their own for the enable tasks and the report.
    """
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.protection import ACTIONS, ENABLE, WAIT, ScopeError, check_requested, classify, \
        protectable_record

    context = get_current_context()
    params = context.get("params") or {}
    dry_run = bool(params.get("dry_run"))
    site = load_site_named(site_name)
    hook = _hook(site)
    az = site.azure
    provider = site.replication_policy.provider
    vms_by_cloud: dict[str, list[str]] = {}
    candidates = []
    clouds = paired_clouds(hook, site)
    for cloud in clouds:
        protectable = [protectable_record(p) for p in hook.list_protectable_items(
            az.resource_group, az.vault_name, cloud["fabric"], cloud["container"])]
        vms_by_cloud[cloud["cloud"]] = [p["vm"] for p in protectable]
        in_scope = [p for p in protectable if site.scope.covers(cloud["cloud"], p["vm"])]
        if not in_scope:
            continue
        items = {}
        for item in hook.list_protected_items(az.resource_group, az.vault_name, cloud["fabric"], cloud["container"]):
            summary = summarize_protected_item(item)
            items[(summary["protectable_item_id"] or "").rstrip("/").rsplit("/", 1)[-1].casefold()] = summary
        candidates += [(cloud, vm, items.get(vm["name"].casefold())) for vm in in_scope]
    scope_names = [vm["vm"] for _, vm, _ in candidates]
    _remember_vms(site_name, scope_names)
    try:
        wanted = check_requested(params.get("vms") or [], vms_by_cloud, scope_names)
    except ScopeError as exc:
        raise DeploymentCheckFailed(str(exc)) from None

    records, targets = [], []
    for cloud, vm, item in candidates:
        if wanted and vm["vm"].casefold() not in wanted:
            continue
        action, detail = classify(vm, item, provider)
        target = None
        if action in (ENABLE, WAIT):
            target = {"vm": vm["vm"], "cloud": cloud["cloud"], "fabric": cloud["fabric"],
                      "container": cloud["container"], "item_name": vm["name"], "protectable_item_id": vm["id"],
                      "policy_id": cloud["policy_id"]}
            targets.append(target)
        records.append({"vm": vm["vm"], "cloud": cloud["cloud"], "action": action, "detail": detail,
                        "target": target})
    counts = {a: sum(r["action"] == a for r in records) for a in ACTIONS}
    log.info("Replication plan for site %s%s:\n%s", site.name, " (dry run: nothing will change)" if dry_run else "",
             table(["VM", "Cloud", "Action", "Detail"], [[r["vm"], r["cloud"], r["action"], r["detail"]]
                                                         for r in records]) if records else "  (no VM in scope)")
    log.info("In scope: %d VM(s): %s.", len(records), ", ".join(f"{n} {a}" for a, n in counts.items() if n))
    ti = context["ti"]
    ti.xcom_push(key="records", value=records)
    ti.xcom_push(key="clouds", value=[[c["fabric"], c["container"]] for c in clouds])
    ti.xcom_push(key="dry_run", value=dry_run)
    return [] if dry_run else targets


# ---------------------------------------------------------------------------------- enable
class VmOperator(BaseOperator):
    """A task about one VM of a site: mapped over the plan's targets, labelled with the VM's name.

    :param site_name: The site file, read again on the worker.
    :param target: The VM as the plan or gate described it (``vm``, ``fabric``, ``container``, ``item_name``...).
    """

    template_fields: Sequence[str] = ("target",)
    ui_color = "#e6f1fb"

    def __init__(self, *, site_name: str, target: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_name = site_name
        self.target = target


class EnableProtectionOperator(VmOperator):
    """
    Enable replication of one VM with its pairing's policy, when a slot on the WAN link is free.

    Re-runs resume from ASR: a VM already protected is left alone; a VM whose enabling is under
    way returns the running EnableDr job to wait on (found through the item's current
    scenario). A new enable starts only while fewer than the site's
    ``scope.max_concurrent_initial_replications`` VMs are enabling or initially replicating
    (counted in ASR); otherwise the task defers until one finishes. Run it with
    ``max_active_tis_per_dagrun=1`` so two VMs never take the last slot at once.

    Returns the EnableDr job name to wait on, or None.
    """

    def execute(self, context: Context) -> str | None:
        return self._admit(deadline=None)

    def resume(self, context: Context, event: dict[str, Any] | None = None, deadline: float | None = None) -> str | None:
        if not event or event.get("status") != "success":
            raise DeploymentCheckFailed((event or {}).get("message") or "No event from the wait for a free slot.")
        self.log.info("%s", event["message"])
        return self._admit(deadline=deadline)

    @sort_errors
    def _admit(self, deadline: float | None) -> str | None:
        from site_recovery.hooks.asr import summarize_job
        from site_recovery.operators.deploy_vault import running_job
        from site_recovery.protection import describe_item, enabling_vms, is_enabling, running_enable_jobs_filter

        site = load_site_named(self.site_name)
        hook, az, t = _hook(site), site.azure, self.target
        item = self._item(hook, site)
        if item is not None:
            if not is_enabling(item):
                self.log.info("VM %r is already enabled: %s. Nothing to start.", t["vm"], describe_item(item))
                return None
            job = item.get("scenario_job") if item.get("scenario") == "EnableDr" else None
            job = job or running_job(hook, site, "EnableDr", target_name=t["vm"])
            self.log.info("Enabling VM %r is already under way (%s)%s.", t["vm"], describe_item(item),
                          f"; waiting on its EnableDr job {job}" if job else "")
            return job
        limit = site.scope.max_concurrent_initial_replications
        fabrics = sorted({fabric for fabric, _ in self._clouds(site)})
        busy = enabling_vms(summarize_job(job) for fabric in fabrics for job in hook.list_jobs(
            az.resource_group, az.vault_name, filter=running_enable_jobs_filter(fabric)))
        if len(busy) >= limit:
            deadline = deadline or time.time() + site.scope.initial_replication_timeout.total_seconds()
            self.log.info("VM %r waits for a free slot: %d of %d initial replications running (%s).", t["vm"],
                          len(busy), limit, ", ".join(busy))
            self._wait_for_slot(site, fabrics, limit, deadline)
        body = {"properties": {"policyId": t["policy_id"], "protectableItemId": t["protectable_item_id"],
                               "providerSpecificDetails": ENABLE_BODY_PROVIDER}}
        self.log.info("Enabling replication of VM %r (%s) with policy %s; %d of %d initial replications running.",
                      t["vm"], t["cloud"], site.replication_policy.name, len(busy), limit)
        return hook.enable_protection(az.resource_group, az.vault_name, t["fabric"], t["container"], t["item_name"],
                                      body)

    def _item(self, hook, site) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        from site_recovery.hooks.asr import summarize_protected_item

        t = self.target
        try:
            return summarize_protected_item(hook.get_protected_item(
                site.azure.resource_group, site.azure.vault_name, t["fabric"], t["container"], t["item_name"]))
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _clouds(site) -> list[list[str]]:
        """(fabric, container) of every paired primary cloud of the site, as the plan found them."""
        clouds = get_current_context()["ti"].xcom_pull(task_ids="plan_protection", key="clouds")
        if not clouds:
            raise DeploymentCheckFailed("The plan_protection task left no list of clouds; clear it and run it again.")
        return [list(c) for c in clouds]

    def _wait_for_slot(self, site, fabrics: list[str], limit: int, deadline: float) -> None:
        from site_recovery.triggers.protection import ReplicationSlotTrigger

        az = site.azure
        if time.time() >= deadline:
            raise DeploymentCheckFailed(f"No initial replication slot freed up for VM {self.target['vm']!r} within "
                                        f"{site.scope.initial_replication_timeout} (scope.initial_replication_timeout).")
        self.defer(
            trigger=ReplicationSlotTrigger(
                azure_conn_id=az.conn_id, resource_group_name=az.resource_group, vault_name=az.vault_name,
                fabrics=fabrics, limit=limit, poll_interval=site.timeouts.poll_interval.total_seconds(),
                end_time=deadline),
            method_name="resume", kwargs={"deadline": deadline},
            timeout=timedelta(seconds=max(deadline - time.time(), 1) + 60))


# ----------------------------------------------------------------------------------- report
def _job_facts(jobs: list) -> dict[str, dict[str, dict]]:
    """The latest EnableDr / PrimaryIrCompletion / SecondaryIrCompletion job summary per VM (casefolded name)."""
    from site_recovery.hooks.asr import summarize_job
    from site_recovery.protection import ENABLE_SCENARIOS

    latest: dict[str, dict[str, dict]] = {}
    for job in jobs:
        props = job.properties
        if props is None or props.scenario_name not in ENABLE_SCENARIOS or not props.target_object_name:
            continue
        summary = summarize_job(job)
        per_vm = latest.setdefault(props.target_object_name.casefold(), {})
        seen = per_vm.get(props.scenario_name)
        if seen is None or (summary["start_time"] or "") > (seen["start_time"] or ""):
            per_vm[props.scenario_name] = summary
    return latest


def _took(job: dict | None) -> str:
    if not job:
        return "-"
    if job.get("duration_seconds") is not None:
        return f"{job['state']} in {timedelta(seconds=round(job['duration_seconds']))}"
    return job.get("state") or "-"


def _ir_took(jobs: dict[str, dict]) -> str:
    first, second = jobs.get("PrimaryIrCompletion"), jobs.get("SecondaryIrCompletion")
    if not first:
        return "-"
    if second and second.get("end_time") and first.get("start_time"):
        from datetime import datetime

        took = datetime.fromisoformat(second["end_time"]) - datetime.fromisoformat(first["start_time"])
        return f"{second['state']} in {timedelta(seconds=max(0, round(took.total_seconds())))}"
    return _took(second or first)


@task(trigger_rule="all_done")
@sort_errors
def report_protection(site_name: str) -> list[dict]:
    """Per VM: what the run did, job durations, replication health now, last replication, what is left to fix."""
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.protection import ATTENTION, ENABLE, HEALTHY, NOT_PROTECTABLE, PROTECTED, PROTECTED_STATE, \
        WAIT, describe_item, health_errors_text, is_enabling

    ti = get_current_context()["ti"]
    records = ti.xcom_pull(task_ids="plan_protection", key="records")
    if records is None:
        raise DeploymentCheckFailed("The plan did not run (see plan_protection): there is nothing to report on.")
    dry_run = bool(ti.xcom_pull(task_ids="plan_protection", key="dry_run"))
    site = load_site_named(site_name)
    hook, az = _hook(site), site.azure
    clouds = {(r["target"]["fabric"], r["target"]["container"]) for r in records if r.get("target")}
    items: dict[str, dict] = {}
    for fabric, container in sorted(clouds):
        for item in hook.list_protected_items(az.resource_group, az.vault_name, fabric, container):
            summary = summarize_protected_item(item)
            items[(summary["vm"] or "").casefold()] = summary
    jobs = _job_facts(hook.list_jobs(az.resource_group, az.vault_name)) if clouds else {}
    rows = []
    for r in records:
        key = r["vm"].casefold()
        item, vm_jobs = items.get(key), jobs.get(key, {})
        enable_job = vm_jobs.get("EnableDr")
        if r["action"] in (PROTECTED, NOT_PROTECTABLE, ATTENTION) or dry_run:
            done = f"would {r['action']}" if dry_run and r["action"] in (ENABLE, WAIT) else r["action"]
        elif item is None:
            done = "enable failed" if enable_job and enable_job["state"] in ("Failed", "Cancelled") else "not enabled"
        elif item["protection_state"] == PROTECTED_STATE:
            done = "enabled" if r["action"] == ENABLE else "enabled (earlier run's job)"
        else:
            done = "enabling" if is_enabling(item) else "failed"
        fix = ""
        if r["action"] in (NOT_PROTECTABLE, ATTENTION):
            fix = r["detail"]
        elif not dry_run and r["action"] in (ENABLE, WAIT):
            if item is None and enable_job and enable_job.get("errors"):
                e = enable_job["errors"][0]
                fix = f"EnableDr failed: [{e.get('code')}] {e.get('message')} {e.get('recommended_action') or ''}".strip()
            elif item is None:
                fix = "not protected: see the VM's enable task log"
            elif is_enabling(item):
                fix = f"initial replication not finished: {describe_item(item)}"
        if item is not None and item["replication_health"] not in (HEALTHY, None) and not fix:
            fix = health_errors_text(item) or f"replication health {item['replication_health']}"
        rows.append({
            "vm": r["vm"], "cloud": r["cloud"], "planned": r["action"], "result": done,
            "enable_job": _took(enable_job), "initial_replication": _ir_took(vm_jobs),
            "health": item["replication_health"] if item else "-",
            "last_replicated": item["last_replicated_time"] if item and item["last_replicated_time"] else "-",
            "to_fix": fix,
        })
    title = f"Enable replication, site {site.name}" + (" (dry run: nothing was changed)" if dry_run else "")
    body = table(["VM", "Cloud", "Result", "EnableDr", "Initial replication", "Health", "Last replicated", "To fix"],
                 [[x["vm"], x["cloud"], x["result"], x["enable_job"], x["initial_replication"], x["health"],
                   x["last_replicated"], x["to_fix"]] for x in rows]) if rows else "(no VM in scope)"
    left = [x for x in rows if x["to_fix"]]
    log.info("%s\n%s\n%s", title, body, f"{len(left)} VM(s) need attention." if left else "Nothing left to fix.")
    return rows
