"""The DR drill report: one JSON document per drill run, and the HTML page a DR engineer or auditor reads.

The test-failover drill builds a :class:`~site_recovery.records.DrillReport` and calls
:func:`write_report`, which stores ``<store>/<site>/<YYYYmmddTHHMMSSZ>__<safe run id>.json``
(the record's JSON, ``"schema": 1``) and a ``.html`` beside it, the store being a local folder or
Azure Blob storage (:mod:`site_recovery.report_store`). :func:`load_history` reads a site's
earlier reports back from the same store for the trend chart, skipping any that is not a valid report.
:func:`verdict_of` (from :mod:`site_recovery.drill_verdict`) is the one rule that turns per-VM
results and the cleanup proof into PASS or FAIL.

The page is rendered from the Jinja2 templates in ``templates/`` (autoescaped: every text of
the report is HTML-escaped by the template engine, none by hand) and is self-contained: inline
CSS (``templates/drill_report.css``) and inline SVG, no script, no external URL of any kind (it
must open from a mail attachment or an air-gapped share). The charts' geometry comes from
:mod:`site_recovery.report_charts`. A value the report does not have (a VM that failed before
verify has no verify and no RTO) is shown as a dash: a drill must never fail for its report.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from airflow.sdk import ObjectStoragePath, TaskInstanceState

from site_recovery.drill_verdict import (
    HEARTBEAT_OK,
    TEST_VM_RUNNING,
    cleanup_proof_problems,
    error_line,
    job_problem,
    probe_target,
    verdict_of,
)
from site_recovery.records import (
    DASH, CleanupCheck, DrillJob, DrillReport, GateSummary, PlanDrillResult, TestVmCheck, VmDrillResult,
    format_seconds,
)
from site_recovery.report_charts import (
    BAD_MARK,
    OK_MARK,
    TREND_RUNS,
    PlanSpan,
    Timeline,
    Trend,
    format_time,
    plan_spans,
    timeline,
    trend,
)
from site_recovery.report_store import describe, list_reports, reaching, reports_root, write_text
from site_recovery.vocabulary import AsrJobState, AsrJobStateDescription, DrillOutcome, DrillVerdict, Scenario

__all__ = ["SCHEMA", "TREND_RUNS", "load_history", "render_html", "verdict_of", "write_report"]

log = logging.getLogger(__name__)

#: Version of the report JSON this module writes and reads.
SCHEMA = 1
TEMPLATES = Path(__file__).with_name("templates")
#: header, width in %
VM_COLUMNS = (
    ("VM", 11.5), ("Cloud", 6), ("Outcome", 6.5), ("RPO (recovery point)", 9.5), ("RTO", 9),
    ("Test failover job", 9.5), ("Verify", 11.5), ("Probes", 12), ("Cleanup", 9.5), ("Error", 15),
)
#: failed first, then passed, then skipped (report order within a group)
_ROW_ORDER = {DrillOutcome.FAILED: 0, DrillOutcome.PASSED: 1, DrillOutcome.SKIPPED: 2}
#: a job's description not worth repeating next to its state
_PLAIN_DESCRIPTION = AsrJobStateDescription.COMPLETED


# ------------------------------------------------------------------------------------- files
def write_report(folder: str | os.PathLike | ObjectStoragePath, report: DrillReport,
                 history: Sequence[DrillReport]) -> dict[str, str]:
    """
    Store the report as JSON and as its HTML page, each written whole or not at all.

    The names are ``<folder>/<site>/<YYYYmmddTHHMMSSZ>__<safe run id>.json`` and ``.html``, the
    time being the drill's start in UTC; characters a file system may refuse (``:`` ``+`` ``/``
    ...) in the run id become ``_``. Writing the same run again replaces its objects.

    :param folder: Root of all drill reports: a folder, or a store URL (:mod:`site_recovery.report_store`).
    :param report: The report.
    :param history: Earlier reports of the site, oldest first (for the trend chart).
    :return: ``{"json": location, "html": location}``: a local path, or the object's URL.
    """
    root = folder if isinstance(folder, ObjectStoragePath) else reports_root(folder)
    started = report.started_at or report.ended_at or datetime.now(timezone.utc)
    stem = f"{started:%Y%m%dT%H%M%SZ}__{safe_name(report.run_id, 'run')}"
    site_dir = root / safe_name(report.site, "site")
    paths = {"json": site_dir / f"{stem}.json", "html": site_dir / f"{stem}.html"}
    document = report.model_dump(mode="json", by_alias=True)
    page = render_html(report, history)
    with reaching(root, f"writing the drill report of run {report.run_id}"):
        write_text(paths["json"], json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        write_text(paths["html"], page)
    log.info("Drill report written: %s and %s", describe(paths["json"]), describe(paths["html"]))
    return {kind: describe(path) for kind, path in paths.items()}


def load_history(folder: str | os.PathLike | ObjectStoragePath, site: str, limit: int = TREND_RUNS,
                 exclude_run_id: str | None = None) -> list[DrillReport]:
    """
    Read a site's latest earlier reports from the store, oldest first.

    Each object is validated as a :class:`~site_recovery.records.DrillReport`. One that cannot be
    read, is not JSON or is not a valid report (an older schema, a broken file) is skipped with a
    warning naming it and the offending fields: an old report must never fail a drill. A store
    that cannot be reached at all raises ReportStoreUnavailable (the trend would silently lie).

    :param folder: Root of all drill reports (as given to :func:`write_report`).
    :param site: Site name.
    :param limit: At most this many reports (the newest ones).
    :param exclude_run_id: Leave out the report of this run (the drill being reported).
    """
    if limit <= 0:
        return []
    root = folder if isinstance(folder, ObjectStoragePath) else reports_root(folder)
    reports: list[DrillReport] = []
    with reaching(root, f"reading the earlier drill reports of site {site}"):
        files = list_reports(root / safe_name(site, "site"))
        for path in reversed(files):  # the names start with the drill's start time: newest last
            report = _read_report(path)
            if report is None or (exclude_run_id is not None and report.run_id == exclude_run_id):
                continue
            reports.append(report)
            if len(reports) >= limit:
                break
    reports.reverse()
    return reports


def _read_report(path: ObjectStoragePath) -> DrillReport | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("Skipping drill report %s: it cannot be read (%s)", describe(path), exc)
        return None
    try:
        return DrillReport.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'the document'}: {error['msg']}"
                             for error in exc.errors()[:5])
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        log.warning("Skipping drill report %s: it is not a valid drill report (%s%s)", describe(path), problems, more)
        return None


def safe_name(value: str | None, fallback: str) -> str:
    """``value`` as a file name part every file system takes (``fallback`` when nothing of it is left)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", value or "").strip("._")[:120]
    return name or fallback


