"""The operators of a real recovery (failover, failback): a named person's approval of each irreversible step,
the step itself per VM and per recovery plan, resumed where ASR stands, and a plan's manual actions.

Each step's ASR client may send only that step's writes, in the run's direction
(:func:`~site_recovery.tasks.recovery.recovery_hook`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator
from site_recovery.exceptions import ApprovalRefused, RecoveryFailed
from site_recovery.operators.drill import ManualActionOperator
from site_recovery.operators.vm import VmOperator, answered_by
from site_recovery.tasks.common import sort_errors
from site_recovery.vocabulary import AllowedOperation, ApprovalOption, FailoverDirection, FailoverKind, RecoveryStep

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.sdk import Context
    from site_recovery.records import ProtectedItemSummary, RecoveryApproval, VmTarget
    from site_recovery.vocabulary import RecoveryStage

_OPTIONS = {RecoveryStep.FAILOVER: [ApprovalOption.FAIL_OVER, ApprovalOption.REJECT],
            RecoveryStep.COMMIT: [ApprovalOption.COMMIT, ApprovalOption.CANCEL, ApprovalOption.REJECT],
            RecoveryStep.REPROTECT: [ApprovalOption.REPROTECT, ApprovalOption.REJECT]}
_WHAT = {RecoveryStep.FAILOVER: "fail over", RecoveryStep.COMMIT: "commit (or cancel) the failover of",
         RecoveryStep.REPROTECT: "reprotect (reverse replication of)"}


def approval_task_id(step: RecoveryStep) -> str:
    return f"approve_{RecoveryStep(step).value}"


def _item(hook: Any, site: Any, target: Any) -> ProtectedItemSummary:
    from site_recovery.hooks.asr import summarize_protected_item

    az = site.azure
    return summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, target.fabric,
                                                            target.container, target.item_name))


class RecoveryApprovalOperator(HITLOperator):
    """A named person approves one irreversible step of a failover or failback, having seen where every VM stands.

    Reads ASR first: when no VM of the run stands where the step starts (a rerun after the step
    was done), there is nothing to approve and the task says so and goes on. Otherwise it waits,
    in Airflow's awaiting-input state, for one of the site file's ``failover.approvers``; the page
    shows the assessment (the failover) or each VM's state and verification (commit, reprotect).
    **Reject**, or no answer within ``failover.approval_timeout``, fails the task for good (no
    retry) and nothing after it runs. The commit approval offers **Cancel failover** too (the VMs
    go back to the site they left). Returns, and pushes as ``approval``, a
    :class:`~site_recovery.records.RecoveryApproval`.

    :param site_name: The site file, read again on the worker.
    :param direction: The recovery's direction (``PrimaryToRecovery``: failover; the reverse: failback).
    :param step: The step approved.
    """

    template_fields: Sequence[str] = ("subject", "body")
    ui_color = "#f2c744"

    def __init__(self, *, site_name: str, direction: FailoverDirection, step: RecoveryStep, approvers: list[str],
                 response_timeout: timedelta, **kwargs: Any) -> None:
        step = RecoveryStep(step)
        super().__init__(task_id=approval_task_id(step), subject=f"Site {site_name}: approve to {_WHAT[step]} the VMs",
                         options=[option.value for option in _OPTIONS[step]], body="(written when the task runs)",
                         assigned_users=[{"id": user, "name": user} for user in approvers] or None,
                         response_timeout=response_timeout, **kwargs)
        self.site_name, self.direction, self.step = site_name, FailoverDirection(direction), step

    def execute(self, context: Context) -> Any:
        from site_recovery.failover import STARTS_AT, stage_of
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import pulled_assessment, recovery_hook

        site = load_site_named(self.site_name)
        assessment = pulled_assessment(context["ti"])
        targets = [vm.target for vm in assessment.vms] if assessment else []
        hook = recovery_hook(site, self.direction)
        items = {t.vm: _item(hook, site, t) for t in targets}
        stages = {vm: stage_of(item, self.direction) for vm, item in items.items()}
        waiting = [vm for vm, stage in stages.items() if stage == STARTS_AT[self.step]]
        if self.step == RecoveryStep.COMMIT and not all(items[vm].allows(AllowedOperation.CANCEL_FAILOVER)
                                                        for vm in waiting):
            self.options = [option for option in self.options if option != ApprovalOption.CANCEL]  # ASR offers none
        if not waiting:
            detail = "no VM stands where this step starts (" + ", ".join(f"{vm}: {stage}" for vm, stage in
                                                                         stages.items()) + ")"
            self.log.info("Nothing to approve: %s.", detail)
            return self._push(context, needed=False, detail=detail)
        self.body = self._body(context, assessment, stages, waiting)
        self.log.info("Waiting for one of %s to approve:\n%s", ", ".join(site.failover.approvers), self.body)
        return super().execute(context)

    def _body(self, context: Context, assessment: Any, stages: dict[str, RecoveryStage], waiting: list[str]) -> str:
        from site_recovery.failover import assessment_markdown, verification_markdown
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import pulled_checks, verify_task_ids

        if self.step == RecoveryStep.FAILOVER:
            return (assessment_markdown(assessment) + "\n\n**Fail over** starts the failover of "
                    f"{', '.join(waiting)}: production moves to the other site. **Reject** changes nothing.")
        checks = pulled_checks(context["ti"], verify_task_ids(load_site_named(self.site_name)))
        table = verification_markdown(stages, checks)
        if self.step == RecoveryStep.COMMIT:
            cancel = ("**Cancel failover** brings the VMs back to the site they left (their changes since are lost). "
                      if ApprovalOption.CANCEL in self.options else
                      "ASR offers no cancel for these VMs (a VMM-to-VMM failover is not cancelled: to go back, commit, "
                      "reprotect and fail back). ")
            ask = ("**Commit** makes the failover final: the recovery points kept on the other site are discarded. "
                   + cancel + "**Reject** does neither; a rerun of this DAG resumes here.")
        else:
            ask = ("**Reprotect** starts reverse replication, from the site the VMs now run on back to the one they "
                   "left; approve it once that site is back. **Reject** leaves the VMs unprotected for now; a rerun "
                   "of this DAG resumes here.")
        return table + "\n\n" + ask

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow.providers.standard.exceptions import HITLTriggerEventError

        try:
            answer = super().execute_complete(context, event)
        except HITLTriggerEventError as exc:  # nobody answered in time
            self._push(context, decision=None, detail=f"no answer: {exc}")
            raise ApprovalRefused(f"Nobody approved the {self.step} in time ({exc}); nothing further was changed. "
                                  "Rerun the DAG to resume where ASR stands.") from None
        who, decision = answered_by(answer), ApprovalOption(answer["chosen_options"][0])
        if decision == ApprovalOption.REJECT:
            self._push(context, decision=decision, by=who, at=answer["responded_at"], detail="rejected")
            raise ApprovalRefused(f"{who} rejected the {self.step}; nothing further was changed. Rerun the DAG to "
                                  "resume where ASR stands.")
        self.log.info("%s chose %r.", who, decision)
        return self._push(context, decision=decision, by=who, at=answer["responded_at"])

    def _push(self, context: Context, **fields: Any) -> RecoveryApproval:
        from site_recovery.records import RecoveryApproval

        approval = RecoveryApproval(step=self.step, **fields)
        context["ti"].xcom_push(key="approval", value=approval)
        return approval


def decided_step(context: Context, step: RecoveryStep) -> RecoveryStep:
    """The step a task carries out: the commit step does what its approver chose, commit or cancel the failover."""
    if step != RecoveryStep.COMMIT:
        return step
    from site_recovery.records import RecoveryApproval

    pushed = context["ti"].xcom_pull(task_ids=approval_task_id(RecoveryStep.COMMIT), key="approval")
    approval = RecoveryApproval.model_validate(pushed) if pushed else None
    cancelled = approval is not None and approval.decision == ApprovalOption.CANCEL
    return RecoveryStep.CANCEL if cancelled else RecoveryStep.COMMIT


def failover_properties(direction: FailoverDirection, kind: FailoverKind, context: Context, *,
                        plan: bool) -> dict[str, Any]:
    """The ``properties`` of a failover request: the direction and, for an unplanned one, whether ASR may touch
    the site the VMs leave (``sourceSiteOperations``: only when its VMM answered the assessment)."""
    from site_recovery.failover import last_sync_runs
    from site_recovery.tasks.recovery import pulled_assessment

    specific: Any = ({"instanceType": "RecoveryPlanProviderSpecificFailoverInput"} if plan
                     else {"instanceType": "ProviderSpecificFailoverInput"})
    props: dict[str, Any] = {"failoverDirection": str(direction),
                             "providerSpecificDetails": [specific] if plan else specific}
    if kind != FailoverKind.PLANNED:
        assessment = pulled_assessment(context["ti"])
        answered = bool(assessment and assessment.source_vmm.answered)
        props["sourceSiteOperations"] = "Required" if last_sync_runs(kind, answered) else "NotRequired"
    return props


class RecoveryStepOperator(VmOperator):
    """Carry out one step of a failover or failback for one VM, from where ASR stands; return the job to wait on.

    Reads the VM first (:func:`~site_recovery.failover.stage_of`): a VM already past the step is
    left alone (None: nothing to wait on), a VM whose step is already running has its job adopted,
    so a rerun, or a retry after a worker died, never starts a job twice. The commit step carries
    out the approver's decision: commit, or cancel the failover.

    :param direction: The recovery's direction.
    :param step: The step: failover, commit (or cancel, as approved) or reprotect.
    :param kind: Failover only: ``planned`` or ``unplanned`` (the run's param).
    """

    template_fields: Sequence[str] = ("target", "kind")
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, direction: FailoverDirection, step: RecoveryStep, kind: str = FailoverKind.PLANNED,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direction, self.step, self.kind = FailoverDirection(direction), RecoveryStep(step), kind

    @sort_errors
    def execute(self, context: Context) -> str | None:
        from site_recovery.failover import RUNS_AS, STARTS_AT, opposite, stage_of
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import recovery_hook

        site, t = load_site_named(self.site_name), self.vm_target
        step = decided_step(context, self.step)
        hook, az = recovery_hook(site, self.direction, step), site.azure
        item = _item(hook, site, t)
        stage = stage_of(item, self.direction)
        if stage == RUNS_AS[step] and item.scenario_job:
            self.log.info("VM %r: its %s is already running (job %s); waiting on it.", t.vm, step, item.scenario_job)
            return item.scenario_job
        if stage != STARTS_AT[step]:
            self.log.info("VM %r stands at %r (%s): no %s to start.", t.vm, str(stage),
                          item.protection_state_description, step)
            return None
        args = (az.resource_group, az.vault_name, t.fabric, t.container, t.item_name)
        if step == RecoveryStep.FAILOVER:
            kind = FailoverKind(self.kind)
            planned = kind == FailoverKind.PLANNED
            props = failover_properties(self.direction, kind, context, plan=False)
            self.log.info("%s failover of VM %r (%s).", "Planned" if planned else "Unplanned", t.vm, self.direction)
            return hook.failover(*args, planned=planned, failover_input={"properties": props})
        if step == RecoveryStep.COMMIT:
            self.log.info("Committing the failover of VM %r.", t.vm)
            return hook.commit_failover(*args)
        if step == RecoveryStep.CANCEL:
            self.log.info("Cancelling the failover of VM %r: it goes back to the site it left.", t.vm)
            return hook.cancel_failover(*args)
        reverse = opposite(self.direction)
        self.log.info("Reprotecting VM %r: replication %s.", t.vm, reverse)
        return hook.reprotect(*args, {"properties": {
            "failoverDirection": str(reverse),
            "providerSpecificDetails": {"instanceType": "ReverseReplicationProviderSpecificInput"}}})


class RecoveryPlanStepOperator(BaseOperator):
    """Carry out one step of a failover or failback for a whole recovery plan: one ASR job, its groups in order.

    A plan the run was not asked for is skipped here, with all of its tasks after it. Otherwise the
    step resumes where ASR stands, like :class:`RecoveryStepOperator` for one VM: the plan's
    current job is adopted when it is this step's and still runs (a retry after a worker died, a
    rerun after a refused manual action); otherwise it reads every member
    (:func:`~site_recovery.failover.stage_of`): members all past the step are left alone (no
    job), members all where the step starts have it started; members standing apart fail the
    task, naming where each stands. The commit step carries out the approver's decision (commit, or cancel
    the failover). Pushes the job's name as ``job_name`` and returns the plan's members
    (:class:`~site_recovery.records.VmTarget`), as the drill's plan start does.

    :param site_name: The site file, read again on the worker.
    :param plan: The recovery plan's name, as the site file gives it.
    :param direction: The recovery's direction.
    :param step: The step: failover, commit (or cancel, as approved) or reprotect.
    :param kind: Failover only: ``planned`` or ``unplanned`` (the run's param).
    """

    template_fields: Sequence[str] = ("kind",)
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, site_name: str, plan: str, direction: FailoverDirection, step: RecoveryStep,
                 kind: str = FailoverKind.PLANNED, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_name, self.plan = site_name, plan
        self.direction, self.step, self.kind = FailoverDirection(direction), RecoveryStep(step), kind

    @sort_errors
    def execute(self, context: Context) -> list[VmTarget]:
        from airflow.sdk.exceptions import AirflowSkipException
        from site_recovery.tasks.recovery import pulled_assessment

        assessment = pulled_assessment(context["ti"])
        if assessment is None or not assessment.has_plan(self.plan):
            raise AirflowSkipException(f"Recovery plan {self.plan} is not in this run (the 'plans' param).")
        members = [vm.target for vm in assessment.members(self.plan)]
        context["ti"].xcom_push(key="job_name", value=self._start(context, members))
        return members

    def _start(self, context: Context, members: list[VmTarget]) -> str | None:
        from site_recovery.failover import RUNS_AS, STARTS_AT, running_stage, stage_of, step_runs_on
        from site_recovery.hooks.asr import summarize_job
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import recovery_hook

        site, step = load_site_named(self.site_name), decided_step(context, self.step)
        hook, az = recovery_hook(site, self.direction, step), site.azure
        items = {t.vm: _item(hook, site, t) for t in members}
        held = hook.get_recovery_plan_or_none(az.resource_group, az.vault_name, self.plan)
        if held is not None and held.scenario_job:  # the plan's own job, whatever its members show meanwhile
            job = summarize_job(hook.get_job(az.resource_group, az.vault_name, held.scenario_job))
            # ...if it is this step's, and in this run's direction: the VMs are active where the step runs
            where = step_runs_on(step, self.direction)
            if (running_stage(job.scenario_name) == RUNS_AS[step] and not job.ended
                    and all(item.active_location == where for item in items.values())):
                self.log.info("Recovery plan %r: its %s is already running (job %s); waiting on it.", self.plan,
                              step, job.name)
                return job.name
        stages = {vm: stage_of(item, self.direction) for vm, item in items.items()}
        where = ", ".join(f"{vm}: {stage}" for vm, stage in stages.items())
        distinct = set(stages.values())
        if distinct == {RUNS_AS[step]}:
            raise RecoveryFailed(f"Recovery plan {self.plan}: its VMs are in a {step} ({where}) that is not the "
                                 "plan's job; wait for it to end, then rerun.")
        if distinct != {STARTS_AT[step]}:
            if distinct & {STARTS_AT[step], RUNS_AS[step]}:
                raise RecoveryFailed(f"Recovery plan {self.plan}: its VMs stand apart ({where}), so the plan cannot "
                                     f"take the {step} as one job; recover them one by one with the 'vms' param.")
            self.log.info("Recovery plan %r: no %s to start (%s).", self.plan, step, where)
            return None
        args = (az.resource_group, az.vault_name, self.plan)
        if step == RecoveryStep.FAILOVER:
            kind = FailoverKind(self.kind)
            props = failover_properties(self.direction, kind, context, plan=True)
            self.log.info("%s failover of recovery plan %r (%s): %s.", str(kind).capitalize(), self.plan,
                          self.direction, ", ".join(stages))
            return hook.recovery_plan_failover(*args, planned=kind == FailoverKind.PLANNED,
                                               failover_input={"properties": props})
        if step == RecoveryStep.COMMIT:
            self.log.info("Committing the failover of recovery plan %r.", self.plan)
            return hook.recovery_plan_commit(*args)
        if step == RecoveryStep.CANCEL:
            self.log.info("Cancelling the failover of recovery plan %r: its VMs go back to the site they left.",
                          self.plan)
            return hook.recovery_plan_cancel_failover(*args)
        self.log.info("Reprotecting recovery plan %r: ASR reverses each member's replication.", self.plan)
        return hook.recovery_plan_reprotect(*args)


class RecoveryManualActionOperator(ManualActionOperator):
    """A recovery plan's manual action met by its real failover or failback: a person confirms, the job goes on.

    The drill's required action (:class:`~site_recovery.operators.drill.ManualActionOperator`)
    with a real recovery's rules: a person always answers (no unattended confirmation), and a
    refusal, or no answer in time, fails the run with the plan's job left suspended at the action
    (nothing is undone in production), so a rerun adopts the job and asks again. Nothing to ask
    when the job does not wait at the action in this run (its wait returned nothing), or is past
    it already (read from ASR now: a retry after the resume went through). The job is resumed
    through a guard that lets this task resume that one job and send nothing else.

    :param direction: The recovery's direction.
    :param reached: The job as the wait for this action read it (None: the job does not wait there).
    """

    template_fields: Sequence[str] = (*ManualActionOperator.template_fields, "reached")
    refused_means = ("stops the run; the plan's job stays suspended at this action and a rerun of the DAG asks "
                     "again.")

    def __init__(self, *, direction: FailoverDirection, reached: Any = None, **kwargs: Any) -> None:
        direction = FailoverDirection(direction)
        failback = direction == FailoverDirection.RECOVERY_TO_PRIMARY
        super().__init__(what="The failback" if failback else "The failover", **kwargs)
        self.direction, self.reached = direction, reached

    def execute(self, context: Context) -> Any:
        from site_recovery.drill import utc_now
        from site_recovery.records import ManualActionOutcome
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import live_job

        if not self.reached or self.reached == "None":
            self.log.info("Recovery plan %s: its job does not wait at %r in this run (the %s ran in an earlier "
                          "run, or this kind of failover does not meet the action); nothing to confirm.", self.plan,
                          self.action, self.what.split()[-1])
            return None
        if live_job(load_site_named(self.site_name), self.job_name).passed(self.action):
            self.log.info("ASR job %s is past %r already: nothing to confirm.", self.job_name, self.action)
            outcome = ManualActionOutcome(plan=self.plan, action=self.action, confirmed=True, at=utc_now(),
                                          comment="answered before: the job was past it when this task ran")
            self._push(context, outcome)
            return outcome
        return HITLOperator.execute(self, context)

    def refusal(self, what: str) -> Exception:
        return ApprovalRefused(f"Recovery plan {self.plan}: {what}. The plan's job stays suspended there; "
                               "rerun the DAG to answer again.")

    def resume_job(self, comment: str) -> None:
        from site_recovery.site import load_site_named
        from site_recovery.tasks.recovery import resume_hook

        site = load_site_named(self.site_name)
        resume_hook(site, self.job_name).resume_job(site.azure.resource_group, site.azure.vault_name, self.job_name,
                                                    comment)
