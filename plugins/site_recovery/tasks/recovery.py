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
from site_recovery.tasks.common import sort_errors

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import RecoveryAssessment, VmmAnswer, VmTarget
    from site_recovery.site import Site, VmmSite
    from site_recovery.vocabulary import FailoverDirection, RecoveryStep

log = logging.getLogger(__name__)

#: The DAG families that change a site's replication, at most one run of them at a time per site.
FAILOVER_FAMILY, FAILBACK_FAMILY, DRILL_FAMILY = "asr_failover", "asr_failback", "asr_test_failover_drill"
ASSESS_TASK = "assess"
#: the mapped task group of the failover per VM, and its verification task
FAILOVER_GROUP = "fail_over_vm"
VERIFY_TASK = f"{FAILOVER_GROUP}.verify"
#: Seconds the assessment gives a VMM server to answer (a dead one is given up on after about six times this).
REACHABILITY_READ_TIMEOUT = 10


def recovery_hook(site: Site, direction: FailoverDirection, *steps: RecoveryStep) -> AzureSiteRecoveryHook:
    """An ASR hook that may read, and send only the writes of ``steps`` in ``direction`` (none: read only)."""
    from site_recovery.failover import recovery_guard
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=recovery_guard(direction, *steps))


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

    Reads every protected VM of the site's paired clouds, asks both VMM servers for their inventory
    (the one the recovery leaves must answer for a planned failover; for an unplanned one its
    silence is what a site outage looks like), and counts the site's active drill, failover and
    failback runs. Logs the assessment as a table and pushes it as ``assessment`` (a
    :class:`~site_recovery.records.RecoveryAssessment`, which the failover approval shows). Any
    problem (a wrong confirmation, an unknown VM, a VM in a state the recovery cannot start from,
    a concurrent run, a planned failover whose source site does not answer) fails the run here,
    every problem named, before anything changes. Returns the VMs, as mapped tasks' targets.
    """
    from site_recovery.drill import utc_now
    from site_recovery.failover import assess_vm, assessment_markdown, run_problems, sides
    from site_recovery.pairings import protected_items_in_scope
    from site_recovery.records import RecoveryAssessment, VmTarget
    from site_recovery.site import load_site_named
    from site_recovery.vocabulary import FailoverDirection, FailoverKind

    context = get_current_context()
    params = context.get("params") or {}
    site, direction = load_site_named(site_name), FailoverDirection(direction)
    kind = FailoverKind(params.get("kind") or FailoverKind.PLANNED)
    requested = [name.strip() for name in params.get("vms") or [] if name and name.strip()]
    leaves, goes_to = (getattr(site, side) for side in sides(direction))
    source, target = vmm_answer(leaves), vmm_answer(goes_to)
    log.info("VMM server of the site the recovery leaves: %s %s (%s).", source.server,
             "answers" if source.answered else "does not answer", source.detail)
    items = protected_items_in_scope(recovery_hook(site, direction), site)
    now, by_name = utc_now(), {(item.vm or item.name).casefold(): (cloud, item) for cloud, item in items}
    vms = []
    for name in requested:
        found = by_name.get(name.casefold())
        if found is None:
            continue  # named by run_problems
        cloud, item = found
        vm_target = VmTarget(vm=item.vm or name, cloud=cloud.cloud, fabric=cloud.fabric, container=cloud.container,
                             item_name=item.name, item_id=item.id, protectable_item_id=item.protectable_item_id,
                             policy_id=cloud.policy_id)
        vms.append(assess_vm(item, vm_target, direction, kind, now))
    assessment = RecoveryAssessment(
        site=site.name, direction=direction, kind=kind, assessed_at=now, source_vmm=source, target_vmm=target,
        vms=vms, problems=run_problems(
            site=site.name, confirmation=str(params.get("confirm_site") or ""), approvers=site.failover.approvers,
            requested=requested, known=[item.vm or item.name for _, item in items],
            busy_runs=_busy_runs(context["ti"], site, context["dag"].dag_id), kind=kind,
            source_answered=source.answered))
    context["ti"].xcom_push(key="assessment", value=assessment)
    log.info("Assessment:\n%s", assessment_markdown(assessment))
    problems = assessment.all_problems()
    if problems:
        raise RecoveryRefused("The recovery cannot start; nothing was changed:\n"
                              + "\n".join(f"- {problem}" for problem in problems))
    return [vm.target for vm in vms]
