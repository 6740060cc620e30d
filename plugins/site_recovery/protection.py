"""Step 9, enable replication: which VMs to protect, and what a protected VM's state means.

Pure decisions, kept apart from the DAG's tasks and the triggers' poll loops so each can be
tested on its own: the plan (which in-scope VM needs what), the in-flight test behind the
initial-replication limit, and the status-to-event functions the sensors and triggers share.
The inputs are the hook's records (:class:`~site_recovery.records.ProtectedItemSummary`,
:class:`~site_recovery.records.ProtectableVm`, :class:`~site_recovery.records.JobSummary`),
never SDK objects, so nothing here calls Azure or needs Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from site_recovery.records import JobSummary, ProtectableVm, ProtectedItemSummary, WaitEvent
from site_recovery.vocabulary import ENABLE_SCENARIOS, ProtectionAction, ProtectionState, ReplicationHealth, WaitReason


class ScopeError(ValueError):
    """The run's VM list names VMs that are not in the paired clouds, or that the site file excludes."""


def running_enable_jobs_filter(fabric: str) -> str:
    """The OData filter of a vault's running jobs on one VMM server (fabric), as Azure PowerShell builds it."""
    return f"jobStatus eq 'InProgress' and fabricId eq '{fabric}'"


def enabling_vms(jobs: Iterable[JobSummary]) -> list[str]:
    """VMs with an enable or initial replication job running, from job summaries (each VM once)."""
    return sorted({job.target for job in jobs if job.scenario_name in ENABLE_SCENARIOS and job.target and job.running})


def classify(vm: ProtectableVm, item: ProtectedItemSummary | None, provider: str) -> tuple[ProtectionAction, str]:
    """Decide what the run does with one in-scope VM: (action, detail for the report).

    :param vm: The VM as ASR lists it for protection.
    :param item: Its protected item, or None.
    :param provider: The replication policy's provider (``HyperVReplica2012R2``), which the VM must support.
    """
    if item is not None:
        if item.is_protected:
            return ProtectionAction.PROTECTED, item.describe()
        if item.is_enabling:
            job = f", ASR job {item.scenario_job}" if item.scenario_job else ""
            return ProtectionAction.WAIT, f"enabling already under way: {item.describe()}{job}"
        errors = item.health_errors_text()
        return ProtectionAction.ATTENTION, item.describe() + (f": {errors}" if errors else "")
    if vm.protected:
        return ProtectionAction.ATTENTION, "ASR lists the VM as protected, but its protected item is not in this cloud"
    reasons = list(vm.readiness_errors)
    if vm.supported_providers and provider not in vm.supported_providers:
        reasons.append(f"its host supports {', '.join(vm.supported_providers)}, not the policy's {provider}")
    if reasons:
        return ProtectionAction.NOT_PROTECTABLE, " ".join(str(r) for r in reasons)
    return ProtectionAction.ENABLE, "will enable replication"


def check_requested(requested: Iterable[str], clouds: Mapping[str, Iterable[str]],
                    in_scope: Iterable[str]) -> set[str]:
    """Validate the run's VM names; return them casefolded.

    :param requested: Names from the trigger form.
    :param clouds: VM names per paired primary cloud, as ASR lists them.
    :param in_scope: Names the site file's scope allows.
    :raise ScopeError: Naming every VM not found in the paired clouds and every VM the site file leaves out.
    """
    known = {name.casefold(): cloud for cloud, names in clouds.items() for name in names}
    allowed = {name.casefold() for name in in_scope}
    wanted = [name.strip() for name in requested if name and name.strip()]
    unknown = [name for name in wanted if name.casefold() not in known]
    excluded = [name for name in wanted if name.casefold() in known and name.casefold() not in allowed]
    problems = []
    if unknown:
        problems.append(f"not in any paired cloud ({', '.join(clouds)}): {', '.join(unknown)}")
    if excluded:
        named = ", ".join(f"{n} ({known[n.casefold()]})" for n in excluded)
        problems.append(f"excluded by the site file's scope: {named}")
    if problems:
        raise ScopeError("The run's vms parameter names VMs that cannot be protected by this DAG: "
                         + "; ".join(problems) + ". Allowed: " + (", ".join(sorted(in_scope)) or "none"))
    return {name.casefold() for name in wanted}


def initial_replication_event(item: ProtectedItemSummary | None, vm: str) -> WaitEvent | None:
    """Decide an initial-replication wait from one read of the item, or None while replication goes on.

    Success needs the VM Protected *and* its (delta) replication healthy: right after initial
    replication a VM can show Protected with Warning health until the first delta cycles run.

    :param item: The protected item, or None when it is gone.
    :param vm: The VM's name, for the messages.
    """
    if item is None:
        return WaitEvent(reason=WaitReason.FAILED,
                         message=f"VM {vm!r} is no longer protected: its protected item is gone (protection was "
                                 "disabled, or the enable job failed and ASR removed it).")
    if item.is_protected and item.replication_health == ReplicationHealth.NORMAL:
        last = f"; last replicated {item.last_replicated_time.isoformat()}" if item.last_replicated_time else ""
        return WaitEvent(reason=WaitReason.SUCCEEDED, item=item,
                         message=f"VM {vm!r} is protected: initial replication complete, delta replication "
                                 f"healthy{last}.")
    if item.protection_state == ProtectionState.INITIAL_REPLICATION_FAILED or (
            not item.is_protected and not item.is_enabling):
        errors = item.health_errors_text()
        return WaitEvent(reason=WaitReason.FAILED, item=item,
                         message=f"Initial replication of VM {vm!r} did not complete: {item.describe()}"
                                 + (f": {errors}" if errors else "."))
    return None


def initial_replication_timeout_event(item: ProtectedItemSummary | None, vm: str, end_time: float,
                                      limit: str) -> WaitEvent:
    """The ``timed_out`` event of a wait that ran past its deadline, saying where replication stood."""
    deadline = datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds")
    where = item.describe() if item else "not read yet"
    return WaitEvent(reason=WaitReason.TIMED_OUT, item=item,
                     message=f"Timeout: initial replication of VM {vm!r} had not completed at {deadline} (limit "
                             f"{limit}, site file scope.initial_replication_timeout); it stood at: {where}.")


def slot_event(busy: list[str], limit: int) -> WaitEvent | None:
    """A free initial-replication slot ends the wait; None while all ``limit`` slots are taken."""
    if len(busy) < limit:
        return WaitEvent(reason=WaitReason.SUCCEEDED, busy=busy,
                         message=f"{len(busy)} of {limit} initial replications running.")
    return None


def slot_timeout_event(busy: list[str], limit: int) -> WaitEvent:
    return WaitEvent(reason=WaitReason.TIMED_OUT, busy=busy,
                     message=f"Timeout: all {limit} initial replication slots stayed busy ({', '.join(busy)}); "
                             "none freed in time.")


class ReplicationProgress:
    """Remember what was last logged of a VM's replication, to log only what changed between reads."""

    def __init__(self) -> None:
        self.seen: tuple | None = None

    def update(self, item: ProtectedItemSummary | None, vm: str) -> list[str]:
        if item is None:
            return []
        now = (item.protection_state_description, item.initial_replication_percent, item.replication_health)
        if now == self.seen:
            return []
        self.seen = now
        return [f"VM {vm!r}: {item.describe()}."]
