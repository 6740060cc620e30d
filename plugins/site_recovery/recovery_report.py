"""The recovery report: what a failover or failback run did, for the record a DR team keeps after a disaster.

Who approved what and when, per VM the recovery point it started from and the data lost, its RTO
from the failover's approval to the VM verified, every ASR job with its tasks, and where each VM
runs and replicates to at the end. Stored beside the drill reports (``<reports folder>/<site>/
recovery/``, apart from the drills' files so the drill trend never reads one) as JSON and as one
self-contained HTML page in the drill report's style (its stylesheet and Jinja2 environment).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow.sdk import ObjectStoragePath
from site_recovery.drill_report import report_environment, safe_name
from site_recovery.report_store import describe, reaching, reports_root, write_text
from site_recovery.failover import sides
from site_recovery.records import JobSummary, RecoveryReport, RecoveryVmResult, format_seconds
from site_recovery.vocabulary import AsrJobState, FailoverDirection, FailoverKind, RecoveryStage

log = logging.getLogger(__name__)
#: The sub-folder of a site's reports folder that holds its recovery reports.
RECOVERY_FOLDER = "recovery"


def write_recovery_report(folder: str | os.PathLike | ObjectStoragePath, report: RecoveryReport) -> dict[str, str]:
    """Store the report as ``<store>/<site>/recovery/<start>__<run id>.json`` and ``.html`` (each whole or not at all).

    :return: ``{"json": location, "html": location}``: a local path, or the object's URL.
    """
    root = folder if isinstance(folder, ObjectStoragePath) else reports_root(folder)
    site_dir = root / safe_name(report.site, "site") / RECOVERY_FOLDER
    started = report.started_at or report.ended_at or datetime.now(timezone.utc)
    stem = f"{started:%Y%m%dT%H%M%SZ}__{safe_name(report.run_id, 'run')}"
    paths = {"json": site_dir / f"{stem}.json", "html": site_dir / f"{stem}.html"}
    page = render_recovery_html(report)
    with reaching(root, f"writing the recovery report of run {report.run_id}"):
        write_text(paths["json"], json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
        write_text(paths["html"], page)
    log.info("Recovery report written: %s and %s", describe(paths["json"]), describe(paths["html"]))
    return {kind: describe(path) for kind, path in paths.items()}


# ------------------------------------------------------------------------------------- page
@dataclass(frozen=True)
class JobRow:
    """One ASR job of a VM or a recovery plan (``vm`` names which): what it was, how it ended, its tasks."""

    vm: str
    job: JobSummary
    bad: bool
    duration: str


@dataclass(frozen=True)
class RecoveryPage:
    """What the recovery report's template shows, computed from the report."""

    report: RecoveryReport
    title: str
    what: str
    completed: bool
    leaves: str
    goes_to: str
    tiles: list[tuple[str, str, str, str]]
    #: each VM and where it ended, as its row says it
    rows: list[tuple[RecoveryVmResult, str]]
    jobs: list[JobRow]


def render_recovery_html(report: RecoveryReport) -> str:
    """The report as one self-contained HTML page (inline CSS, no script, no URL)."""
    return report_environment().get_template("recovery_report.html.j2").render(page=_page(report))


def _page(report: RecoveryReport) -> RecoveryPage:
    what = ("Failover" if report.direction == FailoverDirection.PRIMARY_TO_RECOVERY else "Failback")
    leaves, goes_to = sides(report.direction)
    vms = report.vms
    verified = [vm for vm in vms if vm.verify is not None and vm.verify.ok]
    rtos = [vm.rto_seconds for vm in vms if vm.rto_seconds is not None]
    losses = [vm.data_loss_seconds for vm in vms if vm.data_loss_seconds is not None]
    back = [vm for vm in vms if vm.stage == RecoveryStage.REPROTECTED]
    tiles = [
        ("VMs", str(len(vms)), f"{report.kind} {what.lower()}", ""),
        ("Verified", f"{len(verified)}/{len(vms)}", f"running on the {goes_to} site",
         "good" if vms and len(verified) == len(vms) else "bad"),
        ("Longest RTO", format_seconds(max(rtos)) if rtos else "\u2014", "approval to verified", ""),
        ("Most data lost", format_seconds(max(losses)) if losses else "\u2014",
         "none: a last sync ran" if report.kind == FailoverKind.PLANNED else "newest recovery point's age",
         "good" if losses and max(losses) == 0 else ("warn" if losses else "")),
        ("Protected again", f"{len(back)}/{len(vms)}", f"replicating {goes_to} to {leaves}",
         "good" if vms and len(back) == len(vms) else "warn"),
    ]
    owned = [*((vm.vm, job) for vm in vms for job in vm.jobs),
             *((f"Recovery plan {plan.plan}", job) for plan in report.plans for job in plan.jobs)]
    jobs = [JobRow(vm=who, job=job, bad=job.state is not None and job.state != AsrJobState.SUCCEEDED,
                   duration=format_seconds(job.duration_seconds)) for who, job in owned]
    return RecoveryPage(report=report, title=f"{what} \u00b7 {report.site} \u00b7 "
                                           f"{'completed' if report.completed else 'stopped'}",
                        what=what, completed=report.completed, leaves=leaves, goes_to=goes_to, tiles=tiles,
                        rows=[(vm, vm_state_line(vm)) for vm in vms], jobs=jobs)


def vm_state_line(vm: RecoveryVmResult) -> str:
    """Where a VM ended, as the VM table says it."""
    where = f"active on {vm.active_location.lower()} site" if vm.active_location else "location unknown"
    return f"{vm.stage} \u00b7 {where}"

