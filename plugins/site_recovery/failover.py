"""The real recovery (failover, commit or cancel, reprotect): where a VM stands, what may be sent, what the
approver reads.

Pure decisions on the hook's records, kept apart from the tasks so each rule is tested on its own:

* where a protected VM stands in a recovery in one direction (:func:`stage_of`), so a rerun
  resumes where ASR stands (a committed VM is not failed over again);
* why a VM or a run may not start (:func:`vm_problems`, :func:`run_problems`): all of them are
  found and named before anything changes;
* the data a failover would lose (:func:`data_loss_seconds`);
* the request guard of each step (:func:`recovery_guard`): a task may send exactly the writes
  of its step, in its direction, and nothing else; a task answering a pause of a plan's job may
  resume that job alone (:func:`resume_guard`); a drill's guard
  (:func:`site_recovery.drill.drill_may_send`) still refuses every one of them;
* the assessment as the approver and the log read it (:func:`assessment_markdown`).

Nothing here imports Airflow or Azure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from site_recovery.records import (
    DASH,
    ProtectedItemSummary,
    RecoveryApproval,
    RecoveryAssessment,
    RecoveryVm,
    RecoveryVmResult,
    TestVmCheck,
    VmTarget,
    format_seconds,
)
from site_recovery.vocabulary import (
    DRILL_SCENARIOS,
    AllowedOperation,
    ApprovalOption,
    FailoverDirection,
    FailoverKind,
    RecoveryStage,
    RecoveryStep,
    Scenario,
)

#: ``(method, path, JSON body or None) -> bool``: a request answered False is refused before it leaves.
RequestGuard = Callable[[str, str, "Mapping[str, Any] | None"], bool]

#: The POST actions on a protected item or a recovery plan each step may send.
STEP_ACTIONS: dict[RecoveryStep, frozenset[str]] = {
    RecoveryStep.FAILOVER: frozenset({"plannedfailover", "unplannedfailover"}),
    RecoveryStep.COMMIT: frozenset({"failovercommit"}),
    RecoveryStep.CANCEL: frozenset({"failovercancel"}),
    RecoveryStep.REPROTECT: frozenset({"reprotect"}),
}
#: the actions whose body names a direction (the bodiless commit and cancel act on the item as it stands)
_DIRECTED = frozenset({"plannedfailover", "unplannedfailover", "reprotect"})
_WRITE = re.compile(r"/(?:replicationProtectedItems|replicationRecoveryPlans)/[^/]+/(?P<action>[A-Za-z]+)$",
                    re.IGNORECASE)
#: a plan's failover job resumed past a manual action or an Airflow check
_RESUME = re.compile(r"/replicationJobs/(?P<job>[^/]+)/resume$", re.IGNORECASE)

#: The site a recovery in each direction leaves and the one it goes to (a protected item's ``activeLocation``).
_LOCATIONS = {FailoverDirection.PRIMARY_TO_RECOVERY: ("Primary", "Recovery"),
              FailoverDirection.RECOVERY_TO_PRIMARY: ("Recovery", "Primary")}
_FAILOVER_OPERATION = {FailoverKind.PLANNED: AllowedOperation.PLANNED_FAILOVER,
                       FailoverKind.UNPLANNED: AllowedOperation.UNPLANNED_FAILOVER}
#: Where a VM stands when a step may start on it, and while that step's job runs (a rerun adopts the job).
STARTS_AT = {RecoveryStep.FAILOVER: RecoveryStage.READY, RecoveryStep.COMMIT: RecoveryStage.FAILED_OVER,
             RecoveryStep.CANCEL: RecoveryStage.FAILED_OVER, RecoveryStep.REPROTECT: RecoveryStage.COMMITTED}
RUNS_AS = {RecoveryStep.FAILOVER: RecoveryStage.FAILING_OVER, RecoveryStep.COMMIT: RecoveryStage.COMMITTING,
           RecoveryStep.CANCEL: RecoveryStage.CANCELLING, RecoveryStep.REPROTECT: RecoveryStage.REPROTECTING}
_RUNNING = {Scenario.PLANNED_FAILOVER: RecoveryStage.FAILING_OVER,
            Scenario.UNPLANNED_FAILOVER: RecoveryStage.FAILING_OVER, Scenario.COMMIT_FAILOVER: RecoveryStage.COMMITTING,
            Scenario.CANCEL_FAILOVER: RecoveryStage.CANCELLING, Scenario.REPROTECT: RecoveryStage.REPROTECTING}


def running_stage(scenario: Any) -> RecoveryStage | None:
    """The stage a recovery step's running job puts its VMs in (None: not one of a recovery's steps)."""
    return _RUNNING.get(scenario) if isinstance(scenario, Scenario) else None


def step_runs_on(step: RecoveryStep, direction: FailoverDirection) -> str:
    """Where the VMs are active (``activeLocation``) while ``step`` of a recovery in ``direction`` runs: the site
    they leave during the failover, the one they went to during the commit, cancel and reprotect."""
    leaves, goes_to = _LOCATIONS[FailoverDirection(direction)]
    return leaves if RecoveryStep(step) == RecoveryStep.FAILOVER else goes_to


def opposite(direction: FailoverDirection) -> FailoverDirection:
    return (FailoverDirection.RECOVERY_TO_PRIMARY if direction == FailoverDirection.PRIMARY_TO_RECOVERY
            else FailoverDirection.PRIMARY_TO_RECOVERY)


def site_file_direction(direction: FailoverDirection) -> str:
    """``direction`` as a site file's plan actions name it (``primary_to_recovery``, ``recovery_to_primary``)."""
    leaves, goes_to = sides(direction)
    return f"{leaves}_to_{goes_to}"


