"""Typed records: what crosses a layer, a trigger event or XCom.

The hook turns ASR's answers into these records; triggers put them in their events; sensors
and operators return them as XCom; the domain rules and reports read their fields. Each is a
pydantic model, so a record that enters from the wire, an event or XCom is validated where it
enters and a malformed one fails with the field's name, not with a ``KeyError`` three layers
later. Airflow 3.3's serde stores pydantic models in XCom as ``model_dump(mode="json")`` and
rebuilds them with ``model_validate``; the classes register themselves with
:func:`airflow.sdk.serde.allow_class` (see the end of the module).

Times are timezone-aware UTC ``datetime``; states and scenarios are members of
:mod:`site_recovery.vocabulary`. A value ASR may extend (protection states, allowed
operations, task states) keeps ASR's own string when it is not in the vocabulary, so a new
state is shown as ASR wrote it rather than failing the task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from site_recovery.vocabulary import (
    AllowedOperation,
    ApprovalOption,
    AsrJobAction,
    AsrJobState,
    AsrJobStateDescription,
    DeployAction,
    DrillOutcome,
    DrillPhase,
    DrillVerdict,
    FailoverDirection,
    FailoverKind,
    PlanActionKind,
    PlanGroupType,
    ProtectionAction,
    ProtectionState,
    RecoveryStage,
    RecoveryStep,
    ReplicationHealth,
    Scenario,
    TestFailoverState,
    WaitReason,
    WaitStatus,
)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


#: A value of a vocabulary that ASR may extend: a known value becomes its member, an unknown one stays ASR's string.
OpenState = Annotated[ProtectionState | str, Field(union_mode="left_to_right")]
OpenHealth = Annotated[ReplicationHealth | str, Field(union_mode="left_to_right")]
OpenScenario = Annotated[Scenario | str, Field(union_mode="left_to_right")]
OpenTestFailoverState = Annotated[TestFailoverState | str, Field(union_mode="left_to_right")]
OpenOperation = Annotated[AllowedOperation | str, Field(union_mode="left_to_right")]
OpenJobAction = Annotated[AsrJobAction | str, Field(union_mode="left_to_right")]
OpenJobState = Annotated[AsrJobState | str, Field(union_mode="left_to_right")]

#: A moment, always UTC-aware (a naive value is taken as UTC, as ASR writes them).
UtcTime = Annotated[datetime, AfterValidator(_utc)]


class Record(BaseModel):
    """Base of every record: unknown fields are refused, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-safe built-ins (for trigger events and files)."""
        return self.model_dump(mode="json")


#: What a report shows for an unknown value.
DASH = "\u2014"


def format_seconds(seconds: float | None, sep: str = " ") -> str:
    """
    Say a duration the way a DR engineer reads it: ``45s``, ``12m 35s``, ``30m``, ``2h 05m``, ``1d 02h``.

    The one duration format of logs, messages and reports.

    :param seconds: The duration; None (unknown) or a non-finite value gives a dash.
    :param sep: Between the two units (``""`` for chart axis labels: ``1m30s``).
    """
    if seconds is None or not math.isfinite(seconds):
        return DASH
    sign, s = ("-" if seconds < 0 else ""), int(round(abs(seconds)))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        (whole, rest), units = divmod(s, 60), ("m", "s")
    elif s < 86400:
        (whole, rest), units = divmod(s // 60, 60), ("h", "m")
    else:
        (whole, rest), units = divmod(s // 3600, 24), ("d", "h")
    return f"{sign}{whole}{units[0]}" + (f"{sep}{rest:02d}{units[1]}" if rest else "")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``, or None when either is unknown."""
    return round((end - start).total_seconds(), 3) if start and end else None


