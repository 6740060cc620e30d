"""The drill's last tasks: gather what every task recorded, decide the verdict, write and publish the report.

:func:`drill_report` always succeeds (so the report's Asset event is published for failed
drills too); :func:`check_verdict` then fails the run when the verdict is FAIL. The verdict is
:func:`site_recovery.drill_verdict.verdict_of`'s, from the per-VM results of
:func:`site_recovery.drill.vm_result`.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context
from site_recovery.exceptions import DrillFailed
from site_recovery.site_dags import group_task_ids, pause_task_id, plan_task_group
from site_recovery.tasks.drill import drill_hook, pulled_gate

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from site_recovery.records import (
        CleanupProof,
        DrillGate,
        DrillOutcomeSummary,
        DrillReport,
        JobSummary,
        PlanDrillResult,
        PlanDrillTarget,
        TaskTiming,
        VmDrillResult,
        VmTarget,
    )
    from site_recovery.site import RecoveryPlan, Site

log = logging.getLogger(__name__)
#: The task group mapped over the gate's targets.
GROUP = "drill_vm"


def report_asset_uri(site_name: str) -> str:
    """The Asset each drill of a site updates (other DAGs may schedule on it)."""
    return f"asr://drill-report/{site_name}"


def report_asset(site_name: str) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=f"asr_drill_report__{site_name}", uri=report_asset_uri(site_name))


def _mapped(ti: Any, task_id: str, count: int, key: str = "return_value") -> list[Any]:
    """One XCom per mapped VM of the drill's group (None where a VM's task pushed nothing)."""
    from site_recovery.tasks.common import mapped_xcoms

    return mapped_xcoms(ti, f"{GROUP}.{task_id}", count, key)


def _records(record: type, values: list[Any]) -> list[Any]:
    return [None if value is None else record.model_validate(value) for value in values]


def _task_timings(ti: Any, context: Any, targets: dict[str, list[VmTarget]]) -> list[TaskTiming]:
    """State and duration of every task of the run that has ended, mapped ones labelled by VM.

    ``targets``: the VMs each mapped task (by task id) or mapped task group (by group id) is mapped over.
    """
    from site_recovery.records import TaskTiming

    try:
        crumbs = list(ti.get_task_breadcrumbs(context["dag"].dag_id, context["run_id"]))
    except Exception as exc:  # the timings are a courtesy: a report without them beats no report
        log.warning("Could not read the run's task timings: %s", exc)
        return []
    rows = []
    for crumb in crumbs:
        index = crumb.get("map_index")
        task_id = str(crumb.get("task_id") or "")
        mapped = targets.get(task_id) or targets.get(task_id.split(".", 1)[0], [])
        label = mapped[index].vm if isinstance(index, int) and 0 <= index < len(mapped) else None
        rows.append(TaskTiming(task_id=crumb.get("task_id"), map_index=label, state=crumb.get("state"),
                               duration_seconds=crumb.get("duration")))
    return rows


def build_report(site: Site, context: Any) -> DrillReport:
    """The run's :class:`~site_recovery.records.DrillReport`, from what each task pushed."""
    from site_recovery.drill import skipped_result, utc_now, vm_result
    from site_recovery.drill_verdict import verdict_of
    from site_recovery.hooks.asr import summarize_job
    from site_recovery.records import (
        CleanupProof,
        DrillReport,
        GateSummary,
        JobSummary,
        RecoveryTargets,
        TestVmCheck,
    )
    from site_recovery.vocabulary import DrillVerdict

    ti, run = context["ti"], context["dag_run"]
    gate = pulled_gate(ti)
    targets = gate.targets if gate else []
    n = len(targets)
    failovers: list[JobSummary | None] = _records(JobSummary, _mapped(ti, "wait_test_failover", n))
    failover_jobs = _mapped(ti, "wait_test_failover", n, key="asr_job_name")
    verifies = _records(TestVmCheck, _mapped(ti, "verify_test_vm", n, key="verify"))
    own_cleanups = _own_cleanups(site, ti, n)
    cleanup_names = ti.xcom_pull(task_ids="start_cleanup", key="cleanup_jobs") or {}
    cleanup_jobs = {name: JobSummary.model_validate(job)
                    for name, job in (ti.xcom_pull(task_ids="wait_cleanup", key="jobs") or {}).items() if job}
    proof = ti.xcom_pull(task_ids="verify_cleanup", key="proof")
    proof = None if proof is None else CleanupProof.model_validate(proof)
    hook = functools.cache(lambda: drill_hook(site))  # built only if a job has to be read

    def read_job(name: str) -> JobSummary:
        """A job its wait did not return (the wait failed): read it, to report ASR's own words."""
        return summarize_job(hook().get_job(site.azure.resource_group, site.azure.vault_name, name))

    vms = []
    for target, failover, failover_job, verify, (own_name, own_cleanup) in zip(targets, failovers, failover_jobs,
                                                                                verifies, own_cleanups):
        if failover is None and failover_job:
            failover = read_job(failover_job)
        cleanup_name = cleanup_names.get(target.vm)
        cleanup = cleanup_jobs.get(cleanup_name) if cleanup_name else None
        if cleanup is None and own_name:  # cleaned up once verified, and nothing left for the teardown
            cleanup = own_cleanup or read_job(own_name)
        vms.append(vm_result(target, failover_job=failover, verify=verify, cleanup_job=cleanup,
                             cleaned=proof.per_vm.get(target.vm) if proof else None,
                             rto_target=site.drill.rto_target.total_seconds(),
                             rpo_target=site.drill.rpo_target.total_seconds()))
    plans = []
    for plan in gate.plans if gate else []:
        plan_vms, section = _plan_results(site, ti, plan, proof, cleanup_names, cleanup_jobs)
        vms += plan_vms
        plans.append(section)
    vms += [skipped_result(skip.vm, skip.reason) for skip in (gate.skipped if gate else [])]
    cleanup_proof = proof or CleanupProof(incomplete=True)
    verdict, reasons = verdict_of(vms, cleanup_proof, site.drill.on_gate_failure == "fail")
    if gate is None:
        verdict, reasons = DrillVerdict.FAIL, ["the readiness gate did not run to the end: see its task log", *reasons]
    return DrillReport(
        site=site.name, dag_id=context["dag"].dag_id, run_id=context["run_id"],
        trigger="scheduled" if str(context["run_id"]).startswith("scheduled") else "manual",
        started_at=(gate.started_at if gate else None) or getattr(run, "start_date", None), ended_at=utc_now(),
        verdict=verdict, reasons=reasons,
        targets=RecoveryTargets(rpo_seconds=site.drill.rpo_target.total_seconds(),
                                rto_seconds=site.drill.rto_target.total_seconds()),
        test_network=gate.test_network if gate else None, recovery_vmm=site.recovery.vmm.fqdn,
        gate=GateSummary(checked=gate.checked, passed=gate.passed, skipped=gate.skipped,
                         leftovers_cleaned=gate.leftovers_cleaned) if gate else GateSummary(),
        vms=vms, plans=plans, cleanup_proof=cleanup_proof.model_copy(update={"per_vm": {}}),
        tasks=_task_timings(ti, context, {GROUP: targets, **_plan_task_labels(site, ti, gate)}),
    )


