"""Replicated VMs (replication protected items) and their life cycle, steps 9 to 12 and beyond.

    enable ─► EnableDr ─► PrimaryIrCompletion ─► SecondaryIrCompletion ─► Protected
    Protected ─► TestFailover ─► (waiting for cleanup) ─► TestFailoverCleanup ─► Protected
    Protected ─► PlannedFailover | UnplannedFailover ─► failed over
    failed over ─► CommitFailover ─► committed ─► ReverseReplication ─► Protected (other way)
    failed over ─► CancelFailover ─► Protected (where allowed: recorded VMM-to-VMM items never offer it)
    any idle state ─► DisableDr ─► gone

Every operation checks the item first, as ASR does: an operation while another job runs on
the item is accepted and its job fails at once with 532 (recorded); an operation the item
does not list in ``allowedOperations`` is refused with a 400. When a job fails or is
cancelled, the item goes back to the state it had when the job started (a snapshot kept on
the job), except where the failure leaves something behind - a test failover that created
its test VM before failing must still be cleaned up.

State strings: Protected / "Cleanup test failover pending" / WaitingForCompletion /
MarkedForDeletion / UnprotectedStatesBegin / CommitPendingStatesBegin ("Planned failover
finished") / UnplannedFailoverCommitPendingStatesBegin / UnplannedFailoverCommitted are recorded;
the other transitional states use ASR's protection state vocabulary and are inferred. After a
cleanup the recorded item keeps ``testFailoverState: MarkedForDeletion`` with an idle
``currentScenario``; the lab does too.

Replication itself can be stalled through the lab admin API (``set_replication``): a
condition of the Hyper-V side, independent of jobs, so job rollbacks leave it alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from ..estate import VirtualMachine
from .base import effects
from .errors import AsrError, AsrErrors, ResourceNotFound
from .jobs import Job
from .naming import derived_guid, iso, iso_seconds
from .pairing import PairingOperations, _properties
from .state import ProtectedItem, TestVm, Vault

ITEM_TYPE = "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/" \
            "replicationProtectedItems"

#: recorded for an idle protected VMM VM
IDLE = ["PlannedFailover", "UnplannedFailover", "DisableProtection", "TestFailover"]
#: recorded while a test failover waits for cleanup
TFO_PENDING = ["TestFailoverCleanup"]
DURING_IR = ["DisableProtection"]
#: recorded (TestReprotect, TestFailbackReprotect, TestUFOandFailback) after a planned or unplanned failover, before
#: its commit: VMM-to-VMM offers no CancelFailover
FAILED_OVER = ["CompleteMigration", "ReverseReplicate", "Commit", "DisableProtection", "ChangePit"]
#: recorded (TestFailbackReprotect) after a commit
COMMITTED = ["CompleteMigration", "ReverseReplicate", "DisableProtection"]

NETWORK_TYPES = ("VmNetworkAsInput", "NoNetworkAttachAsInput")

_SNAPSHOT = ("protection_state", "protection_state_description", "allowed_operations", "active_location",
             "test_failover_state", "test_failover_state_description", "scenario", "scenario_job",
             "scenario_start", "last_failover", "last_test_failover", "failover_kind", "committed",
             "replicating_since", "replicated_until", "primary_vm_state", "replica_vm_state",
             "replication_health")
_SNAPSHOT_TIMES = frozenset({"scenario_start", "last_failover", "last_test_failover", "replicating_since",
                             "replicated_until"})


#: replication health, least to most severe (``ProtectionHealth`` in the SDK)
HEALTH_ORDER = ("None", "Normal", "Warning", "Critical")
#: lag (wall-clock seconds) from which a stalled VM's replication health is Critical
CRITICAL_LAG_SECONDS = 2 * 3600
#: the health error a stalled VM carries (the lab's code; no recorded traffic shows one)
STALLED_ERROR_CODE = "70004"


class ReplicationControlError(Exception):
    """A lab admin replication control that cannot apply; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def initial_replication_seconds(vm: VirtualMachine) -> float:
    """Realistic initial replication time over a 1 Gbit/s link (about 8 s per GB)."""
    return 120.0 + 8.0 * vm.total_size_gb


def opposite(direction: str) -> str:
    return "RecoveryToPrimary" if direction == "PrimaryToRecovery" else "PrimaryToRecovery"