# ------------------------------------------------------------------------------------- page
def render_html(report: DrillReport, history: Sequence[DrillReport]) -> str:
    """
    Render a drill report as one self-contained HTML page (inline CSS and SVG, no script, no URL).

    :param report: The report.
    :param history: Earlier reports of the same site, oldest first; may be empty.
    """
    return report_environment().get_template("drill_report.html.j2").render(page=_page(report, list(history)))


@cache
def report_environment() -> Environment:
    """The Jinja2 environment of the report pages (drill and recovery): autoescaped, strict, their filters."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters.update(duration=format_seconds, utc=format_time, n=_svg_number)
    env.globals.update(DASH=DASH, OK=OK_MARK, BAD=BAD_MARK, TASK_SUCCESS=TaskInstanceState.SUCCESS,
                       probe_target=probe_target)
    return env


def _svg_number(value: float) -> str:
    """A coordinate: whole numbers as they are, others with one decimal."""
    return str(value) if isinstance(value, int) else f"{value:.1f}"


@dataclass(frozen=True)
class Tile:
    """A summary tile: label, big value, a line under it; ``css`` is good, bad, warn or empty."""

    label: str
    value: str
    sub: str
    css: str


@dataclass(frozen=True)
class JobLine:
    """One ASR job in a table cell: a mark and its state, its duration, a tooltip."""

    shown: str
    bad: bool
    duration: str
    title: str


@dataclass(frozen=True)
class Measure:
    """RPO or RTO in the VM table: measured against the target (``css``: good, bad or empty)."""

    value: str | None
    target: str
    css: str
    sub: str


@dataclass(frozen=True)
class ErrorNote:
    """An ASR error under the VM's error: a head line, folded details (possible causes, action)."""

    head: str
    details: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class VmRow:
    """One row of the VM table: the VM's record and what its cells show."""

    vm: VmDrillResult
    rpo: Measure
    rto: Measure
    failover_jobs: tuple[JobLine, ...]
    cleanup_jobs: tuple[JobLine, ...]
    verify: TestVmCheck | None
    #: the test VM's state and heartbeat as shown (with a "?" for an unknown one), and whether both are good
    verify_state: str
    verify_heartbeat: str
    verify_good: bool
    ip_addresses: str
    cleanup: CleanupCheck | None
    error_notes: tuple[ErrorNote, ...]