# ------------------------------------------------------------------------------------ errors
class AsrError(Record):
    """One error as ASR reports it on a job, a job task or a protected item's health."""

    code: str | None = None
    message: str | None = None
    possible_causes: str | None = None
    recommended_action: str | None = None
    #: health errors only: ``Error``, ``Warning``...
    level: str | None = None

    def describe(self) -> str:
        """``[code] message Possible causes: ... Recommended action: ...``"""
        text = f"[{self.code}] {self.message}"
        if self.possible_causes:
            text += f" Possible causes: {self.possible_causes}"
        if self.recommended_action:
            text += f" Recommended action: {self.recommended_action}"
        return text


def describe_errors(errors: Iterable[AsrError] | None) -> str:
    """ASR errors as one readable text (empty when there are none)."""
    return "; ".join(error.describe() for error in errors or [])


# --------------------------------------------------------------------------------------- jobs
class JobTask(Record):
    """One task of an ASR job."""

    name: str | None = None
    friendly_name: str | None = None
    state: OpenJobState | None = None
    start_time: UtcTime | None = None
    end_time: UtcTime | None = None
    duration_seconds: float | None = None
    #: the task's details type: RecoveryPlanGroupTaskDetails, ScriptActionTaskDetails, ManualActionTaskDetails...
    details_type: str | None = None
    #: recovery plan group tasks: the group ("Failover", "1", "2"...) and the VMs it acts on
    group_id: str | None = None
    vms: list[str] = Field(default_factory=list)
    #: script actions: what the script wrote; manual actions: the instructions and what the person observed
    output: str | None = None
    instructions: str | None = None
    observation: str | None = None

    @property
    def label(self) -> str:
        return self.friendly_name or self.name or "task"


class FailoverItem(Record):
    """One VM of a (test) failover job: its test VM, network and the recovery point used."""

    name: str | None = None
    friendly_name: str | None = None
    test_vm_name: str | None = None
    network: str | None = None
    network_status: str | None = None
    recovery_point_id: str | None = None
    recovery_point_time: UtcTime | None = None


class JobSummary(Record):
    """What the product knows of an ASR job: state, timing, tasks, errors, the VMs it failed over."""

    name: str
    scenario_name: OpenScenario | None = None
    friendly_name: str | None = None
    target: str | None = None
    state: AsrJobState | None = None
    state_description: str | None = None
    start_time: UtcTime | None = None
    end_time: UtcTime | None = None
    duration_seconds: float | None = None
    allowed_actions: list[OpenJobAction] = Field(default_factory=list)
    tasks: list[JobTask] = Field(default_factory=list)
    errors: list[AsrError] = Field(default_factory=list)
    protected_items: list[FailoverItem] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """Name a job the way a DR engineer reads it: what it does, on what, and its id."""
        label = self.friendly_name or self.scenario_name or "ASR job"
        target = f" on {self.target}" if self.target else ""
        return f"{label!r}{target} (job {self.name})"

    @property
    def partially_succeeded(self) -> bool:
        return (self.state is AsrJobState.SUCCEEDED
                and self.state_description == AsrJobStateDescription.PARTIALLY_SUCCEEDED)

    @property
    def fully_succeeded(self) -> bool:
        """Succeeded with every task: the only success a drill or a deployment counts."""
        return self.state is AsrJobState.SUCCEEDED and not self.partially_succeeded

    @property
    def ended(self) -> bool:
        return self.state is not None and self.state.is_terminal

    @property
    def running(self) -> bool:
        return self.state is not None and self.state.is_running

    @property
    def cancellable(self) -> bool:
        return AsrJobAction.CANCEL in self.allowed_actions

    def passed(self, task_label: str) -> bool:
        """Whether the job is past the task of that name (a plan's manual action already answered)."""
        return any(task.label == task_label and task.state is AsrJobState.SUCCEEDED for task in self.tasks)

    @property
    def outcome(self) -> str:
        """The state as a report shows it (``PartiallySucceeded`` rather than ``Succeeded``)."""
        if self.partially_succeeded:
            return AsrJobStateDescription.PARTIALLY_SUCCEEDED.value
        return str(self.state) if self.state else "unknown"

    def errors_text(self) -> str:
        return describe_errors(self.errors)

    def took(self) -> str:
        """``Succeeded in 0:01:05``-style text for tables; ``-`` when unknown."""
        if self.duration_seconds is not None:
            return f"{self.outcome} in {format_seconds(self.duration_seconds)}"
        return self.outcome


