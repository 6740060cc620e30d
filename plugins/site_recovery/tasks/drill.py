"""Tasks of the test failover drill (step 10): leftovers, the readiness gate, the cleanup and its proof.

The test failover itself is :class:`~site_recovery.operators.drill.StartTestFailoverOperator`,
its verification :class:`~site_recovery.sensors.drill.TestVmVerifiedSensor`; the report is
:mod:`site_recovery.tasks.drill_report`. The rules these tasks apply live in
:mod:`site_recovery.drill`.

Every ASR client a drill task builds (:func:`drill_hook`) carries
:func:`~site_recovery.drill.drill_may_send` as its request guard, so a drill can never send a
planned or unplanned failover, a commit or a reprotect, whatever a bug upstream asks of it: the
request is refused before it leaves.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from site_recovery.exceptions import DeploymentCheckFailed, DrillFailed
from site_recovery.tasks.common import sort_errors, table

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.hooks.vmm import VmmScriptHook
    from site_recovery.records import (
        CleanupProof,
        DrillGate,
        LeftoverCleanup,
        PairedCloud,
        PlanDrillTarget,
        ProtectedItemSummary,
        RecoveryPlanSummary,
        VmTarget,
    )
    from site_recovery.site import RecoveryPlan, Site

log = logging.getLogger(__name__)
#: The task whose ``gate`` XCom (a DrillGate) every later task reads.
GATE_TASK = "readiness_gate"


def drill_hook(site: Site) -> AzureSiteRecoveryHook:
    """An ASR hook that may only read, run test failovers, clean them up and cancel its own jobs."""
    from site_recovery.drill import drill_may_send
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=drill_may_send)


def _recovery_vmm(site: Site) -> VmmScriptHook:
    """The recovery VMM server, where the test VMs come up."""
    from site_recovery.hooks.vmm import VmmScriptHook

    return VmmScriptHook(site.recovery.vmm.psrp_conn_id)


def pulled_gate(ti: Any) -> DrillGate | None:
    """The readiness gate's result as the gate pushed it (None when the gate did not get that far)."""
    from site_recovery.records import DrillGate

    gate = ti.xcom_pull(task_ids=GATE_TASK, key="gate")
    return None if gate is None else DrillGate.model_validate(gate)


def run_label(context: Any) -> str:
    """This DAG run as the comments a drill leaves in ASR name it."""
    return f"{context['dag'].dag_id} run {context['run_id']}"


def resume_plan_job(site: Site, job: str, comment: str) -> None:
    """Let a recovery plan's job go on past the pause it waits at, leaving ``comment`` on it in ASR."""
    drill_hook(site).resume_job(site.azure.resource_group, site.azure.vault_name, job, comment)


def _start_cleanup(hook: AzureSiteRecoveryHook, site: Site, fabric: str, container: str,
                   item: ProtectedItemSummary, comment: str) -> str | None:
    from site_recovery.hooks.asr import ASR_COMMENT_LIMIT

    return hook.test_failover_cleanup(site.azure.resource_group, site.azure.vault_name, fabric, container, item.name,
                                      {"properties": {"comments": comment[:ASR_COMMENT_LIMIT]}})