def sides(direction: FailoverDirection) -> tuple[str, str]:
    """``(leaves, goes to)``: the site file's sides (``primary``/``recovery``) of a recovery in ``direction``."""
    leaves, goes_to = _LOCATIONS[FailoverDirection(direction)]
    return leaves.lower(), goes_to.lower()


# ------------------------------------------------------------------------------ where a VM stands
def stage_of(item: ProtectedItemSummary, direction: FailoverDirection) -> RecoveryStage:
    """Where ``item`` stands in a recovery in ``direction``, from ASR's fields (never from text).

    A job of the recovery's own steps running on it is adopted by a rerun; any other operation
    (a drill, an enable, a resync) blocks it.
    """
    leaves, goes_to = _LOCATIONS[FailoverDirection(direction)]
    if item.scenario:
        running = running_stage(item.scenario)
        return running if running is not None else RecoveryStage.BLOCKED
    if item.active_location == leaves:
        if item.in_test_failover:
            return RecoveryStage.BLOCKED
        if item.allows(AllowedOperation.PLANNED_FAILOVER) or item.allows(AllowedOperation.UNPLANNED_FAILOVER):
            return RecoveryStage.READY
        return RecoveryStage.BLOCKED
    if item.active_location == goes_to:
        if item.allows(AllowedOperation.COMMIT):
            return RecoveryStage.FAILED_OVER
        if item.allows(AllowedOperation.REPROTECT):
            return RecoveryStage.COMMITTED
        if item.is_protected:
            return RecoveryStage.REPROTECTED
        if item.is_enabling:  # the reverse replication's own initial replication
            return RecoveryStage.REPROTECTING
    return RecoveryStage.BLOCKED


def vm_problems(item: ProtectedItemSummary, stage: RecoveryStage, kind: FailoverKind) -> list[str]:
    """Why the recovery cannot take ``item`` from ``stage`` (empty: it can)."""
    state = item.protection_state_description or str(item.protection_state or "unknown state")
    if stage == RecoveryStage.BLOCKED:
        if item.scenario:
            what = ("a drill's test failover is active on it" if item.scenario in DRILL_SCENARIOS
                    else f"ASR is running {item.scenario} on it")
            return [f"{what} (job {item.scenario_job or DASH}); wait for it to end or end it first"]
        if item.in_test_failover:
            return [f"a drill's test failover waits for its cleanup ({item.test_failover_state_description or ''})"
                    "; run the drill's cleanup first"]
        allowed = ", ".join(str(op) for op in item.allowed_operations) or "none"
        return [f"ASR allows no step of this recovery now: {state}, active on the {item.active_location or '?'} "
                f"site (allowed: {allowed})"]
    if stage == RecoveryStage.READY and not item.allows(_FAILOVER_OPERATION[kind]):
        allowed = ", ".join(str(op) for op in item.allowed_operations) or "none"
        return [f"ASR does not allow a {kind} failover now ({state}; allowed: {allowed})"]
    return []


def last_sync_runs(kind: FailoverKind, source_answered: bool) -> bool:
    """Whether the failover shuts the VMs down on the site they leave and syncs them first (no data lost): always
    for a planned one; for an unplanned one when that site's VMM answered (``sourceSiteOperations`` Required)."""
    return kind == FailoverKind.PLANNED or source_answered