# --------------------------------------------------------------------------- protected items
class ProtectedItemSummary(Record):
    """What the enable-replication and drill DAGs decide on for one protected VM."""

    name: str
    #: the item's ARM id (a recovery plan names its VMs by it)
    id: str | None = None
    vm: str | None = None
    protectable_item_id: str | None = None
    protection_state: OpenState | None = None
    protection_state_description: str | None = None
    replication_health: OpenHealth | None = None
    health_errors: list[AsrError] = Field(default_factory=list)
    initial_replication_percent: int | None = None
    last_replicated_time: UtcTime | None = None
    #: the operation ASR runs on the VM now (None when idle) and its job
    scenario: OpenScenario | None = None
    scenario_job: str | None = None
    allowed_operations: list[OpenOperation] = Field(default_factory=list)
    test_failover_state: OpenTestFailoverState | None = None
    test_failover_state_description: str | None = None
    last_test_failover_time: UtcTime | None = None
    active_location: str | None = None
    recovery_cloud: str | None = None

    @property
    def protectable_item_name(self) -> str:
        """The last segment of the protectable item's id (the VM's GUID in VMM), casefolded."""
        return (self.protectable_item_id or "").rstrip("/").rsplit("/", 1)[-1].casefold()

    @property
    def is_protected(self) -> bool:
        return self.protection_state == ProtectionState.PROTECTED

    @property
    def is_enabling(self) -> bool:
        """The enable job or initial replication is under way (it uses the WAN link)."""
        return isinstance(self.protection_state, ProtectionState) and self.protection_state.is_enabling

    @property
    def in_test_failover(self) -> bool:
        """A test failover is active on the VM (running, waiting for cleanup, or failed with a test VM)."""
        state = self.test_failover_state
        return bool(state) and not (isinstance(state, TestFailoverState) and state.is_idle)

    @property
    def running_test_failover_job(self) -> str | None:
        """The job of a test failover still running on the VM, if any."""
        return self.scenario_job if self.scenario == Scenario.TEST_FAILOVER else None

    def allows(self, operation: AllowedOperation) -> bool:
        return operation in self.allowed_operations

    def health_errors_text(self) -> str:
        return describe_errors(self.health_errors)

    def describe(self) -> str:
        """One line on a protected VM: state, health, progress, last replication."""
        text = self.protection_state_description or (str(self.protection_state) if self.protection_state else None) \
            or "unknown state"
        if self.is_enabling and self.initial_replication_percent is not None:
            text += f" ({self.initial_replication_percent}%)"
        text += f", replication health {self.replication_health or 'unknown'}"
        if self.last_replicated_time:
            text += f", last replicated {self.last_replicated_time.isoformat()}"
        return text


class ProtectableVm(Record):
    """A VM of a cloud as ASR lists it for protection (a protectable item)."""

    name: str
    id: str
    vm: str
    protected: bool
    readiness_errors: list[str] = Field(default_factory=list)
    supported_providers: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------- targets
class PairedCloud(Record):
    """A pairing of the site as ASR has it: the primary cloud's fabric and container and its policy."""

    cloud: str
    recovery_cloud: str
    fabric: str
    container: str
    policy_id: str | None = None


class VmTarget(Record):
    """One VM a mapped task works on; ``vm`` labels the mapped task in the UI."""

    vm: str
    cloud: str
    fabric: str
    container: str
    item_name: str
    #: the protected item's ARM id (a recovery plan names its VMs by it)
    item_id: str | None = None
    protectable_item_id: str | None = None
    policy_id: str | None = None
    #: drills only: the recovery-side network the test VM joins (None: isolated)
    network_id: str | None = None
    network: str | None = None


