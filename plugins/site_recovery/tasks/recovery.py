"""The tasks of a real recovery (failover and failback): the assessment, and the guarded ASR client of each step.

The decisions are :mod:`site_recovery.failover`'s; the approvals and steps are operators
(:mod:`site_recovery.operators.recovery`), the verification a sensor
(:class:`~site_recovery.sensors.recovery.RecoveredVmVerifiedSensor`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from site_recovery.exceptions import RecoveryRefused, VmmError
from site_recovery.tasks.common import mapped_xcoms, sort_errors

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import (
        JobSummary,
        ManualActionOutcome,
        RecoveryAssessment,
        RecoveryVm,
        TestVmCheck,
        VmmAnswer,
        VmTarget,
    )
    from site_recovery.site import Site, VmmSite
    from site_recovery.vocabulary import FailoverDirection, RecoveryStep

log = logging.getLogger(__name__)

#: The DAG families that change a site's replication, at most one run of them at a time per site.
FAILOVER_FAMILY, FAILBACK_FAMILY, DRILL_FAMILY = "asr_failover", "asr_failback", "asr_test_failover_drill"
ASSESS_TASK = "assess"
#: the mapped task group of the failover per VM, and its verification task
FAILOVER_GROUP, COMMIT_GROUP, REPROTECT_GROUP = "fail_over_vm", "commit_vm", "reprotect_vm"
VERIFY_TASK = f"{FAILOVER_GROUP}.verify"

#: Seconds the assessment gives a VMM server to answer (a dead one is given up on after about six times this).
REACHABILITY_READ_TIMEOUT = 10


def recovery_hook(site: Site, direction: FailoverDirection, *steps: RecoveryStep) -> AzureSiteRecoveryHook:
    """An ASR hook that may read, and send only the writes of ``steps`` in ``direction`` (none: read only)."""
    from site_recovery.failover import recovery_guard
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=recovery_guard(direction, *steps))


def resume_hook(site: Site, job_name: str) -> AzureSiteRecoveryHook:
    """An ASR hook that may read, and resume the plan job ``job_name`` past the pause it waits at, nothing else."""
    from site_recovery.failover import resume_guard
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=resume_guard(job_name))


def live_job(site: Site, job_name: str) -> JobSummary:
    """The job as ASR shows it now (a pause's task reads it again: its wait's copy may be stale on a retry)."""
    from site_recovery.failover import reads_only
    from site_recovery.hooks.asr import AzureSiteRecoveryHook, summarize_job

    hook = AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=reads_only)
    return summarize_job(hook.get_job(site.azure.resource_group, site.azure.vault_name, job_name))


def recovery_plan_group(plan: str) -> str:
    """The task group of one recovery plan in a failover or failback DAG."""
    from site_recovery.site_dags import slug

    return f"plan_{slug(plan)}"


def verify_task_ids(site: Site) -> list[str]:
    """Every task that verifies recovered VMs: the one-by-one VMs', then each plan's per boot group."""
    from site_recovery.site_dags import group_task_ids

    return [VERIFY_TASK, *(f"{recovery_plan_group(plan.name)}.{group_task_ids(group.group)[1]}"
                           for plan in site.recovery_plans for group in plan.groups)]


def family_of(direction: FailoverDirection) -> str:
    from site_recovery.vocabulary import FailoverDirection

    return FAILOVER_FAMILY if direction == FailoverDirection.PRIMARY_TO_RECOVERY else FAILBACK_FAMILY


def vmm_answer(side: VmmSite) -> VmmAnswer:
    """Whether a site's VMM server answers one ``Get-VmmInventory``, and what it said (or why not)."""
    from site_recovery.hooks.vmm import VmmScriptHook
    from site_recovery.records import VmmAnswer

    hook = VmmScriptHook(side.vmm.psrp_conn_id, operation_timeout=REACHABILITY_READ_TIMEOUT - 2,
                         read_timeout=REACHABILITY_READ_TIMEOUT)
    try:
        inventory = hook.run_script("Get-VmmInventory")
    except VmmError as exc:
        return VmmAnswer(server=side.vmm.fqdn, answered=False, detail=str(exc).splitlines()[0][:500])
    return VmmAnswer(server=side.vmm.fqdn, answered=True, detail=inventory.summary())


def pulled_assessment(ti: Any) -> RecoveryAssessment | None:
    """The assessment as the assess task pushed it (None when it did not get that far)."""
    from site_recovery.records import RecoveryAssessment

    found = ti.xcom_pull(task_ids=ASSESS_TASK, key="assessment")
    return None if found is None else RecoveryAssessment.model_validate(found)


