"""Failover and failback for each site file: the real recovery, each irreversible step approved by a named person.

Two DAGs per file in include/sites, manual trigger only (never a schedule):

* ``asr_failover__<site>``: the named recovery plans and VMs from the primary site to the recovery site, planned
  (the primary site is up: its VMs shut down and a last sync runs, no data loss) or unplanned
  (the primary site is down: the VMs start from their newest recovery point);
* ``asr_failback__<site>``: the same path back, a planned failover from the recovery site to
  the primary site.

Each run: **assess** (no change; a wrong confirmation, an unknown VM, a VM ASR will not let
take the step, a drill or another recovery of the site running, or a planned failover whose
source site does not answer fails the run here, every problem named); **approve the failover**
(one of the site file's ``failover.approvers``, having seen the assessment); **fail over** each
VM, and each plan as one job (its groups in boot order, its manual actions as required actions,
its checks as probes), and wait for its job; **verify** each VM on the site it went to (running, heartbeat,
``drill.probes``); **approve the commit** (or the cancel, which brings the VMs back); **commit**;
**approve the reprotect** once the site the VMs left is back; **reprotect** and wait until each
VM is protected again, replicating the other way. A rejection, or no answer in time, stops the
run with nothing further changed; rerunning resumes where ASR stands (a VM already failed over
or committed is not failed over again). Each task's ASR client may send only its own step's
writes, in its direction. Wiring only: the steps live in site_recovery.tasks.recovery,
.operators.recovery and .sensors.recovery.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup, task_group

from site_recovery.operators.recovery import (
    RecoveryApprovalOperator,
    RecoveryManualActionOperator,
    RecoveryPlanStepOperator,
    RecoveryStepOperator,
)
from site_recovery.operators.report import ReportOperator
from site_recovery.sensors.asr import OptionalAsrJobSensor
from site_recovery.sensors.protection import InitialReplicationSensor, VmJobSensor
from site_recovery.sensors.recovery import (
    RecoveredVmVerifiedSensor,
    RecoveryPlanCheckSensor,
    RecoveryPlanGroupSensor,
    RecoveryPlanPauseSensor,
)
from site_recovery.site import format_duration
from site_recovery.failover import site_file_direction
from site_recovery.site_dags import chain_plan_job, form_param, group_task_ids, pause_task_id, publish, slug
from site_recovery.tasks.recovery import (
    COMMIT_GROUP,
    FAILOVER_FAMILY,
    FAILOVER_GROUP,
    REPROTECT_GROUP,
    assess,
    family_of,
    recovery_plan_group,
    recovery_report,
)
from site_recovery.vocabulary import FailoverDirection, FailoverKind, RecoveryStep

DEFAULT_ARGS = {"owner": "dr-engineering", "retries": 2, "retry_delay": timedelta(seconds=30),
                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=5)}
TAGS = ["asr", "recovery"]
VM_LABEL = "{{ task.target.vm }}"


def params_for(site, direction: FailoverDirection) -> dict[str, Param]:
    failover = direction == FailoverDirection.PRIMARY_TO_RECOVERY
    params = {
        "vms": form_param([], type="array", title="VMs", items={"type": "string"},
                          description="The protected VMs to " + ("fail over to the recovery site" if failover else
                                                                  "fail back to the primary site") + " (names as in "
                                      "VMM). The assessment checks each before anything changes."),
        "confirm_site": form_param("", type="string", title="Confirm: type the site's name",
                                   description=f"Type {site.name} to confirm this is the site to "
                                               f"{'fail over' if failover else 'fail back'}."),
    }
    if site.recovery_plans:
        params["plans"] = form_param(
            [], type="array", title="Recovery plans", items={"type": "string"},
            examples=[plan.name for plan in site.recovery_plans],
            description="Recovery plans to " + ("fail over" if failover else "fail back") + ": each as one ASR job, "
                        "its groups in boot order, its manual actions as required actions. Name a VM either here "
                        "(through its plan) or above, not both.")
    if failover:
        params["kind"] = form_param(
            str(FailoverKind.PLANNED), type="string", title="Kind", enum=[str(k) for k in FailoverKind],
            description="planned: the primary site is up; its VMs shut down and a last sync runs first (no data "
                        "loss). unplanned: the primary site is down or unreachable; the VMs start from their newest "
                        "recovery point (the assessment shows the data each would lose).")
    return params


def recover_plan(site, plan, direction: FailoverDirection, kind: str, approvals: dict) -> tuple:
    """One recovery plan's failover, commit and reprotect, each one ASR job, in the plan's task group.

    The failover's chain follows the plan's job, as the drill's does: per boot group a wait until it
    is up and the verification of its members (while later groups boot); where the job pauses, a
    required action (manual action) or a probe (Airflow check) that resumes it. Returns where the
    run's approvals fit: ``(failover, failed over, commit, committed, reprotect, replicating)``:
    the failover approval goes before the first, the commit approval between the second (the
    verifications and the job's wait) and the third, the reprotect approval between the fourth and
    the fifth; the last is the plan's end.
    """
    az, timeouts, failover = site.azure, site.timeouts, site.failover
    poll = timeouts.poll_interval.total_seconds()
    job_waits = {"azure_conn_id": az.conn_id, "resource_group_name": az.resource_group, "vault_name": az.vault_name,
                 "poke_interval": timeouts.plan_poll_interval.total_seconds(),  # one reader per plan
                 "timeout": timeouts.asr_job.total_seconds()}
    steps = {"site_name": site.name, "plan": plan.name, "direction": direction}
    verifying = {"site_name": site.name, "direction": direction, "poke_interval": poll,
                 "timeout": failover.verify_timeout.total_seconds()}
    with TaskGroup(recovery_plan_group(plan.name), tooltip=f"Recovery plan {plan.name}"):
        start = RecoveryPlanStepOperator(task_id="failover", step=RecoveryStep.FAILOVER, kind=kind, **steps)
        job = start.output["job_name"]

        def pause(action, previous):
            reached = RecoveryPlanPauseSensor(task_id=f"wait_for_{slug(action.name)}", job_name=job,
                                              suspend_at=action.name, kind=kind,
                                              failover_types=action.failover_types if action.kind == "manual"
                                              else [str(k) for k in FailoverKind], **job_waits)
            if action.kind == "check":
                answer = RecoveryPlanCheckSensor(task_id=pause_task_id(action.kind, action.name), plan=plan.name,
                                                 check=action.name, vm=plan.check_vm(action), job_name=job,
                                                 failover_job=reached.output, **verifying)
            else:
                answer = RecoveryManualActionOperator(
                    task_id=pause_task_id(action.kind, action.name), site_name=site.name, plan=plan.name,
                    action=action.name, instructions=action.instructions,
                    approvers=action.approvers or approvals["approvers"], job_name=job, reached=reached.output,
                    direction=direction, response_timeout=action.manual_timeout)
            previous >> reached >> answer
            return answer

        def boot_group(group):
            wait_id, verify_id = group_task_ids(group.group)
            up = RecoveryPlanGroupSensor(task_id=wait_id, job_name=job, group=group.group, vms=group.vms,
                                         members=start.output, **job_waits)
            return up, RecoveredVmVerifiedSensor.partial(task_id=verify_id, map_index_template=VM_LABEL,
                                                         **verifying).expand(target=up.output)

        previous, verifies = chain_plan_job(start, plan.job_order(None, site_file_direction(direction)), pause,
                                            boot_group)
        failed_over = OptionalAsrJobSensor(task_id="wait_failover", job_name=job, **job_waits)
        previous >> failed_over

        commit = RecoveryPlanStepOperator(task_id="commit", step=RecoveryStep.COMMIT, **steps)
        committed = OptionalAsrJobSensor(task_id="wait_commit", job_name=commit.output["job_name"], **job_waits)
        reprotect = RecoveryPlanStepOperator(task_id="reprotect", step=RecoveryStep.REPROTECT, **steps)
        reprotected = OptionalAsrJobSensor(task_id="wait_reprotect", job_name=reprotect.output["job_name"],
                                           **job_waits)
        replicating = InitialReplicationSensor.partial(
            task_id="wait_replication", azure_conn_id=az.conn_id, resource_group_name=az.resource_group,
            vault_name=az.vault_name, poke_interval=timeouts.watch_seconds, map_index_template=VM_LABEL,
            timeout_text=format_duration(site.scope.initial_replication_timeout),
            timeout=site.scope.initial_replication_timeout.total_seconds()).expand(target=reprotect.output)
        commit >> committed
        reprotect >> reprotected >> replicating
    return start, [*verifies, failed_over], commit, committed, reprotect, replicating


def build(site, direction: FailoverDirection) -> DAG:
    az, timeouts, failover = site.azure, site.timeouts, site.failover
    poll = timeouts.poll_interval.total_seconds()
    family = family_of(direction)
    waits = {"azure_conn_id": az.conn_id, "resource_group_name": az.resource_group, "vault_name": az.vault_name,
             "poke_interval": timeouts.watch_seconds, "map_index_template": VM_LABEL, "weight_rule": "upstream"}
    kind = "{{ params.kind }}" if direction == FailoverDirection.PRIMARY_TO_RECOVERY else str(FailoverKind.PLANNED)
    approvals = {"site_name": site.name, "direction": direction, "approvers": failover.approvers,
                 "response_timeout": failover.approval_timeout}
    step = {"site_name": site.name, "direction": direction, "map_index_template": VM_LABEL, "weight_rule": "upstream"}
    with DAG(dag_id=site.dag_id(family), schedule=None, catchup=False, max_active_runs=1, tags=TAGS,
             default_args=DEFAULT_ARGS, params=params_for(site, direction),
             description=f"{'Failover' if family == FAILOVER_FAMILY else 'Failback'} of site {site.name}, "
                         "behind approvals",
             doc_md=f"{__doc__}\n\n**Site {site.name}**: {site.description or ''}\n\nApprovers: "
                    f"{', '.join(failover.approvers) or 'none named (the DAG refuses to run)'}; each approval waits "
                    f"{format_duration(failover.approval_timeout)}.") as dag:
        targets = assess(site.name, str(direction))
        approve_failover = RecoveryApprovalOperator(step=RecoveryStep.FAILOVER, **approvals)
        # The VMs named one by one and each plan are steps side by side; one not in the run is skipped.
        approvals = {**approvals, "trigger_rule": "none_failed"}

        @task_group(group_id=FAILOVER_GROUP)
        def fail_over_vm(target):
            start = RecoveryStepOperator(task_id="failover", target=target, step=RecoveryStep.FAILOVER, kind=kind,
                                         **step)
            wait = VmJobSensor(task_id="wait_failover", target=target, job_name=start.output,
                               timeout=timeouts.asr_job.total_seconds(), **waits)
            verify = RecoveredVmVerifiedSensor(task_id="verify", site_name=site.name, target=target,
                                               direction=direction, poke_interval=poll,
                                               timeout=failover.verify_timeout.total_seconds(),
                                               map_index_template=VM_LABEL, weight_rule="upstream")
            start >> wait >> verify

        approve_commit = RecoveryApprovalOperator(step=RecoveryStep.COMMIT, **approvals)

        @task_group(group_id=COMMIT_GROUP)
        def commit_vm(target):
            start = RecoveryStepOperator(task_id="commit", target=target, step=RecoveryStep.COMMIT, **step)
            start >> VmJobSensor(task_id="wait_commit", target=target, job_name=start.output,
                                 timeout=timeouts.asr_job.total_seconds(), **waits)

        approve_reprotect = RecoveryApprovalOperator(step=RecoveryStep.REPROTECT, **approvals)

        @task_group(group_id=REPROTECT_GROUP)
        def reprotect_vm(target):
            start = RecoveryStepOperator(task_id="reprotect", target=target, step=RecoveryStep.REPROTECT, **step)
            wait = VmJobSensor(task_id="wait_reprotect", target=target, job_name=start.output,
                               timeout=timeouts.asr_job.total_seconds(), **waits)
            replicating = InitialReplicationSensor(
                task_id="wait_replication", target=target, timeout_text=format_duration(
                    site.scope.initial_replication_timeout),
                timeout=site.scope.initial_replication_timeout.total_seconds(), **waits)
            start >> wait >> replicating

        reprotected = reprotect_vm.expand(target=targets)
        (targets >> approve_failover >> fail_over_vm.expand(target=targets) >> approve_commit
         >> commit_vm.expand(target=targets) >> approve_reprotect >> reprotected)
        complete = EmptyOperator(task_id="recovery_complete", trigger_rule="none_failed")
        report = ReportOperator(task_id="recovery_report", python_callable=recovery_report,
                                op_args=[site.name, str(direction)], trigger_rule="all_done")
        ends = [reprotected]
        for plan in site.recovery_plans:
            failover, failed_over, commit, committed, reprotect, replicating = recover_plan(
                site, plan, direction, kind, approvals)
            approve_failover >> failover
            failed_over >> approve_commit >> commit
            committed >> approve_reprotect >> reprotect
            ends.append(replicating)
        # The report runs whatever happened and says where the run stopped; this leaf keeps a stopped run failed.
        ends >> complete
        ends >> report
    return dag


for _direction in FailoverDirection:
    publish(globals(), family_of(_direction), lambda site, direction=_direction: build(site, direction),
            what="recovery", tags=TAGS, default_args=DEFAULT_ARGS)