class ProtectionPlanEntry(Record):
    """What the enable-replication plan decided for one in-scope VM."""

    vm: str
    cloud: str
    action: ProtectionAction
    detail: str
    target: VmTarget | None = None


class ProtectionReportRow(Record):
    """One VM's line of the enable-replication report: what the run did and where the VM stands now."""

    vm: str
    cloud: str
    planned: ProtectionAction
    result: str
    enable_job: str
    initial_replication: str
    health: str
    last_replicated: str
    to_fix: str


# --------------------------------------------------------------------------- recovery plans
class PlanActionSummary(Record):
    """One action of a recovery plan group as ASR holds it."""

    name: str
    kind: Annotated[PlanActionKind | str, Field(union_mode="left_to_right")]
    failover_types: list[str] = Field(default_factory=list)
    directions: list[str] = Field(default_factory=list)
    #: scripts: path in the VMM library share, the side whose VMM runs it, ASR's timeout (ISO 8601)
    path: str | None = None
    side: str | None = None
    timeout: str | None = None
    #: manual actions: the instructions
    instructions: str | None = None


class PlanGroupSummary(Record):
    """One group of a recovery plan: its protected items (ARM ids) and its start and end actions."""

    group_type: Annotated[PlanGroupType | str, Field(union_mode="left_to_right")]
    items: list[str] = Field(default_factory=list)
    start_actions: list[PlanActionSummary] = Field(default_factory=list)
    end_actions: list[PlanActionSummary] = Field(default_factory=list)


class RecoveryPlanSummary(Record):
    """A recovery plan as ASR holds it: what the deployment compares with the site file, and the drill runs."""

    name: str
    primary_fabric: str | None = None
    recovery_fabric: str | None = None
    groups: list[PlanGroupSummary] = Field(default_factory=list)
    allowed_operations: list[OpenOperation] = Field(default_factory=list)
    scenario_job: str | None = None
    last_test_failover_time: UtcTime | None = None

    @property
    def boot_groups(self) -> list[PlanGroupSummary]:
        return [g for g in self.groups if g.group_type == PlanGroupType.BOOT]


# ------------------------------------------------------------------------------- deployment
class StepRecord(Record):
    """One line of the deployment summary: what a step found or changed, and the ASR job it started."""

    step: str
    item: str
    action: DeployAction
    detail: str = ""
    job_name: str | None = None


# ------------------------------------------------------------------------------------ waits
class WaitEvent(Record):
    """The one event a wait (trigger or sensor poke) ends with.

    ``reason`` says why it ended; sensors decide on it alone (a timeout is ``timed_out``, never
    a message that happens to start with "Timeout"). The payload fields carry what was seen last.
    """

    reason: WaitReason
    message: str
    job: JobSummary | None = None
    item: ProtectedItemSummary | None = None
    #: waits over several jobs: each job's own event, by job name
    jobs: dict[str, WaitEvent] = Field(default_factory=dict)
    #: slot waits: the VMs holding an initial replication slot
    busy: list[str] = Field(default_factory=list)

    @property
    def status(self) -> WaitStatus:
        return self.reason.status

    @property
    def succeeded(self) -> bool:
        return self.reason is WaitReason.SUCCEEDED

    def to_event(self) -> dict[str, Any]:
        """The trigger event payload: JSON-safe, with Airflow's conventional ``status``."""
        return {"status": self.status.value, **self.to_json()}

    @classmethod
    def from_event(cls, event: Any) -> WaitEvent:
        """Validate a trigger event payload (or pass a record through)."""
        if isinstance(event, WaitEvent):
            return event
        if not isinstance(event, dict):
            raise ValueError(f"A wait event must be a mapping, got {type(event).__name__}.")
        return cls.model_validate({key: value for key, value in event.items() if key != "status"})


# ------------------------------------------------------------------------------------ drills
class ProbeResult(Record):
    """One of the site's probes, run against a test VM."""

    kind: str
    port: int
    path: str | None = None
    ok: bool
    detail: str