@dataclass(frozen=True)
class ProofRow:
    """One list of the cleanup proof: what was left (empty: nothing), and whether it was checked at all."""

    label: str
    items: tuple[str, ...]
    checked: bool


@dataclass(frozen=True)
class Leftover:
    """A test failover an earlier drill left behind, which this drill cleaned up first."""

    vm: str
    detail: str


@dataclass(frozen=True)
class PlanSection:
    """One recovery plan's section: the plan's record, its RTO against its target, its timeline."""

    plan: PlanDrillResult
    rto: Measure
    job: JobLine | None
    spans: list[PlanSpan]
    started: str
    ended: str


@dataclass(frozen=True)
class Page:
    """Everything the template shows, computed from the report; the template only draws it."""

    report: DrillReport
    title: str
    verdict: DrillVerdict
    passed: bool
    reasons: list[str]
    when: str
    outcome_line: str
    misses: list[str]
    tiles: list[Tile]
    gate: GateSummary | None
    leftovers: list[Leftover]
    proof_rows: list[ProofRow]
    ended_note: str | None
    rto_target: float | None
    rpo_target: float | None
    columns: tuple[tuple[str, float], ...]
    rows: list[VmRow]
    timeline: Timeline
    trend: Trend
    trend_shown: int
    first_drill: bool
    plans: list[PlanSection]


def _page(report: DrillReport, history: list[DrillReport]) -> Page:
    vms = report.vms
    started, ended = report.started_at, report.ended_at
    counts = _outcome_counts(report)
    drilled = counts[DrillOutcome.PASSED] + counts[DrillOutcome.FAILED]
    skipped = counts[DrillOutcome.SKIPPED]
    title = f"{report.verdict} \u00b7 DR drill \u00b7 {report.site or 'unknown site'}"
    if started:
        title += f" \u00b7 {started:%Y-%m-%d %H:%M} UTC"
    gate = report.gate if _has_gate(report.gate) else None
    rto_target, rpo_target = _targets(report)
    return Page(
        report=report, title=title, verdict=report.verdict, passed=report.verdict is DrillVerdict.PASS,
        reasons=report.reasons or ["No reason was recorded."],
        when=f"{started:%A %d %B %Y, %H:%M} UTC" if started else "start time unknown",
        outcome_line=(f"{counts[DrillOutcome.PASSED]} of {drilled} drilled VM{'s' if drilled != 1 else ''} passed"
                      + (f", {skipped} skipped at the readiness gate" if skipped else "")),
        misses=_target_misses(report),
        tiles=_tiles(report, counts),
        gate=gate,
        leftovers=[Leftover(entry.vm, entry.detail) for entry in gate.leftovers_cleaned] if gate else [],
        proof_rows=_proof_rows(report),
        ended_note=format_seconds((ended - started).total_seconds()) if started and ended else None,
        rto_target=rto_target, rpo_target=rpo_target,
        columns=VM_COLUMNS,
        rows=[_vm_row(report, vm) for vm in sorted(vms, key=lambda vm: _ROW_ORDER[vm.outcome])],
        timeline=timeline(report),
        trend=trend(report, history),
        trend_shown=min(len(history), TREND_RUNS - 1) + 1,
        first_drill=not history,
        plans=[_plan_section(plan) for plan in report.plans],
    )