# -------------------------------------------------------------------------------- leftovers
@task
@sort_errors
def clean_leftovers(site_name: str) -> list[str]:
    """Clean up test failovers an interrupted drill left behind, before anything else; return their jobs.

    Pushes ``leftovers`` (a :class:`~site_recovery.records.LeftoverCleanup` per VM) for the gate and the report.
    """
    from site_recovery.drill import has_leftover_test_failover
    from site_recovery.records import LeftoverCleanup
    from site_recovery.site import load_site_named
    from site_recovery.vocabulary import AllowedOperation

    context = get_current_context()
    site = load_site_named(site_name)
    from site_recovery.pairings import protected_items_in_scope

    hook = drill_hook(site)
    leftovers: list[LeftoverCleanup] = []
    cleaned_by_plan: set[str] = set()
    for plan in site.recovery_plans:  # a plan's test failover is cleaned up as the plan, as it was run
        held = hook.get_recovery_plan_or_none(site.azure.resource_group, site.azure.vault_name, plan.name)
        if held is None or AllowedOperation.TEST_FAILOVER_CLEANUP not in held.allowed_operations:
            continue
        job = _clean_up_plan(hook, site, plan.name, f"Leftover of an earlier drill, cleaned up by "
                                                    f"{run_label(context)}", held=held)
        detail = f"recovery plan {plan.name}'s test failover left by an earlier drill; cleaned up first" + (
            f" (job {job})" if job else "")
        log.warning("%s.", detail)
        leftovers.append(LeftoverCleanup(vm=plan_cleanup_key(plan.name), detail=detail, job=job))
        cleaned_by_plan |= {vm.casefold() for vm in plan.vms}
    for cloud, item in protected_items_in_scope(hook, site):
        if not has_leftover_test_failover(item) or (item.vm or "").casefold() in cleaned_by_plan:
            continue
        job = _start_cleanup(hook, site, cloud.fabric, cloud.container, item,
                             f"Leftover of an earlier drill, cleaned up by {run_label(context)}")
        detail = (f"test failover left {item.test_failover_state} by an earlier drill; cleaned up first"
                  + (f" (job {job})" if job else ""))
        log.warning("VM %r: %s.", item.vm, detail)
        leftovers.append(LeftoverCleanup(vm=item.vm or item.name, detail=detail, job=job))
    if not leftovers:
        log.info("No test failover left behind by an earlier drill.")
    context["ti"].xcom_push(key="leftovers", value=leftovers)
    return [leftover.job for leftover in leftovers if leftover.job]


# ------------------------------------------------------------------------------------- gate
def _test_network(hook: AzureSiteRecoveryHook, site: Site, params: dict[str, Any]) -> tuple[str | None, str | None]:
    """(network ARM id, name) the test VMs join, or (None, None); refuses a network production maps to."""
    from site_recovery.deployment import read_vault

    name = (params.get("test_network") or "").strip() or site.drill.test_network
    if not name:
        return None, None
    view = read_vault(hook, site)
    recovery = view.fabric_for(site.recovery.vmm) if view.exists else None
    network = recovery.networks.get(name.casefold()) if recovery else None
    if network is None:
        known = ", ".join(sorted(n.properties.friendly_name for n in recovery.networks.values())) if recovery else ""
        raise DeploymentCheckFailed(f"Test network {name!r} is not a VM network of {site.recovery.vmm.fqdn}; "
                                    f"it has: {known or 'none'}.")
    mapped = [m for m in hook.list_network_mappings(site.azure.resource_group, site.azure.vault_name)
              if (m.properties.recovery_network_id or "").casefold() == network.id.casefold()]
    if mapped and not params.get("allow_production_network"):
        sources = ", ".join(m.properties.primary_network_friendly_name or m.name for m in mapped)
        raise DeploymentCheckFailed(
            f"Refusing to drill into {name!r}: it is the recovery network of production network(s) {sources}, so "
            "test VMs would come up next to the real DR copies with production addresses. Use the isolated "
            "drill network (drill.test_network), or set the run parameter allow_production_network to override.")
    return network.id, network.properties.friendly_name