def data_loss_seconds(item: ProtectedItemSummary, kind: FailoverKind, now: datetime) -> float | None:
    """What a failover now would lose: nothing for a planned one (a last sync runs after the VMs shut down),
    else the age of the newest recovery point (None when ASR shows none)."""
    if kind == FailoverKind.PLANNED:
        return 0.0
    if item.last_replicated_time is None:
        return None
    return max(0.0, (now - item.last_replicated_time).total_seconds())


def assess_vm(item: ProtectedItemSummary, target: VmTarget, direction: FailoverDirection, kind: FailoverKind,
              now: datetime) -> RecoveryVm:
    stage = stage_of(item, direction)
    return RecoveryVm(
        vm=target.vm, stage=stage, target=target,
        protection=item.protection_state_description or str(item.protection_state or "unknown state"),
        replication_health=item.replication_health, health_errors=item.health_errors_text(),
        last_replicated_time=item.last_replicated_time,
        data_loss_seconds=data_loss_seconds(item, kind, now) if stage.before_failover else None,
        scenario=item.scenario, scenario_job=item.scenario_job, problems=vm_problems(item, stage, kind))


def run_problems(*, site: str, confirmation: str, approvers: Iterable[str], requested: Iterable[str],
                 known: Iterable[str], busy_runs: Mapping[str, int], kind: FailoverKind,
                 source_answered: bool, requested_plans: Iterable[str] = (),
                 plans: Mapping[str, Iterable[str]] | None = None, vault_plans: Iterable[str] = ()) -> list[str]:
    """Why the run may not start, whatever its VMs' states: each problem named, for one message.

    :param requested: The VMs the run was asked for one by one (the ``vms`` param).
    :param known: The VMs ASR protects in the site's paired clouds.
    :param busy_runs: Active runs of the site's other recovery and drill DAGs, by DAG id.
    :param source_answered: Whether the VMM server of the site the recovery leaves answered.
    :param requested_plans: The recovery plans the run was asked for (the ``plans`` param).
    :param plans: The site file's recovery plans and their VMs.
    :param vault_plans: The recovery plans the vault holds.
    """
    problems = []
    if confirmation.strip() != site:
        problems.append(f"the confirmation {confirmation.strip()!r} is not the site's name; type {site!r} to "
                        "confirm this is the site to recover")
    if not list(approvers):
        problems.append("the site file names no failover.approvers: no step that changes production may run "
                        "without a named person approving it")
    names, plan_names = list(requested), list(requested_plans)
    if not names and not plan_names:
        problems.append("no VM or recovery plan named: list what to recover in the 'vms' or 'plans' param")
    known_folded = {name.casefold(): name for name in known}
    unknown = [name for name in names if name.casefold() not in known_folded]
    if unknown:
        problems.append(f"not protected in this site's clouds: {', '.join(unknown)} "
                        f"(protected: {', '.join(sorted(known_folded.values(), key=str.casefold)) or 'none'})")
    problems += plan_problems(plan_names, names, plans or {}, vault_plans)
    for dag_id, count in sorted(busy_runs.items()):
        if count:
            problems.append(f"{count} run(s) of {dag_id} active: one drill, failover or failback per site at a time")
    if kind == FailoverKind.PLANNED and not source_answered:
        problems.append("a planned failover needs the site it leaves: its VMM server does not answer (shut down "
                        "cleanly and sync the VMs); if that site is down, run an unplanned failover")
    return problems


def plan_problems(requested_plans: Iterable[str], requested_vms: Iterable[str], plans: Mapping[str, Iterable[str]],
                  vault_plans: Iterable[str]) -> list[str]:
    """Why the recovery plans a run was asked for cannot be recovered, whatever their members' states.

    A plan must be in the site file (that is where its members and pauses are known) and in the
    vault; a VM named one by one must not also be a member of a named plan (it would be failed over
    twice), nor may one VM be in two named plans.
    """
    problems, in_file = [], {name.casefold(): name for name in plans}
    in_vault = {name.casefold() for name in vault_plans}
    named = list(requested_plans)
    unknown = [name for name in named if name.casefold() not in in_file]
    if unknown:
        problems.append(f"no recovery plan {', '.join(unknown)} in the site file (plans: "
                        f"{', '.join(sorted(in_file.values(), key=str.casefold)) or 'none'})")
    missing = [in_file[name.casefold()] for name in named if name.casefold() in in_file
               and name.casefold() not in in_vault]
    if missing:
        problems.append(f"recovery plan(s) {', '.join(missing)} not in the vault: run the deployment DAG first")
    owner: dict[str, str] = {}
    for name in named:
        for vm in plans.get(in_file.get(name.casefold(), ""), ()):
            if vm.casefold() in owner and owner[vm.casefold()] != in_file[name.casefold()]:
                problems.append(f"VM {vm} is in both recovery plans {owner[vm.casefold()]} and "
                                f"{in_file[name.casefold()]}: recover it with one of them")
            owner.setdefault(vm.casefold(), in_file[name.casefold()])
    doubled = [vm for vm in requested_vms if vm.casefold() in owner]
    if doubled:
        problems.append("named both one by one and through a recovery plan: " + ", ".join(
            f"{vm} (plan {owner[vm.casefold()]})" for vm in doubled) + "; name each VM once")
    return problems


