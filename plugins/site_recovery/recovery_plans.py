"""Recovery plans: the site file's plans as ASR holds them, and what differs.

A site file's plan (:class:`~site_recovery.site.RecoveryPlan`) names VMs and actions the way a DR
engineer writes them; ASR holds a plan as groups of protected items (by ARM id) with start and
end actions. This module translates one into the other and compares them, so the deployment
creates a missing plan, updates a changed one in place and says what changed, and leaves a plan
that matches alone. Airflow-side checks are ours, not ASR's: ASR holds each as a manual action
(:data:`CHECK_INSTRUCTIONS` says so to anyone reading the plan in the portal), so the plan's job
suspends there and the next group waits until the drill has run the probe and resumed the job.

Pure rules over records: no Airflow, no Azure SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from site_recovery.records import PlanActionSummary, PlanGroupSummary, ProtectedItemSummary, RecoveryPlanSummary
from site_recovery.vocabulary import (
    FailoverDirection,
    FailoverType,
    PlanActionKind,
    PlanActionSide,
    PlanGroupType,
)

if TYPE_CHECKING:
    from site_recovery.site import PlanAction, RecoveryPlan

SITE_FAILOVER_TYPES = {"test": FailoverType.TEST, "planned": FailoverType.PLANNED,
                       "unplanned": FailoverType.UNPLANNED}
SITE_DIRECTIONS = {"primary_to_recovery": FailoverDirection.PRIMARY_TO_RECOVERY,
                   "recovery_to_primary": FailoverDirection.RECOVERY_TO_PRIMARY}
_ISO = re.compile(r"PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?", re.IGNORECASE)


def iso_duration(delta: timedelta) -> str:
    """``timedelta(minutes=5)`` -> ``PT5M``: the form ASR's script timeout takes."""
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    return "PT" + (f"{minutes}M" if minutes else "") + (f"{seconds}S" if seconds or not minutes else "")


def iso_seconds(text: str | None) -> float | None:
    """``PT5M`` -> 300.0; None when absent or unreadable."""
    match = _ISO.fullmatch(text or "")
    if not text or not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


CHECK_INSTRUCTIONS = ("Airflow check: {probe}. The Airflow drill or failover DAG runs this probe from the recovery "
                      "VMM and resumes the job when it passes; resume by hand only after checking it yourself.")


def check_instructions(action: PlanAction) -> str:
    """The instructions of the manual action that holds an Airflow-side check (which always has a probe) in ASR."""
    probe = action.probe
    return CHECK_INSTRUCTIONS.format(probe=f"{probe.kind} {probe.port}{probe.path or ''} on {probe.vm}")


def action_summary(action: PlanAction) -> PlanActionSummary:
    """A site file action as ASR holds it; an Airflow-side check is a manual action in every failover."""
    if action.kind == "check":
        return PlanActionSummary(kind=PlanActionKind.MANUAL, name=action.name, instructions=check_instructions(action),
                                 failover_types=list(SITE_FAILOVER_TYPES.values()),
                                 directions=list(SITE_DIRECTIONS.values()))
    common = {"name": action.name, "failover_types": [SITE_FAILOVER_TYPES[t] for t in action.failover_types],
              "directions": [SITE_DIRECTIONS[d] for d in action.directions]}
    if action.kind == "script":
        return PlanActionSummary(kind=PlanActionKind.SCRIPT, path=action.path,
                                 side=PlanActionSide.PRIMARY if action.side == "primary" else PlanActionSide.RECOVERY,
                                 timeout=iso_duration(action.script_timeout), **common)
    return PlanActionSummary(kind=PlanActionKind.MANUAL, instructions=action.instructions, **common)


def members(plan: RecoveryPlan, items: Mapping[str, ProtectedItemSummary]) -> tuple[dict[str, str], list[str]]:
    """The plan's VMs as protected items: ``{vm name casefolded: item ARM id}``, and the VMs not protected yet.

    ``items`` are the site's protected items by VM name, casefolded. A VM counts as protected once ASR
    has its item in the Protected state (a VM still in initial replication cannot join a plan's drill).
    """
    ids: dict[str, str] = {}
    missing: list[str] = []
    for vm in plan.vms:
        item = items.get(vm.casefold())
        if item is None or not item.is_protected or not item.id:
            missing.append(vm)
        else:
            ids[vm.casefold()] = item.id
    return ids, missing


def desired_groups(plan: RecoveryPlan, ids: Mapping[str, str]) -> list[PlanGroupSummary]:
    """The plan's Boot groups as ASR should hold them (every VM must be in ``ids``)."""
    return [PlanGroupSummary(
        group_type=PlanGroupType.BOOT, items=[ids[vm.casefold()] for vm in group.vms],
        start_actions=[action_summary(a) for a in group.pre],
        end_actions=[action_summary(a) for a in group.post],
    ) for group in plan.groups]