def _plan_section(plan: PlanDrillResult) -> PlanSection:
    job = plan.job
    start, end = (job.start_time, job.end_time) if job else (None, None)
    steps = [(g.label, ", ".join(g.vms), g.start, g.end, g.state == AsrJobState.SUCCEEDED) for g in plan.groups]
    steps += [(a.name, a.detail or a.kind, a.start, a.end, a.state == AsrJobState.SUCCEEDED) for a in plan.actions]
    steps.sort(key=lambda step: step[2] or datetime.max.replace(tzinfo=timezone.utc))
    return PlanSection(
        plan=plan,
        rto=_measure(plan.rto_seconds, plan.rto_target_seconds, plan.rto_met, "drill start to last verified"),
        job=_job_line(DrillJob.model_validate({**job.model_dump(), "kind": Scenario.TEST_FAILOVER})) if job else None,
        spans=plan_spans(start, end, steps), started=format_time(start), ended=format_time(end))


def _has_gate(gate: GateSummary) -> bool:
    """False when the gate recorded nothing at all (it did not run to the end)."""
    return gate.checked is not None or gate.passed is not None or bool(gate.skipped or gate.leftovers_cleaned)


def _outcome_counts(report: DrillReport) -> dict[DrillOutcome, int]:
    """VMs per outcome; the gate's skips count as skipped even when the report lists no VM for them."""
    counts = dict.fromkeys(DrillOutcome, 0)
    for vm in report.vms:
        counts[vm.outcome] += 1
    counts[DrillOutcome.SKIPPED] = max(counts[DrillOutcome.SKIPPED], len(report.gate.skipped))
    return counts


def _target_misses(report: DrillReport) -> list[str]:
    rto_target, rpo_target = _targets(report)
    misses = []
    for vm in report.vms:
        if vm.rto_met is False:
            misses.append(f"{vm.vm}: RTO {format_seconds(vm.rto_seconds)} exceeds the target of "
                          f"{format_seconds(rto_target)}")
        if vm.rpo_met is False:
            misses.append(f"{vm.vm}: recovery point was {format_seconds(vm.rpo_achieved_seconds)} old; RPO "
                          f"target {format_seconds(rpo_target)}")
    return misses


def _targets(report: DrillReport) -> tuple[float | None, float | None]:
    """(RTO, RPO) targets in seconds."""
    targets = report.targets
    return (targets.rto_seconds, targets.rpo_seconds) if targets else (None, None)


def _tiles(report: DrillReport, counts: dict[DrillOutcome, int]) -> list[Tile]:
    passed, failed, skipped = (counts[o] for o in (DrillOutcome.PASSED, DrillOutcome.FAILED, DrillOutcome.SKIPPED))
    rto_target, rpo_target = _targets(report)

    def worst(label: str, measured: list[tuple[str, float]], target: float | None) -> Tile:
        if not measured:
            return Tile(label, DASH, "no measurement", "")
        vm, value = max(measured, key=lambda pair: pair[1])
        css = "" if target is None else "good" if value <= target else "bad"
        return Tile(label, format_seconds(value), f"target {format_seconds(target)} \u00b7 {vm}", css)

    started, ended = report.started_at, report.ended_at
    proof = report.cleanup_proof
    problems = cleanup_proof_problems(proof)
    proof_word = ("clean" if not problems else "MISSING" if proof is None
                  else "LEFTOVERS" if proof.items_in_test_failover or proof.test_vms_left else "INCOMPLETE")
    return [
        Tile("VMs passed", f"{passed}", f"of {passed + failed} drilled", "good" if passed and not failed else ""),
        Tile("VMs failed", f"{failed}", "see the reasons above" if failed else "none", "bad" if failed else "good"),
        Tile("Skipped at gate", f"{skipped}", "not drilled" if skipped else "none", "warn" if skipped else ""),
        worst("Slowest RTO", [(vm.vm, vm.rto_seconds) for vm in report.vms if vm.rto_seconds is not None], rto_target),
        worst("Oldest recovery point", [(vm.vm, vm.rpo_achieved_seconds) for vm in report.vms
                                        if vm.rpo_achieved_seconds is not None], rpo_target),
        Tile("Drill duration", format_seconds((ended - started).total_seconds() if started and ended else None),
             "start to report", ""),
        Tile("Cleanup proof", proof_word, "see cleanup proof" if problems else "nothing left behind",
             "bad" if problems else "good"),
    ]