def plan_stage(members: Iterable[RecoveryVm]) -> RecoveryStage | None:
    """Where a recovery plan stands: its members' one stage, or None when they stand apart (or it has none).

    A plan's step is one ASR job for all its members, so it can start only when they all stand
    where the step starts; a plan whose members stand apart is recovered VM by VM instead.
    """
    stages = {vm.stage for vm in members}
    return stages.pop() if len(stages) == 1 else None


def plan_stage_problems(plan: str, members: Iterable[RecoveryVm], expected: Iterable[str]) -> list[str]:
    """Why one plan of the run cannot take the recovery as one job (empty: it can)."""
    members = list(members)
    problems = []
    found = {vm.vm.casefold() for vm in members}
    absent = [vm for vm in expected if vm.casefold() not in found]
    if absent:
        problems.append(f"recovery plan {plan}: {', '.join(absent)} not protected in this site's clouds")
    if members and plan_stage(members) is None:
        problems.append(f"recovery plan {plan}: its VMs stand at different stages (" + ", ".join(
            f"{vm.vm}: {vm.stage}" for vm in members) + "); recover them one by one with the 'vms' param")
    return problems


# ------------------------------------------------------------------------------ what may be sent
def recovery_guard(direction: FailoverDirection, *steps: RecoveryStep) -> RequestGuard:
    """The request guard of a task that carries out ``steps`` of a recovery in ``direction``.

    Reads pass. A write passes only when it is one of the steps' POSTs on a protected item or a
    recovery plan and, where the body names a direction, it is the step's: the failover in
    ``direction``, the reprotect in the opposite one (replication then flows from the site the
    VMs now run on). Everything else (job cancels, PUT/PATCH/DELETE, a test failover, the other
    direction) is refused.
    """
    direction = FailoverDirection(direction)
    actions = frozenset().union(*(STEP_ACTIONS[RecoveryStep(step)] for step in steps))

    def may_send(method: str, path: str, body: Mapping[str, Any] | None = None) -> bool:
        if method.upper() in ("GET", "HEAD", "OPTIONS"):
            return True
        found = _WRITE.search(path.split("?", 1)[0].rstrip("/"))
        if method.upper() != "POST" or found is None:
            return False
        action = found["action"].casefold()
        if action not in actions:
            return False
        if action not in _DIRECTED:
            return True
        given = ((body or {}).get("properties") or {}).get("failoverDirection")
        if action == "reprotect" and given is None and "/replicationrecoveryplans/" in path.casefold():
            return True  # a plan's reprotect has no body: ASR reverses each member from where it runs
        return given == (opposite(direction) if action == "reprotect" else direction)

    return may_send


def reads_only(method: str, path: str, body: Mapping[str, Any] | None = None) -> bool:
    """The request guard of a task that only looks: reads pass, every write is refused."""
    return method.upper() in ("GET", "HEAD", "OPTIONS")


def resume_guard(job_name: str) -> RequestGuard:
    """The request guard of a task that answers a pause of one plan's job: reads, and resuming that job alone."""
    wanted = str(job_name).casefold()

    def may_send(method: str, path: str, body: Mapping[str, Any] | None = None) -> bool:
        if reads_only(method, path):
            return True
        found = _RESUME.search(path.split("?", 1)[0].rstrip("/"))
        return method.upper() == "POST" and found is not None and found["job"].casefold() == wanted

    return may_send


