"""The verification of a real recovery: each recovered VM runs, answers its heartbeat and passes the site's probes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from site_recovery.exceptions import RecoveryFailed
from site_recovery.sensors.asr import OptionalAsrJobSensor
from site_recovery.sensors.drill import PlanCheckSensor, PlanGroupSensor, TestVmVerifiedSensor
from site_recovery.vocabulary import FailoverDirection

from airflow.sdk import PokeReturnValue

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.hooks.vmm import VmmScriptHook


class RecoveredVmVerifiedSensor(TestVmVerifiedSensor):
    """
    Wait until a failed-over VM runs with a heartbeat on the VMM server of the site it went to, then run
    the site's probes (``drill.probes``: what a drill proves is what a recovery is verified by).

    The drill's verification (:class:`~site_recovery.sensors.drill.TestVmVerifiedSensor`) looking at
    the VM itself rather than its test VM: the replica on the recovery site after a failover, the
    original on the primary site after a failback. Pushes each look under ``verify`` (the commit
    approval shows it); a failed probe fails at once (:class:`~site_recovery.exceptions.RecoveryFailed`).

    :param direction: The recovery's direction: which site's VMM server is asked.
    :param timeout: Seconds to wait: the site's ``failover.verify_timeout``.
    """

    noun, timeout_setting = "recovered VM", "failover.verify_timeout"
    ui_color = "#17917f"

    def __init__(self, *, direction: FailoverDirection, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direction = FailoverDirection(direction)

    @cached_property
    def vmm(self) -> VmmScriptHook:
        """The VMM server of the site the VM went to."""
        from site_recovery.failover import sides
        from site_recovery.hooks.vmm import VmmScriptHook

        goes_to = sides(self.direction)[1]
        return VmmScriptHook(getattr(self.site, goes_to).vmm.psrp_conn_id)

    def looked_at(self) -> str:
        return self.vm_name

    def failed(self, message: str) -> Exception:
        return RecoveryFailed(message)


class RecoveryPlanCheckSensor(PlanCheckSensor, RecoveredVmVerifiedSensor):
    """
    A recovery plan's Airflow-side check met by its real failover or failback: probe the recovered VM, then let
    the plan's job go on.

    The drill's check (:class:`~site_recovery.sensors.drill.PlanCheckSensor`) looking at the VM
    itself on the site it went to, as :class:`RecoveredVmVerifiedSensor` does, and resuming the job
    through a guard that lets it resume that one job alone. A failed probe, or a VM not healthy
    within ``failover.verify_timeout``, fails the run with the job left suspended at the check, so
    a rerun adopts it and probes again. Nothing to do when the job does not wait at the check in
    this run (its wait returned nothing), or is past it already (read from ASR at each look: a
    retry after the resume went through).
    """

    noun, timeout_setting = "recovered VM", "failover.verify_timeout"

    def execute(self, context: Context) -> Any:
        if self._job() is None:
            self.log.info("Recovery plan %s: its job does not wait at %r in this run (it ran in an earlier run); "
                          "nothing to check.", self.plan, self.check)
            return None
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from site_recovery.tasks.recovery import live_job

        if live_job(self.site, self.job_name).passed(self.check):
            self.log.info("ASR job %s is past the check %r already: nothing to probe.", self.job_name, self.check)
            return PokeReturnValue(is_done=True, xcom_value=None)
        return super().poke(context)

    def resume_job(self, comment: str) -> None:
        from site_recovery.tasks.recovery import resume_hook

        az = self.site.azure
        resume_hook(self.site, self.job_name).resume_job(az.resource_group, az.vault_name, self.job_name, comment)


class RecoveryPlanPauseSensor(OptionalAsrJobSensor):
    """Wait until a recovery plan's failover job waits at one manual action or Airflow check.

    Done at once, returning None, when the plan's failover ran in an earlier run (no job) or when
    this run's kind of failover does not meet the manual action (the site file's
    ``failover_types``; a check is met by every failover); the pause's answer then has nothing
    to do. Done at once with the job when it is past the pause already (a rerun that adopted the
    job). Otherwise the wait of :class:`~site_recovery.sensors.asr.AsrJobSensor` with ``suspend_at``.

    :param kind: The run's failover kind (``planned``/``unplanned``; templated).
    :param failover_types: The failover types the manual action runs in (all, for a check).
    """

    template_fields: Sequence[str] = (*OptionalAsrJobSensor.template_fields, "kind")

    def __init__(self, *, kind: str, failover_types: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind, self.failover_types = kind, list(failover_types)

    def execute(self, context: Context) -> Any:
        from site_recovery.hooks.asr import summarize_job

        if str(self.kind) not in self.failover_types:
            self.log.info("A %s failover does not meet %r (it runs in: %s).", self.kind, self.suspend_at,
                          ", ".join(self.failover_types))
            return None
        if self.job_name and self.job_name != "None":
            job = summarize_job(self.hook.get_job(self.resource_group_name, self.vault_name, self.job_name))
            if job.passed(self.suspend_at):
                self.log.info("%s is past %r already.", job.label, self.suspend_at)
                return job
        return super().execute(context)


class RecoveryPlanGroupSensor(PlanGroupSensor):
    """:class:`~site_recovery.sensors.drill.PlanGroupSensor` on a plan's real failover job: never cancels the job,
    and returns the group's members at once when the failover ran in an earlier run (they are verified again)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cancel_on_kill=False, **kwargs)

    def execute(self, context: Context) -> Any:
        if not self.job_name or self.job_name == "None":
            self.log.info("The plan's failover ran in an earlier run: group %s is up.", self.group)
            return self.members_of_group()
        return super().execute(context)