@task
@sort_errors
def readiness_gate(site_name: str) -> list[VmTarget]:
    """Check every in-scope VM (health, TestFailover allowed, recovery point age, nothing running).

    Returns the ready VMs to drill; pushes ``gate`` (a :class:`~site_recovery.records.DrillGate`,
    for the cleanup and the report). With ``drill.on_gate_failure: fail`` any VM that is not
    ready fails the run before any failover.
    """
    from site_recovery.drill import gate_reasons, utc_now
    from site_recovery.pairings import protected_items_in_scope
    from site_recovery.records import DrillGate, GateSkip, LeftoverCleanup
    from site_recovery.site import load_site_named

    context = get_current_context()
    params = context.get("params") or {}
    site = load_site_named(site_name)
    hook = drill_hook(site)
    drill, now = site.drill, utc_now()
    wanted = {v.strip().casefold() for v in params.get("vms") or [] if v and v.strip()}
    wanted_plans = {v.strip().casefold() for v in params.get("plans") or [] if v and v.strip()}
    items = protected_items_in_scope(hook, site)
    unknown = sorted(wanted - {(item.vm or "").casefold() for _, item in items})
    if unknown:
        raise DeploymentCheckFailed(f"The run's vms parameter names VMs that are not protected in scope: "
                                    f"{', '.join(unknown)}. Protected in scope: "
                                    f"{', '.join(sorted(item.vm or item.name for _, item in items)) or 'none'}.")
    in_plans = sorted(f"{vm} (plan {site.plan_of(vm).name})" for vm in wanted if site.plan_of(vm))
    if in_plans:
        raise DeploymentCheckFailed(f"The run's vms parameter names VMs of recovery plans, which are drilled as "
                                    f"a whole: {', '.join(in_plans)}. Name their plans in the plans parameter.")
    unknown = sorted(wanted_plans - {plan.name.casefold() for plan in site.recovery_plans})
    if unknown:
        raise DeploymentCheckFailed(f"The run's plans parameter names plans the site file does not have: "
                                    f"{', '.join(unknown)}. Its plans: "
                                    f"{', '.join(p.name for p in site.recovery_plans) or 'none'}.")
    network_id, network_name = _test_network(hook, site, params)
    unattended = _unattended(context)
    ready: list[VmTarget] = []
    skipped: list[GateSkip] = []
    rows = []
    members: dict[str, tuple[VmTarget, list[str]]] = {}

    def chosen(plan: RecoveryPlan | None, vm: str = "") -> bool:
        """Drilled by this run: everything when it names no VM and no plan, else what it names."""
        if not (wanted or wanted_plans):
            return True
        return plan.name.casefold() in wanted_plans if plan else vm.casefold() in wanted

    for cloud, item in items:
        vm = item.vm or item.name
        plan = site.plan_of(vm)
        if not chosen(plan, vm):
            continue
        reasons = gate_reasons(item, allow_warning=drill.allow_warning_health,
                               max_age_seconds=drill.recovery_point_age_limit.total_seconds(), now=now)
        if plan is not None:  # judged with its plan below: a plan is drilled whole or not at all
            members[vm.casefold()] = (_target(vm, cloud, item, network_id, network_name), reasons)
            continue
        rows.append([vm, cloud.cloud, "ready" if not reasons else "NOT READY", "; ".join(reasons)])
        if reasons:
            skipped.append(GateSkip(vm=vm, reason="; ".join(reasons)))
        else:
            ready.append(_target(vm, cloud, item, network_id, network_name))
    plans = [_plan_gate(site, hook, plan, members, unattended, rows) for plan in site.recovery_plans if chosen(plan)]
    for plan in plans:
        if plan.skipped:
            skipped += [GateSkip(vm=vm, reason=f"plan {plan.plan} skipped: {plan.skipped}")
                        for vm in site.plan_named(plan.plan).vms]
    leftovers = context["ti"].xcom_pull(task_ids="clean_leftovers", key="leftovers") or []
    drilled_plans = [plan for plan in plans if plan.skipped is None]
    gate = DrillGate(checked=len(rows), passed=len(ready) + sum(len(p.members) for p in drilled_plans),
                     skipped=skipped, leftovers_cleaned=[LeftoverCleanup.model_validate(x) for x in leftovers],
                     test_network=network_name, started_at=now, targets=ready, plans=plans, unattended=unattended)
    context["ti"].xcom_push(key="gate", value=gate)
    log.info("Readiness gate, site %s (test network: %s%s):\n%s", site.name, network_name or "none (isolated VMs)",
             ", unattended" if unattended else "",
             table(["VM", "Cloud", "Gate", "Why not"], rows) if rows else "  (no protected VM in scope)")
    if skipped and drill.on_gate_failure == "fail":
        raise DrillFailed(f"{len(skipped)} VM(s) failed the readiness gate and drill.on_gate_failure is fail: "
                          + "; ".join(f"{s.vm}: {s.reason}" for s in skipped))
    if skipped:
        log.warning("%d VM(s) are skipped (drill.on_gate_failure: skip) and reported.", len(skipped))
    if not ready and not drilled_plans:
        raise DrillFailed("No VM passed the readiness gate: there is nothing to drill.")
    return ready


def _unattended(context: Any) -> bool:
    """A scheduled run is unattended; so is a run whose ``unattended`` param asks to behave as one."""
    run = context.get("dag_run")
    return str(getattr(run, "run_type", "")) == "scheduled" or bool((context.get("params") or {}).get("unattended"))


