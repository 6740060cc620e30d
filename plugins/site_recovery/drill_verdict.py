"""The drill's one rule: a VM passes when it failed over, was verified and was cleaned up.

Pure functions on the typed records of a drill (no Airflow, no Azure, no templates), so the
drill's tasks, the report task and the report page all decide with the same code:

* :func:`vm_problems` says what keeps one drilled VM from passing (empty: it passed);
* :func:`vm_outcome` turns that into the VM's :class:`~site_recovery.vocabulary.DrillOutcome`;
* :func:`cleanup_proof_problems` says what the drill's cleanup proof shows left behind;
* :func:`verdict_of` decides the whole drill's PASS or FAIL and says why.
"""

from __future__ import annotations

from collections.abc import Iterable

from site_recovery.records import AsrError, CleanupProof, DrillJob, ProbeResult, VmDrillResult
from site_recovery.vocabulary import (
    AsrJobState, AsrJobStateDescription, DrillOutcome, DrillVerdict, Heartbeat, Scenario, VmPowerState,
)

#: What a job that did not succeed did, by its state (other states read "ended <state>").
_JOB_STATES = {
    AsrJobState.FAILED: "failed",
    AsrJobState.CANCELLED: "was cancelled",
    AsrJobState.SUSPENDED: "is suspended (waiting)",
    AsrJobState.IN_PROGRESS: "did not finish",
    AsrJobState.NOT_STARTED: "did not start",
}
#: The test VM's state and heartbeat as Get-TestVmStatus reports a healthy one (compared casefolded;
#: the heartbeat may read "OK" or "OkApplicationsUnknown").
TEST_VM_RUNNING = VmPowerState.RUNNING
HEARTBEAT_OK = Heartbeat.OK


def verdict_of(vms: Iterable[VmDrillResult], cleanup_proof: CleanupProof | None,
               gate_failures_fail: bool) -> tuple[DrillVerdict, list[str]]:
    """
    Decide the drill's verdict and say why it is not PASS.

    PASS needs all of: every VM that was not skipped at the readiness gate passed (see
    :func:`vm_problems`) and its outcome says so; the cleanup proof lists no protected item still
    in a test failover and no test VM left behind; at least one VM was drilled; and, when
    ``gate_failures_fail``, no VM was skipped. A missed RTO or RPO target is shown in the report
    (banner and table) but does not change the verdict unless the DAG marked the VM failed for it.

    :param vms: The report's VMs.
    :param cleanup_proof: The drill's cleanup proof; None means nobody checked, which fails.
    :param gate_failures_fail: The site's ``drill.on_gate_failure == "fail"``.
    :return: ``(PASS, [])`` or ``(FAIL, reasons)``, one reason per VM naming it and each problem.
    """
    reasons: list[str] = []
    drilled = 0
    for vm in vms:
        if vm.outcome is DrillOutcome.SKIPPED:
            if gate_failures_fail:
                reasons.append(f"{vm.vm}: skipped at the readiness gate ({vm.error or 'no reason given'})")
            continue
        drilled += 1
        problems = vm_problems(vm)
        if not problems and vm.outcome is not DrillOutcome.PASSED:
            problems = [f"outcome is {vm.outcome}"]
        if problems:
            reasons.append(f"{vm.vm}: " + "; ".join(problems))
    if not drilled:
        reasons.append("no VM went through a test failover")
    reasons += cleanup_proof_problems(cleanup_proof)
    return (DrillVerdict.FAIL if reasons else DrillVerdict.PASS), reasons


