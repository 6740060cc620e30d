"""Sensors of the test failover drill (step 10): is the test VM up, and does it answer its probes?

:class:`TestVmVerifiedSensor` verifies each drilled VM; :class:`PlanCheckSensor` runs a recovery
plan's Airflow-side check between two groups, while the plan's job waits for it;
:class:`PlanGroupSensor` waits for one boot group of a plan to be up, so its members are verified
while the next groups boot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout
from site_recovery.exceptions import DrillFailed
from site_recovery.sensors.asr import AsrJobSensor

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.hooks.vmm import VmmScriptHook
    from site_recovery.records import JobSummary, TestVmCheck, VmTarget
    from site_recovery.site import PlanAction, Probe, Site


class TestVmVerifiedSensor(BaseSensorOperator):
    """
    Wait until one VM's test VM runs with a heartbeat on the recovery VMM, then run the site's probes
    (``drill.probes``).

    Each poke asks the recovery VMM once (``Get-TestVmStatus``); once the VM is healthy, the
    site file's probes that apply to it are run (``Test-TestVmEndpoint``) and the sensor is
    done. Every poke pushes what it saw under ``verify`` (a
    :class:`~site_recovery.records.TestVmCheck`), so the report has the last look whatever the
    outcome; the sensor returns the check once verified. It is a plain ``BaseSensorOperator``:
    ``mode`` (``reschedule`` by default, so no worker is held between looks), ``timeout``,
    ``soft_fail`` and ``exponential_backoff`` work as for any sensor.

    A failed probe fails the task at once (:class:`~site_recovery.exceptions.DrillFailed`, no
    retry): the VM is up and a retry would see the same. A VM still not healthy when ``timeout``
    has passed fails with ``AirflowSensorTimeout``, saying what was seen last.

    :param site_name: The site file (recovery VMM, probes), read again on the worker.
    :param target: The VM as the readiness gate chose it (a :class:`~site_recovery.records.VmTarget`
        or its JSON form); it labels the mapped task.
    :param failover_job: The VM's test failover job (its :class:`~site_recovery.records.JobSummary`,
        typically the wait's XCom), which names the test VM; without it ASR's default name is used.
    :param timeout: Seconds to wait for a healthy test VM: the site's ``drill.verify_timeout``.
    :param poke_interval: Seconds between looks: the site's ``timeouts.poll_interval``.
    """

    __test__ = False  # not a pytest test class, despite the name

    template_fields: Sequence[str] = ("target", "failover_job")
    ui_color = "#17917f"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, site_name: str, target: Any, failover_job: Any = None, mode: str = "reschedule",
                 **kwargs: Any) -> None:
        super().__init__(mode=mode, **kwargs)
        self.site_name = site_name
        self.target = target
        self.failover_job = failover_job
        self._first_look: datetime | None = None

    @property
    def vm_target(self) -> VmTarget:
        """The rendered target, validated (a malformed one names the missing field)."""
        from site_recovery.records import VmTarget

        return self.target if isinstance(self.target, VmTarget) else VmTarget.model_validate(self.target)

    @cached_property
    def site(self) -> Site:
        from site_recovery.site import load_site_named

        return load_site_named(self.site_name)

    #: what the sensor looks at, and the site file setting its timeout comes from (for messages)
    noun, timeout_setting = "test VM", "drill.verify_timeout"

    @cached_property
    def vmm(self) -> VmmScriptHook:
        """The recovery VMM server, where the test VM comes up and the probes run from."""
        from site_recovery.hooks.vmm import VmmScriptHook

        return VmmScriptHook(self.site.recovery.vmm.psrp_conn_id)

    def looked_at(self) -> str:
        """The name of the VM the VMM server is asked about: the test VM the failover job names."""
        from site_recovery.drill import name_of_test_vm

        return name_of_test_vm(self.vm_name, self._job())

    def failed(self, message: str) -> Exception:
        """The error of a VM that is up but fails a check (final: no retry would see otherwise)."""
        return DrillFailed(message)

    @property
    def vm_name(self) -> str:
        """The VM whose test VM this sensor looks at."""
        return self.vm_target.vm

    def probes(self) -> list[Probe]:
        """The probes to run once the test VM is healthy: the site file's that apply to the VM."""
        from site_recovery.drill import probes_for

        return probes_for(self.vm_name, self.site.drill.probes)

    def verified(self, context: Context, check: TestVmCheck) -> None:
        """Called once the test VM is verified, before the sensor ends."""

    def _job(self) -> JobSummary | None:
        from site_recovery.records import JobSummary

        job = self.failover_job
        if not job or isinstance(job, str):  # no job, or a template pulling a missing XCom ("None")
            return None
        return JobSummary.model_validate(job)

    def _started(self, context: Context) -> datetime:
        """When the sensor first looked (kept across reschedules: the task's first reschedule)."""
        from site_recovery.drill import utc_now

        if self._first_look is None:
            first = context["ti"].get_first_reschedule_date(context) if self.reschedule else None
            self._first_look = first or utc_now()
        return self._first_look

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from site_recovery.drill import check_test_vm, utc_now
        from site_recovery.records import ProbeResult, format_seconds

        started, vm = self._started(context), self.vm_name
        name, noun = self.looked_at(), self.noun
        vmm = self.vmm
        status = vmm.run_script("Get-TestVmStatus", {"VmName": name})
        self.log.info("%s%s: %s.", noun[0].upper(), noun[1:], status.summary())
        probes = []
        if status.healthy:
            for probe in self.probes():
                answer = vmm.run_script("Test-TestVmEndpoint", {
                    "VmName": name, "Kind": probe.kind, "Port": probe.port,
                    **({"Path": probe.path} if probe.path else {})})
                self.log.info("Probe %s", answer.summary())
                probes.append(ProbeResult(kind=probe.kind, port=probe.port, path=probe.path, ok=answer.ok,
                                          detail=answer.summary()))
        now = utc_now()
        check = check_test_vm(status, probes, started_at=started, now=now)
        if check.ok:
            self._push(context, check)
            self.log.info("VM %r verified: the %s runs, answers its heartbeat%s.", vm, noun,
                          f" and passed {len(probes)} probe(s)" if probes else "")
            self.verified(context, check)
            return PokeReturnValue(is_done=True, xcom_value=check)
        if status.healthy:
            self._push(context, check)
            raise self.failed(f"VM {vm!r}: the {noun} runs but {check.detail}.")
        if (now - started).total_seconds() >= self.timeout:
            check.ended_at = now
            self._push(context, check)
            raise AirflowSensorTimeout(f"VM {vm!r}: the {noun} was not running with a heartbeat within "
                                       f"{format_seconds(self.timeout)} ({self.timeout_setting}); "
                                       f"last seen: {status.summary()}.")
        self._push(context, check)
        return False

    @staticmethod
    def _push(context: Context, check: TestVmCheck) -> None:
        context["ti"].xcom_push(key="verify", value=check)


