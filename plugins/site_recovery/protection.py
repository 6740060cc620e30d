"""Step 9, enable replication: which VMs to protect, and what a protected VM's state means.

Pure decisions, kept apart from the DAG's tasks and the triggers' poll loops so each can be
tested on plain dicts: the plan (which in-scope VM needs what), the in-flight test behind
the initial-replication limit, and the initial-replication status-to-event function the
sensor and its trigger share. The inputs are the summaries of
:func:`~site_recovery.hooks.asr.summarize_protected_item` and small dicts made from
protectable items, never SDK objects, so nothing here calls Azure or needs Airflow.

A plan record (one per VM of a paired cloud that the site file puts in scope)::

    {"vm": "SQL-PRD-01", "cloud": "Gold-Prod", "action": "enable", "detail": "...",
     "target": {...} | None}

``action`` is one of :data:`ACTIONS`; ``target`` is what the VM's mapped tasks need (set for
``enable`` and ``wait``) and is also the map index label's source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

#: What the plan decided per VM.
ENABLE = "enable"  #: not protected yet, protectable: the run enables it
WAIT = "wait"  #: an earlier run (or someone) started enabling it: the run waits for it
PROTECTED = "already protected"  #: left alone, reported with its health
NOT_PROTECTABLE = "not protectable"  #: ASR's readiness errors say why; reported, not a failure
ATTENTION = "needs attention"  #: protected item in a state this DAG does not repair (e.g. failed IR)
ACTIONS = (ENABLE, WAIT, PROTECTED, NOT_PROTECTABLE, ATTENTION)

PROTECTED_STATE = "Protected"
HEALTHY = "Normal"
#: Protection states of a VM whose enable job or initial replication is under way.
ENABLING_STATES = frozenset({"UnprotectedStatesBegin", "InitialReplicationPending", "InitialReplicationInProgress",
                             "EnablingProtection"})
#: Scenarios of the jobs that make up enabling (the IR jobs run while the item shows no scenario).
ENABLE_SCENARIOS = frozenset({"EnableDr", "PrimaryIrCompletion", "SecondaryIrCompletion"})
FAILED_IR_STATES = frozenset({"InitialReplicationFailed"})


class ScopeError(ValueError):
    """The run's VM list names VMs that are not in the paired clouds, or that the site file excludes."""


def protectable_record(item: Any) -> dict[str, Any]:
    """The facts the plan needs from a protectable item (an SDK model or its wire dict)."""
    props = item.properties
    return {
        "name": item.name,
        "id": item.id,
        "vm": props.friendly_name,
        "protected": props.protection_status == "Protected",
        "readiness_errors": list(props.protection_readiness_errors or []),
        "supported_providers": list(props.supported_replication_providers or []),
    }


def is_enabling(item: Mapping[str, Any]) -> bool:
    """True while a protected item's enable job or initial replication is under way (it uses the WAN link)."""
    return item.get("protection_state") in ENABLING_STATES and item.get("protection_state") not in FAILED_IR_STATES


def running_enable_jobs_filter(fabric: str) -> str:
    """The OData filter of a vault's running jobs on one VMM server (fabric), as Azure PowerShell builds it."""
    return f"jobStatus eq 'InProgress' and fabricId eq '{fabric}'"


