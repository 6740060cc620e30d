"""Recovery plans: applications recovered as one, in boot groups, with scripts and manual actions.

A plan holds protected items in ordered Boot groups (ASR normalises every plan to a Shutdown
group, a Failover group, then Boot groups 1..7), each with start and end actions: a VMM library
script (run on the primary or recovery VMM, failing on anything written to STDERR) or a manual
action (the job suspends until ``replicationJobs/{job}/resume``).

A plan's test failover is **one job**: preflight checks, the test environment, the Failover
group creating every member's test VM in parallel, then per Boot group its start actions, the
group's VMs started in parallel, its end actions; the Shutdown group is skipped in a test
failover. The member items follow the plan's job: their test failover state is the job's, and a
failed or cancelled job leaves the items whose test VM exists waiting for cleanup, as an
item-level test failover does. The cleanup is one job too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from .base import effects
from .errors import AsrError, AsrErrors, ResourceNotFound
from .jobs import Job, Task
from .naming import derived_guid, iso
from .protection import IDLE, NETWORK_TYPES, TFO_PENDING, ProtectionOperations, _SNAPSHOT, _SNAPSHOT_TIMES
from .scenarios import SCENARIOS
from .state import ProtectedItem, RecoveryPlan, TestVm, Vault

PLAN_TYPE = "Microsoft.RecoveryServices/vaults/replicationRecoveryPlans"
#: ASR's limits (recovery-plan-overview.md, site-recovery-create-recovery-plans.md)
MAX_PLAN_ITEMS = 100
MAX_BOOT_GROUPS = 7
GROUP_TYPES = ("Shutdown", "Failover", "Boot")
FAILOVER_TYPES = ("TestFailover", "PlannedFailover", "UnplannedFailover", "Failover", "Commit", "ReverseReplicate",
                  "ChangePit", "CompleteMigration", "Cancel", "DisableProtection", "RepairReplication",
                  "SwitchProtection", "TestFailoverCleanup")
DIRECTIONS = ("PrimaryToRecovery", "RecoveryToPrimary")
ACTION_TYPES = ("ScriptActionDetails", "ManualActionDetails", "AutomationRunbookActionDetails")
#: ASR stops a plan script after 600 s (hyper-v-vmm-recovery-script.md)
MAX_SCRIPT_SECONDS = 600
PLAN_IDLE = ["PlannedFailover", "UnplannedFailover", "TestFailover"]
PLAN_TFO_PENDING = ["TestFailoverCleanup"]
_ITEM_PATH = "replicationFabrics/{}/replicationProtectionContainers/{}/replicationProtectedItems/{}"


def _iso_seconds(text: Any) -> float | None:
    """``PT10M``-style timeouts (the SDK's string) in seconds; None when unreadable."""
    if not isinstance(text, str) or not text.upper().startswith("PT"):
        return None
    number, total = "", 0.0
    for char in text.upper()[2:]:
        if char.isdigit() or char == ".":
            number += char
            continue
        factor = {"H": 3600, "M": 60, "S": 1}.get(char)
        if factor is None or not number:
            return None
        total, number = total + float(number) * factor, ""
    return total if not number else None


class RecoveryPlanOperations(ProtectionOperations):
    """create, update, read, delete recovery plans; their test failover and its cleanup; their failover, commit
    and reprotect."""

    # -- reading --------------------------------------------------------------------------

    def list_recovery_plans(self, vault: Vault) -> list[RecoveryPlan]:
        return sorted(vault.recovery_plans.values(), key=lambda plan: plan.name.lower())

    def get_recovery_plan(self, vault: Vault, name: str) -> RecoveryPlan:
        plan = vault.recovery_plans.get(name.lower())
        if plan is None:
            raise ResourceNotFound(PLAN_TYPE, name, vault.resource_group)
        return plan

    def plan_items(self, vault: Vault, plan: RecoveryPlan) -> list[tuple[int, ProtectedItem]]:
        """The plan's protected items with their Boot group number (1 first), in boot order."""
        found = []
        for number, group in enumerate(self._boot_groups(plan), start=1):
            for ref in group["replicationProtectedItems"]:
                item = self._item_from_id(vault, ref["id"])
                if item is not None:
                    found.append((number, item))
        return found

    @staticmethod
    def _boot_groups(plan: RecoveryPlan) -> list[dict[str, Any]]:
        return [g for g in plan.groups if g["groupType"] == "Boot"]

    def _item_from_id(self, vault: Vault, item_id: str) -> ProtectedItem | None:
        parts = item_id.rstrip("/").split("/")
        lowered = [p.lower() for p in parts]
        try:
            f = lowered.index("replicationfabrics")
            c = lowered.index("replicationprotectioncontainers")
            i = lowered.index("replicationprotecteditems")
        except ValueError:
            return None
        if not (f + 1 < len(parts) and c + 1 < len(parts) and i + 1 < len(parts)):
            return None
        return vault.protected_items.get(f"{parts[f + 1]}/{parts[c + 1]}/{parts[i + 1]}".lower())

    # -- create, update, delete -----------------------------------------------------------

    def create_recovery_plan(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        props = body.get("properties") if isinstance(body.get("properties"), dict) else None
        if props is None:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="properties", reason="The request has no properties.")
        primary = self._fabric_of(vault, name, props.get("primaryFabricId"), "primaryFabricId")
        recovery = self._fabric_of(vault, name, props.get("recoveryFabricId"), "recoveryFabricId")
        if primary == recovery:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=name,
                           reason="The primary and recovery fabrics are the same VMM server.")
        groups = self._normalise_groups(vault, name, primary, recovery, props.get("groups"))
        model = props.get("failoverDeploymentModel") or "NotApplicable"
        plan = RecoveryPlan(name=name, primary_fabric=primary, recovery_fabric=recovery,
                            failover_deployment_model=model, groups=groups, created=self.now())
        existing = vault.recovery_plans.get(name.lower())
        if existing is not None:  # PUT on an existing plan replaces its groups, as an update does
            return self._plan_change_job(vault, existing, "UpdateRecoveryPlan", groups)
        return self._plan_change_job(vault, plan, "CreateRecoveryPlan", groups)

    def update_recovery_plan(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        plan = self.get_recovery_plan(vault, name)
        props = body.get("properties") if isinstance(body.get("properties"), dict) else {}
        if self.running_job(vault, plan.scenario_job) is not None:
            raise AsrError(AsrErrors.PLAN_OPERATION_NOT_ALLOWED, operation="Update", plan=plan.name,
                           reason="An operation is in progress on the recovery plan.")
        groups = self._normalise_groups(vault, plan.name, plan.primary_fabric, plan.recovery_fabric,
                                        props.get("groups"))
        return self._plan_change_job(vault, plan, "UpdateRecoveryPlan", groups)

    def delete_recovery_plan(self, vault: Vault, name: str) -> Job:
        plan = self.get_recovery_plan(vault, name)
        if self.running_job(vault, plan.scenario_job) is not None or self._cleanup_pending(vault, plan):
            raise AsrError(AsrErrors.PLAN_OPERATION_NOT_ALLOWED, operation="Delete", plan=plan.name,
                           reason="A failover of the recovery plan is in progress or waits for its cleanup.")
        return self._plan_change_job(vault, plan, "DeleteRecoveryPlan", None)

    def _plan_change_job(self, vault: Vault, plan: RecoveryPlan, kind: str, groups: list | None) -> Job:
        params: dict[str, Any] = {"plan": plan.name}
        if kind == "CreateRecoveryPlan":
            params["new_plan"] = {"primary": plan.primary_fabric, "recovery": plan.recovery_fabric,
                                  "model": plan.failover_deployment_model}
        if groups is not None:
            params["groups"] = groups
        return self._start_job(vault, kind, target_object_id=plan.name, target_object_name=plan.name,
                               target_path=f"replicationRecoveryPlans/{plan.name}",
                               result="none" if kind == "DeleteRecoveryPlan" else "resource", params=params)

    @effects("CreateRecoveryPlan", "UpdateRecoveryPlan", "DeleteRecoveryPlan")
    def _on_plan_change(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        if event != "succeeded":
            return
        key = job.params["plan"].lower()
        if job.kind == "DeleteRecoveryPlan":
            vault.recovery_plans.pop(key, None)
        elif job.kind == "CreateRecoveryPlan" and key not in vault.recovery_plans:
            new = job.params["new_plan"]
            vault.recovery_plans[key] = RecoveryPlan(
                name=job.params["plan"], primary_fabric=new["primary"], recovery_fabric=new["recovery"],
                failover_deployment_model=new["model"], groups=job.params["groups"], created=job.start_time)
        elif key in vault.recovery_plans:
            vault.recovery_plans[key].groups = job.params["groups"]

    def _fabric_of(self, vault: Vault, plan: str, fabric_id: Any, field: str) -> str:
        name = fabric_id.rstrip("/").rsplit("/", 1)[-1].lower() if isinstance(fabric_id, str) and fabric_id else ""
        if name not in vault.fabrics:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                           reason=f"{field} '{fabric_id}' is not a VMM server registered in the vault.")
        return name

    def _normalise_groups(self, vault: Vault, plan: str, primary: str, recovery: str, groups: Any) -> list[dict]:
        """The groups as the service keeps them: Shutdown, Failover, then the Boot groups in order."""
        if not isinstance(groups, list) or not groups:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan, reason="The recovery plan has no groups.")
        special: dict[str, dict] = {}
        boot: list[dict] = []
        seen_items: set[str] = set()
        for n, group in enumerate(groups):
            if not isinstance(group, dict) or group.get("groupType") not in GROUP_TYPES:
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                               reason=f"groups[{n}].groupType must be one of {', '.join(GROUP_TYPES)}.")
            kind = group["groupType"]
            items = []
            for ref in group.get("replicationProtectedItems") or []:
                item = self._item_from_id(vault, (ref or {}).get("id") or "") if isinstance(ref, dict) else None
                if item is None:
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"groups[{n}] names a protected item that does not exist: "
                                          f"'{(ref or {}).get('id') if isinstance(ref, dict) else ref}'.")
                if kind != "Boot":
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"Only Boot groups hold virtual machines; '{item.vm_name}' is in a "
                                          f"{kind} group.")
                if item.fabric != primary or item.recovery_fabric != recovery:
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"The virtual machine '{item.vm_name}' doesn't replicate between the "
                                          "plan's primary and recovery VMM servers.")
                key = self._item_key(item)
                if key in seen_items:
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"The virtual machine '{item.vm_name}' is in the plan twice.")
                seen_items.add(key)
                items.append({"id": self.asr_id(vault, _ITEM_PATH.format(item.fabric, item.container, item.name)),
                              "virtualMachineId": item.vm_id})
            normal = {"groupType": kind, "replicationProtectedItems": items,
                      "startGroupActions": self._actions(plan, n, "startGroupActions", group),
                      "endGroupActions": self._actions(plan, n, "endGroupActions", group)}
            if kind == "Boot":
                boot.append(normal)
            elif kind in special:
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan, reason=f"The plan has two {kind} groups.")
            else:
                special[kind] = normal
        if len(boot) > MAX_BOOT_GROUPS:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                           reason=f"The plan has {len(boot)} boot groups; at most {MAX_BOOT_GROUPS} are allowed.")
        if len(seen_items) > MAX_PLAN_ITEMS:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                           reason=f"The plan has {len(seen_items)} virtual machines; at most {MAX_PLAN_ITEMS} are "
                                  "allowed.")
        if not seen_items:
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan, reason="The plan has no virtual machines.")
        empty = {"replicationProtectedItems": [], "startGroupActions": [], "endGroupActions": []}
        return [special.get("Shutdown", {"groupType": "Shutdown", **empty}),
                special.get("Failover", {"groupType": "Failover", **empty}), *boot]

    @staticmethod
    def _actions(plan: str, n: int, field: str, group: dict) -> list[dict]:
        actions = group.get(field) or []
        if not isinstance(actions, list):
            raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan, reason=f"groups[{n}].{field} must be a list.")
        out = []
        for a, action in enumerate(actions):
            where = f"groups[{n}].{field}[{a}]"
            details = action.get("customDetails") if isinstance(action, dict) else None
            if not isinstance(details, dict) or details.get("instanceType") not in ACTION_TYPES:
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                               reason=f"{where}.customDetails.instanceType must be one of {', '.join(ACTION_TYPES)}.")
            if details["instanceType"] == "AutomationRunbookActionDetails":
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                               reason=f"{where}: Azure Automation runbooks run only in failovers to Azure; use a "
                                      "VMM library script.")
            name = action.get("actionName")
            types, directions = action.get("failoverTypes"), action.get("failoverDirections")
            if not isinstance(name, str) or not name.strip():
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan, reason=f"{where}.actionName is required.")
            if not isinstance(types, list) or not types or any(t not in FAILOVER_TYPES for t in types):
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                               reason=f"{where}.failoverTypes must list failover types such as TestFailover.")
            if not isinstance(directions, list) or not directions or any(d not in DIRECTIONS for d in directions):
                raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                               reason=f"{where}.failoverDirections must list {' and/or '.join(DIRECTIONS)}.")
            if details["instanceType"] == "ScriptActionDetails":
                path, location = details.get("path"), details.get("fabricLocation")
                if not isinstance(path, str) or not path.startswith("\\") or not path.lower().endswith(".ps1"):
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"{where}.customDetails.path must be a .ps1 path relative to the VMM "
                                          "library share, starting with \\.")
                if location not in ("Primary", "Recovery"):
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"{where}.customDetails.fabricLocation must be Primary or Recovery.")
                timeout = details.get("timeout")
                seconds = _iso_seconds(timeout) if timeout is not None else MAX_SCRIPT_SECONDS
                if seconds is None or not 0 < seconds <= MAX_SCRIPT_SECONDS:
                    raise AsrError(AsrErrors.INVALID_RECOVERY_PLAN, plan=plan,
                                   reason=f"{where}.customDetails.timeout '{timeout}' must be an ISO 8601 duration "
                                          f"of at most {MAX_SCRIPT_SECONDS} seconds.")
                custom = {"instanceType": "ScriptActionDetails", "path": path, "timeout": timeout,
                          "fabricLocation": location}
            else:
                custom = {"instanceType": "ManualActionDetails", "description": details.get("description") or ""}
            out.append({"actionName": name, "failoverTypes": list(types), "failoverDirections": list(directions),
                        "customDetails": custom})
        return out

    # -- test failover and its cleanup --------------------------------------------------------

    def plan_test_failover(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        plan = self.get_recovery_plan(vault, name)
        props = body.get("properties") or {}
        self._require_plan(vault, plan, "TestFailover")
        direction = props.get("failoverDirection")
        if direction not in DIRECTIONS:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="failoverDirection",
                           reason=f"Valid values: {', '.join(DIRECTIONS)}.")
        network_type = props.get("networkType") or "NoNetworkAttachAsInput"
        if network_type not in NETWORK_TYPES:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="networkType",
                           reason=f"Valid network types: {', '.join(NETWORK_TYPES)}.")
        members = self.plan_items(vault, plan)
        for _, item in members:
            self._check_direction(item, direction)
            if self.running_job(vault, item.scenario_job) is not None or "TestFailover" not in item.allowed_operations:
                raise AsrError(AsrErrors.PLAN_OPERATION_NOT_ALLOWED, operation="TestFailover", plan=plan.name,
                               reason=f"The virtual machine '{item.vm_name}' is in the state "
                                      f"'{item.protection_state_description}' and can't be test failed over.")
        network_id, network_name = "", ""
        if network_type == "VmNetworkAsInput":
            wanted = (props.get("networkId") or "").rstrip("/").rsplit("/", 1)[-1]
            found = self.estate.network(wanted) if wanted else None
            site = self.site_of(self.get_fabric(vault, plan.recovery_fabric if direction == "PrimaryToRecovery"
                                                else plan.primary_fabric))
            if found is None or found[0] is not site:
                raise AsrError(AsrErrors.NETWORK_NOT_FOUND, network=props.get("networkId") or "(none)")
            network_id, network_name = found[1].id, found[1].name
        tasks = self._test_failover_tasks(vault, plan, members, direction)
        details = {"testFailoverStatus": "Active", "comments": None, "networkName": network_id,
                   "networkFriendlyName": network_name, "networkType": network_type, "protectedItemDetails": []}
        return self._start_job(vault, "RecoveryPlanTestFailover", target_object_id=plan.name,
                               target_object_name=plan.name, target_path=f"replicationRecoveryPlans/{plan.name}",
                               result="resource", details=details, tasks=tasks,
                               params={"plan": plan.name, "direction": direction, "network_id": network_id,
                                       "items": [self._item_key(i) for _, i in members],
                                       "incarnations": {self._item_key(i): i.incarnation for _, i in members}})

    def plan_test_failover_cleanup(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        plan = self.get_recovery_plan(vault, name)
        self._require_plan(vault, plan, "TestFailoverCleanup")
        comments = (body.get("properties") or {}).get("comments") or ""
        if not isinstance(comments, str) or len(comments) > 1024:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="comments",
                           reason="Comments must be text of at most 1024 characters.")
        members = [(n, i) for n, i in self.plan_items(vault, plan) if "TestFailoverCleanup" in i.allowed_operations]
        children = [self._child(i) for _, i in members]
        tfo_cleanup = SCENARIOS["TestFailoverCleanup"].tasks
        tasks = [
            self._task("RecoveryPlanPreflightChecksTask", "Recovery plan preflight checks for test failover cleanup",
                       tfo_cleanup[0].seconds),
            self._task("RecoveryPlanGroupTask", "Group Failover: Clean up test virtual machines",
                       sum(t.seconds for t in tfo_cleanup[1:]), group=("Failover", "Failover"), children=children),
            self._task("DeleteTestEnvironmentTask", "Delete test environment", 5),
        ]
        details = {"testFailoverStatus": None, "comments": comments, "networkName": None, "networkFriendlyName": None,
                   "networkType": None, "protectedItemDetails": []}
        return self._start_job(vault, "RecoveryPlanTestFailoverCleanup", target_object_id=plan.name,
                               target_object_name=plan.name, target_path=f"replicationRecoveryPlans/{plan.name}",
                               result="resource", details=details, tasks=tasks,
                               params={"plan": plan.name, "items": [self._item_key(i) for _, i in members],
                                       "incarnations": {self._item_key(i): i.incarnation for _, i in members}})

    # -- failover, commit, reprotect of a plan -------------------------------------------------

    def plan_failover(self, vault: Vault, name: str, body: dict[str, Any], *, planned: bool) -> Job:
        """A plan's planned or unplanned failover: one job, its groups in order (Shutdown, Failover, Boot 1..n)."""
        plan = self.get_recovery_plan(vault, name)
        operation = "PlannedFailover" if planned else "UnplannedFailover"
        self._require_plan(vault, plan, operation)
        props = body.get("properties") or {}
        direction = props.get("failoverDirection")
        if direction not in DIRECTIONS:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="failoverDirection",
                           reason=f"Valid values: {', '.join(DIRECTIONS)}.")
        source_ops = props.get("sourceSiteOperations") or "Required"
        if source_ops not in ("Required", "NotRequired"):
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="sourceSiteOperations",
                           reason="Valid values: Required, NotRequired.")
        members = self.plan_items(vault, plan)
        for _, item in members:
            self._check_direction(item, direction)
        kind = "PlannedFailover" if planned else "UnplannedFailover"
        tasks = self._failover_tasks(vault, plan, members, direction, kind,
                                     shut_down=planned or source_ops == "Required")
        return self._start_job(vault, f"RecoveryPlan{kind}", target_object_id=plan.name, target_object_name=plan.name,
                               target_path=f"replicationRecoveryPlans/{plan.name}", result="resource",
                               details={"protectedItemDetails": []}, tasks=tasks,
                               params={"plan": plan.name, "direction": direction, "planned": planned,
                                       **self._member_params(members)})

    def plan_commit(self, vault: Vault, name: str) -> Job:
        return self._plan_members_job(vault, name, "Commit", "RecoveryPlanCommit", "Group Failover: Commit", 13)

    def plan_reprotect(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        plan = self.get_recovery_plan(vault, name)
        for _, item in self.plan_items(vault, plan):
            self._check_direction(item, (body.get("properties") or {}).get("failoverDirection"))
        return self._plan_members_job(vault, name, "ReverseReplicate", "RecoveryPlanReprotect",
                                      "Group Failover: Start reverse replication", 60)

    def _plan_members_job(self, vault: Vault, name: str, operation: str, kind: str, friendly: str,
                          seconds: float) -> Job:
        plan = self.get_recovery_plan(vault, name)
        self._require_plan(vault, plan, operation)
        members = self.plan_items(vault, plan)
        tasks = [self._task("RecoveryPlanPreflightChecksTask", "Recovery plan preflight checks", 2),
                 self._task("RecoveryPlanGroupTask", friendly, seconds, group=("Failover", "Failover"),
                            children=[self._child(i) for _, i in members])]
        return self._start_job(vault, kind, target_object_id=plan.name, target_object_name=plan.name,
                               target_path=f"replicationRecoveryPlans/{plan.name}", result="resource", tasks=tasks,
                               params={"plan": plan.name, **self._member_params(members)})

    def _member_params(self, members: list[tuple[int, ProtectedItem]]) -> dict[str, Any]:
        return {"items": [self._item_key(i) for _, i in members],
                "incarnations": {self._item_key(i): i.incarnation for _, i in members}}

    def _failover_tasks(self, vault: Vault, plan: RecoveryPlan, members: list[tuple[int, ProtectedItem]],
                        direction: str, kind: str, *, shut_down: bool) -> list[Task]:
        """Preflight; the Shutdown group (skipped when the source site is not to be touched); the Failover group;
        each Boot group with its actions for this failover type and direction."""
        item_tasks = SCENARIOS[kind].tasks
        everyone = [self._child(i) for _, i in members]
        tasks = [self._task("RecoveryPlanPreflightChecksTask", "Recovery plan preflight checks", 5)]
        shutdown = self._task("RecoveryPlanGroupTask", "Group Shutdown: Shut down virtual machines",
                              item_tasks[1].seconds + item_tasks[2].seconds, group=("Shutdown", "Shutdown"),
                              children=everyone)
        shutdown.skip = not shut_down
        tasks.append(shutdown)
        failover = next(g for g in plan.groups if g["groupType"] == "Failover")
        tasks += self._action_tasks(vault, plan, failover["startGroupActions"], direction, "Failover", kind)
        tasks.append(self._task("RecoveryPlanGroupTask", "Group Failover: Fail over virtual machines",
                                item_tasks[3].seconds, group=("Failover", "Failover"), children=everyone))
        tasks += self._action_tasks(vault, plan, failover["endGroupActions"], direction, "Failover", kind)
        for number, group in enumerate(self._boot_groups(plan), start=1):
            tasks += self._action_tasks(vault, plan, group["startGroupActions"], direction, str(number), kind)
            tasks.append(self._task("RecoveryPlanGroupTask", f"Group {number}: Start virtual machines",
                                    item_tasks[4].seconds, group=(str(number), "Boot"),
                                    children=[self._child(i) for n, i in members if n == number]))
            tasks += self._action_tasks(vault, plan, group["endGroupActions"], direction, str(number), kind)
        return tasks

    def plan_allowed_operations(self, vault: Vault, plan: RecoveryPlan) -> list[str]:
        """What the plan allows: nothing while its job runs; the cleanup of a pending test failover; else what
        every member allows (inferred: a failed-over plan offers its members' commit and reprotect)."""
        if self.running_job(vault, plan.scenario_job) is not None:
            return []
        if self._cleanup_pending(vault, plan):
            return list(PLAN_TFO_PENDING)
        members = [item for _, item in self.plan_items(vault, plan)]
        if members and all("Commit" in item.allowed_operations for item in members):
            return ["Commit", "ReverseReplicate"]
        if members and all("ReverseReplicate" in item.allowed_operations for item in members):
            return ["ReverseReplicate"]
        return list(PLAN_IDLE)

    def _cleanup_pending(self, vault: Vault, plan: RecoveryPlan) -> bool:
        """A plan test failover left test VMs that no cleanup (of the plan or of an item) has removed yet."""
        return plan.test_failover_pending and any(
            "TestFailoverCleanup" in item.allowed_operations for _, item in self.plan_items(vault, plan))

    def _require_plan(self, vault: Vault, plan: RecoveryPlan, operation: str) -> None:
        allowed = self.plan_allowed_operations(vault, plan)
        if operation not in allowed:
            state = "an operation is in progress" if self.running_job(vault, plan.scenario_job) else (
                "a test failover waits for its cleanup" if self._cleanup_pending(vault, plan) else "idle")
            raise AsrError(AsrErrors.PLAN_OPERATION_NOT_ALLOWED, operation=operation, plan=plan.name,
                           reason=f"The recovery plan is {state}; allowed operations: {', '.join(allowed) or 'none'}.")

    @staticmethod
    def _task(name: str, friendly: str, seconds: float, *, group: tuple[str, str] | None = None,
              children: list | None = None, details: dict | None = None, manual: bool = False) -> Task:
        task = Task(task_id=str(uuid.uuid4()), name=name, friendly_name=friendly, seconds=seconds,
                    task_type="GroupTaskDetails" if group else "TaskDetails", manual=manual,
                    details=dict(details or {}), children=list(children or []))
        if group:
            task.details = {"instanceType": "RecoveryPlanGroupTaskDetails", "name": friendly, "groupId": group[0],
                            "rpGroupType": group[1]}
        return task

    def _child(self, item: ProtectedItem) -> dict[str, Any]:
        return {"name": item.vm_name, "item": self._item_key(item), "vmId": item.vm_id}

    def _test_failover_tasks(self, vault: Vault, plan: RecoveryPlan, members: list[tuple[int, ProtectedItem]],
                             direction: str) -> list[Task]:
        tfo = SCENARIOS["TestFailover"].tasks  # each VM's own steps, run in parallel inside the groups
        tasks = [self._task("RecoveryPlanPreflightChecksTask", "Recovery plan preflight checks", 5),
                 self._task("CreateTestEnvironmentTask", "Create test environment", 10)]
        failover = next(g for g in plan.groups if g["groupType"] == "Failover")
        tasks += self._action_tasks(vault, plan, failover["startGroupActions"], direction, "Failover")
        tasks.append(self._task("RecoveryPlanGroupTask", "Group Failover: Create test virtual machines",
                                tfo[1].seconds + tfo[2].seconds, group=("Failover", "Failover"),
                                children=[self._child(i) for _, i in members]))
        tasks += self._action_tasks(vault, plan, failover["endGroupActions"], direction, "Failover")
        for number, group in enumerate(self._boot_groups(plan), start=1):
            tasks += self._action_tasks(vault, plan, group["startGroupActions"], direction, str(number))
            tasks.append(self._task("RecoveryPlanGroupTask", f"Group {number}: Start virtual machines", tfo[3].seconds,
                                    group=(str(number), "Boot"),
                                    children=[self._child(i) for n, i in members if n == number]))
            tasks += self._action_tasks(vault, plan, group["endGroupActions"], direction, str(number))
        tasks.append(self._task("FinalizeTestFailoverTask", "Finalize test failover", 2))
        return tasks

    def _action_tasks(self, vault: Vault, plan: RecoveryPlan, actions: list[dict], direction: str,
                      group: str, failover_type: str = "TestFailover") -> list[Task]:
        tasks = []
        for action in actions:
            if failover_type not in action["failoverTypes"] or direction not in action["failoverDirections"]:
                continue
            custom = action["customDetails"]
            if custom["instanceType"] == "ManualActionDetails":
                tasks.append(self._task("ManualActionTask", action["actionName"], 0, manual=True, details={
                    "instanceType": "ManualActionTaskDetails", "name": action["actionName"],
                    "instructions": custom.get("description") or "", "observation": None}))
                continue
            # Primary / Recovery are the plan's sides, whatever the failover direction.
            fabric = plan.primary_fabric if custom["fabricLocation"] == "Primary" else plan.recovery_fabric
            vmm = vault.fabrics[fabric].vmm_fqdn
            site = self.estate.site_of_vmm(vmm)
            script = site.vmm.library_script(custom["path"]) if site else None
            timeout = _iso_seconds(custom.get("timeout")) or MAX_SCRIPT_SECONDS
            seconds = min(script.seconds, timeout) if script else 2
            tasks.append(self._task("ScriptActionTask", action["actionName"], seconds, details={
                "instanceType": "ScriptActionTaskDetails", "name": action["actionName"], "path": custom["path"],
                "output": None, "isPrimarySideScript": custom["fabricLocation"] == "Primary",
                "vmm": vmm, "timeoutSeconds": timeout, "group": group}))
        return tasks

    def _task_error(self, job: Job, index: int) -> dict | None:
        """A script action runs as its task ends: missing, too slow or writing to STDERR, it fails the job."""
        task = job.tasks[index]
        if task.details.get("instanceType") != "ScriptActionTaskDetails":
            return None
        vmm, path = task.details["vmm"], task.details["path"]
        site = self.estate.site_of_vmm(vmm)
        script = site.vmm.library_script(path) if site else None
        reason = None
        if script is None:
            reason = f"The script isn't in the VMM library of {vmm} (MSSCVMMLibrary{path})."
        else:
            stderr = self.state.failing_scripts.get(f"{vmm}|{path.lower()}", script.stderr)
            if script.seconds > task.details["timeoutSeconds"]:
                reason = f"The script didn't finish within its timeout of {task.details['timeoutSeconds']:g} seconds."
            elif stderr:
                reason = f"The script wrote to STDERR: {stderr}"
            else:
                task.details["output"] = script.output
        if reason is None:
            return None
        task.details["output"] = reason
        return {**AsrErrors.SCRIPT_FAILED.render(path=path, action=task.details["name"], vmm=vmm, reason=reason),
                "providerErrorCode": 28112, "providerErrorMessage": reason}

    def set_failing_script(self, vmm: str, path: str, stderr: str | None) -> dict[str, Any]:
        """Lab control: make a library script write ``stderr`` (None: behave as the estate says)."""
        site = self.estate.site_of_vmm(vmm.lower())
        if site is None or site.vmm.library_script(path) is None:
            raise LookupError(f"{path} is not a script in the VMM library of {vmm}")
        key = f"{site.vmm.fqdn}|{path.lower()}"
        if stderr:
            self.state.failing_scripts[key] = stderr
        else:
            self.state.failing_scripts.pop(key, None)
        self._touch()
        return {"vmm": site.vmm.fqdn, "path": path, "stderr": stderr or None}

    # -- effects on the plan and its items ------------------------------------------------------

    def _plan_members(self, vault: Vault, job: Job) -> list[ProtectedItem]:
        found = []
        for key in job.params.get("items", []):
            item = vault.protected_items.get(key)
            if item is not None and item.incarnation == job.params["incarnations"].get(key):
                found.append(item)
        return found

    def _snapshot(self, job: Job, item: ProtectedItem) -> None:
        snap = {name: getattr(item, name) for name in _SNAPSHOT}
        snap["allowed_operations"] = list(item.allowed_operations)
        job.rollback[self._item_key(item)] = snap

    def _restore_item(self, job: Job, item: ProtectedItem) -> None:
        for name, value in (job.rollback.get(self._item_key(item)) or {}).items():
            if name in _SNAPSHOT_TIMES and isinstance(value, str):
                value = datetime.fromisoformat(value)
            setattr(item, name, value)

    def _group_vms(self, job: Job, index: int) -> set[str]:
        return {child["item"] for child in job.tasks[index].children}

    @effects("RecoveryPlanTestFailover")
    def _on_plan_test_failover(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        plan = vault.recovery_plans.get(job.params["plan"].lower())
        members = self._plan_members(vault, job)
        task = job.tasks[index] if index is not None else None
        if event == "started":
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "TestFailover", job.name
            for item in members:
                self._snapshot(job, item)
                item.protection_state_description = "Test failover in progress"
                item.allowed_operations = []
                item.scenario, item.scenario_job, item.scenario_start = job.scenario_name, job.name, job.start_time
                item.test_failover_state = "TestFailoverInitiated"
                item.test_failover_state_description = "Test failover in progress"
        elif event == "task_done" and task is not None and task.details.get("groupId") == "Failover":
            network_id = job.params.get("network_id") or ""
            network = self.estate.network(network_id) if network_id else None
            for item in members:
                item.test_vm = TestVm(name=f"{item.vm_name} - Test", id=str(uuid.uuid4()),
                                      host=self._replica_host(item), network_id=network_id, state="Off",
                                      created=task.end_time or self.now())
                replicated = self.last_replicated(vault, item, job.start_time)
                job.details["protectedItemDetails"].append({
                    "name": item.name, "friendlyName": item.vm_name, "testVmName": item.test_vm.id,
                    "testVmFriendlyName": item.test_vm.name,
                    "networkConnectionStatus": "Connected" if network else "Disconnected",
                    "networkFriendlyName": network[1].name if network else "",
                    "subnet": network[1].subnets[0].name if network else "",
                    "recoveryPointId": derived_guid(item.vm_id, replicated.isoformat() if replicated else "none"),
                    "recoveryPointTime": iso(replicated) if replicated else None,
                })
        elif event == "task_done" and task is not None and task.details.get("rpGroupType") == "Boot":
            started = self._group_vms(job, index)
            for item in members:
                if self._item_key(item) in started and item.test_vm is not None:
                    item.test_vm.state = "Running"
        elif event == "succeeded":
            for item in members:
                item.test_failover_state = "WaitingForCompletion"
                item.test_failover_state_description = "Waiting for user input"
                item.protection_state_description = "Cleanup test failover pending"
                item.allowed_operations = list(TFO_PENDING)
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "None", None
                plan.test_failover_pending = True
        elif event in ("failed", "cancelled"):
            for item in members:
                self._restore_item(job, item)
                if item.test_vm is not None:
                    item.test_failover_state = "TestFailoverFailed"
                    item.test_failover_state_description = "Test failover failed"
                    item.protection_state_description = "Cleanup test failover pending"
                    item.allowed_operations = list(TFO_PENDING)
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "None", None
                plan.test_failover_pending = any(item.test_vm is not None for item in members)

    @effects("RecoveryPlanTestFailoverCleanup")
    def _on_plan_test_failover_cleanup(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        plan = vault.recovery_plans.get(job.params["plan"].lower())
        members = self._plan_members(vault, job)
        if event == "started":
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "TestFailoverCleanup", job.name
            for item in members:
                succeeded = item.test_failover_state == "WaitingForCompletion"
                self._snapshot(job, item)
                item.allowed_operations = []
                item.scenario, item.scenario_job, item.scenario_start = job.scenario_name, job.name, job.start_time
                item.test_failover_state = "MarkedForDeletion"
                item.test_failover_state_description = "Cleaning up test environment"
                if succeeded:
                    item.last_test_failover = job.start_time
        elif event == "task_done" and index == 1:
            for item in members:
                item.test_vm = None
        elif event == "succeeded":
            for item in members:
                item.test_vm = None
                item.protection_state_description = "Protected"
                item.allowed_operations = list(IDLE)
                self._idle(item)
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "None", None
                plan.test_failover_pending = False
                plan.last_test_failover = job.start_time
        elif event in ("failed", "cancelled"):
            for item in members:
                self._restore_item(job, item)
            if plan is not None:
                plan.current_scenario, plan.scenario_job = "None", None


    @effects("RecoveryPlanPlannedFailover", "RecoveryPlanUnplannedFailover")
    def _on_plan_failover(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        """The members follow the plan's job: shut down at the Shutdown group, replication stopped at the Failover
        group, started with their Boot group; failed over (commit pending) when the job succeeds."""
        plan = vault.recovery_plans.get(job.params["plan"].lower())
        members = self._plan_members(vault, job)
        task = job.tasks[index] if index is not None else None
        to_recovery = job.params["direction"] == "PrimaryToRecovery"
        if event == "started":
            self._plan_begins(vault, job, plan, members, "Failover in progress")
        elif event == "task_done" and task is not None and task.details.get("groupId") == "Shutdown":
            for item in members:
                self._power(item, replica=not to_recovery, state="Off")
        elif event == "task_done" and task is not None and task.details.get("groupId") == "Failover":
            for item in members:
                self._stop_replication(vault, item, task.end_time or self.now())
        elif event == "task_done" and task is not None and task.details.get("rpGroupType") == "Boot":
            started = self._group_vms(job, index)
            for item in members:
                if self._item_key(item) in started:
                    self._power(item, replica=to_recovery, state="Running")
        elif event == "succeeded":
            for item in members:
                self._failed_over(item, job.params["planned"], to_recovery, job.end_time)
            self._plan_ends(plan)
        elif event in ("failed", "cancelled"):
            for item in members:
                self._restore_item(job, item)
            self._plan_ends(plan)

    @effects("RecoveryPlanCommit", "RecoveryPlanReprotect")
    def _on_plan_commit_or_reprotect(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        plan = vault.recovery_plans.get(job.params["plan"].lower())
        members = self._plan_members(vault, job)
        commit = job.kind == "RecoveryPlanCommit"
        if event == "started":
            self._plan_begins(vault, job, plan, members,
                              "Commit in progress" if commit else "Reverse replication in progress")
        elif event == "succeeded":
            for item in members:
                if commit:
                    self._committed(item)
                else:
                    self._reprotected(item, job.end_time)
            self._plan_ends(plan)
        elif event in ("failed", "cancelled"):
            for item in members:
                self._restore_item(job, item)
            self._plan_ends(plan)

    def _plan_begins(self, vault: Vault, job: Job, plan: RecoveryPlan | None, members: list[ProtectedItem],
                     description: str) -> None:
        if plan is not None:
            plan.current_scenario, plan.scenario_job = job.scenario_name, job.name
        for item in members:
            self._snapshot(job, item)
            item.protection_state_description = description
            item.allowed_operations = []
            item.scenario, item.scenario_job, item.scenario_start = job.scenario_name, job.name, job.start_time

    @staticmethod
    def _plan_ends(plan: RecoveryPlan | None) -> None:
        if plan is not None:
            plan.current_scenario, plan.scenario_job = "None", None