class TestVmCheck(Record):
    """What the drill saw of one test VM on the recovery VMM."""

    __test__ = False  # not a pytest test class

    #: None only in reports written before the test VM's name was recorded
    vm_name: str | None = None
    state: str | None = None
    heartbeat: str | None = None
    ip_addresses: list[str] = Field(default_factory=list)
    started_at: UtcTime | None = None
    verified_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    probes: list[ProbeResult] = Field(default_factory=list)
    ok: bool = False
    detail: str = ""


class CleanupCheck(Record):
    """Whether one drilled VM was proven clean after the drill."""

    verified: bool
    detail: str


class CleanupProof(Record):
    """The drill's proof that it left nothing behind."""

    verified_at: UtcTime | None = None
    items_in_test_failover: list[str] = Field(default_factory=list)
    test_vms_left: list[str] = Field(default_factory=list)
    per_vm: dict[str, CleanupCheck] = Field(default_factory=dict)
    #: True when verify_cleanup did not run to the end (nobody checked)
    incomplete: bool = False


class LeftoverCleanup(Record):
    """A test failover an interrupted drill left behind, and the cleanup this drill started for it."""

    vm: str
    detail: str = ""
    job: str | None = None


class GateSkip(Record):
    """A VM the readiness gate held back, and why."""

    vm: str
    reason: str


class PlanDrillTarget(Record):
    """A recovery plan the readiness gate let through (or held back, with ``skipped`` saying why)."""

    plan: str
    members: list[VmTarget] = Field(default_factory=list)
    #: an unattended drill confirms the plan's manual actions itself (the site file's ``unattended: auto_confirm``)
    auto_confirm: bool = False
    skipped: str | None = None


class DrillGate(Record):
    """The readiness gate's result: which VMs a drill fails over, which it skips, and the plans it drills."""

    checked: int
    passed: int
    skipped: list[GateSkip] = Field(default_factory=list)
    leftovers_cleaned: list[LeftoverCleanup] = Field(default_factory=list)
    test_network: str | None = None
    started_at: UtcTime | None = None
    #: the VMs drilled one by one (in no recovery plan)
    targets: list[VmTarget] = Field(default_factory=list)
    plans: list[PlanDrillTarget] = Field(default_factory=list)
    #: the run is unattended (scheduled, or asked to behave as one): manual actions follow each plan's setting
    unattended: bool = False

    def plan(self, name: str) -> PlanDrillTarget | None:
        return next((p for p in self.plans if p.plan.casefold() == name.casefold()), None)

    @property
    def drilled(self) -> list[VmTarget]:
        """Every VM this drill fails over: one by one, or as a member of a plan that passed the gate."""
        return self.targets + [vm for plan in self.plans if plan.skipped is None for vm in plan.members]


class ManualActionOutcome(Record):
    """What became of one manual action of a plan's drill: who confirmed it and when, or why it stopped."""

    plan: str
    action: str
    confirmed: bool
    by: str | None = None
    at: UtcTime | None = None
    #: confirmed by the drill itself (unattended run, the plan's ``unattended: auto_confirm``)
    automatic: bool = False
    comment: str | None = None


class DrillJob(JobSummary):
    """A job of one VM's drill, with its part in the drill."""

    kind: Scenario


class TimelineSpan(Record):
    phase: DrillPhase
    start: UtcTime | None = None
    end: UtcTime | None = None


class VmDrillResult(Record):
    """One VM's entry of a drill report."""

    vm: str
    cloud: str | None = None
    outcome: DrillOutcome
    recovery_point_time: UtcTime | None = None
    rpo_achieved_seconds: float | None = None
    rpo_met: bool | None = None
    rto_seconds: float | None = None
    rto_met: bool | None = None
    test_vm_name: str | None = None
    jobs: list[DrillJob] = Field(default_factory=list)
    verify: TestVmCheck | None = None
    probes: list[ProbeResult] = Field(default_factory=list)
    cleanup: CleanupCheck | None = None
    error: str | None = None
    timeline: list[TimelineSpan] = Field(default_factory=list)


