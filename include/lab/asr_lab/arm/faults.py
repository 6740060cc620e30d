"""Injected job faults: make the next matching job fail, hang, pause or half-succeed.

A fault names a scenario (the job's ``scenarioName``), optionally a target (a substring
of the job's target name or id), an outcome and how many jobs it bends (0 = all). When a
job is created the first matching fault is consumed and turned into a ``JobPlan`` that the
runner applies at the planned task (the last task unless the spec says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .jobs import FAULT_OUTCOMES, Job, JobPlan

#: Default error per scenario when a fault spec gives none (representative texts).
DEFAULT_FAULT_ERRORS: dict[str, dict] = {
    "EnableDr": {"code": "70094", "message": "Failed to enable protection for the virtual machine.",
                 "possibleCauses": "Hyper-V failed to enable replication for the virtual machine (0x80004005).",
                 "recommendedAction": "Check the Hyper-V Replica settings of the recovery host and retry.",
                 "providerErrorCode": 31389},
    "TestFailover": {"code": "70038", "message": "The test failover couldn't be completed.",
                     "possibleCauses": "The test virtual machine couldn't be started on the recovery host.",
                     "recommendedAction": "Clean up the test failover, check the recovery host and retry.",
                     "providerErrorCode": 32088},
    "TestFailoverCleanup": {"code": "70039", "message": "The test failover cleanup couldn't be completed.",
                            "possibleCauses": "The test virtual machine couldn't be deleted from the recovery host.",
                            "recommendedAction": "Delete the test virtual machine manually and retry the cleanup."},
}
GENERIC_FAULT_ERROR = {
    "code": "70000", "message": "The operation couldn't be completed.",
    "possibleCauses": "An internal error occurred on the Site Recovery service (injected by the lab).",
    "recommendedAction": "Retry the operation. If the issue persists, contact support.",
}


@dataclass
class JobFault:
    id: str
    scenario: str
    outcome: str
    target: str | None = None
    error: dict | None = None
    task: int | str | None = None
    count: int = 1
    remaining: int | None = 1
    matched: int = 0

    def matches(self, scenario: str, names: Iterable[str]) -> bool:
        if self.scenario.lower() != scenario.lower():
            return False
        if self.target is None:
            return True
        wanted = self.target.lower()
        return any(wanted in (n or "").lower() for n in names)

    def describe(self) -> dict:
        return {"id": self.id, "scenario": self.scenario, "target": self.target, "outcome": self.outcome,
                "error": self.error, "task": self.task, "count": self.count,
                "remaining": self.remaining, "matched": self.matched}


def parse_fault(spec: dict, fault_id: str) -> JobFault:
    """Validate an admin fault spec; raise ValueError naming the bad key."""
    if not isinstance(spec, dict):
        raise ValueError("fault spec must be an object")
    unknown = set(spec) - {"scenario", "target", "outcome", "error", "count", "task"}
    if unknown:
        raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
    scenario = spec.get("scenario")
    if not isinstance(scenario, str) or not scenario:
        raise ValueError("scenario: required, the job scenarioName (e.g. 'TestFailover')")
    outcome = spec.get("outcome", "Failed")
    if outcome not in FAULT_OUTCOMES:
        raise ValueError(f"outcome: must be one of {', '.join(FAULT_OUTCOMES)}, got {outcome!r}")
    target = spec.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError("target: must be a string (friendly name or id substring)")
    error = spec.get("error")
    if error is not None:
        if not isinstance(error, dict) or not {"code", "message"} <= set(error):
            raise ValueError("error: must be an object with at least 'code' and 'message'")
        extra = set(error) - {"code", "message", "possibleCauses", "recommendedAction",
                              "providerErrorCode", "providerErrorMessage"}
        if extra:
            raise ValueError(f"error: unknown keys {', '.join(sorted(extra))}")
    count = spec.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError("count: must be an integer >= 0 (0 = every matching job)")
    task = spec.get("task")
    if task is not None and (isinstance(task, bool) or not isinstance(task, (int, str))):
        raise ValueError("task: must be a task index or a task id/name")
    return JobFault(id=fault_id, scenario=scenario, outcome=outcome, target=target, error=error,
                    task=task, count=count, remaining=count or None)


def plan_for(fault: JobFault, job: Job) -> JobPlan:
    error = fault.error or DEFAULT_FAULT_ERRORS.get(fault.scenario, GENERIC_FAULT_ERROR)
    return JobPlan(outcome=fault.outcome, task=job.task_index(fault.task), error=dict(error), fault_id=fault.id)