def vm_problems(vm: VmDrillResult) -> list[str]:
    """
    Say what keeps one drilled VM from passing; empty when it passed.

    A VM passes when every one of its jobs succeeded in full (a ``Succeeded`` job described
    ``PartiallySucceeded`` counts as failed) and one was its TestFailover; its test VM was
    verified (running, heartbeat OK, the verify check ok) and passed every probe; its cleanup was
    verified; and no error was recorded for it. The VM's ``outcome`` is not read: this is the rule
    that decides it (:func:`vm_outcome`).
    """
    problems: list[str] = [problem for job in vm.jobs if (problem := job_problem(job))]
    failover_jobs = [job for job in vm.jobs if job.kind is Scenario.TEST_FAILOVER]
    if not failover_jobs:
        problems.append("no TestFailover job recorded")
    elif not any(job_problem(job) for job in failover_jobs):
        problems += _verify_problems(vm)
    if vm.cleanup is None or not vm.cleanup.verified:
        detail = vm.cleanup.detail if vm.cleanup else ""
        problems.append("cleanup not verified" + (f": {detail}" if detail else ""))
    if vm.error and not any(vm.error in problem for problem in problems):
        problems.append(vm.error)
    return problems


def vm_outcome(vm: VmDrillResult) -> DrillOutcome:
    """PASSED when :func:`vm_problems` finds nothing, else FAILED (skipped VMs stay SKIPPED)."""
    if vm.outcome is DrillOutcome.SKIPPED:
        return DrillOutcome.SKIPPED
    return DrillOutcome.FAILED if vm_problems(vm) else DrillOutcome.PASSED


def _verify_problems(vm: VmDrillResult) -> list[str]:
    verify, problems = vm.verify, []
    if verify is None:
        problems.append("test VM not verified")
    else:
        if verify.state and verify.state.casefold() != TEST_VM_RUNNING.casefold():
            problems.append(f"test VM is {verify.state}, not {TEST_VM_RUNNING}")
        if verify.heartbeat and not verify.heartbeat.casefold().startswith(HEARTBEAT_OK.casefold()):
            problems.append(f"test VM heartbeat is {verify.heartbeat}")
    problems += [f"probe {probe_target(probe)} failed: {probe.detail or 'no result'}"
                 for probe in vm.probes if not probe.ok]
    if verify is not None and not problems and not verify.ok:
        problems.append("test VM not verified" + (f": {verify.detail}" if verify.detail else ""))
    return problems


def job_problem(job: DrillJob) -> str | None:
    """What went wrong with one job of a VM's drill; None when it succeeded in full."""
    if job.state is not AsrJobState.SUCCEEDED:
        what = _JOB_STATES.get(job.state, f"ended {job.state}" if job.state else "has no state")
        return f"{job.kind} job {what}{_first_error(job.errors)}"
    if job.partially_succeeded:
        return (f"{job.kind} job only partially succeeded ({AsrJobStateDescription.PARTIALLY_SUCCEEDED})"
                f"{_first_error(job.errors)}")
    return None


def _first_error(errors: list[AsrError]) -> str:
    if not errors:
        return ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f": {error_line(errors[0])}{more}"


def error_line(error: AsrError) -> str:
    """``[code] message`` on one line (the message's line breaks folded)."""
    message = " ".join((error.message or "").split())
    return f"[{error.code}] {message}" if error.code else message


def probe_target(probe: ProbeResult) -> str:
    """``tcp 1433``, ``http 8080/health``."""
    return f"{probe.kind} {probe.port}{probe.path or ''}".strip()


def cleanup_proof_problems(proof: CleanupProof | None) -> list[str]:
    """What the cleanup proof shows left behind or unchecked; empty when it proves a clean end."""
    if proof is None:
        return ["cleanup proof missing: nobody checked for test failovers and test VMs left behind"]
    problems = []
    if proof.incomplete:
        problems.append("cleanup proof incomplete: verify_cleanup did not run to the end, so test failovers and "
                        "test VMs left behind were not all checked")
    for items, what in ((proof.items_in_test_failover, "protected item(s) still in a test failover"),
                        (proof.test_vms_left, "test VM(s) left on the recovery VMM")):
        if items:
            problems.append(f"cleanup proof: {len(items)} {what}: {', '.join(items)}")
    return problems