def _proof_rows(report: DrillReport) -> list[ProofRow]:
    proof = report.cleanup_proof
    if proof is None:
        return []
    return [ProofRow(label, tuple(items), checked=bool(items) or not proof.incomplete)
            for label, items in (("Protected items still in a test failover", proof.items_in_test_failover),
                                 ("Test VMs left on the recovery VMM", proof.test_vms_left))]


# ------------------------------------------------------------------------------------- VM table
def _vm_row(report: DrillReport, vm: VmDrillResult) -> VmRow:
    rto_target, rpo_target = _targets(report)
    started, point = report.started_at, vm.recovery_point_time
    point_text = ("" if point is None else f"point {point:%H:%M:%S}" if started and point.date() == started.date()
                  else f"point {point:%Y-%m-%d %H:%M}")
    verify = vm.verify
    state = (verify.state or "state ?") if verify else ""
    heartbeat = (verify.heartbeat or "?") if verify else ""
    return VmRow(
        vm=vm,
        rpo=_measure(vm.rpo_achieved_seconds, rpo_target, vm.rpo_met, point_text),
        rto=_measure(vm.rto_seconds, rto_target, vm.rto_met, ""),
        failover_jobs=tuple(_job_line(job) for job in vm.jobs if job.kind is Scenario.TEST_FAILOVER),
        cleanup_jobs=tuple(_job_line(job) for job in vm.jobs if job.kind is Scenario.TEST_FAILOVER_CLEANUP),
        verify=verify,
        verify_state=state,
        verify_heartbeat=heartbeat,
        verify_good=(state.casefold() == TEST_VM_RUNNING.casefold()
                     and heartbeat.casefold().startswith(HEARTBEAT_OK.casefold())),
        ip_addresses=", ".join(verify.ip_addresses) if verify and verify.ip_addresses else "no IP address",
        cleanup=vm.cleanup,
        error_notes=tuple(_error_notes(vm)),
    )


def _measure(value: float | None, target: float | None, met: bool | None, sub: str) -> Measure:
    css = "good" if met is True else "bad" if met is False else ""
    return Measure(None if value is None else format_seconds(value), format_seconds(target), css, sub)


def _job_line(job: DrillJob) -> JobLine:
    state, description = str(job.state or "unknown"), job.state_description or ""
    bad = job_problem(job) is not None
    status = state + (f" \u00b7 {description}" if description and description not in (state, _PLAIN_DESCRIPTION)
                      else "")
    shown = f"{BAD_MARK} {status}" if bad else OK_MARK if status == AsrJobState.SUCCEEDED else f"{OK_MARK} {status}"
    title = (f"ASR job {job.name or '?'}: {format_time(job.start_time)} to {format_time(job.end_time)} "
             f"({status})")
    return JobLine(shown, bad, format_seconds(job.duration_seconds), title)


def _error_notes(vm: VmDrillResult) -> list[ErrorNote]:
    """The ASR errors of the VM's jobs not already said by its error (their details fold away)."""
    error = vm.error or ""
    notes = []
    for job in vm.jobs:
        for err in job.errors:
            line = error_line(err)
            details = tuple((label, text) for label, text in (("Possible causes", err.possible_causes),
                                                              ("Recommended action", err.recommended_action))
                            if text)
            if line not in error:
                notes.append(ErrorNote(f"{job.kind} job: {line}", details))
            elif details:
                notes.append(ErrorNote("Possible causes, recommended action", details))
    return notes