class RecoveryTargets(Record):
    rpo_seconds: float
    rto_seconds: float


class TaskTiming(Record):
    task_id: str | None = None
    map_index: str | None = None
    state: str | None = None
    start: UtcTime | None = None
    end: UtcTime | None = None
    duration_seconds: float | None = None


class PlanGroupResult(Record):
    """One group of a plan's drill as the plan's job ran it."""

    group: str
    label: str
    vms: list[str] = Field(default_factory=list)
    state: OpenJobState | None = None
    start: UtcTime | None = None
    end: UtcTime | None = None


class PlanActionResult(Record):
    """One action of a plan's drill: an ASR script or manual action (from the job), or an Airflow check."""

    name: str
    kind: str
    state: OpenJobState | None = None
    start: UtcTime | None = None
    end: UtcTime | None = None
    #: script output, or who confirmed a manual action (and whether the drill did it itself)
    detail: str | None = None


class PlanDrillResult(Record):
    """One recovery plan's section of a drill report."""

    plan: str
    description: str = ""
    outcome: DrillOutcome
    job: JobSummary | None = None
    groups: list[PlanGroupResult] = Field(default_factory=list)
    actions: list[PlanActionResult] = Field(default_factory=list)
    manual_actions: list[ManualActionOutcome] = Field(default_factory=list)
    vms: list[str] = Field(default_factory=list)
    #: drill start (the plan's test failover) to the last member verified
    rto_seconds: float | None = None
    rto_target_seconds: float | None = None
    rto_met: bool | None = None
    error: str | None = None


class GateSummary(Record):
    checked: int | None = None
    passed: int | None = None
    skipped: list[GateSkip] = Field(default_factory=list)
    leftovers_cleaned: list[LeftoverCleanup] = Field(default_factory=list)


class DrillReport(Record):
    """A drill's report: verdict, per-VM results, the gate, the cleanup proof, the run's tasks."""

    schema_version: int = Field(1, alias="schema")
    site: str
    dag_id: str
    run_id: str
    trigger: str
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    verdict: DrillVerdict
    reasons: list[str] = Field(default_factory=list)
    targets: RecoveryTargets
    test_network: str | None = None
    recovery_vmm: str | None = None
    gate: GateSummary = Field(default_factory=GateSummary)
    vms: list[VmDrillResult] = Field(default_factory=list)
    plans: list[PlanDrillResult] = Field(default_factory=list)
    #: None: nobody checked (the report says "Missing")
    cleanup_proof: CleanupProof | None = None
    tasks: list[TaskTiming] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class DrillOutcomeSummary(Record):
    """What the report task returns: the verdict, why, and where the report is."""

    verdict: DrillVerdict
    reasons: list[str] = Field(default_factory=list)
    html: str
    json_path: str = Field(alias="json")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


# ------------------------------------------------------------------------------ real recovery
class VmmAnswer(Record):
    """Whether a site's VMM server answered the assessment's one look (``Get-VmmInventory``)."""

    server: str
    answered: bool
    detail: str


class RecoveryVm(Record):
    """One VM of a failover or failback as the assessment found it: where it stands and what it would lose."""

    vm: str
    stage: RecoveryStage
    target: VmTarget
    protection: str
    replication_health: OpenHealth | None = None
    health_errors: str = ""
    last_replicated_time: UtcTime | None = None
    #: the data a failover to the newest recovery point would lose (0 for a planned failover: a last sync runs)
    data_loss_seconds: float | None = None
    #: the ASR operation running on the VM and its job (a rerun adopts the job of its own step)
    scenario: OpenScenario | None = None
    scenario_job: str | None = None
    problems: list[str] = Field(default_factory=list)
    #: the recovery plan the VM is recovered with (its members take each step as one plan job), else None
    plan: str | None = None