def enabling_vms(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """VMs with an enable or initial replication job running, from job summaries (each VM once)."""
    return sorted({job["target"] for job in jobs
                   if job.get("scenario_name") in ENABLE_SCENARIOS and job.get("target")
                   and job.get("state") in ("NotStarted", "InProgress")})


def describe_item(item: Mapping[str, Any]) -> str:
    """One line on a protected VM: state, health, progress, last replication."""
    text = item.get("protection_state_description") or item.get("protection_state") or "unknown state"
    if is_enabling(item) and item.get("initial_replication_percent") is not None:
        text += f" ({item['initial_replication_percent']}%)"
    text += f", replication health {item.get('replication_health') or 'unknown'}"
    if item.get("last_replicated_time"):
        text += f", last replicated {item['last_replicated_time']}"
    return text


def health_errors_text(item: Mapping[str, Any]) -> str:
    """ASR's health errors of an item, as a DR engineer reads them (empty when there are none)."""
    from site_recovery.hooks.asr import describe_errors

    return describe_errors(item.get("health_errors"))


def classify(vm: Mapping[str, Any], item: Mapping[str, Any] | None, provider: str) -> tuple[str, str]:
    """Decide what the run does with one in-scope VM: (action, detail for the report).

    :param vm: :func:`protectable_record` of the VM.
    :param item: :func:`~site_recovery.hooks.asr.summarize_protected_item` of its protected item, or None.
    :param provider: The replication policy's provider (``HyperVReplica2012R2``), which the VM must support.
    """
    if item is not None:
        if item.get("protection_state") == PROTECTED_STATE:
            return PROTECTED, describe_item(item)
        if is_enabling(item):
            job = f", ASR job {item['scenario_job']}" if item.get("scenario_job") else ""
            return WAIT, f"enabling already under way: {describe_item(item)}{job}"
        errors = health_errors_text(item)
        return ATTENTION, describe_item(item) + (f": {errors}" if errors else "")
    if vm.get("protected"):
        return ATTENTION, "ASR lists the VM as protected, but its protected item is not in this cloud"
    reasons = list(vm.get("readiness_errors") or [])
    supported = vm.get("supported_providers") or []
    if supported and provider not in supported:
        reasons.append(f"its host supports {', '.join(supported)}, not the policy's {provider}")
    if reasons:
        return NOT_PROTECTABLE, " ".join(str(r) for r in reasons)
    return ENABLE, "will enable replication"


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
        problems.append(f"excluded by the site file's scope: {', '.join(f'{n} ({known[n.casefold()]})' for n in excluded)}")
    if problems:
        raise ScopeError("The run's vms parameter names VMs that cannot be protected by this DAG: "
                         + "; ".join(problems) + ". Allowed: " + (", ".join(sorted(in_scope)) or "none"))
    return {name.casefold() for name in wanted}


def initial_replication_event(item: Mapping[str, Any] | None, vm: str) -> dict[str, Any] | None:
    """Turn a protected item's summary into the wait's event, or None while initial replication goes on.

    Success needs the VM Protected *and* its (delta) replication healthy: right after initial
    replication a VM can show Protected with Warning health until the first delta cycles run.

    :param item: :func:`~site_recovery.hooks.asr.summarize_protected_item`, or None when the item is gone.
    :param vm: The VM's name, for the messages.
    :return: ``{"status": "success"|"error", "message": str, "item": item}`` or None.
    """
    if item is None:
        return {"status": "error", "item": None,
                "message": f"VM {vm!r} is no longer protected: its protected item is gone (protection was "
                           "disabled, or the enable job failed and ASR removed it)."}
    state = item.get("protection_state")
    if state == PROTECTED_STATE and item.get("replication_health") == HEALTHY:
        last = f"; last replicated {item['last_replicated_time']}" if item.get("last_replicated_time") else ""
        return {"status": "success", "item": dict(item),
                "message": f"VM {vm!r} is protected: initial replication complete, delta replication healthy{last}."}
    if state in FAILED_IR_STATES or (state != PROTECTED_STATE and not is_enabling(item)):
        errors = health_errors_text(item)
        return {"status": "error", "item": dict(item),
                "message": f"Initial replication of VM {vm!r} did not complete: {describe_item(item)}"
                           + (f": {errors}" if errors else ".")}
    return None


def initial_replication_timeout_event(item: Mapping[str, Any] | None, vm: str, end_time: float,
                                      limit: str) -> dict[str, Any]:
    """The error event of a wait that ran past its deadline, saying where replication stood."""
    deadline = datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds")
    where = describe_item(item) if item else "not read yet"
    return {"status": "error", "item": dict(item) if item else None,
            "message": f"Timeout: initial replication of VM {vm!r} had not completed at {deadline} (limit {limit}, "
                       f"site file scope.initial_replication_timeout); it stood at: {where}."}


class ReplicationProgress:
    """Remember what was last logged of a VM's replication, to log only what changed between reads."""

    def __init__(self) -> None:
        self.seen: tuple | None = None

    def update(self, item: Mapping[str, Any] | None, vm: str) -> list[str]:
        if item is None:
            return []
        now = (item.get("protection_state_description"), item.get("initial_replication_percent"),
               item.get("replication_health"))
        if now == self.seen:
            return []
        self.seen = now
        return [f"VM {vm!r}: {describe_item(item)}."]