def _target(vm: str, cloud: PairedCloud, item: ProtectedItemSummary, network_id: str | None,
            network_name: str | None) -> VmTarget:
    from site_recovery.records import VmTarget

    return VmTarget(vm=vm, cloud=cloud.cloud, fabric=cloud.fabric, container=cloud.container, item_name=item.name,
                    item_id=item.id, protectable_item_id=item.protectable_item_id, policy_id=cloud.policy_id,
                    network_id=network_id, network=network_name)


def _plan_gate(site: Site, hook: AzureSiteRecoveryHook, plan: RecoveryPlan,
               members: dict[str, tuple[VmTarget, list[str]]], unattended: bool, rows: list) -> PlanDrillTarget:
    """One plan at the gate: in the vault as the site file has it, every member ready, and who confirms its actions."""
    from site_recovery.records import PlanDrillTarget
    from site_recovery.recovery_plans import desired_groups, plan_differences

    reasons, targets, ids, names = [], [], {}, {}
    for vm in plan.vms:
        found = members.get(vm.casefold())
        if found is None:
            reasons.append(f"{vm}: not protected in scope")
            rows.append([vm, f"plan {plan.name}", "NOT READY", "not protected in scope"])
            continue
        target, why = found
        rows.append([vm, f"plan {plan.name}", "ready" if not why else "NOT READY", "; ".join(why)])
        if why:
            reasons.append(f"{vm}: {'; '.join(why)}")
        targets.append(target)
    if not reasons:
        held = hook.get_recovery_plan_or_none(site.azure.resource_group, site.azure.vault_name, plan.name)
        if held is None:
            reasons.append(f"recovery plan {plan.name} is not in vault {site.azure.vault_name}: run the deployment "
                           "(or enable replication) first")
        else:
            for target in targets:
                ids[target.vm.casefold()] = target.item_id or ""
                names[(target.item_id or "").casefold()] = target.vm
            diffs = plan_differences(desired_groups(plan, ids), held, names)
            if diffs:
                reasons.append(f"the vault's plan differs from the site file ({'; '.join(diffs)}): run the "
                               "deployment to update it")
            elif held.scenario_job:
                reasons.append(f"ASR job {held.scenario_job} runs on the plan")
    # Only the manual actions a test failover meets need a person: one for planned failover alone does not.
    needs_a_person = unattended and bool(plan.manual_actions("test", "primary_to_recovery"))
    if not reasons and needs_a_person and plan.unattended == "skip":
        reasons.append("unattended drill, and the plan's manual actions need a person (unattended: skip)")
    auto = needs_a_person and plan.unattended == "auto_confirm"
    if reasons:
        log.warning("Recovery plan %s is skipped: %s.", plan.name, "; ".join(reasons))
    return PlanDrillTarget(plan=plan.name, members=targets if not reasons else [], auto_confirm=auto,
                           skipped="; ".join(reasons) or None)


# ---------------------------------------------------------------------------------- cleanup
@task
@sort_errors
def start_cleanup(site_name: str) -> list[str]:
    """Teardown: clean up every test failover of the drilled VMs, whatever happened before; return the jobs.

    A test failover still running (the run was stopped mid-drill) is cancelled and awaited first,
    since ASR allows cleanup only once it has ended. Pushes ``cleanup_jobs`` (VM -> job name).
    """
    from site_recovery.site import load_site_named

    context = get_current_context()
    site = load_site_named(site_name)
    hook = drill_hook(site)
    gate = pulled_gate(context["ti"])
    jobs: dict[str, str] = {}
    for plan in gate.plans if gate else []:
        if plan.skipped is None:
            job = _clean_up_plan(hook, site, plan.plan, f"Drill cleanup by {run_label(context)}")
            if job:
                jobs[plan_cleanup_key(plan.plan)] = job
    for t in gate.targets if gate else []:
        job = clean_up_test_failover(hook, site, t, f"Drill cleanup by {run_label(context)}")
        if job:
            jobs[t.vm] = job
    context["ti"].xcom_push(key="cleanup_jobs", value=jobs)
    return list(jobs.values())