class ProtectionOperations(PairingOperations):
    """enable, test failover and cleanup, failover, commit, cancel, reprotect, disable, purge."""

    # -- reading --------------------------------------------------------------------------

    def list_protected_items(self, vault: Vault, fabric: str | None = None, container: str | None = None,
                             filters: dict[str, str] | None = None) -> list[ProtectedItem]:
        if fabric is not None and container is not None:
            where = self.get_container(vault, fabric, container)
            return self.items_in_container(vault, where.fabric.name, where.cloud.id)
        if filters and "recoveryplanname" in filters:
            return []  # the lab has no recovery plans, so no item belongs to one
        return list(vault.protected_items.values())

    def get_protected_item(self, vault: Vault, fabric: str, container: str, name: str) -> ProtectedItem:
        self.get_container(vault, fabric, container)
        item = vault.protected_items.get(f"{fabric}/{container}/{name}".lower())
        if item is None:
            raise ResourceNotFound(ITEM_TYPE, name, vault.resource_group)
        return item

    def test_vms(self) -> list[dict[str, Any]]:
        """Test VMs that test failovers created and cleanups have not yet removed."""
        found = []
        for vault in self.state.vaults.values():
            for item in vault.protected_items.values():
                vm = item.test_vm
                if vm is None:
                    continue
                site = self.estate.cloud(item.recovery_container)
                network = self.estate.network(vm.network_id) if vm.network_id else None
                found.append({
                    "name": vm.name, "id": vm.id, "state": vm.state, "host": vm.host,
                    "vmm": site[0].vmm.fqdn if site else None, "cloud": site[1].name if site else None,
                    "networkId": vm.network_id or None, "networkName": network[1].name if network else None,
                    "sourceVm": item.vm_name, "sourceVmId": item.vm_id, "protectedItem": item.name,
                    "vault": vault.name, "created": vm.created.isoformat(),
                })
        return found

    # -- enable (step 10) -----------------------------------------------------------------

    def enable_protection(self, vault: Vault, fabric: str, container: str, name: str,
                          body: dict[str, Any]) -> Job:
        where = self.get_container(vault, fabric, container)
        props = _properties(body, "policyId", "protectableItemId")
        policy = self.policy_from_id(vault, props["policyId"])
        key = f"{where.fabric.name}/{where.cloud.id}/{name}".lower()
        existing = vault.protected_items.get(key)
        if existing is not None:
            raise AsrError(AsrErrors.ALREADY_PROTECTED, item=existing.vm_name, existing=existing.name)
        mapping = next((m for m in vault.container_mappings.values()
                        if m.fabric == where.fabric.name and m.container == where.cloud.id
                        and m.policy == policy.name.lower()), None)
        if mapping is None:
            raise AsrError(AsrErrors.CLOUD_NOT_PROTECTED, item=name, cloud=where.cloud.name, policy=policy.name)
        vm_id = props["protectableItemId"].rstrip("/").rsplit("/", 1)[-1].lower()
        vm = next((v for v in self.list_protectable_items(vault, where.fabric.name, where.cloud.id)
                   if v.id == vm_id), None)
        if vm is None:
            raise AsrError(AsrErrors.ITEM_NOT_FOUND, item=vm_id, cloud=where.cloud.name)
        other = self.protected_item_of_vm(vault, vm.id)
        if other is not None:
            raise AsrError(AsrErrors.ALREADY_PROTECTED, item=vm.name, existing=other.name)
        problems = vm.readiness_errors()
        if policy.instance_type not in self.supported_providers(vm):
            problems.append(f"The replication provider {policy.instance_type} isn't supported for the virtual "
                            f"machine's host.")
        refusal = AsrErrors.ENABLE_PROTECTION_FAILED.render(reason=" ".join(problems), item=vm.name) \
            if problems else None
        item = ProtectedItem(
            name=name, fabric=where.fabric.name, container=where.cloud.id, vm_id=vm.id, vm_name=vm.name,
            policy=policy.name.lower(), recovery_fabric=mapping.target_fabric,
            recovery_container=mapping.target_container, replica_vm_id=derived_guid(vm.id, "replica"),
            incarnation=str(uuid.uuid4()), created=self.now(), protection_state="UnprotectedStatesBegin",
            protection_state_description="Enabling protection", allowed_operations=[],
        )
        vault.protected_items[key] = item
        return self._item_job(vault, item, "EnableDr", refusal=refusal, recovery_vm_id="")

    def supported_providers(self, vm: VirtualMachine) -> list[str]:
        """Hosts of 2012 R2 and later offer the 2012 R2 provider only (as recorded)."""
        return ["HyperVReplica2012R2"]

    # -- test failover (steps 11-12) ------------------------------------------------------

    def test_failover(self, vault: Vault, fabric: str, container: str, name: str, body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "TestFailover")
        if busy is not None:
            return busy
        self._require(item, "TestFailover")
        props = body.get("properties") or {}
        self._check_direction(item, props.get("failoverDirection"))
        network_type = props.get("networkType") or "NoNetworkAttachAsInput"
        if network_type not in NETWORK_TYPES:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="networkType",
                           reason=f"Valid network types: {', '.join(NETWORK_TYPES)}.")
        network_id, network_name = "", ""
        if network_type == "VmNetworkAsInput":
            target_fabric = item.recovery_fabric if item.active_location == "Primary" else item.fabric
            wanted = (props.get("networkId") or "").rstrip("/").rsplit("/", 1)[-1]
            found = self.estate.network(wanted) if wanted else None
            site = self.site_of(self.get_fabric(vault, target_fabric))
            if found is None or found[0] is not site:
                raise AsrError(AsrErrors.NETWORK_NOT_FOUND, network=props.get("networkId") or "(none)")
            network_id, network_name = found[1].id, found[1].name
        details = {"testFailoverStatus": "Active", "comments": None, "networkName": network_id,
                   "networkFriendlyName": network_name, "networkType": network_type, "protectedItemDetails": []}
        return self._item_job(vault, item, "TestFailover", details=details, network_id=network_id)

    def test_failover_cleanup(self, vault: Vault, fabric: str, container: str, name: str,
                              body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "TestFailoverCleanup")
        if busy is not None:
            return busy
        self._require(item, "TestFailoverCleanup")
        comments = (body.get("properties") or {}).get("comments") or ""
        if not isinstance(comments, str) or len(comments) > 1024:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="comments",
                           reason="Comments must be text of at most 1024 characters.")
        details = {"testFailoverStatus": None, "comments": comments, "networkName": None,
                   "networkFriendlyName": None, "networkType": None, "protectedItemDetails": []}
        return self._item_job(vault, item, "TestFailoverCleanup", details=details)

    # -- failover, commit, cancel, reprotect ----------------------------------------------

    def planned_failover(self, vault: Vault, fabric: str, container: str, name: str, body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "PlannedFailover")
        if busy is not None:
            return busy
        self._require(item, "PlannedFailover")
        direction = self._check_direction(item, (body.get("properties") or {}).get("failoverDirection"))
        return self._item_job(vault, item, "PlannedFailover", details={"protectedItemDetails": []},
                              direction=direction)

    def unplanned_failover(self, vault: Vault, fabric: str, container: str, name: str,
                           body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "UnplannedFailover")
        if busy is not None:
            return busy
        self._require(item, "UnplannedFailover")
        props = body.get("properties") or {}
        direction = self._check_direction(item, props.get("failoverDirection"))
        source_ops = props.get("sourceSiteOperations") or "Required"
        if source_ops not in ("Required", "NotRequired"):
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="sourceSiteOperations",
                           reason="Valid values: Required, NotRequired.")
        skip = (1, 2) if source_ops == "NotRequired" else ()
        return self._item_job(vault, item, "UnplannedFailover", details={"protectedItemDetails": []}, skip=skip,
                              direction=direction, source_site_operations=source_ops)

    def commit_failover(self, vault: Vault, fabric: str, container: str, name: str) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "CommitFailover")
        if busy is not None:
            return busy
        self._require(item, "Commit")
        return self._item_job(vault, item, "CommitFailover")

    def cancel_failover(self, vault: Vault, fabric: str, container: str, name: str) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "CancelFailover")
        if busy is not None:
            return busy
        self._require(item, "CancelFailover")
        return self._item_job(vault, item, "CancelFailover")

    def reprotect(self, vault: Vault, fabric: str, container: str, name: str, body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "ReverseReplication")
        if busy is not None:
            return busy
        self._require(item, "ReverseReplicate")
        self._check_direction(item, (body.get("properties") or {}).get("failoverDirection"))
        skip = (1,) if item.committed else ()
        return self._item_job(vault, item, "ReverseReplication", skip=skip)

    # -- disable, purge -------------------------------------------------------------------

    def disable_protection(self, vault: Vault, fabric: str, container: str, name: str,
                           body: dict[str, Any]) -> Job:
        item = self.get_protected_item(vault, fabric, container, name)
        busy = self._busy(vault, item, "DisableDr")
        if busy is not None:
            return busy
        self._require(item, "DisableProtection")
        reason = (body.get("properties") or {}).get("disableProtectionReason") or "NotSpecified"
        if reason not in ("NotSpecified", "MigrationComplete"):
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="disableProtectionReason",
                           reason="Valid values: NotSpecified, MigrationComplete.")
        return self._item_job(vault, item, "DisableDr", result="none", reason=reason)

    def purge_protection(self, vault: Vault, fabric: str, container: str, name: str) -> Job:
        """Remove the item whatever it is doing (DELETE): its running jobs are cancelled."""
        item = self.get_protected_item(vault, fabric, container, name)
        return self._item_job(vault, item, "PurgeProtection", result="none")

    # -- helpers --------------------------------------------------------------------------

    def _item_key(self, item: ProtectedItem) -> str:
        return f"{item.fabric}/{item.container}/{item.name}".lower()

    def _item_for_job(self, vault: Vault, job: Job) -> ProtectedItem | None:
        item = vault.protected_items.get(job.params.get("item", ""))
        if item is None or item.incarnation != job.params.get("incarnation"):
            return None
        return item

    def _affected(self, item: ProtectedItem, recovery_vm_id: str | None = None) -> dict[str, str]:
        primary, recovery = self.estate.cloud(item.container), self.estate.cloud(item.recovery_container)
        return {
            "primaryVmId": item.vm_id, "primaryVmName": item.vm_name,
            "recoveryVmId": item.replica_vm_id if recovery_vm_id is None else recovery_vm_id,
            "recoveryVmName": item.vm_name, "protectionProfileId": "",
            "primaryCloudId": item.container, "primaryCloudName": primary[1].name if primary else "",
            "recoveryCloudId": item.recovery_container, "recoveryCloudName": recovery[1].name if recovery else "",
            "primaryVmmId": primary[0].vmm.id if primary else "", "primaryVmmName": primary[0].vmm.fqdn if primary else "",
            "recoveryVmmId": recovery[0].vmm.id if recovery else "",
            "recoveryVmmName": recovery[0].vmm.fqdn if recovery else "",
            "primaryFabricProviderId": "VMM", "recoveryFabricProviderId": "VMM",
        }

    def _job_fields(self, vault: Vault, item: ProtectedItem, result: str, recovery_vm_id: str | None,
                    params: dict[str, Any]) -> dict[str, Any]:
        affected = self._affected(item, recovery_vm_id)
        policy = vault.policies.get(item.policy)
        affected["protectionProfileId"] = policy.guid if policy else ""
        return {
            "target_object_id": item.vm_id, "target_object_name": item.vm_name,
            "target_path": f"replicationFabrics/{item.fabric}/replicationProtectionContainers/{item.container}/"
                           f"replicationProtectedItems/{item.name}",
            "result": result, "affected": affected,
            "params": {"item": self._item_key(item), "incarnation": item.incarnation, **params},
        }

    def _item_job(self, vault: Vault, item: ProtectedItem, kind: str, *, result: str = "resource",
                  refusal: dict | None = None, details: dict | None = None, skip: tuple = (),
                  durations: dict[int, float] | None = None, at: datetime | None = None,
                  recovery_vm_id: str | None = None, **params: Any) -> Job:
        fields = self._job_fields(vault, item, result, recovery_vm_id, params)
        return self._start_job(vault, kind, at=at, refusal=refusal, details=details, skip=skip,
                               durations=durations, **fields)

    def _busy(self, vault: Vault, item: ProtectedItem, kind: str) -> Job | None:
        running = self.running_job(vault, item.scenario_job)
        if running is None:
            return None
        return self._reject_busy(vault, kind, item, running, **self._job_fields(vault, item, "resource", None, {}))

    def _require(self, item: ProtectedItem, operation: str) -> None:
        if operation not in item.allowed_operations:
            state = item.protection_state_description
            if item.test_failover_state not in ("None", "MarkedForDeletion"):
                state = f"{state} ({item.test_failover_state_description})"
            raise AsrError(AsrErrors.OPERATION_NOT_ALLOWED, operation=operation, item=item.vm_name, state=state,
                           allowed=", ".join(item.allowed_operations) or "none")

    def _check_direction(self, item: ProtectedItem, given: Any) -> str:
        expected = "PrimaryToRecovery" if item.active_location == "Primary" else "RecoveryToPrimary"
        if given is None:
            return expected
        if given not in ("PrimaryToRecovery", "RecoveryToPrimary"):
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="failoverDirection",
                           reason="Valid values: PrimaryToRecovery, RecoveryToPrimary.")
        if given != expected:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="failoverDirection",
                           reason=f"The virtual machine is active on the {item.active_location.lower()} site; "
                                  f"the only valid direction is {expected}.")
        return given

    def _begin(self, item: ProtectedItem, job: Job, state: str | None, description: str) -> None:
        """Enter an operation: remember how the item looked, show the job as current."""
        job.rollback = {name: getattr(item, name) for name in _SNAPSHOT}
        job.rollback["allowed_operations"] = list(item.allowed_operations)
        if state is not None:
            item.protection_state = state
        item.protection_state_description = description
        item.allowed_operations = []
        item.scenario, item.scenario_job, item.scenario_start = job.scenario_name, job.name, job.start_time

    def _restore(self, item: ProtectedItem, job: Job) -> None:
        for name, value in job.rollback.items():
            if name in _SNAPSHOT_TIMES and isinstance(value, str):
                value = datetime.fromisoformat(value)  # the snapshot went through a restart
            setattr(item, name, value)

    def _idle(self, item: ProtectedItem) -> None:
        item.scenario, item.scenario_job, item.scenario_start = "None", None, None

    def _stop_replication(self, vault: Vault, item: ProtectedItem, at: datetime) -> None:
        if item.replicating_since is not None:
            item.replicated_until = self.last_replicated(vault, item, at)
        item.replicating_since = None

    def last_replicated(self, vault: Vault, item: ProtectedItem, now: datetime) -> datetime | None:
        """Delta replication cycles at the policy frequency since replication (re)started.

        A stalled VM (``set_replication``) shows the instant frozen when it stalled.
        """
        if item.replicating_since is None:
            return item.replicated_until
        if item.paused_replicated_until is not None:
            return item.paused_replicated_until
        return self._replicated_by_cycles(vault, item, now)

    def _replicated_by_cycles(self, vault: Vault, item: ProtectedItem, now: datetime) -> datetime:
        """The last delta cycle before ``now`` at the current scale (replication running)."""
        assert item.replicating_since is not None
        policy = vault.policies.get(item.policy)
        seconds = policy.settings.get("replicationFrequencyInSeconds", 300) if policy else 300
        period = self.clock.duration(seconds)
        if period.total_seconds() <= 0:
            return now
        cycles = (now - item.replicating_since) // period
        return item.replicating_since + cycles * period

    def _rebase_replication(self, now: datetime) -> None:
        """Count delta cycles from the last one so far (before the time scale changes), so
        that lastReplicatedTime never goes back when the cycle length changes."""
        for vault in self.state.vaults.values():
            for item in vault.protected_items.values():
                if item.replicating_since is not None:
                    item.replicating_since = self._replicated_by_cycles(vault, item, now)

    # -- stalled replication (lab admin) --------------------------------------------------

    def set_replication(self, vm_name: str, paused: bool, lag_seconds: float = 0.0) -> list[dict[str, Any]]:
        """Stall or resume Hyper-V replication of one VM, in every vault that protects it.

        Stalled is what ASR shows when Hyper-V Replica stops shipping changes (replication
        paused on the host, replica server unreachable): ``lastReplicatedTime`` freezes at
        ``now - lag_seconds`` (or the last cycle, if earlier) and stays there; health is
        Warning, Critical once the lag reaches ``CRITICAL_LAG_SECONDS``, and one health
        error says so. The lag and that threshold are wall-clock seconds, not scaled:
        they are what a readiness gate compares with its RPO target. Pausing a stalled VM
        again re-freezes at ``now - lag_seconds``. Resuming clears the error and restarts
        the delta cycles at the resume instant. Jobs on the item are not affected.

        :param vm_name: the VM's name in the estate (case-insensitive).
        :return: each protected item's replication as the admin API shows it.
        :raise ReplicationControlError: 404 for an unknown or unprotected VM, 409 when a
            VM whose replication is not running (initial replication, failed over) is paused.
        """
        self.settle()
        wanted = vm_name.lower()
        found = [(vault, item) for vault in self.state.vaults.values()
                 for item in vault.protected_items.values() if item.vm_name.lower() == wanted]
        if not found:
            known = {vm.name.lower() for site in self.estate.sites for vm in site.vms}
            if wanted not in known:
                raise ReplicationControlError(404, f"no VM named {vm_name!r} in the estate")
            raise ReplicationControlError(
                404, f"VM {vm_name!r} is not protected in any vault (enable replication first)")
        now = self.now()
        if paused:
            for vault, item in found:
                if item.replicating_since is None:
                    raise ReplicationControlError(
                        409, f"replication of VM {item.vm_name!r} in vault {vault.name!r} is not running "
                             f"({item.protection_state_description}); only running replication can be paused")
        for vault, item in found:
            if paused:
                frozen = min(self._replicated_by_cycles(vault, item, now), now - timedelta(seconds=lag_seconds))
                item.replication_paused = item.replication_paused or now
                item.paused_replicated_until = frozen
            elif item.replication_paused is not None:
                if item.replicating_since is not None:
                    item.replicating_since = now
                item.replication_paused = item.paused_replicated_until = None
        self._touch()
        return [self.replication_status(vault, item, now) for vault, item in found]

    def replication_status(self, vault: Vault, item: ProtectedItem, now: datetime) -> dict[str, Any]:
        replicated = self.last_replicated(vault, item, now)
        health, _ = self.replication_health_of(vault, item, now)
        return {"vault": vault.name, "protected_item": item.name, "vm_name": item.vm_name,
                "paused": item.replication_paused is not None,
                "last_replicated_time": iso_seconds(replicated) if replicated else None,
                "replication_health": health}

    def replication_health_of(self, vault: Vault, item: ProtectedItem, now: datetime) -> tuple[str, list[dict]]:
        """``replicationHealth`` and ``healthErrors`` as read at ``now``."""
        health, errors = item.replication_health, list(item.health_errors)
        if item.replication_paused is None or item.paused_replicated_until is None:
            return health, errors
        critical = (now - item.paused_replicated_until).total_seconds() >= CRITICAL_LAG_SECONDS
        stalled = "Critical" if critical else "Warning"
        if HEALTH_ORDER.index(stalled) > (HEALTH_ORDER.index(health) if health in HEALTH_ORDER else 0):
            health = stalled
        return health, [*errors, self._stalled_error(vault, item, critical)]

    def _stalled_error(self, vault: Vault, item: ProtectedItem, critical: bool) -> dict[str, Any]:
        """The health error of a stalled VM, in ASR's ``HealthError`` shape (wire order)."""
        assert item.replication_paused is not None and item.paused_replicated_until is not None
        site_vm = self.estate.vm(item.vm_id)
        host = (site_vm[1].host if site_vm else "") if item.active_location == "Primary" \
            else self._replica_host(item)
        policy = vault.policies.get(item.policy)
        port = policy.settings.get("replicationPort", 8083) if policy else 8083
        return {
            "innerHealthErrors": [], "errorSource": "VmmToVmm", "errorType": "Replication",
            "errorLevel": "Error" if critical else "Warning", "errorCategory": "Replication",
            "errorCode": STALLED_ERROR_CODE, "summaryMessage": "Replication is paused for the virtual machine.",
            "errorMessage": f"Replication for virtual machine '{item.vm_name}' is paused. No changes have been "
                            f"replicated since {iso_seconds(item.paused_replicated_until)} (UTC).",
            "possibleCauses": f"Replication was paused on the Hyper-V host '{host}', or the host cannot reach "
                              f"the replica server on the replication port ({port}).",
            "recommendedAction": f"Resume replication on '{host}' (Resume-VMReplication -VMName "
                                 f"'{item.vm_name}'). If Hyper-V reports that resynchronization is required, "
                                 f"resynchronize the virtual machine.",
            "creationTimeUtc": iso(item.replication_paused), "recoveryProviderErrorMessage": None,
            "entityId": item.vm_id,
            "errorId": derived_guid(item.incarnation, "replication-paused", iso(item.replication_paused)),
            "customerResolvability": "Allowed",
        }

    def _cancel_item_jobs(self, vault: Vault, item: ProtectedItem, at: datetime, keep: Job) -> None:
        """Cancel the item's other running jobs (initial replication; anything when purging)."""
        for job in list(vault.jobs.values()):
            if job is not keep and job.running and job.params.get("incarnation") == item.incarnation:
                self.runner.cancel(job, at)

    def _replica_host(self, item: ProtectedItem) -> str:
        found = self.estate.cloud(item.recovery_container)
        if found is None:
            return ""
        hosts = found[0].hosts_in(found[1].name)
        return hosts[int(item.vm_id.replace("-", ""), 16) % len(hosts)].fqdn if hosts else ""

    # -- effects --------------------------------------------------------------------------

    @effects("EnableDr")
    def _on_enable(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            self._begin(item, job, "UnprotectedStatesBegin", "Enabling protection")
        elif event == "succeeded":
            site_vm = self.estate.vm(item.vm_id)
            seconds = initial_replication_seconds(site_vm[1]) if site_vm else 600.0
            at = job.end_time
            item.ir_start, item.ir_end = at, at + self.clock.duration(seconds)
            item.protection_state_description = "Initial replication in progress"
            item.allowed_operations = list(DURING_IR)
            self._idle(item)
            self._item_job(vault, item, "PrimaryIrCompletion", at=at, durations={0: seconds})
        elif event in ("failed", "cancelled"):
            vault.protected_items.pop(self._item_key(item), None)

    @effects("PrimaryIrCompletion", "SecondaryIrCompletion")
    def _on_initial_replication(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "succeeded" and job.kind == "PrimaryIrCompletion":
            self._item_job(vault, item, "SecondaryIrCompletion", at=job.end_time)
        elif event == "succeeded":
            item.protection_state = item.protection_state_description = "Protected"
            item.allowed_operations = list(IDLE)
            item.replicating_since = job.end_time
        elif event in ("failed", "cancelled") and item.protection_state != "DisablingProtection":
            item.protection_state = "InitialReplicationFailed"
            item.protection_state_description = "Initial replication failed"
            item.replication_health = "Critical"
            item.allowed_operations = list(DURING_IR)

    @effects("TestFailover")
    def _on_test_failover(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            self._begin(item, job, None, "Test failover in progress")
            item.test_failover_state, item.test_failover_state_description = (
                "TestFailoverInitiated", "Test failover in progress")
        elif event == "task_done" and index == 1:
            network_id = job.params.get("network_id") or ""
            network = self.estate.network(network_id) if network_id else None
            item.test_vm = TestVm(name=f"{item.vm_name} - Test", id=str(uuid.uuid4()), host=self._replica_host(item),
                                  network_id=network_id, state="Off", created=job.tasks[1].end_time or self.now())
            replicated = self.last_replicated(vault, item, job.start_time)  # the latest point when the failover began
            job.details["protectedItemDetails"] = [{
                "name": item.name, "friendlyName": item.vm_name, "testVmName": item.test_vm.id,
                "testVmFriendlyName": item.test_vm.name,
                "networkConnectionStatus": "Connected" if network else "Disconnected",
                "networkFriendlyName": network[1].name if network else "",
                "subnet": network[1].subnets[0].name if network else "",
                "recoveryPointId": derived_guid(item.vm_id, replicated.isoformat() if replicated else "none"),
                "recoveryPointTime": iso(replicated) if replicated else None,
            }]
        elif event == "task_done" and index == 3 and item.test_vm is not None:
            item.test_vm.state = "Running"
        elif event == "succeeded":
            item.test_failover_state = "WaitingForCompletion"
            item.test_failover_state_description = "Waiting for user input"
            item.protection_state_description = "Cleanup test failover pending"
            item.allowed_operations = list(TFO_PENDING)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)
            if item.test_vm is not None:
                # The test VM exists: the drill must still be cleaned up.
                item.test_failover_state = "TestFailoverFailed"
                item.test_failover_state_description = "Test failover failed"
                item.protection_state_description = "Cleanup test failover pending"
                item.allowed_operations = list(TFO_PENDING)

    @effects("TestFailoverCleanup")
    def _on_test_failover_cleanup(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            succeeded = item.test_failover_state == "WaitingForCompletion"
            self._begin(item, job, None, "Cleanup test failover pending")
            item.test_failover_state = "MarkedForDeletion"
            item.test_failover_state_description = "Cleaning up test environment"
            if succeeded:
                item.last_test_failover = job.start_time
        elif event == "task_done" and index == 2:
            item.test_vm = None
        elif event == "succeeded":
            item.test_vm = None
            item.protection_state_description = "Protected"
            item.allowed_operations = list(IDLE)
            self._idle(item)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)

    @effects("PlannedFailover", "UnplannedFailover")
    def _on_failover(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        planned = job.kind == "PlannedFailover"
        to_recovery = job.params.get("direction") == "PrimaryToRecovery"
        if event == "started":
            state = "PlannedFailoverInitiated" if planned else "UnplannedFailoverInitiated"
            self._begin(item, job, state, "Failover in progress")
        elif event == "task_done" and index == 1:
            self._power(item, replica=not to_recovery, state="Off")  # the copy on the site it leaves
        elif event == "task_done" and index == 3:
            self._stop_replication(vault, item, job.tasks[3].end_time or self.now())
        elif event == "task_done" and index == 4:
            self._power(item, replica=to_recovery, state="Running")  # the copy on the site it goes to
        elif event == "succeeded":
            self._failed_over(item, planned, to_recovery, job.end_time)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)

    @staticmethod
    def _power(item: ProtectedItem, *, replica: bool, state: str) -> None:
        """Set the power state of the VM's copy on one site: the replica (recovery site) or the primary."""
        setattr(item, "replica_vm_state" if replica else "primary_vm_state", state)

    def _failed_over(self, item: ProtectedItem, planned: bool, to_recovery: bool, at: datetime | None) -> None:
        """A failover (of the item, or of a plan it is in) succeeded: its commit is pending."""
        # Recorded: a planned failover waits for its commit as CommitPendingStatesBegin, "Planned failover
        # finished"; an unplanned one as UnplannedFailoverCommitPendingStatesBegin, "Failover completed".
        item.protection_state, item.protection_state_description = (
            ("CommitPendingStatesBegin", "Planned failover finished") if planned
            else ("UnplannedFailoverCommitPendingStatesBegin", "Failover completed"))
        item.active_location = "Recovery" if to_recovery else "Primary"
        item.failover_kind, item.committed = ("planned" if planned else "unplanned"), False
        item.last_failover = at
        item.allowed_operations = list(FAILED_OVER)
        self._idle(item)

    @effects("CommitFailover")
    def _on_commit(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            self._begin(item, job, "CommitFailoverStatesBegin", "Commit in progress")
        elif event == "succeeded":
            self._committed(item)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)

    def _committed(self, item: ProtectedItem) -> None:
        """A commit (of the item, or of a plan it is in) succeeded."""
        # Recorded for a planned failover's commit; the unplanned one's state as seen in the field.
        item.protection_state, item.protection_state_description = (
            ("PlannedFailoverStatesBegin", "Planned failover committed") if item.failover_kind == "planned"
            else ("UnplannedFailoverCommitted", "Failover committed"))
        item.committed = True
        item.allowed_operations = list(COMMITTED)
        self._idle(item)

    @effects("CancelFailover")
    def _on_cancel_failover(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            self._begin(item, job, "CancelFailoverStatesBegin", "Cancel failover in progress")
        elif event == "succeeded":
            back_to_primary = item.active_location == "Recovery"
            item.active_location = "Primary" if back_to_primary else "Recovery"
            item.primary_vm_state, item.replica_vm_state = (("Running", "Off") if back_to_primary
                                                            else ("Off", "Running"))
            item.protection_state = item.protection_state_description = "Protected"
            item.failover_kind, item.committed = None, False
            item.replicating_since = job.end_time
            item.allowed_operations = list(IDLE)
            self._idle(item)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)

    @effects("ReverseReplication")
    def _on_reprotect(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            self._begin(item, job, "ReprotectInitiated", "Reverse replication in progress")
        elif event == "task_done" and index == 1:
            item.committed = True
        elif event == "succeeded":
            self._reprotected(item, job.end_time)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)

    def _reprotected(self, item: ProtectedItem, at: datetime | None) -> None:
        """A reprotect (of the item, or of a plan it is in) succeeded: protected, replicating the other way."""
        item.protection_state = item.protection_state_description = "Protected"
        item.failover_kind, item.committed = None, False
        item.replicating_since = at
        item.allowed_operations = list(IDLE)
        self._idle(item)

    @effects("DisableDr", "PurgeProtection")
    def _on_disable(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        item = self._item_for_job(vault, job)
        if item is None:
            return
        if event == "started":
            # Initial replication (and, when purging, whatever else runs) stops first; the
            # snapshot taken next is what a failed disable returns to.
            self._cancel_item_jobs(vault, item, job.start_time, keep=job)
            self._begin(item, job, "DisablingProtection", "Disabling protection")
            self._stop_replication(vault, item, job.start_time)
        elif event == "succeeded":
            vault.protected_items.pop(self._item_key(item), None)
        elif event in ("failed", "cancelled"):
            self._restore(item, job)