def _own_cleanups(site: Site, ti: Any, count: int) -> list[tuple[str | None, Any]]:
    """Per drilled VM, the cleanup it started once verified (``drill.cleanup_when: vm_verified``) and the
    job as its wait last read it: (None, None) where it started none (or the site cleans up at the end)."""
    from site_recovery.records import JobSummary

    if site.drill.cleanup_when != "vm_verified":
        return [(None, None)] * count
    return list(zip(_mapped(ti, "clean_up_test_vm", count),
                    _records(JobSummary, _mapped(ti, "wait_test_vm_cleanup", count)), strict=True))


def _plan_task_labels(site: Site, ti: Any, gate: DrillGate | None) -> dict[str, list[VmTarget]]:
    """The VMs each plan's mapped verification tasks are mapped over, by task id."""
    labels = {}
    for plan in gate.plans if gate else []:
        if plan.skipped is None:
            for number, members in plan_group_members(ti, plan, site.plan_named(plan.plan)).items():
                labels[f"{plan_task_group(plan.plan)}.{group_task_ids(number)[1]}"] = members
    return labels


def _plan_results(site: Site, ti: Any, plan: PlanDrillTarget, proof: CleanupProof | None,
                  cleanup_names: dict[str, str], cleanup_jobs: dict[str, JobSummary],
                  ) -> tuple[list[VmDrillResult], PlanDrillResult]:
    """A drilled plan's members as VM results (the plan's job is each one's test failover), and its section."""
    from site_recovery.drill import plan_result, vm_result
    from site_recovery.hooks.asr import summarize_job
    from site_recovery.records import JobSummary, ManualActionOutcome, TestVmCheck
    from site_recovery.tasks.drill import plan_cleanup_key

    defined = site.plan_named(plan.plan)
    group = plan_task_group(plan.plan)
    rto_target = (defined.rto_target or site.drill.rto_target).total_seconds()
    if plan.skipped is not None:
        return [], plan_result(defined, job=None, verifies={}, outcomes=[], skipped=plan.skipped,
                               rto_target=rto_target)
    job = ti.xcom_pull(task_ids=f"{group}.wait_test_failover")
    job = JobSummary.model_validate(job) if job else None
    job_name = ti.xcom_pull(task_ids=f"{group}.test_failover", key="job_name")
    if job is None and job_name:
        # The wait failed, so it returned nothing: read the job to report ASR's own words.
        job = summarize_job(drill_hook(site).get_job(site.azure.resource_group, site.azure.vault_name, job_name))
    verifies = {}
    for boot_group, members in plan_group_members(ti, plan, defined).items():
        pulled = ti.xcom_pull(task_ids=f"{group}.{group_task_ids(boot_group)[1]}", key="verify",
                              map_indexes=list(range(len(members)))) if members else []
        pulled = pulled if isinstance(pulled, list) else [pulled]
        verifies |= {t.vm: TestVmCheck.model_validate(v) for t, v in zip(members, pulled, strict=False) if v}
    outcomes, checks = [], {}
    for action in defined.pauses():  # what each pause's task pushed: a manual action's outcome, a check's look
        pushed = ti.xcom_pull(task_ids=f"{group}.{pause_task_id(action.kind, action.name)}",
                              key="verify" if action.kind == "check" else "outcome")
        if pushed and action.kind == "check":
            checks[action.name] = TestVmCheck.model_validate(pushed)
        elif pushed:
            outcomes.append(ManualActionOutcome.model_validate(pushed))
    cleanup_name = cleanup_names.get(plan_cleanup_key(plan.plan))
    cleanup = cleanup_jobs.get(cleanup_name) if cleanup_name else None
    vms = [vm_result(t, failover_job=job, verify=verifies.get(t.vm), cleanup_job=cleanup,
                     cleaned=proof.per_vm.get(t.vm) if proof else None,
                     rto_target=rto_target, rpo_target=site.drill.rpo_target.total_seconds())
           for t in plan.members]
    return vms, plan_result(defined, job=job, verifies=verifies, outcomes=outcomes, skipped=None,
                            rto_target=rto_target, member_results=vms, checks=checks)