def _wire_action(action: PlanActionSummary) -> dict[str, Any]:
    if action.kind == PlanActionKind.SCRIPT:
        custom = {"instanceType": PlanActionKind.SCRIPT, "path": action.path, "timeout": action.timeout,
                  "fabricLocation": action.side}
    else:
        custom = {"instanceType": PlanActionKind.MANUAL, "description": action.instructions}
    return {"actionName": action.name, "failoverTypes": list(action.failover_types),
            "failoverDirections": list(action.directions), "customDetails": custom}


def wire_groups(groups: list[PlanGroupSummary]) -> list[dict[str, Any]]:
    """Groups as a create or update request carries them."""
    return [{"groupType": g.group_type, "replicationProtectedItems": [{"id": item} for item in g.items],
             "startGroupActions": [_wire_action(a) for a in g.start_actions],
             "endGroupActions": [_wire_action(a) for a in g.end_actions]} for g in groups]


def create_body(groups: list[PlanGroupSummary], primary_fabric_id: str, recovery_fabric_id: str) -> dict[str, Any]:
    return {"properties": {"primaryFabricId": primary_fabric_id, "recoveryFabricId": recovery_fabric_id,
                           "failoverDeploymentModel": "NotApplicable", "groups": wire_groups(groups)}}


def update_body(groups: list[PlanGroupSummary]) -> dict[str, Any]:
    return {"properties": {"groups": wire_groups(groups)}}


def _action_key(action: PlanActionSummary) -> tuple:
    return (action.name.casefold(), str(action.kind), tuple(sorted(map(str, action.failover_types))),
            tuple(sorted(map(str, action.directions))), (action.path or "").casefold(), str(action.side or ""),
            iso_seconds(action.timeout), (action.instructions or "").strip())


def _describe(action: PlanActionSummary) -> str:
    if action.kind == PlanActionKind.SCRIPT:
        return (f"script '{action.name}' ({action.path} on the {str(action.side or '?').lower()} VMM, "
                f"timeout {action.timeout})")
    if action.kind == PlanActionKind.MANUAL:
        return f"manual action '{action.name}'"
    return f"{action.kind} '{action.name}'"


def _actions_differ(where: str, want: list[PlanActionSummary], have: list[PlanActionSummary]) -> list[str]:
    if [_action_key(a) for a in want] == [_action_key(a) for a in have]:
        return []
    shown = lambda actions: ", ".join(map(_describe, actions)) or "none"  # noqa: E731
    return [f"{where}: the site file has {shown(want)}; ASR has {shown(have)}"]


def plan_differences(desired: list[PlanGroupSummary], actual: RecoveryPlanSummary,
                     vm_names: Mapping[str, str]) -> list[str]:
    """What differs between the groups the site file wants and the plan ASR holds, one line per difference.

    ``vm_names`` maps protected item ids (casefolded) to VM names, for the messages.
    """
    name = lambda item: vm_names.get(item.casefold(), item.rstrip("/").rsplit("/", 1)[-1])  # noqa: E731
    diffs: list[str] = []
    for group in actual.groups:
        if group.group_type != PlanGroupType.BOOT:
            diffs += _actions_differ(f"{group.group_type} group", [], group.start_actions + group.end_actions)
    have = actual.boot_groups
    if len(have) != len(desired):
        diffs.append(f"boot groups: the site file has {len(desired)}, ASR has {len(have)}")
    for number, (want, got) in enumerate(zip(desired, have, strict=False), start=1):
        wanted = {i.casefold() for i in want.items}
        held = {i.casefold() for i in got.items}
        if wanted != held:
            added = sorted(name(i) for i in wanted - held)
            removed = sorted(name(i) for i in held - wanted)
            parts = ([f"add {', '.join(added)}"] if added else []) + ([f"remove {', '.join(removed)}"] if removed
                                                                       else [])
            diffs.append(f"group {number} VMs: {'; '.join(parts)}")
        diffs += _actions_differ(f"group {number} actions before boot", want.start_actions, got.start_actions)
        diffs += _actions_differ(f"group {number} actions after boot", want.end_actions, got.end_actions)
    for number in range(len(have) + 1, len(desired) + 1):
        diffs.append(f"group {number} (missing in ASR): {', '.join(map(name, desired[number - 1].items))}")
    for number in range(len(desired) + 1, len(have) + 1):
        diffs.append(f"group {number} (not in the site file): {', '.join(map(name, have[number - 1].items)) or 'empty'}")
    return diffs