class PlanCheckSensor(TestVmVerifiedSensor):
    """
    A recovery plan's Airflow-side check, between two groups: probe one VM's test VM, then let the plan go on.

    ASR has no such action, so the plan holds the check as a manual action (see
    :mod:`site_recovery.recovery_plans`): the plan's job suspends there, the next group waits,
    and this sensor runs once it does. It looks at the test VM as :class:`TestVmVerifiedSensor`
    does (healthy, then the check's one probe) and, when the probe passes, resumes the job with a
    comment saying what passed. A failed probe or a test VM not healthy in ``timeout`` fails the
    drill (the job stays suspended; the drill's teardown cancels it and cleans up). Pushes its look
    under ``verify`` like the verify sensor, for the report.

    :param plan: The recovery plan's name.
    :param check: The check's name in the plan (the ASR task the job waits on).
    :param vm: The VM the check probes (the probe's ``vm``).
    :param job_name: The plan's test failover job.
    :param failover_job: The job as its wait last read it (names the test VMs).
    """

    template_fields: Sequence[str] = ("failover_job", "job_name")
    ui_color = "#2f6f9f"

    def __init__(self, *, site_name: str, plan: str, check: str, vm: str, job_name: Any, failover_job: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(site_name=site_name, target=None, failover_job=failover_job, **kwargs)
        self.plan, self.check, self.vm, self.job_name = plan, check, vm, job_name

    @property
    def vm_name(self) -> str:
        return self.vm

    @property
    def action(self) -> PlanAction:
        return next(a for a in self.site.plan_named(self.plan).checks() if a.name.casefold() == self.check.casefold())

    def probes(self) -> list[Probe]:
        return [self.action.probe]

    def verified(self, context: Context, check: TestVmCheck) -> None:
        from site_recovery.tasks.drill import run_label

        self.resume_job(f"{self.check}: Airflow check passed in {run_label(context)} "
                        f"({'; '.join(p.detail for p in check.probes)})")
        self.log.info("Recovery plan %s: check %r passed; ASR job %s resumed.", self.plan, self.check, self.job_name)

    def resume_job(self, comment: str) -> None:
        """Let the plan's job go on past the check, leaving ``comment`` on it in ASR."""
        from site_recovery.tasks.drill import resume_plan_job

        resume_plan_job(self.site, self.job_name, comment)


class PlanGroupSensor(AsrJobSensor):
    """Wait until one boot group of a recovery plan's test failover job is up; return the group's members.

    A wait on the plan's job (:class:`~site_recovery.sensors.asr.AsrJobSensor` with ``until_group``)
    that ends once ASR reports the group's task succeeded, while later groups still boot, so the
    group's members are verified then rather than after the whole job. It returns the drilled
    members of the group (the verification is mapped over them) and pushes the job as read then
    under ``job`` (it names the test VMs). Stopping it cancels the plan's job, as stopping any of the
    drill's waits does (``cancel_on_kill``, which a real recovery turns off).

    :param group: The boot group's number (1 boots first), also its group id in ASR's job.
    :param vms: The group's VMs as the site file names them (their order is the mapping's).
    :param members: The plan's drilled members (the plan's test failover task's XCom).
    """

    template_fields: Sequence[str] = (*AsrJobSensor.template_fields, "members")

    def __init__(self, *, group: int, vms: list[str], members: Any, cancel_on_kill: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(until_group=str(group), cancel_on_kill=cancel_on_kill, **kwargs)
        self.group, self.vms, self.members = group, vms, members

    def done(self, context: Context, job: JobSummary) -> list[VmTarget]:
        context["ti"].xcom_push(key="job", value=job)
        return self.members_of_group()

    def members_of_group(self) -> list[VmTarget]:
        from site_recovery.records import VmTarget

        by_vm = {member.vm.casefold(): member for member in
                 (VmTarget.model_validate(m) for m in self.members or [])}
        return [by_vm[vm.casefold()] for vm in self.vms if vm.casefold() in by_vm]
