"""What every family of ASR operations relies on: estate, clock, state, jobs, lookups.

``ArmBackend`` (models.py) is assembled from one mixin per resource family: vaults and
fabrics use only what ``BackendCore`` offers; policies likewise; pairing builds on fabrics
and policies; protection builds on pairing. Job effects are registered per operation kind
with ``@effects("Kind")``; the core dispatches runner events to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from ..clock import Clock
from ..estate import Estate
from .errors import AsrErrors, ResourceGroupNotFound, ResourceNotFound, SubscriptionNotFound
from .faults import plan_for
from .jobs import Job, JobPlan, JobRunner, new_job
from .naming import asr_prefix, vault_key
from .state import LabState, ProtectedItem, Vault

#: operation kind -> name of the backend method that applies that job's effects
EFFECT_HANDLERS: dict[str, str] = {}


def effects(*kinds: str) -> Callable[[Callable], Callable]:
    """Register a method as the effect handler of jobs of the given kinds.

    The method is called as ``handler(vault, job, event, index)`` for ``started`` and for
    every runner event (``task_done``, ``succeeded``, ``failed``, ``cancelled``,
    ``suspended``).
    """

    def register(method: Callable) -> Callable:
        for kind in kinds:
            EFFECT_HANDLERS[kind] = method.__name__
        return method

    return register


class BackendCore:
    estate: Estate
    clock: Clock
    base_url: str
    state: LabState
    runner: JobRunner
    #: incremented on every state change; the server persists when it moves
    version: int
    #: seconds the 202s and running operationresults ask clients to wait (string on the wire)
    retry_after: int
    page_size: int
    protectable_page_size: int

    def _init_core(self, estate: Estate, clock: Clock, base_url: str, state: LabState) -> None:
        self.estate = estate
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.state = state
        self.version = 0
        self.retry_after = 0
        #: page sizes of list answers; small for protectable items so paging is exercised
        self.page_size = 100
        self.protectable_page_size = 5
        self.runner = JobRunner(clock, self._job_lookup, self._job_event, self._task_error)

    # -- bookkeeping ----------------------------------------------------------------------

    def _touch(self) -> None:
        """Record that state changed (the server persists when ``version`` moves)."""
        self.version += 1

    def now(self) -> datetime:
        return self.clock.now()

    # -- lookups --------------------------------------------------------------------------

    def _check_scope(self, subscription: str, resource_group: str | None = None) -> str | None:
        """Validate the subscription (and resource group); return the RG's canonical spelling."""
        if subscription.lower() != self.estate.subscription_id:
            raise SubscriptionNotFound(subscription)
        if resource_group is None:
            return None
        for known in self.estate.resource_groups:
            if known.lower() == resource_group.lower():
                return known
        raise ResourceGroupNotFound(resource_group)

    def vault_for(self, subscription: str, resource_group: str, name: str) -> Vault:
        """The vault a request addresses, or the 404 ARM would answer."""
        rg = self._check_scope(subscription, resource_group)
        vault = self.state.vaults.get(vault_key(subscription, resource_group, name))
        if vault is None:
            raise ResourceNotFound("Microsoft.RecoveryServices/vaults", name, rg)
        return vault

    def vault_by_id(self, vault_id: str) -> Vault:
        vault = self.state.vaults.get(vault_id.rstrip("/").lower())
        if vault is None:
            raise ResourceNotFound("Microsoft.RecoveryServices/vaults", vault_id.rsplit("/", 1)[-1])
        return vault

    def asr_id(self, vault: Vault, path: str) -> str:
        return f"{asr_prefix(vault.id)}/{path}"

    def _job_lookup(self, vault_key_: str, name: str) -> Job | None:
        vault = self.state.vaults.get(vault_key_)
        return vault.jobs.get(name) if vault is not None else None

    # -- jobs -----------------------------------------------------------------------------

    def _start_job(self, vault: Vault, kind: str, *, at: datetime | None = None, **fields: Any) -> Job:
        """Create, fault-plan, store and start a job of ``kind``."""
        refusal = fields.pop("refusal", None)
        job = new_job(kind, vault=vault.id.lower(), at=at or self.now(), **fields)
        if refusal is not None:
            # The service accepts the request and fails the job at its prerequisites check.
            job.plan = JobPlan(outcome="Failed", task=0, error=refusal, fault_id="")
        else:
            fault = self._take_fault(job)
            if fault is not None:
                job.plan = plan_for(fault, job)
        vault.jobs[job.name] = job
        self.runner.start(job)
        self._job_event(job, "started", None)
        self._touch()
        return job

    def _reject_busy(self, vault: Vault, kind: str, item: ProtectedItem, busy_with: Job, **fields: Any) -> Job:
        """Answer an operation on a busy item the way ASR does: a job that failed at once."""
        job = new_job(kind, vault=vault.id.lower(), at=self.now(), **fields)
        error = AsrErrors.OPERATION_IN_PROGRESS.render(item=item.vm_name, operation=busy_with.friendly_name)
        self.runner.reject(job, self.now(), error)
        vault.jobs[job.name] = job
        self._touch()
        return job

    def _take_fault(self, job: Job):
        for fault in self.state.faults:
            if fault.matches(job.scenario_name, (job.target_object_name, job.target_object_id)):
                fault.matched += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.state.faults.remove(fault)
                return fault
        return None

    def _job_event(self, job: Job, event: str, index: int | None) -> None:
        handler = EFFECT_HANDLERS.get(job.kind)
        if handler is not None:
            vault = self.state.vaults[job.vault]
            getattr(self, handler)(vault, job, event, index)
        self._touch()

    def _task_error(self, job: Job, index: int) -> dict | None:
        """Whether task ``index`` of ``job`` failed on its own as it ends; families with such tasks override it."""
        return None

    def running_job(self, vault: Vault, name: str | None) -> Job | None:
        if not name:
            return None
        job = vault.jobs.get(name)
        return job if job is not None and job.running else None

