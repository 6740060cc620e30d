"""Step 10, the test failover drill: what makes a VM ready, what the drill may do, what it proved.

Pure decisions on the hook's records (:class:`~site_recovery.records.ProtectedItemSummary`,
:class:`~site_recovery.records.JobSummary`) and the drill's own
(:class:`~site_recovery.records.TestVmCheck`, :class:`~site_recovery.records.VmDrillResult`),
kept apart from the tasks so each rule is tested on its own:

* the readiness gate per VM (health, TestFailover allowed, recovery point age, nothing running);
* which test failovers an interrupted drill left behind;
* the one safety rule no drill may break: it never fails over, commits or reprotects
  (:func:`drill_may_send`, the ``request_guard`` of every drill's
  :class:`~site_recovery.hooks.asr.AzureSiteRecoveryHook`, which checks each request before it
  leaves and raises :class:`~site_recovery.exceptions.RequestRefused`);
* what one look at a test VM proved (:func:`check_test_vm`);
* the per-VM facts of the report (RTO, RPO achieved, timeline). Whether a drilled VM passed is
  decided once, by :func:`site_recovery.drill_verdict.vm_problems`; nothing here re-decides it.

Nothing here imports Airflow or Azure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from site_recovery.records import (
    CleanupCheck,
    DrillJob,
    FailoverItem,
    ManualActionOutcome,
    PlanActionResult,
    PlanDrillResult,
    PlanGroupResult,
    JobSummary,
    ProbeResult,
    ProtectedItemSummary,
    TestVmCheck,
    TimelineSpan,
    VmDrillResult,
    VmTarget,
    format_seconds,
    seconds_between,
)
from site_recovery.vocabulary import (
    DRILL_SCENARIOS,
    AllowedOperation,
    AsrJobState,
    DrillOutcome,
    DrillPhase,
    JobTaskDetails,
    ReplicationHealth,
    Scenario,
)

if TYPE_CHECKING:
    from site_recovery.scripts import TestVmStatus
    from site_recovery.site import RecoveryPlan

#: What ASR appends to a VM's name for its test failover VM (when the job does not name it).
TEST_VM_SUFFIX = " - Test"

#: The only ARM writes a drill sends: test failover, its cleanup, and cancelling its own job.
_DRILL_WRITES = re.compile(r"/(replicationProtectedItems|replicationRecoveryPlans)/[^/]+/"
                           r"(testFailover|testFailoverCleanup)$"
                           r"|/replicationJobs/[^/]+/(cancel|resume)$", re.IGNORECASE)


def utc_now() -> datetime:
    """Now, UTC-aware (the drill's one clock, replaced in tests)."""
    return datetime.now(timezone.utc)


def drill_may_send(method: str, path: str, body: Mapping[str, Any] | None = None) -> bool:
    """True for reads, test failover, test failover cleanup and job cancel; False for any other write.

    Planned and unplanned failover, commit, reprotect, cancel failover, disabling protection and
    every PUT/PATCH/DELETE are refused: a drill must never touch production or its replication.
    """
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return True
    return method.upper() == "POST" and bool(_DRILL_WRITES.search(path.split("?", 1)[0].rstrip("/")))


# ------------------------------------------------------------------------------ the gate
def has_leftover_test_failover(item: ProtectedItemSummary) -> bool:
    """True when an earlier (interrupted) drill left a test failover that still needs its cleanup."""
    return item.in_test_failover and item.allows(AllowedOperation.TEST_FAILOVER_CLEANUP)


def gate_reasons(item: ProtectedItemSummary, *, allow_warning: bool, max_age_seconds: float,
                 now: datetime) -> list[str]:
    """Why a protected VM is not ready for a test failover (empty: ready).

    Ready means: Protected, replication health Normal (or Warning when allowed), ASR allows
    TestFailover, its newest recovery point is younger than ``max_age_seconds``, and no ASR job
    runs on it (a drill still active, a failover, a resync...).
    """
    reasons = []
    if not item.is_protected:
        reasons.append(f"not protected ({item.protection_state_description or item.protection_state})")
    healthy = {ReplicationHealth.NORMAL, ReplicationHealth.WARNING} if allow_warning else {ReplicationHealth.NORMAL}
    if item.replication_health not in healthy:
        errors = item.health_errors_text()
        reasons.append(f"replication health is {item.replication_health}" + (f": {errors}" if errors else ""))
    if item.scenario:
        job = f" (job {item.scenario_job})" if item.scenario_job else ""
        active = ("a drill is still active on it" if item.scenario in DRILL_SCENARIOS
                  else f"ASR is running {item.scenario} on it")
        reasons.append(active + job)
    elif not item.allows(AllowedOperation.TEST_FAILOVER):
        allowed = ", ".join(str(op) for op in item.allowed_operations) or "none"
        reasons.append(f"ASR does not allow {AllowedOperation.TEST_FAILOVER} now (allowed: {allowed})")
    replicated = item.last_replicated_time
    if replicated is None:
        reasons.append("ASR shows no recovery point")
    else:
        age = (now - replicated).total_seconds()
        if age > max_age_seconds:
            reasons.append(f"newest recovery point is {format_seconds(age)} old "
                           f"({replicated.isoformat(timespec='seconds')}); "
                           f"the gate allows {format_seconds(max_age_seconds)}")
    return reasons


# ------------------------------------------------------------------------------ verify
class _ScopedProbe(Protocol):
    vm: str | None


P = TypeVar("P", bound=_ScopedProbe)


def probes_for(vm: str, probes: Iterable[P]) -> list[P]:
    """The site file's probes that apply to ``vm`` (a probe without ``vm`` applies to every VM)."""
    return [p for p in probes if not p.vm or fnmatchcase(vm.casefold(), str(p.vm).casefold())]


def failover_item_of(vm: str, failover_job: JobSummary | None) -> FailoverItem | None:
    """``vm`` 's entry in a test failover job: the only one of a VM's job, its own of a recovery plan's."""
    items = failover_job.protected_items if failover_job else []
    mine = [item for item in items if (item.friendly_name or "").casefold() == vm.casefold()]
    return mine[0] if mine else (items[0] if len(items) == 1 else None)


def name_of_test_vm(vm: str, failover_job: JobSummary | None = None) -> str:
    """The test VM of ``vm``: as its test failover job names it, else ASR's default ``<vm> - Test``."""
    item = failover_item_of(vm, failover_job)
    return item.test_vm_name if item and item.test_vm_name else f"{vm}{TEST_VM_SUFFIX}"


def check_test_vm(status: TestVmStatus, probes: list[ProbeResult], *, started_at: datetime | None,
                  now: datetime) -> TestVmCheck:
    """What one look at a test VM proved.

    ``ok`` (verified at ``now``) when the VM runs with a heartbeat and an address and every
    probe passed; ``probes`` are only run, and only recorded, once the VM is healthy.
    """
    check = TestVmCheck(vm_name=status.vm_name, state=status.state, heartbeat=status.heartbeat,
                        ip_addresses=list(status.ip_addresses), started_at=started_at, detail=status.summary())
    if not status.healthy:
        return check
    check.probes, check.ended_at = list(probes), now
    failed = [probe.detail for probe in probes if not probe.ok]
    if failed:
        check.detail = "probe failed: " + "; ".join(failed)
    else:
        check.ok, check.verified_at = True, now
    return check


# ------------------------------------------------------------------------------ report
def vm_result(target: VmTarget, *, failover_job: JobSummary | None, verify: TestVmCheck | None,
              cleanup_job: JobSummary | None, cleaned: CleanupCheck | None, rto_target: float,
              rpo_target: float) -> VmDrillResult:
    """One drilled VM's entry of the drill report: measures, jobs, timeline, and its outcome.

    RPO achieved is the recovery point's age when the test failover started; RTO runs from the
    test failover's start to the test VM's verification. The outcome and ``error`` (the first
    problem) come from :func:`site_recovery.drill_verdict.vm_problems`, the one rule of what a
    drilled VM must have done to pass.
    """
    from site_recovery.drill_verdict import vm_problems

    details = failover_item_of(target.vm, failover_job)
    point = details.recovery_point_time if details else None
    failover_start = failover_job.start_time if failover_job else None
    rpo = seconds_between(point, failover_start)
    rto = seconds_between(failover_start, verify.verified_at) if verify and verify.ok else None
    jobs = [DrillJob.model_validate({**job.model_dump(), "kind": kind})
            for kind, job in ((Scenario.TEST_FAILOVER, failover_job), (Scenario.TEST_FAILOVER_CLEANUP, cleanup_job))
            if job]
    timeline = []
    if failover_job:
        timeline.append(TimelineSpan(phase=DrillPhase.TEST_FAILOVER, start=failover_start, end=failover_job.end_time))
    if verify and verify.started_at:
        timeline.append(TimelineSpan(phase=DrillPhase.VERIFY, start=verify.started_at,
                                     end=verify.verified_at or verify.ended_at))
    if cleanup_job:
        timeline.append(TimelineSpan(phase=DrillPhase.CLEANUP, start=cleanup_job.start_time, end=cleanup_job.end_time))
    result = VmDrillResult(
        vm=target.vm, cloud=target.cloud, outcome=DrillOutcome.PASSED, recovery_point_time=point,
        rpo_achieved_seconds=rpo, rpo_met=None if rpo is None else rpo <= rpo_target,
        rto_seconds=rto, rto_met=None if rto is None else rto <= rto_target,
        test_vm_name=(details.test_vm_name if details else None) or (verify.vm_name if verify else None),
        jobs=jobs, verify=verify, probes=list(verify.probes) if verify else [], cleanup=cleaned,
        timeline=timeline,
    )
    problems = vm_problems(result)
    if problems:
        result.outcome, result.error = DrillOutcome.FAILED, problems[0]
    return result


def skipped_result(vm: str, reason: str) -> VmDrillResult:
    """The report entry of a VM the readiness gate held back."""
    return VmDrillResult(vm=vm, outcome=DrillOutcome.SKIPPED, error=reason)


# ----------------------------------------------------------------------- recovery plans
_ACTION_KINDS = {JobTaskDetails.SCRIPT_ACTION: "script", JobTaskDetails.MANUAL_ACTION: "manual"}


def plan_result(plan: RecoveryPlan, *, job: JobSummary | None, verifies: dict[str, TestVmCheck],
                outcomes: list[ManualActionOutcome], skipped: str | None, rto_target: float,
                member_results: list[VmDrillResult] = (), checks: dict[str, TestVmCheck] | None = None,
                ) -> PlanDrillResult:
    """A recovery plan's section of the drill report: its groups and actions as its job ran them, its RTO, its outcome.

    ``checks`` are the Airflow-side checks' looks by check name (ASR holds each check as a manual
    action, so the job reports where it ran; the look says what the probe found).

    The plan's RTO runs from its test failover's start to the last member verified (None until
    every member is). It passes when its job succeeded and every member passed (verified, cleaned
    up); a plan the gate held back is skipped with the gate's reason.
    """
    base = {"plan": plan.name, "description": plan.description, "vms": plan.vms, "rto_target_seconds": rto_target}
    if skipped is not None:
        return PlanDrillResult(outcome=DrillOutcome.SKIPPED, error=skipped, **base)
    tasks = job.tasks if job else []
    groups = [PlanGroupResult(group=t.group_id or "", label=t.label, vms=t.vms, state=t.state, start=t.start_time,
                              end=t.end_time) for t in tasks if t.details_type == JobTaskDetails.PLAN_GROUP]
    confirmed = {o.action: o for o in outcomes}
    looks = {name.casefold(): look for name, look in (checks or {}).items()}
    check_names = {c.name.casefold() for c in plan.checks()}
    actions = []
    for t in tasks:
        kind = _ACTION_KINDS.get(t.details_type or "")
        if kind is None:
            continue
        if t.label.casefold() in check_names:
            look = looks.get(t.label.casefold())
            state = t.state if look is None or look.ok else AsrJobState.FAILED
            detail = ("; ".join(p.detail for p in look.probes) or look.detail) if look else "not run"
            actions.append(PlanActionResult(name=t.label, kind="check", state=state, start=t.start_time,
                                            end=t.end_time, detail=detail))
            continue
        detail = t.output if kind == "script" else _confirmation(confirmed.get(t.label)) or t.observation
        actions.append(PlanActionResult(name=t.label, kind=kind, state=t.state, start=t.start_time, end=t.end_time,
                                        detail=detail))
    verified = [v.verified_at for v in verifies.values() if v.ok and v.verified_at]
    everyone = len(verified) == len(plan.vms)
    rto = seconds_between(job.start_time, max(verified)) if job and job.start_time and verified and everyone else None
    # What stopped the plan first: an action nobody confirmed or a check that failed left the job suspended.
    problems = [f"{o.action}: {o.comment or 'not confirmed'}" for o in outcomes if not o.confirmed]
    problems += [f"check {name}: {look.detail}" for name, look in (checks or {}).items() if not look.ok]
    if job is None:
        problems.append("the plan's test failover did not start")
    elif job.state is not AsrJobState.SUCCEEDED or job.partially_succeeded:
        problems.append(f"{job.label} {str(job.state or 'unknown').lower()}"
                        + (f": {job.errors_text()}" if job.errors_text() else ""))
    problems += [f"{r.vm}: {r.error}" for r in member_results if r.outcome is not DrillOutcome.PASSED and r.error]
    if not member_results and not problems:
        problems.append("no member was verified")
    return PlanDrillResult(
        outcome=DrillOutcome.FAILED if problems else DrillOutcome.PASSED, job=job, groups=groups, actions=actions,
        manual_actions=outcomes, rto_seconds=rto, rto_met=None if rto is None else rto <= rto_target,
        error=problems[0] if problems else None, **base)


def _confirmation(outcome: ManualActionOutcome | None) -> str | None:
    if outcome is None:
        return None
    when = f" at {outcome.at:%H:%M:%S} UTC" if outcome.at else ""
    if not outcome.confirmed:
        return f"not confirmed ({outcome.comment or 'no answer'}){' by ' + outcome.by if outcome.by else ''}{when}"
    if outcome.automatic:
        return f"confirmed automatically by the unattended drill{when}"
    return f"confirmed by {outcome.by}{when}"
