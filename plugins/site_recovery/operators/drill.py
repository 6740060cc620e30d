"""The operators of the test failover drill (step 10): start a VM's or a recovery plan's test failover,
clean up a VM's as soon as it is verified, and a plan's manual actions as Airflow required actions.

The drill's other steps are tasks (:mod:`site_recovery.tasks.drill`,
:mod:`site_recovery.tasks.drill_report`) and sensors (:mod:`site_recovery.sensors.drill`,
:class:`~site_recovery.sensors.asr.AsrJobsSensor`). Its ASR client may only read, test fail
over, clean up and cancel its own jobs (:func:`~site_recovery.tasks.drill.drill_hook`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator
from site_recovery.exceptions import DrillFailed
from site_recovery.operators.vm import VmOperator, answered_by
from site_recovery.tasks.common import sort_errors

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.records import PlanDrillTarget, VmTarget


class StartTestFailoverOperator(VmOperator):
    """Start one VM's test failover into the drill network (or none); return the ASR job to wait on.

    A re-run finds a test failover of this VM already running (its current scenario) and
    returns that job rather than starting another.

    :param site_name: The site file, read again on the worker.
    :param target: The VM as the readiness gate chose it (a :class:`~site_recovery.records.VmTarget`).
    """

    @sort_errors
    def execute(self, context: Context) -> str | None:
        from site_recovery.hooks.asr import summarize_protected_item
        from site_recovery.site import load_site_named
        from site_recovery.tasks.drill import drill_hook

        site = load_site_named(self.site_name)
        hook, az, t = drill_hook(site), site.azure, self.vm_target
        item = summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, t.fabric,
                                                                 t.container, t.item_name))
        if item.running_test_failover_job:
            self.log.info("VM %r: a test failover is already running (job %s); waiting on it.", t.vm,
                          item.running_test_failover_job)
            return item.running_test_failover_job
        props = _test_failover_properties(t, providerSpecificDetails={"instanceType": "ProviderSpecificFailoverInput"})
        self.log.info("Test failover of VM %r into %s.", t.vm, t.network or "no network (isolated)")
        return hook.test_failover(az.resource_group, az.vault_name, t.fabric, t.container, t.item_name,
                                  {"properties": props})


class CleanUpTestVmOperator(BaseOperator):
    """Clean up one VM's test failover as soon as its own verification has ended (``drill.cleanup_when:
    vm_verified``); return the cleanup job to wait on, or None when nothing is left to clean up.

    It runs whatever its failover and verification did (trigger rule ``all_done``); the drill's
    teardown still cleans up whatever this left. A re-run waits on a cleanup already running
    rather than starting another. Mapped in the drill's per-VM group, it finds its VM in the
    readiness gate's choice by its map index rather than through the group's argument: that
    argument would make it a direct downstream of the gate, the teardown's setup, which Airflow
    allows only for tasks that need all upstream tasks to succeed. Its label is ``{{ vm }}``.

    :param site_name: The site file, read again on the worker.
    """

    ui_color = "#f3e8c9"

    def __init__(self, *, site_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_name = site_name

    @sort_errors
    def execute(self, context: Context) -> str | None:
        from site_recovery.site import load_site_named
        from site_recovery.tasks.drill import clean_up_test_failover, drill_hook, pulled_gate, run_label

        ti = context["ti"]
        gate = pulled_gate(ti)
        if gate is None or not 0 <= ti.map_index < len(gate.targets):
            raise DrillFailed(f"The readiness gate chose no VM for map index {ti.map_index}; the drill's teardown "
                              "cleans up whatever was started.")
        target = gate.targets[ti.map_index]
        context["vm"] = target.vm  # the label (map_index_template) is rendered from the context after execute
        site = load_site_named(self.site_name)
        return clean_up_test_failover(drill_hook(site), site, target,
                                      f"Drill cleanup (VM verified) by {run_label(context)}")


def _test_failover_properties(target: VmTarget | None, **extra: Any) -> dict[str, Any]:
    """A drill's test failover input: primary to recovery, into the gate's drill network, or none (isolated)."""
    props: dict[str, Any] = {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput",
                             **extra}
    if target is not None and target.network_id:
        props.update(networkType="VmNetworkAsInput", networkId=target.network_id)
    return props


class StartPlanTestFailoverOperator(BaseOperator):
    """Start a recovery plan's test failover (one ASR job for all its groups); return the job to wait on.

    The plan and its members are the readiness gate's: a plan the gate held back is skipped here,
    with the gate's reason, and so is everything of its drill after it. A re-run finds the plan's
    test failover already running and waits on that job rather than starting another. Pushes the
    job's name as ``job_name`` and returns the plan's members (:class:`~site_recovery.records.VmTarget`
    s); each boot group's wait (:class:`~site_recovery.sensors.drill.PlanGroupSensor`) picks its own.

    :param site_name: The site file, read again on the worker.
    :param plan: The recovery plan's name, as the site file gives it.
    """

    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, site_name: str, plan: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_name = site_name
        self.plan = plan

    @sort_errors
    def execute(self, context: Context) -> list[VmTarget]:
        from airflow.sdk.exceptions import AirflowSkipException
        from site_recovery.tasks.drill import pulled_gate

        gate = pulled_gate(context["ti"])
        target = gate.plan(self.plan) if gate else None
        if target is None or target.skipped:
            raise AirflowSkipException(f"Recovery plan {self.plan} is not drilled: "
                                       f"{target.skipped if target else 'the readiness gate did not decide'}.")
        context["ti"].xcom_push(key="job_name", value=self._start(target))
        return target.members

    def _start(self, target: PlanDrillTarget) -> str | None:
        from site_recovery.site import load_site_named
        from site_recovery.tasks.drill import drill_hook

        site = load_site_named(self.site_name)
        hook, az = drill_hook(site), site.azure
        held = hook.get_recovery_plan_or_none(az.resource_group, az.vault_name, self.plan)
        if held is not None and held.scenario_job:
            self.log.info("Recovery plan %r: a test failover is already running (job %s); waiting on it.",
                          self.plan, held.scenario_job)
            return held.scenario_job
        network = target.members[0] if target.members else None  # the gate gives every member the same network
        self.log.info("Test failover of recovery plan %r (%s) into %s.", self.plan,
                      ", ".join(m.vm for m in target.members), network.network if network and network.network
                      else "no network (isolated)")
        return hook.recovery_plan_test_failover(az.resource_group, az.vault_name, self.plan,
                                                {"properties": _test_failover_properties(network)})


class ManualActionOperator(HITLOperator):
    """A recovery plan's manual action as an Airflow required action: confirm, and the plan's ASR job goes on.

    Runs once the plan's job waits on the action (ASR suspends it). The task waits for a person in
    the awaiting-input state, with the site file's instructions, its approvers as the assigned
    users and its timeout. Confirm resumes the ASR job with a comment naming who confirmed and the
    run; Reject, or no answer in time, fails the task for good (no retry: an answer is final) and
    the drill, and the drill's teardown cancels the suspended job and cleans up. An unattended
    drill of a plan whose site file says ``unattended: auto_confirm`` does not wait: it confirms by
    itself, and the report says so.
    Returns (and pushes as ``outcome`` whatever the answer) a
    :class:`~site_recovery.records.ManualActionOutcome`.

    :param site_name: The site file, read again on the worker.
    :param plan: The recovery plan's name.
    :param action: The manual action's name (the ASR task the job waits on).
    :param instructions: What the person must do (the site file's ``instructions``).
    :param approvers: Airflow user names who may answer; empty: anyone allowed to act on the run.
    :param job_name: The plan's test failover job (typically the start task's XCom).
    """

    CONFIRM, REJECT = "Confirm", "Reject"
    template_fields: Sequence[str] = ("subject", "body", "job_name")
    ui_color = "#f2c744"
    #: what the plan's job runs, and what a refusal does, for the page a person answers
    what = "The drill"
    refused_means = "fails the drill; its cleanup then removes the test VMs."

    def __init__(self, *, site_name: str, plan: str, action: str, instructions: str, approvers: list[str],
                 job_name: Any, what: str | None = None, **kwargs: Any) -> None:
        self.what = what or self.what
        super().__init__(
            subject=f"Recovery plan {plan}: {action}", options=[self.CONFIRM, self.REJECT],
            body=(f"{self.what} of recovery plan **{plan}** waits for this manual action (the plan's ASR job is "
                  f"suspended on it).\n\n{instructions}\n\n**Confirm** once it is "
                  "done: the job resumes with a comment naming you and this run. **Reject** (or no answer in "
                  f"time) {self.refused_means}"),
            assigned_users=[{"id": user, "name": user} for user in approvers] or None, **kwargs)
        self.site_name = site_name
        self.plan = plan
        self.action = action
        self.job_name = job_name

    def refusal(self, what: str) -> Exception:
        """The error a refusal (or no answer) fails the task with."""
        return DrillFailed(f"Recovery plan {self.plan}: {what}; the drill fails and its cleanup removes the test VMs.")

    def resume_job(self, comment: str) -> None:
        """Let the plan's job go on past the action, leaving ``comment`` on it in ASR."""
        from site_recovery.site import load_site_named
        from site_recovery.tasks.drill import resume_plan_job

        resume_plan_job(load_site_named(self.site_name), self.job_name, comment)

    def execute(self, context: Context) -> Any:
        from site_recovery.tasks.drill import pulled_gate

        gate = pulled_gate(context["ti"])
        target = gate.plan(self.plan) if gate else None
        if target is not None and target.auto_confirm:
            return self._resume(context, by=None, automatic=True)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow.providers.standard.exceptions import HITLTriggerEventError
        from site_recovery.records import ManualActionOutcome

        try:
            answer = super().execute_complete(context, event)
        except HITLTriggerEventError as exc:  # HITLTimeoutError (and its kin): nobody answered in time
            self._push(context, ManualActionOutcome(plan=self.plan, action=self.action, confirmed=False,
                                                    comment=f"no answer: {exc}"))
            raise self.refusal(f"nobody confirmed the manual action {self.action!r} in time ({exc})") from None
        who = answered_by(answer)
        if answer["chosen_options"][0] != self.CONFIRM:
            self._push(context, ManualActionOutcome(plan=self.plan, action=self.action, confirmed=False, by=who,
                                                    at=answer["responded_at"], comment="rejected"))
            raise self.refusal(f"{who} rejected the manual action {self.action!r}")
        return self._resume(context, by=who, automatic=False, at=answer["responded_at"])

    def _resume(self, context: Context, *, by: str | None, automatic: bool, at: Any = None) -> Any:
        from site_recovery.drill import utc_now
        from site_recovery.records import ManualActionOutcome
        from site_recovery.tasks.drill import run_label

        run = run_label(context)
        comment = (f"{self.action}: confirmed automatically by the unattended drill {run} (the site file's "
                   "unattended: auto_confirm)" if automatic else f"{self.action}: confirmed by {by} in {run}")
        self.resume_job(comment)
        self.log.info("ASR job %s resumed: %s.", self.job_name, comment)
        outcome = ManualActionOutcome(plan=self.plan, action=self.action, confirmed=True, by=by,
                                      at=at or utc_now(), automatic=automatic, comment=comment)
        self._push(context, outcome)
        return outcome

    @staticmethod
    def _push(context: Context, outcome: Any) -> None:
        context["ti"].xcom_push(key="outcome", value=outcome)