def clean_up_test_failover(hook: AzureSiteRecoveryHook, site: Site, t: VmTarget, comment: str) -> str | None:
    """Clean up one drilled VM's test failover, whatever state the drill left it in; the job to wait on, or None.

    A test failover still running is cancelled and awaited first (ASR cleans up only an ended one).
    A cleanup already running (this task's retry, or the teardown after the VM's own cleanup) is the
    job returned: a second one is never started.
    """
    from site_recovery.drill import has_leftover_test_failover
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.vocabulary import Scenario

    az = site.azure
    args = (az.resource_group, az.vault_name, t.fabric, t.container, t.item_name)
    item = summarize_protected_item(hook.get_protected_item(*args))
    if item.scenario == Scenario.TEST_FAILOVER_CLEANUP and item.scenario_job:
        log.info("VM %r: its test failover cleanup is already running (job %s); waiting on it.", t.vm,
                 item.scenario_job)
        return item.scenario_job
    # The item keeps TestFailover as its scenario while it waits for cleanup; only a running job matters.
    if item.running_test_failover_job:
        item = _end_running_test_failover(hook, site, args, item)
    if not has_leftover_test_failover(item):
        log.info("VM %r: nothing to clean up (%s).", t.vm, item.test_failover_state_description
                 or item.test_failover_state or "no test failover")
        return None
    job = _start_cleanup(hook, site, t.fabric, t.container, item, comment)
    log.info("VM %r: test failover cleanup started (job %s).", t.vm, job)
    return job


def plan_cleanup_key(plan: str) -> str:
    """How ``cleanup_jobs`` names a plan's cleanup (VMs are named as they are)."""
    return f"plan {plan}"


def _clean_up_plan(hook: AzureSiteRecoveryHook, site: Site, plan: str, comment: str,
                   held: RecoveryPlanSummary | None = None) -> str | None:
    """Clean up a plan's test failover (ending its job first if it still runs); the cleanup job, or None.

    ``held``: the plan as the caller has just read it (read here otherwise).
    """
    from site_recovery.hooks.asr import ASR_COMMENT_LIMIT
    from site_recovery.vocabulary import AllowedOperation

    az = site.azure
    held = held or hook.get_recovery_plan_or_none(az.resource_group, az.vault_name, plan)
    if held is None:
        return None
    if held.scenario_job:
        _end_job(hook, site, held.scenario_job, f"recovery plan {plan}")
        held = hook.get_recovery_plan_or_none(az.resource_group, az.vault_name, plan)
    if held is None or AllowedOperation.TEST_FAILOVER_CLEANUP not in held.allowed_operations:
        log.info("Recovery plan %r: nothing to clean up.", plan)
        return None
    job = hook.recovery_plan_test_failover_cleanup(az.resource_group, az.vault_name, plan,
                                                   {"properties": {"comments": comment[:ASR_COMMENT_LIMIT]}})
    log.info("Recovery plan %r: test failover cleanup started (job %s).", plan, job)
    return job


def _end_job(hook: AzureSiteRecoveryHook, site: Site, job: str, what: str) -> None:
    """A drill job that still runs (the drill was stopped, a manual action refused): cancel it, wait for its end."""
    from site_recovery.hooks.asr import is_azure_error, summarize_job

    az = site.azure
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    if summary.ended:
        return
    if summary.cancellable:
        log.warning("%s: the drill was stopped while its test failover ran (%s); cancelling job %s.", what,
                    summary.state, job)
        try:
            hook.cancel_job(az.resource_group, az.vault_name, job)
        except Exception as exc:
            # The stopped wait's on_kill (or a person in the portal) may have cancelled it since the read above:
            # ASR then refuses a second cancel. Only a job that could still be cancelled makes the refusal ours.
            if not is_azure_error(exc) or summarize_job(hook.get_job(az.resource_group, az.vault_name,
                                                                     job)).cancellable:
                raise
            log.info("%s: job %s was ended by someone else meanwhile; ASR refused a second cancel.", what, job)
    deadline = time.time() + site.timeouts.asr_job.total_seconds()
    while time.time() < deadline:
        if summarize_job(hook.get_job(az.resource_group, az.vault_name, job)).ended:
            return
        time.sleep(min(site.timeouts.poll_interval.total_seconds(), 10))
    raise DrillFailed(f"{what}: its test failover job {job} did not end within {site.timeouts.asr_job}; "
                      "clean it up by hand once it has (Cleanup test failover in the vault).")