def _busy_runs(ti: Any, site: Site, own: str) -> dict[str, int]:
    """Active runs of the site's other DAGs that change its replication (its drill, the other direction)."""
    return {dag_id: ti.get_dr_count(dag_id=dag_id, states=["queued", "running"])
            for dag_id in (site.dag_id(DRILL_FAMILY), site.dag_id(FAILOVER_FAMILY), site.dag_id(FAILBACK_FAMILY))
            if dag_id != own}


@task(task_id=ASSESS_TASK, retries=1)
@sort_errors
def assess(site_name: str, direction: str) -> list[VmTarget]:
    """Step 1 of a recovery, no change: where each named VM stands, what a failover would lose, who answers.

    Reads every protected VM of the site's paired clouds (the VMs named one by one, and the members
    of each recovery plan named, which must exist in the site file and the vault and whose members
    must stand at one stage: a plan's step is one ASR job), asks both VMM servers for their inventory
    (the one the recovery leaves must answer for a planned failover; for an unplanned one its
    silence is what a site outage looks like), and counts the site's active drill, failover and
    failback runs. Logs the assessment as a table and pushes it as ``assessment`` (a
    :class:`~site_recovery.records.RecoveryAssessment`, which the failover approval shows). Any
    problem (a wrong confirmation, an unknown VM, a VM in a state the recovery cannot start from,
    a concurrent run, a planned failover whose source site does not answer) fails the run here,
    every problem named, before anything changes. Returns the VMs named one by one, as mapped tasks'
    targets (each plan's task group reads its members from the assessment).
    """
    from site_recovery.drill import utc_now
    from site_recovery.failover import assess_vm, assessment_markdown, plan_stage_problems, run_problems, sides
    from site_recovery.pairings import protected_items_in_scope
    from site_recovery.records import RecoveryAssessment, VmTarget
    from site_recovery.site import load_site_named
    from site_recovery.vocabulary import FailoverDirection, FailoverKind

    context = get_current_context()
    params = context.get("params") or {}
    site, direction = load_site_named(site_name), FailoverDirection(direction)
    kind = FailoverKind(params.get("kind") or FailoverKind.PLANNED)
    requested = [name.strip() for name in params.get("vms") or [] if name and name.strip()]
    requested_plans = [name.strip() for name in params.get("plans") or [] if name and name.strip()]
    leaves, goes_to = (getattr(site, side) for side in sides(direction))
    source, target = vmm_answer(leaves), vmm_answer(goes_to)
    log.info("VMM server of the site the recovery leaves: %s %s (%s).", source.server,
             "answers" if source.answered else "does not answer", source.detail)
    hook = recovery_hook(site, direction)
    items = protected_items_in_scope(hook, site)
    now, by_name = utc_now(), {(item.vm or item.name).casefold(): (cloud, item) for cloud, item in items}

    def assessed(name: str, plan: str | None = None) -> RecoveryVm | None:
        found = by_name.get(name.casefold())
        if found is None:
            return None  # named by run_problems (one by one) or plan_stage_problems (a plan's member)
        cloud, item = found
        vm_target = VmTarget(vm=item.vm or name, cloud=cloud.cloud, fabric=cloud.fabric, container=cloud.container,
                             item_name=item.name, item_id=item.id, protectable_item_id=item.protectable_item_id,
                             policy_id=cloud.policy_id)
        return assess_vm(item, vm_target, direction, kind, now).model_copy(update={"plan": plan})

    vms = [vm for vm in map(assessed, requested) if vm is not None]
    in_file = {plan.name.casefold(): plan for plan in site.recovery_plans}
    plans = list({name.casefold(): in_file[name.casefold()] for name in requested_plans
                  if name.casefold() in in_file}.values())
    held = {plan.name: hook.get_recovery_plan_or_none(site.azure.resource_group, site.azure.vault_name, plan.name)
            for plan in plans}
    plan_problems = []
    for plan in plans:
        members = [vm for vm in (assessed(name, plan.name) for name in plan.vms) if vm is not None]
        vms += members
        plan_problems += plan_stage_problems(plan.name, members, plan.vms)
        if held[plan.name] is not None and len(members) == len(plan.vms):
            plan_problems += _vault_plan_problems(plan, held[plan.name], members, {
                item.id.casefold(): item.vm or item.name for _, item in items if item.id})
    assessment = RecoveryAssessment(
        site=site.name, direction=direction, kind=kind, assessed_at=now, source_vmm=source, target_vmm=target,
        vms=vms, plans=[plan.name for plan in plans], problems=run_problems(
            site=site.name, confirmation=str(params.get("confirm_site") or ""), approvers=site.failover.approvers,
            requested=requested, known=[item.vm or item.name for _, item in items],
            busy_runs=_busy_runs(context["ti"], site, context["dag"].dag_id), kind=kind,
            source_answered=source.answered, requested_plans=requested_plans,
            plans={plan.name: plan.vms for plan in site.recovery_plans},
            vault_plans=[name for name, found in held.items() if found is not None]) + plan_problems)
    context["ti"].xcom_push(key="assessment", value=assessment)
    log.info("Assessment:\n%s", assessment_markdown(assessment))
    problems = assessment.all_problems()
    if problems:
        raise RecoveryRefused("The recovery cannot start; nothing was changed:\n"
                              + "\n".join(f"- {problem}" for problem in problems))
    return [vm.target for vm in vms if vm.plan is None]