class RecoveryAssessment(Record):
    """What a failover or failback run found before changing anything; the approver reads it."""

    site: str
    direction: FailoverDirection
    kind: FailoverKind
    assessed_at: UtcTime
    #: the site the recovery leaves (planned: it must answer) and the one it goes to
    source_vmm: VmmAnswer
    target_vmm: VmmAnswer
    #: the VMs named one by one, then each plan's members (``plan`` set)
    vms: list[RecoveryVm]
    #: the recovery plans of the run, as the site file names them
    plans: list[str] = Field(default_factory=list)
    #: run-level problems (confirmation, approvers, concurrent runs, plans); VM problems sit on each VM
    problems: list[str] = Field(default_factory=list)

    def all_problems(self) -> list[str]:
        return [*self.problems, *(f"VM {vm.vm}: {problem}" for vm in self.vms for problem in vm.problems)]

    def members(self, plan: str) -> list[RecoveryVm]:
        """The assessed members of one plan of the run, in boot order."""
        return [vm for vm in self.vms if vm.plan is not None and vm.plan.casefold() == plan.casefold()]

    def has_plan(self, plan: str) -> bool:
        return any(name.casefold() == plan.casefold() for name in self.plans)


class RecoveryApproval(Record):
    """One approval of a failover or failback: who decided what, when (``needed`` False: nothing to approve)."""

    step: RecoveryStep
    needed: bool = True
    decision: ApprovalOption | None = None
    by: str | None = None
    at: UtcTime | None = None
    detail: str = ""

    @property
    def refused(self) -> bool:
        """The step was asked for and not approved: rejected, or nobody answered in time."""
        return self.needed and self.decision in (None, ApprovalOption.REJECT)


class RecoveryVmResult(Record):
    """One VM of a failover or failback as its report shows it: where it ended, what it lost, how long it took."""

    vm: str
    #: where the VM stood when the report was written (ASR's answer then)
    stage: RecoveryStage
    protection: str = ""
    replication_health: OpenHealth | None = None
    #: the site the VM runs on at the end (``activeLocation``), and the way replication flows from it
    active_location: str | None = None
    replication_direction: str | None = None
    #: the recovery point the failover started the VM from (a planned failover's last sync) and the data lost
    recovery_point_time: UtcTime | None = None
    data_loss_seconds: float | None = None
    #: from the failover's approval to the VM verified on the site it went to
    rto_seconds: float | None = None
    verify: TestVmCheck | None = None
    jobs: list[JobSummary] = Field(default_factory=list)
    #: the recovery plan the VM was recovered with (its jobs are the plan's)
    plan: str | None = None


class RecoveryPlanResult(Record):
    """One recovery plan of a failover or failback as its report shows it: its jobs and its pauses' answers."""

    plan: str
    vms: list[str] = Field(default_factory=list)
    jobs: list[JobSummary] = Field(default_factory=list)
    #: the manual actions and Airflow checks the plan's failover job waited on, as answered
    actions: list[ManualActionOutcome] = Field(default_factory=list)


class RecoveryReport(Record):
    """A failover or failback run as its report keeps it (JSON beside the HTML page)."""

    schema_version: int = 1
    site: str
    dag_id: str
    run_id: str
    direction: FailoverDirection
    kind: FailoverKind
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    #: completed, or where the run stopped and why
    outcome: str
    completed: bool
    assessment: RecoveryAssessment | None = None
    approvals: list[RecoveryApproval] = Field(default_factory=list)
    vms: list[RecoveryVmResult] = Field(default_factory=list)
    plans: list[RecoveryPlanResult] = Field(default_factory=list)


WaitEvent.model_rebuild()


def _allow_in_xcom() -> None:
    """Let Airflow's serde rebuild these records from XCom in any process that imports this module."""
    try:
        from airflow.sdk.serde import allow_class
    except ImportError:  # outside Airflow (the lab's tests, tools): nothing to register
        return
    # Every record, so a record that starts crossing XCom cannot be forgotten here.
    for record in [value for value in globals().values()
                   if isinstance(value, type) and issubclass(value, Record) and value is not Record]:
        allow_class(record)


_allow_in_xcom()