def _end_running_test_failover(hook: AzureSiteRecoveryHook, site: Site, args: tuple,
                               item: ProtectedItemSummary) -> ProtectedItemSummary:
    """If the item's test failover job still runs (the drill was stopped), cancel it and wait for it to end.

    The item is read again afterwards: only the item as it is now says whether a test VM is left.
    """
    from site_recovery.hooks.asr import summarize_protected_item

    _end_job(hook, site, item.running_test_failover_job, f"VM {item.vm!r}")
    return summarize_protected_item(hook.get_protected_item(*args))


@task(trigger_rule="all_done")
@sort_errors
def verify_cleanup(site_name: str) -> CleanupProof:
    """Prove the cleanup: no drilled VM is left in a test failover, and the recovery VMM holds no test VM.

    Returns and pushes (``proof``) the :class:`~site_recovery.records.CleanupProof`, then fails
    when anything was left behind.
    """
    from site_recovery.site import load_site_named

    context = get_current_context()
    site = load_site_named(site_name)
    gate = pulled_gate(context["ti"])
    proof = prove_cleanup(site, drill_hook(site), _recovery_vmm(site), gate.drilled if gate else [])
    context["ti"].xcom_push(key="proof", value=proof)
    in_failover, test_vms = proof.items_in_test_failover, proof.test_vms_left
    if in_failover or test_vms:
        raise DrillFailed("The drill left things behind: " + "; ".join(filter(None, [
            f"still in a test failover: {', '.join(in_failover)}" if in_failover else "",
            f"test VMs on {site.recovery.vmm.fqdn}: {', '.join(test_vms)}" if test_vms else ""])))
    log.info("Cleanup verified for %d VM(s): no active test failover, no test VM on %s.", len(proof.per_vm),
             site.recovery.vmm.fqdn)
    return proof


def prove_cleanup(site: Site, hook: AzureSiteRecoveryHook, vmm: VmmScriptHook,
                  drilled: list[VmTarget]) -> CleanupProof:
    """Look, as ASR and the recovery VMM see them now, whether the drilled VMs left a test failover or a test VM."""
    from site_recovery.drill import name_of_test_vm, utc_now
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.records import CleanupCheck, CleanupProof

    az = site.azure
    # One list per drilled cloud reads every drilled VM's item (200 VMs: a few requests, not 200).
    items: dict[tuple[str, str, str], ProtectedItemSummary] = {}
    for fabric, container in dict.fromkeys((t.fabric, t.container) for t in drilled):
        for listed in hook.list_protected_items(az.resource_group, az.vault_name, fabric, container):
            item = summarize_protected_item(listed)
            items[fabric, container, item.name.casefold()] = item
    # One inventory of the recovery VMM shows every test VM left (one WinRM run, not one per VM).
    on_vmm = {vm.name.casefold(): vm for vm in vmm.run_script("Get-VmmInventory", {}).vms}
    in_failover, test_vms, per_vm = [], [], {}
    for t in drilled:
        item = items.get((t.fabric, t.container, t.item_name.casefold()))
        left_in_failover = item is not None and item.in_test_failover
        test_vm = on_vmm.get(name_of_test_vm(t.vm).casefold())
        if left_in_failover:
            in_failover.append(t.vm)
        if test_vm is not None:
            test_vms.append(test_vm.name)
        per_vm[t.vm] = CleanupCheck(
            verified=not left_in_failover and test_vm is None,
            detail="; ".join([
                f"test failover still {item.test_failover_state}" if left_in_failover
                else "no active test failover" if item is not None
                else "no longer protected, so in no test failover",
                f"test VM '{test_vm.name}' ({test_vm.state} on {test_vm.host}) still on {site.recovery.vmm.fqdn}"
                if test_vm is not None else "no test VM on the recovery VMM"]))
    return CleanupProof(verified_at=utc_now(), items_in_test_failover=in_failover, test_vms_left=test_vms,
                        per_vm=per_vm)