def _vault_plan_problems(plan: Any, held: Any, members: list[RecoveryVm], names: dict[str, str]) -> list[str]:
    """Why the vault's plan is not the one assessed: ASR fails over what the vault holds (its VMs, its actions),
    so a plan that drifted from the site file would move VMs nobody assessed or stop at pauses no task answers.

    :param names: VM names by protected item id (casefolded), every protected VM of the site, for the message.
    """
    from site_recovery.recovery_plans import desired_groups, plan_differences

    ids = {vm.vm.casefold(): vm.target.item_id or "" for vm in members}
    diffs = plan_differences(desired_groups(plan, ids), held, names)
    if not diffs:
        return []
    return [f"recovery plan {plan.name}: the vault's plan differs from the site file ({'; '.join(diffs)}); run the "
            "deployment DAG to update it, or recover its VMs one by one"]


# -------------------------------------------------------------------------------- the report
def recovery_report(site_name: str, direction: str) -> dict[str, str]:
    """Write the run's recovery report (JSON + HTML, beside the drill reports); runs whatever happened before.

    Reads what every task recorded (the assessment, each approval, each VM's jobs and verification)
    and where each VM stands in ASR now, with a read-only client. Returns the report's paths.
    """
    from site_recovery.drill import utc_now
    from site_recovery.failover import last_sync_runs, run_outcome, sides, stage_of
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.operators.recovery import approval_task_id
    from site_recovery.records import (
        JobSummary,
        RecoveryApproval,
        RecoveryPlanResult,
        RecoveryReport,
        RecoveryVmResult,
        TestVmCheck,
        seconds_between,
    )
    from site_recovery.recovery_report import write_recovery_report
    from site_recovery.site import load_site_named
    from site_recovery.report_store import reports_root
    from site_recovery.vocabulary import FailoverDirection, FailoverKind, RecoveryStage, RecoveryStep

    context = get_current_context()
    ti, params = context["ti"], context.get("params") or {}
    site, direction = load_site_named(site_name), FailoverDirection(direction)
    assessment = pulled_assessment(ti)
    kind = assessment.kind if assessment else FailoverKind(params.get("kind") or FailoverKind.PLANNED)
    approvals = []
    for step in (RecoveryStep.FAILOVER, RecoveryStep.COMMIT, RecoveryStep.REPROTECT):
        pushed = ti.xcom_pull(task_ids=approval_task_id(step), key="approval")
        if pushed:
            approvals.append(RecoveryApproval.model_validate(pushed))
    by_step = {approval.step: approval for approval in approvals}
    approved_at = by_step[RecoveryStep.FAILOVER].at if RecoveryStep.FAILOVER in by_step else None
    leaves, goes_to = sides(direction)
    vms_assessed = assessment.vms if assessment else []
    one_by_one = [vm for vm in vms_assessed if vm.plan is None]  # the mapped tasks' targets, in their order
    count = len(one_by_one)

    def jobs(task_id: str) -> list[JobSummary | None]:
        return [None if value is None else JobSummary.model_validate(value)
                for value in mapped_xcoms(ti, task_id, count)]

    def plan_job(plan: str, task_id: str) -> JobSummary | None:
        value = ti.xcom_pull(task_ids=f"{recovery_plan_group(plan)}.{task_id}")
        return None if value is None else JobSummary.model_validate(value)

    failovers, commits, reprotects = (jobs(f"{FAILOVER_GROUP}.wait_failover"), jobs(f"{COMMIT_GROUP}.wait_commit"),
                                      jobs(f"{REPROTECT_GROUP}.wait_reprotect"))
    checks = [None if value is None else TestVmCheck.model_validate(value)
              for value in mapped_xcoms(ti, VERIFY_TASK, count, key="verify")]
    plan_jobs = {plan: [plan_job(plan, task_id) for task_id in ("wait_failover", "wait_commit", "wait_reprotect")]
                 for plan in (assessment.plans if assessment else [])}
    plan_checks = {check.vm_name.casefold(): check for check in pulled_checks(ti, verify_task_ids(site)[1:])
                   if check.vm_name}
    hook, az = recovery_hook(site, direction), site.azure
    synced = last_sync_runs(kind, bool(assessment and assessment.source_vmm.answered))
    results = []
    for assessed in vms_assessed:
        t = assessed.target
        item = summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, t.fabric,
                                                                t.container, t.item_name))
        if assessed.plan is None:
            i = one_by_one.index(assessed)
            failover, commit, reprotect, check = failovers[i], commits[i], reprotects[i], checks[i]
        else:
            failover, commit, reprotect = plan_jobs[assessed.plan]
            check = plan_checks.get(t.vm.casefold())
        stage = stage_of(item, direction)
        if failover is None:  # not failed over by this run (refused, rejected, or done by an earlier run)
            point, lost = None, None
        elif synced:  # the VMs shut down and a last sync ran as the failover started
            point, lost = failover.start_time, 0.0
        else:
            point = assessed.last_replicated_time
            lost = seconds_between(point, failover.start_time)
        replicating = {RecoveryStage.REPROTECTED: f"{goes_to} to {leaves}",
                       RecoveryStage.READY: f"{leaves} to {goes_to}",
                       RecoveryStage.REPROTECTING: f"{goes_to} to {leaves} (initial replication)"}.get(stage)
        results.append(RecoveryVmResult(
            vm=t.vm, stage=stage, protection=item.protection_state_description or str(item.protection_state or ""),
            replication_health=item.replication_health, active_location=item.active_location,
            replication_direction=replicating or "not replicating", recovery_point_time=point, data_loss_seconds=lost,
            rto_seconds=seconds_between(approved_at, check.verified_at) if check and check.ok else None,
            verify=check, plan=assessed.plan,
            jobs=[job for job in (failover, commit, reprotect) if job is not None and assessed.plan is None]))
    plans = [RecoveryPlanResult(plan=plan, vms=[vm.vm for vm in assessment.members(plan)],
                                jobs=[job for job in plan_jobs[plan] if job is not None],
                                actions=_plan_actions(ti, site.plan_named(plan), direction))
             for plan in (assessment.plans if assessment else [])]
    completed, outcome = run_outcome(assessment, by_step, results)
    report = RecoveryReport(
        site=site.name, dag_id=context["dag"].dag_id, run_id=context["run_id"], direction=direction, kind=kind,
        started_at=context["dag_run"].start_date, ended_at=utc_now(), assessment=assessment, approvals=approvals,
        vms=results, plans=plans, completed=completed, outcome=outcome)
    return write_recovery_report(reports_root(), report)



