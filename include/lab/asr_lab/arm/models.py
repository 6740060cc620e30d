"""The emulated Azure control plane for Site Recovery: ``ArmBackend``.

Moto-style: the backend holds plain state objects and exposes methods named after the API
verbs (``create_policy``, ``test_failover``, ``cancel_job``); they take Python values,
return state objects and raise ``ArmError``. They know nothing about HTTP - routes.py
parses requests, calls them and renders the answers.

The families of operations live in their own modules and are mixed in here:
vaults.py (vaults, certificates, extended info), fabrics.py (registration, fabrics,
clouds, networks, protectable items), policies.py, pairing.py (cloud and network
mappings), protection.py (replicated VMs). This module adds the job verbs, the lazy clock
(``settle``), persistence, injected job faults and the summary the admin API shows.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from ..clock import Clock, non_negative_number
from ..estate import Estate
from .errors import AsrError, AsrErrors, ResourceNotFound
from .faults import parse_fault
from .jobs import Job
from .plans import RecoveryPlanOperations
from .naming import iso_seconds
from .state import Fabric, LabState, Operation, Vault, dump_state, load_state
from .vaults import VaultOperations

JOB_TYPE = "Microsoft.RecoveryServices/vaults/replicationJobs"

#: the verbs whose jobs can be restarted by replaying the request that started them
REPLAYABLE = (
    "create_policy", "update_policy", "delete_policy", "create_container_mapping", "remove_container_mapping",
    "create_network_mapping", "delete_network_mapping", "enable_protection", "test_failover",
    "test_failover_cleanup", "planned_failover", "unplanned_failover", "commit_failover", "cancel_failover",
    "reprotect", "disable_protection", "purge_protection",
)


def _remember_request(verb: Callable) -> Callable:
    """Store on the returned job how it was requested, so ``restart_job`` can replay it."""

    @functools.wraps(verb)
    def wrapper(self: ArmBackend, vault: Vault, *args: Any, **kwargs: Any):
        result = verb(self, vault, *args, **kwargs)
        if isinstance(result, Job):
            result.params["replay"] = {"verb": verb.__name__, "args": list(args), "kwargs": kwargs}
        return result

    return wrapper


class ArmBackend(RecoveryPlanOperations, VaultOperations):
    """State and verbs of one lab's ARM + Recovery Services + Site Recovery control plane.

    :param estate: the emulated company (subscription, resource groups, VMM sites).
    :param clock: lab time; job durations are scaled by ``clock.scale``.
    :param base_url: where clients reach the lab (absolute LRO and nextLink URLs point there).
    """

    def __init__(self, estate: Estate, clock: Clock, base_url: str, *, state: LabState | None = None) -> None:
        self._init_core(estate, clock, base_url, state or LabState())

    # -- lazy time ------------------------------------------------------------------------

    def settle(self) -> None:
        """Apply every job/task transition due at ``clock.now()``; O(1) when nothing is due."""
        due = self.runner.next_due()
        if due is None:
            return
        now = self.clock.now()
        if due <= now.timestamp() and self.runner.settle(now):
            self._touch()

    def set_time_scale(self, scale: float) -> None:
        """Run lab time at ``scale`` for every duration computed from now on.

        A task already in progress keeps its due instant (the job's later tasks take the
        new scale); so does an initial replication window already open. Delta replication
        cycles and provider heartbeats are counted from a stored instant, so that instant
        moves to the last cycle or beat so far: neither time goes back.

        :raise ValueError: ``scale`` is not a finite number >= 0.
        """
        scale = non_negative_number(scale)
        self.settle()
        now = self.now()
        for vault in self.state.vaults.values():
            for fabric in vault.fabrics.values():
                fabric.heartbeat_since = self.last_heartbeat(fabric, now)
        self._rebase_replication(now)
        self.clock.set_scale(scale)
        self._touch()

    def last_heartbeat(self, fabric: Fabric, now: datetime) -> datetime:
        """The provider on a VMM server heartbeats every two minutes (scaled) since registration."""
        since = fabric.heartbeat_since or fabric.registered
        period = self.clock.duration(120)
        if period.total_seconds() <= 0:
            return now
        return since + ((now - since) // period) * period

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The full state as JSON-safe data (absolute instants, so restarts continue jobs)."""
        return dump_state(self.state)

    @classmethod
    def from_dict(cls, data: dict[str, Any], estate: Estate, clock: Clock, base_url: str) -> ArmBackend:
        backend = cls(estate, clock, base_url, state=load_state(data))
        for vault in backend.state.vaults.values():
            for job in vault.jobs.values():
                if job.running and job.due is not None:
                    backend.runner.reschedule(job)
        return backend

    # -- injected job faults --------------------------------------------------------------

    def add_job_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Bend the next matching job(s): Failed, PartiallySucceeded, Cancelled, Stuck or Suspended.

        :param spec: ``{"scenario", "target"?, "outcome", "error"?, "count"?, "task"?}``.
        :raise ValueError: a spec key is missing or wrong (the message names it).
        """
        self.state.fault_seq += 1
        fault = parse_fault(spec, f"fault-{self.state.fault_seq}")
        self.state.faults.append(fault)
        self._touch()
        return fault.describe()

    def clear_job_faults(self) -> None:
        self.state.faults.clear()
        self._touch()

    def list_job_faults(self) -> list[dict[str, Any]]:
        return [f.describe() for f in self.state.faults]

    # -- jobs -----------------------------------------------------------------------------

    def get_job(self, vault: Vault, name: str) -> Job:
        job = vault.jobs.get(name.lower())
        if job is None:
            raise ResourceNotFound(JOB_TYPE, name, vault.resource_group)
        return job

    def list_jobs(self, vault: Vault, filters: dict[str, str] | None = None) -> list[Job]:
        """Jobs newest first, filtered by the JobQueryParameter fields the service knows.

        ``startTime``/``endTime`` bound the job start; ``jobStatus`` is the state; ``jobName``
        the scenario name; ``affectedObjectTypes`` target instance types (comma list);
        ``fabricId`` a fabric. Other fields are ignored, as the service ignores them.
        """
        jobs = sorted(vault.jobs.values(), key=lambda j: j.start_time, reverse=True)
        f = filters or {}
        if "starttime" in f:
            since = _parse_time(f["starttime"])
            jobs = [j for j in jobs if since is None or j.start_time >= since]
        if "endtime" in f:
            until = _parse_time(f["endtime"])
            jobs = [j for j in jobs if until is None or j.start_time <= until]
        if "jobstatus" in f:
            jobs = [j for j in jobs if j.state.lower() == f["jobstatus"].lower()]
        if "jobname" in f:
            jobs = [j for j in jobs if j.scenario_name.lower() == f["jobname"].lower()]
        if "affectedobjecttypes" in f:
            kinds = {k.strip().lower() for k in f["affectedobjecttypes"].split(",") if k.strip()}
            jobs = [j for j in jobs if j.target_instance_type.lower() in kinds]
        if "fabricid" in f:
            fabric = f["fabricid"].rstrip("/").rsplit("/", 1)[-1].lower()
            jobs = [j for j in jobs if f"replicationfabrics/{fabric}" in j.target_path.lower()
                    or j.params.get("fabric") == fabric]
        return jobs

    def cancel_job(self, vault: Vault, name: str) -> tuple[Job, Operation]:
        job = self.get_job(vault, name)
        if "Cancel" not in job.allowed_actions:
            raise AsrError(AsrErrors.JOB_ACTION_NOT_ALLOWED, job=job.name, action="cancelled", state=job.state)
        self.runner.cancel(job, self.now())
        return job, self._operation(vault, job, "cancel")

    def resume_job(self, vault: Vault, name: str, body: dict[str, Any] | None = None) -> tuple[Job, Operation]:
        job = self.get_job(vault, name)
        if job.state != "Suspended":
            raise AsrError(AsrErrors.JOB_ACTION_NOT_ALLOWED, job=job.name, action="resumed", state=job.state)
        comments = ((body or {}).get("properties") or {}).get("comments")
        task = job.tasks[job.current]
        if task.manual:  # a recovery plan's manual action: the comment is what the person observed
            task.details["observation"] = comments or None
        elif comments:
            job.details.setdefault("resumeComments", comments)
        self.runner.resume(job, self.now())
        self._touch()
        return job, self._operation(vault, job, "resume")

    def restart_job(self, vault: Vault, name: str) -> Job:
        """Run a failed or cancelled job again by replaying the request that started it.

        The replay goes through the same checks as the original request, so restarting is
        refused when the item has moved on; the new job is what the LRO tracks.
        """
        job = self.get_job(vault, name)
        replay = job.params.get("replay")
        if job.state not in ("Failed", "Cancelled") or not replay:
            raise AsrError(AsrErrors.JOB_ACTION_NOT_ALLOWED, job=job.name, action="restarted", state=job.state)
        restarted = getattr(self, replay["verb"])(vault, *replay["args"], **replay["kwargs"])
        if not isinstance(restarted, Job):
            raise AsrError(AsrErrors.JOB_ACTION_NOT_ALLOWED, job=job.name, action="restarted", state=job.state)
        return restarted

    def _operation(self, vault: Vault, job: Job, action: str) -> Operation:
        op = Operation(id=str(uuid.uuid4()), job=job.name, action=action, at=self.now())
        vault.operations[op.id] = op
        self._touch()
        return op

    def operation(self, vault: Vault, operation_id: str) -> Job | Operation:
        """What an async-operation id names: a job (mutations) or a job action."""
        key = operation_id.lower()
        found = vault.jobs.get(key) or vault.operations.get(key)
        if found is None:
            raise ResourceNotFound("Microsoft.RecoveryServices/vaults/replicationOperationStatus",
                                   operation_id, vault.resource_group)
        return found

    # -- what the admin API shows ---------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        now = self.now()
        counts = {"vaults": len(self.state.vaults), "fabrics": 0, "policies": 0, "containerMappings": 0,
                  "networkMappings": 0, "protectedItems": 0, "jobs": 0}
        jobs_by_state: dict[str, int] = {}
        in_flight, in_test_failover, paused = [], [], []
        for vault in self.state.vaults.values():
            counts["fabrics"] += len(vault.fabrics)
            counts["policies"] += len(vault.policies)
            counts["containerMappings"] += len(vault.container_mappings)
            counts["networkMappings"] += len(vault.network_mappings)
            counts["protectedItems"] += len(vault.protected_items)
            counts["jobs"] += len(vault.jobs)
            for job in vault.jobs.values():
                jobs_by_state[job.state] = jobs_by_state.get(job.state, 0) + 1
                if job.running:
                    task = job.tasks[min(job.current, len(job.tasks) - 1)]
                    in_flight.append({"vault": vault.name, "job": job.name, "scenario": job.scenario_name,
                                      "target": job.target_object_name, "state": job.state,
                                      "task": task.friendly_name,
                                      "dueInSeconds": (job.due - now).total_seconds() if job.due else None})
            for item in vault.protected_items.values():
                if item.test_failover_state not in ("None", "MarkedForDeletion") or item.scenario == "TestFailover":
                    in_test_failover.append({"vault": vault.name, "item": item.name, "vm": item.vm_name,
                                             "testFailoverState": item.test_failover_state})
                if item.replication_paused is not None:
                    replicated = self.last_replicated(vault, item, now)
                    paused.append({"vault": vault.name, "item": item.name, "vm": item.vm_name,
                                   "lastReplicatedTime": iso_seconds(replicated) if replicated else None,
                                   "replicationHealth": self.replication_health_of(vault, item, now)[0]})
        return {"counts": counts, "jobsByState": jobs_by_state, "inFlightJobs": in_flight,
                "inTestFailover": in_test_failover, "replicationPaused": paused, "testVms": self.test_vms(),
                "faults": self.list_job_faults(), "version": self.version}


for _verb in REPLAYABLE:
    setattr(ArmBackend, _verb, _remember_request(getattr(ArmBackend, _verb)))


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