def plan_group_members(ti: Any, plan: PlanDrillTarget, defined: RecoveryPlan) -> dict[int, list[VmTarget]]:
    """Each boot group's members in the order its verification is mapped over them (what the group's wait
    returned; the gate's members in the site file's order where the wait did not end well)."""
    from site_recovery.records import VmTarget

    by_vm = {member.vm.casefold(): member for member in plan.members}
    groups = {}
    for group in defined.groups:
        pushed = ti.xcom_pull(task_ids=f"{plan_task_group(plan.plan)}.{group_task_ids(group.group)[0]}")
        groups[group.group] = ([VmTarget.model_validate(member) for member in pushed] if pushed is not None else
                               [by_vm[vm.casefold()] for vm in group.vms if vm.casefold() in by_vm])
    return groups


def drill_report(site_name: str) -> DrillOutcomeSummary:
    """Write the JSON and HTML report and publish it as the site's Asset event; return verdict and paths.

    It succeeds whatever the verdict, so the Asset event is published for failed drills too;
    :func:`check_verdict` then fails the run when the verdict is FAIL.
    """
    from site_recovery.drill_report import load_history, write_report
    from site_recovery.report_store import reports_root
    from site_recovery.records import DrillOutcomeSummary
    from site_recovery.site import load_site_named

    context = get_current_context()
    site = load_site_named(site_name)
    report = build_report(site, context)
    folder = reports_root()
    history = load_history(folder, site.name, exclude_run_id=report.run_id)
    paths = write_report(folder, report, history)
    log.info("Drill report (%s): %s\nJSON: %s", report.verdict, paths["html"], paths["json"])
    events = context.get("outlet_events")
    if events is not None:
        events[report_asset(site.name)].extra = {
            "verdict": str(report.verdict), "html": paths["html"], "json": paths["json"], "run_id": report.run_id}
    for vm in report.vms:
        log.info("%s: %s%s", vm.vm, vm.outcome, f" ({vm.error})" if vm.error else "")
    return DrillOutcomeSummary(verdict=report.verdict, reasons=report.reasons, html=paths["html"], json=paths["json"])


def check_verdict(site_name: str) -> str:
    """Fail the run when the drill's verdict is FAIL (teardowns and the report never mask it)."""
    from site_recovery.records import DrillOutcomeSummary
    from site_recovery.vocabulary import DrillVerdict

    pulled = get_current_context()["ti"].xcom_pull(task_ids="drill_report")
    if not pulled:
        raise DrillFailed(f"The drill of site {site_name} wrote no report: see the drill_report task log.")
    outcome = DrillOutcomeSummary.model_validate(pulled)
    if outcome.verdict is not DrillVerdict.PASS:
        raise DrillFailed(f"Drill verdict {outcome.verdict} for site {site_name}: " + "; ".join(outcome.reasons)
                          + f". Report: {outcome.html}")
    log.info("Drill verdict %s. Report: %s", outcome.verdict, outcome.html)
    return str(outcome.verdict)