def pulled_checks(ti: Any, task_ids: list[str]) -> list[TestVmCheck]:
    """What the verifications of ``task_ids`` (mapped or not) saw last of each VM (none before they ran)."""
    from site_recovery.records import TestVmCheck

    checks = []
    for task_id in task_ids:
        found = ti.xcom_pull(task_ids=task_id, key="verify")
        checks += [TestVmCheck.model_validate(check) for check in (found if isinstance(found, list) else [found])
                   if check]
    return checks


def _plan_actions(ti: Any, plan: Any, direction: FailoverDirection) -> list[ManualActionOutcome]:
    """How each pause of a plan's failover job was answered: its manual actions, and its Airflow checks."""
    from site_recovery.failover import site_file_direction
    from site_recovery.records import ManualActionOutcome, TestVmCheck
    from site_recovery.site import PlanAction
    from site_recovery.site_dags import pause_task_id

    outcomes = []
    for step in plan.job_order(None, site_file_direction(direction)):
        if not isinstance(step, PlanAction):
            continue
        found = ti.xcom_pull(task_ids=f"{recovery_plan_group(plan.name)}.{pause_task_id(step.kind, step.name)}",
                             key="verify" if step.kind == "check" else "outcome")
        if not found:
            continue
        if step.kind == "manual":
            outcomes.append(ManualActionOutcome.model_validate(found))
            continue
        check = TestVmCheck.model_validate(found)
        outcomes.append(ManualActionOutcome(plan=plan.name, action=step.name, confirmed=check.ok, by="Airflow check",
                                            at=check.verified_at or check.ended_at, comment=check.detail))
    return outcomes