# ------------------------------------------------------------------------------ what the approver reads
def assessment_markdown(assessment: RecoveryAssessment) -> str:
    """The assessment as a Markdown table and notes: the failover approval's body, and the log."""
    kind = "Planned" if assessment.kind == FailoverKind.PLANNED else "Unplanned"
    leaves, goes_to = sides(assessment.direction)
    lines = [f"**{kind} {'failover' if leaves == 'primary' else 'failback'} of site {assessment.site}**: "
             f"{leaves} site to {goes_to} site ({assessment.direction}), assessed "
             f"{assessment.assessed_at.isoformat(timespec='seconds')}.", ""]
    for label, answer in (("leaves", assessment.source_vmm), ("goes to", assessment.target_vmm)):
        lines.append(f"* VMM server of the site it {label}, {answer.server}: "
                     f"{'answers' if answer.answered else 'does not answer'} ({answer.detail})")
    lines += ["", _what_the_answer_means(assessment)]
    lines += ["", "| VM | Recovered by | Stands at | Protection | Health | Newest recovery point | Data lost "
                  "| Problem |", "|---|---|---|---|---|---|---|---|"]
    for vm in assessment.vms:
        point = vm.last_replicated_time.isoformat(timespec="seconds") if vm.last_replicated_time else DASH
        health = str(vm.replication_health or DASH) + (f" ({vm.health_errors})" if vm.health_errors else "")
        lost = format_seconds(vm.data_loss_seconds) if vm.data_loss_seconds is not None else DASH
        by = f"plan {_cell(vm.plan)}" if vm.plan else "itself"
        lines.append(f"| {_cell(vm.vm)} | {by} | {vm.stage} | {_cell(vm.protection)} | {_cell(health)} | {point} "
                     f"| {lost} | {_cell('; '.join(vm.problems)) or DASH} |")
    if assessment.problems:
        lines += ["", "Problems:", *(f"* {problem}" for problem in assessment.problems)]
    return "\n".join(lines)


def verification_markdown(stages: Mapping[str, RecoveryStage], checks: Iterable[TestVmCheck]) -> str:
    """Each VM's stage and what its verification saw last, as a Markdown table (the commit and reprotect approvals)."""
    seen = {check.vm_name.casefold(): check for check in checks if check.vm_name}
    lines = ["| VM | Stands at | Verified |", "|---|---|---|"]
    for vm, stage in stages.items():
        check = seen.get(vm.casefold())
        verified = ("verified: " if check.ok else "NOT verified: ") + check.detail if check else "not verified"
        lines.append(f"| {_cell(vm)} | {stage} | {_cell(verified)} |")
    return "\n".join(lines)


def run_outcome(assessment: RecoveryAssessment | None, approvals: Mapping[RecoveryStep, RecoveryApproval],
                vms: Iterable[RecoveryVmResult]) -> tuple[bool, str]:
    """``(completed, outcome)`` of a recovery run: whether it did all it was asked, and where it stopped and why."""
    vms = list(vms)
    if assessment is None:
        return False, "stopped before the assessment"
    if assessment.all_problems():
        return False, f"refused at the assessment: {len(assessment.all_problems())} problem(s), nothing changed"
    refused = next((approval for approval in approvals.values() if approval.refused), None)
    if refused is not None:
        return False, f"stopped at the {refused.step} approval ({refused.detail}); nothing further changed"
    commit = approvals.get(RecoveryStep.COMMIT)
    if commit is not None and commit.decision == ApprovalOption.CANCEL and all(
            vm.stage == RecoveryStage.READY for vm in vms):
        return True, f"failover cancelled by {commit.by}: every VM is back where it was"
    if vms and all(vm.stage == RecoveryStage.REPROTECTED for vm in vms):
        return True, "every VM failed over, verified, committed and protected again"
    return False, "stopped: " + ", ".join(f"{vm.vm} {vm.stage}" for vm in vms)


def _what_the_answer_means(assessment: RecoveryAssessment) -> str:
    """What the answer (or silence) of the VMM server the recovery leaves means for this failover."""
    if assessment.kind == FailoverKind.PLANNED:
        return ("Planned: the VMs shut down on the site they leave and a last sync runs before they start on the "
                "other site, so no data is lost.")
    if last_sync_runs(assessment.kind, assessment.source_vmm.answered):
        return ("Unplanned, yet the site the VMs leave answers: ASR will still shut them down and sync them first "
                "(no data lost). If that site is healthy, a planned failover does the same with ASR's own checks.")
    return ("Unplanned, and the site the VMs leave does not answer: ASR is told not to touch it; each VM starts from "
            "its newest recovery point and loses what changed since (the table's last column). Make sure the VMs "
            "there are really down: two running copies of a VM is worse than data loss.")


def _cell(text: str) -> str:
    """Text safe in one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
