"""Step 10, the test failover drill: what makes a VM ready, what the drill may do, what it proved.

Pure decisions on plain dicts (summaries of protected items and jobs), kept apart from the
tasks so each rule is tested on its own:

* the readiness gate per VM (health, TestFailover allowed, recovery point age, nothing running);
* which test failovers an interrupted drill left behind;
* the one safety rule no drill may break: it never fails over, commits or reprotects
  (:func:`drill_may_send`, enforced on every request by
  :class:`~site_recovery.hooks.asr.RequestGuardPolicy`);
* the per-VM facts of the report (RTO, RPO achieved, timeline).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from site_recovery.protection import PROTECTED_STATE

#: test failover states of a VM with nothing to clean up
IDLE_TEST_FAILOVER_STATES = frozenset({None, "", "None", "MarkedForDeletion"})
CLEANUP = "TestFailoverCleanup"
TEST_FAILOVER = "TestFailover"
TEST_VM_SUFFIX = " - Test"

#: The only ARM writes a drill sends: test failover, its cleanup, and cancelling its own job.
_DRILL_WRITES = re.compile(r"/replicationProtectedItems/[^/]+/(testFailover|testFailoverCleanup)$"
                           r"|/replicationJobs/[^/]+/cancel$", re.IGNORECASE)


class DrillSafetyError(RuntimeError):
    """A drill tried to send a request that could disturb production; it was refused before leaving."""


def drill_may_send(method: str, path: str) -> bool:
    """True for reads, test failover, test failover cleanup and job cancel; False for any other write.

    Planned and unplanned failover, commit, reprotect, cancel failover, disabling protection and
    every PUT/PATCH/DELETE are refused: a drill must never touch production or its replication.
    """
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return True
    return method.upper() == "POST" and bool(_DRILL_WRITES.search(path.split("?", 1)[0].rstrip("/")))


def _parse(when: str | None) -> datetime | None:
    if not when:
        return None
    moment = datetime.fromisoformat(when)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def has_leftover_test_failover(item: Mapping[str, Any]) -> bool:
    """True when an earlier (interrupted) drill left a test failover that still needs its cleanup."""
    return (item.get("test_failover_state") not in IDLE_TEST_FAILOVER_STATES
            and CLEANUP in (item.get("allowed_operations") or []))


def gate_reasons(item: Mapping[str, Any], *, allow_warning: bool, max_age_seconds: float,
                 now: datetime) -> list[str]:
    """Why a protected VM is not ready for a test failover (empty: ready).

    Ready means: Protected, replication health Normal (or Warning when allowed), ASR allows
    TestFailover, its newest recovery point is younger than ``max_age_seconds``, and no ASR job
    runs on it (a drill still active, a failover, a resync...).
    """
    reasons = []
    if item.get("protection_state") != PROTECTED_STATE:
        reasons.append(f"not protected ({item.get('protection_state_description') or item.get('protection_state')})")
    healthy = {"Normal", "Warning"} if allow_warning else {"Normal"}
    if item.get("replication_health") not in healthy:
        errors = "; ".join(f"[{e.get('code')}] {e.get('message')}" for e in item.get("health_errors") or [])
        reasons.append(f"replication health is {item.get('replication_health')}" + (f": {errors}" if errors else ""))
    if item.get("scenario"):
        job = f" (job {item['scenario_job']})" if item.get("scenario_job") else ""
        active = "a drill is still active on it" if item["scenario"].startswith(TEST_FAILOVER) else \
            f"ASR is running {item['scenario']} on it"
        reasons.append(active + job)
    elif TEST_FAILOVER not in (item.get("allowed_operations") or []):
        reasons.append("ASR does not allow TestFailover now (allowed: "
                       f"{', '.join(item.get('allowed_operations') or []) or 'none'})")
    replicated = _parse(item.get("last_replicated_time"))
    if replicated is None:
        reasons.append("ASR shows no recovery point")
    else:
        age = (now - replicated).total_seconds()
        if age > max_age_seconds:
            reasons.append(f"newest recovery point is {_minutes(age)} old ({replicated.isoformat(timespec='seconds')}); "
                           f"the gate allows {_minutes(max_age_seconds)}")
    return reasons


def _minutes(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def probes_for(vm: str, probes: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The site file's probes that apply to ``vm`` (a probe without ``vm`` applies to every VM)."""
    from fnmatch import fnmatchcase

    return [dict(p) for p in probes if not p.get("vm") or fnmatchcase(vm.casefold(), str(p["vm"]).casefold())]


def seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = _parse(start), _parse(end)
    return round((last - first).total_seconds(), 3) if first and last else None


def vm_result(target: Mapping[str, Any], *, failover_job: Mapping[str, Any] | None, verify: Mapping[str, Any] | None,
              cleanup_job: Mapping[str, Any] | None, cleaned: Mapping[str, Any] | None, error: str | None,
              rto_target: float, rpo_target: float) -> dict[str, Any]:
    """One VM's entry of the drill report (schema of :mod:`site_recovery.drill_report`)."""
    details = ((failover_job or {}).get("protected_items") or [{}])[0]
    point = details.get("recovery_point_time")
    failover_start = (failover_job or {}).get("start_time")
    rpo = seconds_between(point, failover_start)
    verified_at = (verify or {}).get("verified_at")
    rto = seconds_between(failover_start, verified_at) if verify and verify.get("ok") else None
    jobs = [dict(j, kind=kind) for kind, j in (("TestFailover", failover_job), ("TestFailoverCleanup", cleanup_job))
            if j]
    timeline = []
    if failover_job:
        timeline.append({"phase": "test_failover", "start": failover_start, "end": failover_job.get("end_time")})
    if verify and verify.get("started_at"):
        timeline.append({"phase": "verify", "start": verify["started_at"], "end": verified_at or verify.get("ended_at")})
    if cleanup_job:
        timeline.append({"phase": "cleanup", "start": cleanup_job.get("start_time"), "end": cleanup_job.get("end_time")})
    passed = (error is None and failover_job is not None and failover_job.get("state") == "Succeeded"
              and failover_job.get("state_description") != "PartiallySucceeded" and bool(verify and verify.get("ok"))
              and bool(cleaned and cleaned.get("verified")))
    return {
        "vm": target["vm"], "cloud": target.get("cloud"), "outcome": "passed" if passed else "failed",
        "recovery_point_time": point, "rpo_achieved_seconds": rpo,
        "rpo_met": None if rpo is None else rpo <= rpo_target,
        "rto_seconds": rto, "rto_met": None if rto is None else rto <= rto_target,
        "test_vm_name": details.get("test_vm_name") or (verify or {}).get("vm_name"),
        "jobs": jobs,
        "verify": {k: (verify or {}).get(k) for k in ("state", "heartbeat", "ip_addresses", "verified_at")}
        if verify else None,
        "probes": list((verify or {}).get("probes") or []),
        "cleanup": dict(cleaned) if cleaned else None,
        "error": error,
        "timeline": timeline,
    }
