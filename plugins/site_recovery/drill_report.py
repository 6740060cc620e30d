"""The DR drill report: one JSON document per drill run, and the HTML page a DR engineer or auditor reads.

The test-failover drill DAG builds a report (schema 1) and calls :func:`write_report`, which
stores ``<folder>/<site>/<YYYYmmddTHHMMSSZ>__<safe run id>.json`` and a ``.html`` beside it.
:func:`load_history` reads a site's earlier reports back for the trend chart; :func:`verdict_of`
is the one rule that turns per-VM results and the cleanup proof into PASS or FAIL.

The page is self-contained: inline CSS and inline SVG, no script, no external URL of any kind
(it must open from a mail attachment or an air-gapped share). Every text taken from the report
is HTML-escaped. Any value may be missing or None (a VM that failed before verify has no
verify and no RTO); the page then shows a dash rather than failing, because a drill must never
fail for the sake of its report.

Report dict, schema 1 (times are ISO 8601 strings, durations seconds)::

    {"schema": 1, "site": "lab", "dag_id": "asr_test_failover_drill__lab",
     "run_id": "scheduled__2026-11-28T01:00:00+00:00",
     "trigger": "scheduled" | "manual", "started_at": iso8601, "ended_at": iso8601,
     "verdict": "PASS" | "FAIL", "reasons": ["SQL-PRD-01: TestFailover job failed: [70038] ...", ...],
     "targets": {"rpo_seconds": 900, "rto_seconds": 1800},
     "test_network": "DR-Drill-Isolated" | None, "recovery_vmm": "vmm-rtm-01.corp.meridianpack.nl",
     "gate": {"checked": 9, "passed": 8,
              "skipped": [{"vm": "FS-PRD-02", "reason": "replication health is Warning"}],
              "leftovers_cleaned": [{"vm": "APP-PRD-01",
                                     "detail": "test failover left active by run ...; cleaned up (job ...)"}]},
     "vms": [{"vm": "SQL-PRD-01", "cloud": "Gold-Prod", "outcome": "passed" | "failed" | "skipped",
              "recovery_point_time": iso | None, "rpo_achieved_seconds": float | None, "rpo_met": bool | None,
              "rto_seconds": float | None, "rto_met": bool | None, "test_vm_name": "SQL-PRD-01 - Test" | None,
              "jobs": [{"kind": "TestFailover" | "TestFailoverCleanup", "name": guid, "state": "Succeeded",
                        "state_description": ..., "start_time": iso, "end_time": iso, "duration_seconds": float,
                        "errors": [{"code", "message", "possible_causes", "recommended_action"}]}],
              "verify": {"state": "Running", "heartbeat": "OK", "ip_addresses": ["10.99.0.12"],
                         "verified_at": iso} | None,
              "probes": [{"kind": "tcp" | "http", "port": 1433, "path": None, "ok": true,
                          "detail": "connected in 12 ms"}],
              "cleanup": {"verified": true, "detail": "no active test failover; no test VM"} | None,
              "error": str | None,
              "timeline": [{"phase": "test_failover" | "verify" | "cleanup", "start": iso, "end": iso | None}]}],
     "cleanup_proof": {"verified_at": iso, "items_in_test_failover": [], "test_vms_left": []},
     "tasks": [{"task_id": "...", "map_index": "SQL-PRD-01" | None, "state": "success", "start": iso,
                "end": iso, "duration_seconds": float}]}

A skipped VM (readiness gate) appears in ``gate.skipped`` and may also appear in ``vms`` with
outcome "skipped" and its reason in ``error``. The items of ``cleanup_proof``'s two lists are VM
names, or dicts with a ``vm`` or ``name`` key.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

log = logging.getLogger(__name__)

#: Version of the report dict this module writes and reads.
SCHEMA = 1
#: How many drills the trend chart shows, this one included.
TREND_RUNS = 20

_DASH = "\u2014"
_OK, _BAD = "\u2713", "\u2717"
_PHASES = {  # phase: (label, colour)
    "test_failover": ("Test failover", "#2f6fd0"),
    "verify": ("Verify", "#17917f"),
    "cleanup": ("Cleanup", "#d98a1c"),
}
_VM_COLOURS = ("#2f6fd0", "#d98a1c", "#17917f", "#8e44ad", "#c0392b", "#5d6d7e", "#b7950b", "#1abc9c")
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_VM_COLUMNS = (  # header, width in %
    ("VM", 11.5), ("Cloud", 6), ("Outcome", 6.5), ("RPO (recovery point)", 9.5), ("RTO", 9),
    ("Test failover job", 9.5), ("Verify", 11.5), ("Probes", 12), ("Cleanup", 9.5), ("Error", 15),
)
_JOB_STATES = {
    "Failed": "failed",
    "Cancelled": "was cancelled",
    "Suspended": "is suspended (waiting)",
    "InProgress": "did not finish",
    "NotStarted": "did not start",
}


# ------------------------------------------------------------------------------------------- verdict
def verdict_of(vms: list[dict], cleanup_proof: dict | None, gate_failures_fail: bool) -> tuple[str, list[str]]:
    """
    Decide the drill's verdict and say why it is not PASS.

    PASS needs all of: every VM that was not skipped at the readiness gate passed (its
    TestFailover job Succeeded, its test VM ran with a heartbeat and passed every probe, its
    cleanup job Succeeded and the cleanup was verified); a job that Succeeded with the
    description PartiallySucceeded counts as failed; the cleanup proof lists no protected item
    still in a test failover and no test VM left behind; at least one VM was drilled; and, when
    ``gate_failures_fail``, no VM was skipped. A missed RTO or RPO target is shown in the report
    (banner and table) but does not change the verdict unless the DAG marked the VM "failed" for it.

    :param vms: The report's ``vms`` list.
    :param cleanup_proof: The report's ``cleanup_proof``; None means nobody checked, which fails.
    :param gate_failures_fail: The site's ``drill.on_gate_failure == "fail"``.
    :return: ``("PASS", [])`` or ``("FAIL", reasons)``, one reason per VM naming it and each problem.
    """
    reasons: list[str] = []
    drilled = 0
    for vm in vms or []:
        vm = vm if isinstance(vm, dict) else {}
        name = _text(vm.get("vm")) or "(unnamed VM)"
        if vm.get("outcome") == "skipped":
            if gate_failures_fail:
                reasons.append(f"{name}: skipped at the readiness gate ({_text(vm.get('error')) or 'no reason given'})")
            continue
        drilled += 1
        problems = _vm_problems(vm)
        if problems:
            reasons.append(f"{name}: " + "; ".join(problems))
    if not drilled:
        reasons.append("no VM went through a test failover")
    reasons += _cleanup_proof_problems(cleanup_proof)
    return ("FAIL" if reasons else "PASS"), reasons


def _vm_problems(vm: dict) -> list[str]:
    """What keeps one drilled VM from passing (empty when it passed)."""
    problems: list[str] = []
    jobs = [j for j in _list(vm.get("jobs")) if isinstance(j, dict)]
    failover_jobs = [j for j in jobs if j.get("kind") == "TestFailover"]
    for job in jobs:
        problem = _job_problem(job)
        if problem:
            problems.append(problem)
    failed_over = bool(failover_jobs) and not any(_job_problem(j) for j in failover_jobs)
    if not failover_jobs:
        problems.append("no TestFailover job recorded")
    if failed_over:
        verify = vm.get("verify")
        if not isinstance(verify, dict):
            problems.append("test VM not verified")
        else:
            state, heartbeat = _text(verify.get("state")), _text(verify.get("heartbeat"))
            if state and state.casefold() != "running":
                problems.append(f"test VM is {state}, not Running")
            if heartbeat and not heartbeat.casefold().startswith("ok"):
                problems.append(f"test VM heartbeat is {heartbeat}")
        for probe in _list(vm.get("probes")):
            if isinstance(probe, dict) and probe.get("ok") is not True:
                detail = _text(probe.get("detail")) or "no result"
                problems.append(f"probe {_probe_target(probe)} failed: {detail}")
    cleanup = vm.get("cleanup")
    if not isinstance(cleanup, dict) or cleanup.get("verified") is not True:
        detail = _text(cleanup.get("detail")) if isinstance(cleanup, dict) else ""
        problems.append("cleanup not verified" + (f": {detail}" if detail else ""))
    error = _text(vm.get("error"))
    if error and not any(error in p for p in problems):
        problems.append(error)
    if not problems and vm.get("outcome") != "passed":
        problems.append(f"outcome is {_text(vm.get('outcome')) or 'unknown'}")
    return problems


def _job_problem(job: dict) -> str | None:
    kind = _text(job.get("kind")) or "ASR"
    state, description = job.get("state"), job.get("state_description")
    if state != "Succeeded":
        what = _JOB_STATES.get(state, f"ended {state}" if state else "has no state")
        return f"{kind} job {what}{_first_error(job)}"
    if description == "PartiallySucceeded":
        return f"{kind} job only partially succeeded (PartiallySucceeded){_first_error(job)}"
    return None


def _first_error(job: dict) -> str:
    errors = [e for e in _list(job.get("errors")) if isinstance(e, dict)]
    if not errors:
        return ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f": {_error_line(errors[0])}{more}"


def _error_line(error: dict) -> str:
    code, message = _text(error.get("code")), " ".join(_text(error.get("message")).split())
    return f"[{code}] {message}" if code else message


def _cleanup_proof_problems(proof: Any) -> list[str]:
    if not isinstance(proof, dict):
        return ["cleanup proof missing: nobody checked for test failovers and test VMs left behind"]
    problems = []
    for key, what in (("items_in_test_failover", "protected item(s) still in a test failover"),
                      ("test_vms_left", "test VM(s) left on the recovery VMM")):
        items = proof.get(key)
        if not isinstance(items, list):
            problems.append(f"cleanup proof incomplete: {key} was not checked")
        elif items:
            problems.append(f"cleanup proof: {len(items)} {what}: {', '.join(_item_name(i) for i in items)}")
    return problems


def _item_name(item: Any) -> str:
    if isinstance(item, dict):
        return _text(item.get("vm") or item.get("name")) or json.dumps(item, sort_keys=True, default=str)
    return _text(item)


# ------------------------------------------------------------------------------------- files
def write_report(folder: str | os.PathLike, report: dict, history: list[dict]) -> dict[str, str]:
    """
    Store the report as JSON and as its HTML page, each written atomically (temp file + rename).

    The names are ``<folder>/<site>/<YYYYmmddTHHMMSSZ>__<safe run id>.json`` and ``.html``, the
    time being the drill's start in UTC; characters a file system may refuse (``:`` ``+`` ``/``
    ...) in the run id become ``_``. Writing the same run again replaces its files.

    :param folder: Root folder of all drill reports.
    :param report: The report dict (schema 1).
    :param history: Earlier reports of the site, oldest first (for the trend chart).
    :return: ``{"json": path, "html": path}``.
    """
    site_dir = Path(folder) / _safe_name(report.get("site"), "site")
    site_dir.mkdir(parents=True, exist_ok=True)
    started = _time(report.get("started_at")) or _time(report.get("ended_at")) or datetime.now(timezone.utc)
    stem = f"{started:%Y%m%dT%H%M%SZ}__{_safe_name(report.get('run_id'), 'run')}"
    paths = {"json": site_dir / f"{stem}.json", "html": site_dir / f"{stem}.html"}
    _write_atomically(paths["json"], json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    _write_atomically(paths["html"], render_html(report, history))
    log.info("Drill report written: %s and %s", paths["json"], paths["html"])
    return {kind: str(path) for kind, path in paths.items()}


def load_history(folder: str | os.PathLike, site: str, limit: int = 20,
                 exclude_run_id: str | None = None) -> list[dict]:
    """
    Read a site's latest earlier reports, oldest first.

    A file that cannot be read or is not a JSON object is skipped with a warning: an old, broken
    report must never fail a drill.

    :param folder: Root folder of all drill reports (as given to :func:`write_report`).
    :param site: Site name.
    :param limit: At most this many reports (the newest ones).
    :param exclude_run_id: Leave out the report of this run (the drill being reported).
    """
    site_dir = Path(folder) / _safe_name(site, "site")
    if limit <= 0 or not site_dir.is_dir():
        return []
    files = sorted(p for p in site_dir.glob("*.json") if not p.name.startswith("."))
    reports: list[dict] = []
    for path in reversed(files):  # the names start with the drill's start time: newest last
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("Skipping drill report %s: it cannot be read (%s)", path, exc)
            continue
        if not isinstance(report, dict):
            log.warning("Skipping drill report %s: it holds a JSON %s, not a report", path, type(report).__name__)
            continue
        if exclude_run_id is not None and report.get("run_id") == exclude_run_id:
            continue
        reports.append(report)
        if len(reports) >= limit:
            break
    reports.reverse()
    return reports


def _safe_name(value: Any, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", _text(value)).strip("._")[:120]
    return name or fallback


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ------------------------------------------------------------------------------------- values
def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _e(value: Any) -> str:
    """Escape a report value for HTML text and attribute values."""
    return html.escape(_text(value), quote=True)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _fmt_time(value: Any, with_date: bool = True) -> str:
    moment = _time(value)
    if moment is None:
        return _DASH
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


def _fmt_duration(seconds: Any) -> str:
    value = _num(seconds)
    if value is None:
        return _DASH
    sign, s = ("-" if value < 0 else ""), int(round(abs(value)))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        (whole, rest), units = divmod(s, 60), ("m", "s")
    elif s < 86400:
        (whole, rest), units = divmod(s // 60, 60), ("h", "m")
    else:
        (whole, rest), units = divmod(s // 3600, 24), ("d", "h")
    return f"{sign}{whole}{units[0]}" + (f" {rest:02d}{units[1]}" if rest else "")


def _fmt_offset(seconds: float) -> str:
    """Axis label: 0, 45s, 5m, 1m30s, 1h, 1h30m."""
    s = int(round(seconds))
    if s == 0:
        return "0"
    h, rest = divmod(abs(s), 3600)
    m, sec = divmod(rest, 60)
    return ("-" if s < 0 else "") + "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v)


def _tick_step(span: float, max_ticks: int) -> float:
    for step in _TICK_STEPS:
        if span / step <= max_ticks:
            return step
    return math.ceil(span / max_ticks / 86400) * 86400


def _probe_target(probe: dict) -> str:
    kind, port, path = _text(probe.get("kind")) or "probe", probe.get("port"), _text(probe.get("path"))
    return f"{kind} {port if port is not None else ''}{path}".strip()


def _met_class(met: Any) -> str:
    return "good" if met is True else "bad" if met is False else ""


def _short(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 1] + "\u2026"


# ------------------------------------------------------------------------------------- page
def render_html(report: dict, history: list[dict]) -> str:
    """
    Render a drill report as one self-contained HTML page (inline CSS and SVG, no script, no URL).

    :param report: The report dict (schema 1); missing fields are shown as unknown.
    :param history: Earlier reports of the same site, oldest first; may be empty.
    """
    report = _dict(report)
    history = [h for h in (history or []) if isinstance(h, dict)]
    vms = [vm for vm in _list(report.get("vms")) if isinstance(vm, dict)]
    verdict, reasons = _shown_verdict(report, vms)
    started = _time(report.get("started_at"))
    title = f"{verdict} \u00b7 DR drill \u00b7 {_text(report.get('site')) or 'unknown site'}"
    if started:
        title += f" \u00b7 {started:%Y-%m-%d %H:%M} UTC"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _banner(report, vms, verdict, reasons),
        '<main class="page">',
        _summary(report, vms),
        '<div class="grid3">',
        _facts(report),
        _gate(report),
        _cleanup_proof(report),
        "</div>",
        _vm_table(report, vms),
        _timeline_section(report, vms),
        _trend_section(report, history),
        _tasks(report),
        '<footer>Rendered from the JSON report stored beside this page (schema '
        f'{_e(report.get("schema", SCHEMA))}). All times are UTC. RTO is measured from the drill start '
        "to a verified test VM; RPO is the age of the recovery point used when the test failover started."
        "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _shown_verdict(report: dict, vms: list[dict]) -> tuple[str, list[str]]:
    verdict = _text(report.get("verdict")).upper()
    reasons = [_text(r) for r in _list(report.get("reasons"))]
    if verdict in ("PASS", "FAIL"):
        return verdict, reasons
    return verdict_of(vms, report.get("cleanup_proof"), False)


def _banner(report: dict, vms: list[dict], verdict: str, reasons: list[str]) -> str:
    site, started = _text(report.get("site")) or "unknown site", _time(report.get("started_at"))
    counts = _outcome_counts(vms, report)
    drilled = counts["passed"] + counts["failed"]
    when = f"{started:%A %d %B %Y, %H:%M} UTC" if started else "start time unknown"
    line = (f"{counts['passed']} of {drilled} drilled VM{'s' if drilled != 1 else ''} passed"
            + (f", {counts['skipped']} skipped at the readiness gate" if counts["skipped"] else ""))
    out = [f'<header id="verdict" class="banner {"pass" if verdict == "PASS" else "fail"}" '
           f'data-verdict="{_e(verdict)}">',
           '<div class="banner-inner">',
           f'<div class="verdict-word">{_e(verdict)}</div>',
           '<div class="banner-text">',
           f'<div class="kicker">DR drill report \u00b7 Azure Site Recovery test failover</div>',
           f'<div class="headline">Site <b>{_e(site)}</b> \u00b7 {_e(when)}</div>',
           f'<div class="subline">{_e(line)} \u00b7 {_e(_text(report.get("trigger")) or "trigger unknown")} run '
           f'<span class="mono">{_e(report.get("run_id"))}</span></div>',
           "</div></div>"]
    if verdict != "PASS":
        out.append(_reason_box("reasons", "Why the drill failed", reasons or ["No reason was recorded."]))
    misses = _target_misses(report, vms)
    if misses:
        out.append(_reason_box("reasons misses", "Targets missed (shown, not part of the verdict)", misses))
    out.append("</header>")
    return "\n".join(out)


def _reason_box(cls: str, title: str, lines: list[str], shown: int = 8) -> str:
    """A list in the banner; past ``shown`` lines the rest fold away so the banner stays a banner."""
    items = "".join(f"<li>{_e(line)}</li>" for line in lines[:shown])
    rest = lines[shown:]
    more = (f"<details><summary>{len(rest)} more</summary><ul>"
            + "".join(f"<li>{_e(line)}</li>" for line in rest) + "</ul></details>") if rest else ""
    return f'<div class="{cls}"><div class="reasons-title">{_e(title)}</div><ul>{items}</ul>{more}</div>'


def _target_misses(report: dict, vms: list[dict]) -> list[str]:
    targets = _dict(report.get("targets"))
    misses = []
    for vm in vms:
        name = _text(vm.get("vm"))
        if vm.get("rto_met") is False:
            misses.append(f"{name}: RTO {_fmt_duration(vm.get('rto_seconds'))} exceeds the target of "
                          f"{_fmt_duration(targets.get('rto_seconds'))}")
        if vm.get("rpo_met") is False:
            misses.append(f"{name}: recovery point was {_fmt_duration(vm.get('rpo_achieved_seconds'))} old; RPO "
                          f"target {_fmt_duration(targets.get('rpo_seconds'))}")
    return misses


def _outcome_counts(vms: list[dict], report: dict) -> dict[str, int]:
    """VMs per outcome; anything but passed or skipped counts as failed, the gate's skips count too."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for vm in vms:
        outcome = vm.get("outcome")
        counts[outcome if outcome in counts else "failed"] += 1
    counts["skipped"] = max(counts["skipped"], len(_list(_dict(report.get("gate")).get("skipped"))))
    return counts


def _summary(report: dict, vms: list[dict]) -> str:
    targets = _dict(report.get("targets"))
    counts = _outcome_counts(vms, report)
    skipped = counts["skipped"]
    rtos = [(v, _num(v.get("rto_seconds"))) for v in vms if _num(v.get("rto_seconds")) is not None]
    rpos = [(v, _num(v.get("rpo_achieved_seconds"))) for v in vms if _num(v.get("rpo_achieved_seconds")) is not None]
    rto_target, rpo_target = _num(targets.get("rto_seconds")), _num(targets.get("rpo_seconds"))

    def worst(values: list, target: float | None, label: str) -> str:
        if not values:
            return _tile(label, _DASH, "no measurement", "")
        vm, value = max(values, key=lambda pair: pair[1])
        cls = "" if target is None else "good" if value <= target else "bad"
        return _tile(label, _fmt_duration(value), f"target {_fmt_duration(target)} \u00b7 {_text(vm.get('vm'))}", cls)

    started, ended = _time(report.get("started_at")), _time(report.get("ended_at"))
    duration = (ended - started).total_seconds() if started and ended else None
    proof = report.get("cleanup_proof")
    proof_problems = _cleanup_proof_problems(proof)
    proof_word = ("clean" if not proof_problems else "MISSING" if not isinstance(proof, dict)
                  else "LEFTOVERS" if any(p.startswith("cleanup proof:") for p in proof_problems) else "INCOMPLETE")
    tiles = [
        _tile("VMs passed", f"{counts['passed']}", f"of {counts['passed'] + counts['failed']} drilled",
              "good" if counts["passed"] and not counts["failed"] else ""),
        _tile("VMs failed", f"{counts['failed']}", "see the reasons above" if counts["failed"] else "none",
              "bad" if counts["failed"] else "good"),
        _tile("Skipped at gate", f"{skipped}", "not drilled" if skipped else "none", "warn" if skipped else ""),
        worst(rtos, rto_target, "Slowest RTO"),
        worst(rpos, rpo_target, "Oldest recovery point"),
        _tile("Drill duration", _fmt_duration(duration), "start to report", ""),
        _tile("Cleanup proof", proof_word,
              "nothing left behind" if not proof_problems else "see cleanup proof", "good" if not proof_problems
              else "bad"),
    ]
    return f'<section class="tiles">{"".join(tiles)}</section>'


def _tile(label: str, value: str, sub: str, cls: str) -> str:
    return (f'<div class="tile {cls}"><div class="tile-label">{_e(label)}</div>'
            f'<div class="tile-value">{_e(value)}</div><div class="tile-sub">{_e(sub)}</div></div>')


def _facts(report: dict) -> str:
    targets = _dict(report.get("targets"))
    started, ended = _time(report.get("started_at")), _time(report.get("ended_at"))
    network = report.get("test_network")
    rows = [
        ("Site", _e(report.get("site")) or _DASH),
        ("DAG", f'<span class="mono">{_e(report.get("dag_id")) or _DASH}</span>'),
        ("Run id", f'<span class="mono">{_e(report.get("run_id")) or _DASH}</span>'),
        ("Trigger", _e(report.get("trigger")) or _DASH),
        ("Started", _e(_fmt_time(report.get("started_at")))),
        ("Ended", _e(_fmt_time(report.get("ended_at")))
         + (f' <span class="muted">({_e(_fmt_duration((ended - started).total_seconds()))})</span>'
            if started and ended else "")),
        ("Test network", _e(network) if network else '<span class="muted">none (test VMs not connected)</span>'),
        ("Recovery VMM", f'<span class="mono">{_e(report.get("recovery_vmm")) or _DASH}</span>'),
        ("RTO target", _e(_fmt_duration(targets.get("rto_seconds")))),
        ("RPO target", _e(_fmt_duration(targets.get("rpo_seconds")))),
    ]
    body = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<section class="card"><h2>Run</h2><table class="facts">{body}</table></section>'


def _gate(report: dict) -> str:
    gate = report.get("gate")
    if not isinstance(gate, dict):
        return '<section class="card" id="gate"><h2>Readiness gate</h2><p class="muted">No gate result.</p></section>'
    checked, passed = gate.get("checked"), gate.get("passed")
    skipped = [s for s in _list(gate.get("skipped")) if isinstance(s, dict)]
    cleaned = [c for c in _list(gate.get("leftovers_cleaned")) if isinstance(c, dict)]
    out = ['<section class="card" id="gate"><h2>Readiness gate</h2>',
           f'<p><b>{_e(passed if passed is not None else _DASH)}</b> of '
           f'<b>{_e(checked if checked is not None else _DASH)}</b> VMs passed the gate.</p>',
           '<h3>Skipped</h3>']
    if skipped:
        out.append('<table class="list"><tbody>' + "".join(
            f'<tr><td class="name">{_e(s.get("vm"))}</td><td class="warn-text">{_e(s.get("reason"))}</td></tr>'
            for s in skipped) + "</tbody></table>")
    else:
        out.append('<p class="good-text">No VM was skipped.</p>')
    out.append("<h3>Leftovers of an earlier drill, cleaned up first</h3>")
    if cleaned:
        out.append('<table class="list"><tbody>' + "".join(
            f'<tr><td class="name">{_e(c.get("vm"))}</td><td>{_e(c.get("detail"))}</td></tr>'
            for c in cleaned) + "</tbody></table>")
    else:
        out.append('<p class="muted">None found.</p>')
    out.append("</section>")
    return "\n".join(out)


def _cleanup_proof(report: dict) -> str:
    proof = report.get("cleanup_proof")
    out = ['<section class="card" id="cleanup-proof"><h2>Cleanup proof</h2>']
    if not isinstance(proof, dict):
        out.append('<p class="bad-text"><b>Missing.</b> Nobody checked for test failovers and test VMs left '
                   "behind; the drill cannot pass.</p></section>")
        return "\n".join(out)
    out.append(f'<p class="muted">Checked {_e(_fmt_time(proof.get("verified_at")))} after the last cleanup.</p>')
    for key, label in (("items_in_test_failover", "Protected items still in a test failover"),
                       ("test_vms_left", "Test VMs left on the recovery VMM")):
        items = proof.get(key)
        if not isinstance(items, list):
            value = '<span class="bad-text"><b>not checked</b></span>'
        elif not items:
            value = f'<span class="good-text"><b>{_OK} none</b></span>'
        else:
            value = (f'<span class="bad-text"><b>{_BAD} {len(items)}</b></span><ul class="leftovers">'
                     + "".join(f"<li>{_e(_item_name(i))}</li>" for i in items) + "</ul>")
        out.append(f'<div class="proof-row"><div class="proof-label">{label}</div><div>{value}</div></div>')
    out.append("</section>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------- VM table
def _vm_table(report: dict, vms: list[dict]) -> str:
    targets = _dict(report.get("targets"))
    started = _time(report.get("started_at"))
    order = {"failed": 0, "passed": 1, "skipped": 2}
    rows = sorted(vms, key=lambda vm: order.get(vm.get("outcome"), 0))  # stable: report order within a group
    cols = "".join(f'<col style="width:{w}%">' for _, w in _VM_COLUMNS)
    head = "<tr>" + "".join(f"<th>{label}</th>" for label, _ in _VM_COLUMNS) + "</tr>"
    body = "".join(_vm_row(vm, targets, started) for vm in rows)
    if not rows:
        body = f'<tr><td colspan="{len(_VM_COLUMNS)}" class="muted">No VM in this report.</td></tr>'
    return ('<section class="card wide"><h2>Virtual machines <span class="h2-sub">failed first \u00b7 '
            f'{len(vms)} VM{"s" if len(vms) != 1 else ""} \u00b7 measured / target</span></h2>'
            f'<table id="vm-table" class="vms"><colgroup>{cols}</colgroup><thead>{head}</thead>'
            f"<tbody>{body}</tbody></table></section>")


def _vm_row(vm: dict, targets: dict, started: datetime | None) -> str:
    outcome = _text(vm.get("outcome")) or "unknown"
    jobs = [j for j in _list(vm.get("jobs")) if isinstance(j, dict)]
    point = _time(vm.get("recovery_point_time"))
    point_text = ("" if point is None else f"point {point:%H:%M:%S}" if started and point.date() == started.date()
                  else f"point {point:%Y-%m-%d %H:%M}")
    cells = [
        f'<td class="name">{_e(vm.get("vm")) or _DASH}'
        + (f'<div class="sub">{_e(vm.get("test_vm_name"))}</div>' if vm.get("test_vm_name") else "") + "</td>",
        f"<td>{_e(vm.get('cloud')) or _DASH}</td>",
        f'<td><span class="badge {_e(outcome)}">{_e(outcome)}</span></td>',
        _measure_cell(vm.get("rpo_achieved_seconds"), targets.get("rpo_seconds"), vm.get("rpo_met"), point_text),
        _measure_cell(vm.get("rto_seconds"), targets.get("rto_seconds"), vm.get("rto_met"), ""),
        _job_cell([j for j in jobs if j.get("kind") == "TestFailover"]),
        _verify_cell(vm.get("verify")),
        _probes_cell(vm.get("probes")),
        _cleanup_cell([j for j in jobs if j.get("kind") == "TestFailoverCleanup"], vm.get("cleanup")),
        _error_cell(vm, jobs),
    ]
    return f'<tr class="row-{_e(outcome)}">{"".join(cells)}</tr>'


def _measure_cell(value: Any, target: Any, met: Any, sub: str) -> str:
    if _num(value) is None:
        return f'<td class="num muted">{_DASH}' + (f'<div class="sub">{_e(sub)}</div>' if sub else "") + "</td>"
    return (f'<td class="num"><span class="{_met_class(met)}-text"><b>{_e(_fmt_duration(value))}</b></span>'
            f' <span class="muted">/ {_e(_fmt_duration(target))}</span>'
            + (f'<div class="sub">{_e(sub)}</div>' if sub else "") + "</td>")


def _job_cell(jobs: list[dict]) -> str:
    return f"<td>{_job_lines(jobs)}</td>" if jobs else f'<td class="muted">{_DASH}</td>'


def _job_lines(jobs: list[dict]) -> str:
    parts = []
    for job in jobs:
        state, description = _text(job.get("state")) or "unknown", _text(job.get("state_description"))
        bad = _job_problem(job) is not None
        status = state + (f" \u00b7 {description}" if description and description not in (state, "Completed") else "")
        tip = f"ASR job {_text(job.get('name')) or '?'}: {_fmt_time(job.get('start_time'))} to " \
              f"{_fmt_time(job.get('end_time'))}"
        shown = f"{_BAD} {status}" if bad else _OK if status == "Succeeded" else f"{_OK} {status}"
        parts.append(f'<div title="{_e(tip)} ({_e(status)})"><span class="{"bad" if bad else "good"}-text">'
                     f'{_e(shown)}</span> <b>{_e(_fmt_duration(job.get("duration_seconds")))}</b></div>')
    return "".join(parts)


def _verify_cell(verify: Any) -> str:
    if not isinstance(verify, dict):
        return f'<td class="muted">{_DASH} not verified</td>'
    state, heartbeat = _text(verify.get("state")) or "state ?", _text(verify.get("heartbeat")) or "?"
    good = state.casefold() == "running" and heartbeat.casefold().startswith("ok")
    ips = ", ".join(_text(ip) for ip in _list(verify.get("ip_addresses"))) or "no IP address"
    return (f'<td><span class="{"good" if good else "bad"}-text"><b>{_e(state)}</b> \u00b7 '
            f'<span class="nowrap">heartbeat {_e(heartbeat)}</span></span><div class="sub mono">{_e(ips)}</div></td>')


def _probes_cell(probes: Any) -> str:
    probes = [p for p in _list(probes) if isinstance(p, dict)]
    if not probes:
        return f'<td class="muted">{_DASH}</td>'
    lines = []
    for probe in probes:
        ok = probe.get("ok") is True
        lines.append(f'<div class="probe"><span class="{"good" if ok else "bad"}-text">{_OK if ok else _BAD} '
                     f'{_e(_probe_target(probe))}</span> <span class="muted">{_e(probe.get("detail"))}</span></div>')
    return f"<td>{''.join(lines)}</td>"


def _cleanup_cell(jobs: list[dict], cleanup: Any) -> str:
    out = [_job_lines(jobs)] if jobs else []
    if isinstance(cleanup, dict):
        ok, detail = cleanup.get("verified") is True, _text(cleanup.get("detail"))
        out.append(f'<div class="{"good" if ok else "bad"}-text" title="{_e(detail)}"><b>'
                   f'{_OK + " verified" if ok else _BAD + " not verified"}</b></div>'
                   + ("" if ok or not detail else f'<div class="sub">{_e(detail)}</div>'))
    else:
        out.append(f'<div class="muted">{_DASH} not verified</div>')
    return f"<td>{''.join(out)}</td>"


def _error_cell(vm: dict, jobs: list[dict]) -> str:
    error = _text(vm.get("error"))
    parts = [f'<div class="bad-text">{_e(error)}</div>'] if error else []
    for job in jobs:
        for err in _list(job.get("errors")):
            if not isinstance(err, dict):
                continue
            line = _error_line(err)
            more = [(label, _text(err.get(key))) for key, label in (("possible_causes", "Possible causes"),
                                                                    ("recommended_action", "Recommended action"))]
            more = [(label, text) for label, text in more if text]
            head = (f'{_e(job.get("kind"))} job: {_e(line)}' if line not in error
                    else "Possible causes, recommended action")
            if more:
                details = "".join(f"<p><b>{label}:</b> {_e(text)}</p>" for label, text in more)
                parts.append(f'<details class="err"><summary>{head}</summary>{details}</details>')
            elif line not in error:
                parts.append(f'<div class="err">{head}</div>')
    return f'<td class="error">{"".join(parts) or ""}</td>'


# ------------------------------------------------------------------------------------- timeline
def _timeline_section(report: dict, vms: list[dict]) -> str:
    return ('<section class="card wide"><h2>Timeline <span class="h2-sub">phases per VM on one time axis from the '
            f'drill start</span></h2>{_timeline_svg(report, vms)}</section>')


def _timeline_svg(report: dict, vms: list[dict]) -> str:
    rows = []
    for vm in vms:
        bars = []
        for entry in _list(vm.get("timeline")):
            if isinstance(entry, dict) and _time(entry.get("start")):
                bars.append((_text(entry.get("phase")), _time(entry.get("start")), _time(entry.get("end"))))
        if bars:
            rows.append((vm, bars))
    starts = [b[1] for _, bars in rows for b in bars]
    t0 = _time(report.get("started_at")) or (min(starts) if starts else None)
    ends = [t for _, bars in rows for b in bars for t in (b[1], b[2]) if t] + [
        t for t in (_time(report.get("ended_at")),) if t]
    if not rows or t0 is None:
        return ('<svg id="timeline" class="chart" viewBox="0 0 1240 40" width="100%" role="img">'
                '<text x="620" y="24" text-anchor="middle" class="svg-muted">No phase timings recorded.</text></svg>')
    t_end = max(ends)
    span = max((t_end - t0).total_seconds(), 1.0)
    rto_target = _num(_dict(report.get("targets")).get("rto_seconds"))
    if rto_target is not None and span < rto_target <= 2 * span:  # show the headroom unless it squashes the bars
        span = rto_target * 1.04
    width, label_w, right = 1240, 210, 24
    plot_w = width - label_w - right
    n = len(rows)
    row_h = 24 if n <= 30 else 16 if n <= 80 else 12
    top, axis_h, legend_h = 34, 26, 30
    both_axes = n > 30
    plot_h = n * row_h
    height = top + plot_h + (axis_h if both_axes else 6) + legend_h
    step = _tick_step(span, 12)

    def x_of(moment: datetime) -> float:
        return label_w + max(0.0, (moment - t0).total_seconds()) / span * plot_w

    font = 12 if row_h >= 20 else 10
    out = [f'<svg id="timeline" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="Phases per VM on a time axis from the drill start">']
    for i in range(n):  # zebra bands
        if i % 2:
            out.append(f'<rect class="band" x="0" y="{top + i * row_h}" width="{width - right}" height="{row_h}"/>')
    tick, axis_bottom = 0.0, top + plot_h
    while tick <= span + 1e-6:
        x = label_w + tick / span * plot_w
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_bottom}"/>')
        out.append(f'<text class="axis" x="{x:.1f}" y="{top - 10}" text-anchor="middle">{_fmt_offset(tick)}</text>')
        if both_axes:
            out.append(f'<text class="axis" x="{x:.1f}" y="{axis_bottom + 16}" text-anchor="middle">'
                       f"{_fmt_offset(tick)}</text>")
        tick += step
    out.append(f'<text class="axis" x="{label_w - 8}" y="{top - 10}" text-anchor="end">since start \u2192</text>')
    if rto_target is not None and 0 < rto_target <= span:
        x = label_w + rto_target / span * plot_w
        out.append(f'<line class="target" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_bottom}"/>'
                   f'<text class="target-label" x="{x + 4:.1f}" y="{top + 10}">RTO target</text>')
    elif rto_target is not None:
        out.append(f'<text class="target-label" x="{width - right}" y="{top + 10}" text-anchor="end">'
                   f"RTO target {_e(_fmt_duration(rto_target))}, beyond this axis</text>")
    bar_h = max(4.0, row_h * 0.62)
    for i, (vm, bars) in enumerate(rows):
        y = top + i * row_h
        name = _text(vm.get("vm"))
        cls = "label bad-fill" if vm.get("outcome") == "failed" else "label"
        out.append(f'<text class="{cls}" x="{label_w - 8}" y="{y + row_h / 2 + font * 0.35:.1f}" '
                   f'text-anchor="end" font-size="{font}"><title>{_e(name)}</title>{_e(_short(name, 28))}</text>')
        for phase, start, end in bars:
            label, colour = _PHASES.get(phase, (phase or "phase", "#8a94a6"))
            x1 = x_of(start)
            x2 = x_of(end) if end else x_of(t_end)
            open_ended = end is None
            tip = (f"{name} \u00b7 {label}: {_fmt_time(start, False)} \u2192 "
                   + (f"{_fmt_time(end, False)} ({_fmt_duration((end - start).total_seconds())})" if end
                      else "no end recorded"))
            style = ' fill-opacity="0.35" stroke-dasharray="3 2"' if open_ended else ""
            out.append(f'<rect class="bar" x="{x1:.1f}" y="{y + (row_h - bar_h) / 2:.1f}" '
                       f'width="{max(x2 - x1, 2.0):.1f}" height="{bar_h:.1f}" rx="2" fill="{colour}" '
                       f'stroke="{colour}"{style}><title>{_e(tip)}</title></rect>')
    legend_y = height - legend_h + 12
    x = label_w
    for label, colour in _PHASES.values():
        out.append(f'<rect x="{x}" y="{legend_y}" width="14" height="10" rx="2" fill="{colour}"/>'
                   f'<text class="legend" x="{x + 20}" y="{legend_y + 9}">{label}</text>')
        x += 130
    out.append(f'<rect x="{x}" y="{legend_y}" width="14" height="10" rx="2" fill="#8a94a6" fill-opacity="0.35" '
               f'stroke="#8a94a6" stroke-dasharray="3 2"/><text class="legend" x="{x + 20}" y="{legend_y + 9}">'
               "no end recorded</text>")
    if rto_target is not None:
        x += 150
        out.append(f'<line class="target" x1="{x}" y1="{legend_y + 5}" x2="{x + 22}" y2="{legend_y + 5}"/>'
                   f'<text class="legend" x="{x + 28}" y="{legend_y + 9}">RTO target (from the drill start)</text>')
    missing = len(vms) - n
    if missing:
        out.append(f'<text class="legend svg-muted" x="{width - right}" y="{legend_y + 9}" text-anchor="end">'
                   f'{missing} VM{"s" if missing != 1 else ""} without phase timings not shown</text>')
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------- trend
def _trend_section(report: dict, history: list[dict]) -> str:
    note = ""
    if not history:
        note = ('<p class="callout">First drill for this site: there are no earlier reports to compare with yet. '
                "The trend starts with this run.</p>")
    shown = min(len(history), TREND_RUNS - 1) + 1
    return (f'<section class="card wide"><h2>Trend <span class="h2-sub">last {shown} drill'
            f'{"s" if shown != 1 else ""} of this site, this one on the right</span></h2>'
            f"{note}{_trend_svg(report, history)}</section>")


def _trend_svg(report: dict, history: list[dict]) -> str:
    runs = [*history[-(TREND_RUNS - 1):], report] if TREND_RUNS > 1 else [report]
    current_vms = [_text(v.get("vm")) for v in _list(report.get("vms"))
                   if isinstance(v, dict) and v.get("outcome") != "skipped"]
    per_vm = 0 < len(current_vms) <= len(_VM_COLOURS)
    points: list[dict[str, float]] = []  # per run: vm -> rto
    targets: list[float | None] = []
    for run in runs:
        rtos = {}
        for vm in _list(_dict(run).get("vms")):
            if isinstance(vm, dict) and _num(vm.get("rto_seconds")) is not None:
                rtos[_text(vm.get("vm"))] = _num(vm.get("rto_seconds"))
        points.append(rtos)
        targets.append(_num(_dict(_dict(run).get("targets")).get("rto_seconds")))
    values = [v for p in points for v in p.values()] + [t for t in targets if t is not None]
    y_max = max(values + [60.0]) * 1.12
    width, left, right, top, plot_h = 1240, 70, 130, 56, 190
    legend_h = 34
    height = top + plot_h + 44 + legend_h
    plot_w = width - left - right
    n = len(runs)
    col = plot_w / n

    def x_of(i: int) -> float:
        return left + (i + 0.5) * col

    def y_of(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    out = [f'<svg id="trend" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           'aria-label="Verdict and RTO per VM for recent drills">']
    step = _tick_step(y_max, 5)
    tick = 0.0
    while tick <= y_max:
        y = y_of(tick)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_fmt_offset(tick)}</text>')
        tick += step
    out.append(f'<text class="axis" x="{left - 8}" y="{top - 34}" text-anchor="end">verdict</text>'
               f'<text class="axis" x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})"'
               ' text-anchor="middle">RTO</text>')
    for i, run in enumerate(runs):  # verdict markers and x labels
        run = _dict(run)
        x = x_of(i)
        verdict = _text(run.get("verdict")).upper()
        cls = "pass" if verdict == "PASS" else "fail" if verdict == "FAIL" else "unknown"
        started = _time(run.get("started_at"))
        tip = f"{_text(run.get('run_id'))} \u00b7 {verdict or 'no verdict'} \u00b7 {_fmt_time(run.get('started_at'))}"
        mark = _OK if cls == "pass" else _BAD if cls == "fail" else "?"
        out.append(f'<g class="marker {cls}"><title>{_e(tip)}</title><circle cx="{x:.1f}" cy="{top - 38}" r="9"/>'
                   f'<text x="{x:.1f}" y="{top - 34}" text-anchor="middle">{mark}</text></g>')
        label = (started.strftime("%Y-%m-%d" if n <= 12 else "%d %b") if started else "?")
        current = i == n - 1
        out.append(f'<text class="axis{" current" if current else ""}" x="{x:.1f}" y="{top + plot_h + 18}" '
                   f'text-anchor="middle">{_e(label)}</text>')
        if current:
            out.append(f'<text class="axis current" x="{x:.1f}" y="{top + plot_h + 32}" text-anchor="middle">'
                       "this run</text>")
    # target: dashed, step-wise per run (a straight line while the target did not change)
    segments = [(x_of(i) - col / 2, x_of(i) + col / 2, y_of(t)) for i, t in enumerate(targets) if t is not None]
    if segments:
        path = " ".join(f"M{a:.1f},{y:.1f} H{b:.1f}" for a, b, y in segments)
        out.append(f'<path class="target" d="{path}"/>')
        out.append(f'<text class="target-label" x="{left + plot_w + 6}" y="{segments[-1][2] + 4:.1f}">'
                   f"RTO target {_e(_fmt_duration(targets[-1]))}</text>")
    legend: list[tuple[str, str, str]] = []
    if per_vm:
        for k, name in enumerate(current_vms):
            colour = _VM_COLOURS[k]
            pts = [(x_of(i), y_of(p[name])) for i, p in enumerate(points) if name in p]
            if len(pts) > 1:
                out.append(f'<polyline class="series" stroke="{colour}" points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            for i, p in enumerate(points):
                if name in p:
                    out.append(f'<circle class="dot" cx="{x_of(i):.1f}" cy="{y_of(p[name]):.1f}" r="4" '
                               f'fill="{colour}"><title>{_e(name)}: RTO {_e(_fmt_duration(p[name]))}</title></circle>')
            legend.append((name + ("" if name in points[-1] else " (no RTO this run)"), colour, "line"))
    else:
        maxima = [(i, max(p.values())) for i, p in enumerate(points) if p]
        medians = [(i, median(p.values())) for i, p in enumerate(points) if p]
        for i, p in enumerate(points):
            if p:
                lo, hi = min(p.values()), max(p.values())
                out.append(f'<line class="range" x1="{x_of(i):.1f}" y1="{y_of(lo):.1f}" x2="{x_of(i):.1f}" '
                           f'y2="{y_of(hi):.1f}"><title>{len(p)} VMs: RTO {_e(_fmt_duration(lo))} to '
                           f"{_e(_fmt_duration(hi))}</title></line>")
        for series, colour, label in ((maxima, "#c0392b", "slowest VM"), (medians, "#2f6fd0", "median VM")):
            if len(series) > 1:
                out.append(f'<polyline class="series" stroke="{colour}" points="'
                           + " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in series) + '"/>')
            for i, v in series:
                out.append(f'<circle class="dot" cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="4" fill="{colour}">'
                           f"<title>{label}: RTO {_e(_fmt_duration(v))}</title></circle>")
            legend.append((label, colour, "line"))
        legend.append(("range of all VMs", "#b8c2d0", "range"))
    legend.append(("RTO target", "#5d6d7e", "target"))
    x, y = left, height - legend_h + 14
    for label, colour, kind in legend:
        if kind == "target":
            out.append(f'<line class="target" x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}"/>')
        elif kind == "range":
            out.append(f'<line class="range" x1="{x + 11}" y1="{y - 6}" x2="{x + 11}" y2="{y + 6}"/>')
        else:
            out.append(f'<line stroke="{colour}" stroke-width="2.5" x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}"/>'
                       f'<circle cx="{x + 11}" cy="{y}" r="4" fill="{colour}"/>')
        label = _short(label, 40)
        out.append(f'<text class="legend" x="{x + 28}" y="{y + 4}">{_e(label)}</text>')
        x += 52 + len(label) * 7.5
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------- tasks
def _tasks(report: dict) -> str:
    tasks = [t for t in _list(report.get("tasks")) if isinstance(t, dict)]
    if not tasks:
        return ""
    rows = "".join(
        f'<tr><td class="mono">{_e(t.get("task_id"))}</td><td>{_e(t.get("map_index")) or _DASH}</td>'
        f'<td><span class="badge {"passed" if t.get("state") == "success" else "failed"}">{_e(t.get("state"))}'
        f'</span></td><td>{_e(_fmt_time(t.get("start")))}</td><td>{_e(_fmt_time(t.get("end")))}</td>'
        f'<td class="num">{_e(_fmt_duration(t.get("duration_seconds")))}</td></tr>' for t in tasks)
    return ('<section class="card wide"><details><summary><h2>Airflow tasks <span class="h2-sub">'
            f"{len(tasks)} task instances</span></h2></summary>"
            '<table class="vms tasks"><thead><tr><th>Task</th><th>Map index</th><th>State</th><th>Start</th>'
            f"<th>End</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table></details></section>")


_CSS = """
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#eef1f5;color:#1f2933;font:13px/1.45 "Segoe UI",system-ui,-apple-system,"Liberation Sans",
"DejaVu Sans",Arial,sans-serif}
.mono{font-family:"Cascadia Mono",Consolas,"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px}
.muted,.svg-muted{color:#6b7785;fill:#6b7785}
.good-text{color:#1b7a3d}.bad-text{color:#b3261e}.warn-text{color:#9a5b00}
.banner{color:#fff;padding:22px 32px 20px}
.banner.pass{background:#1b7a3d}.banner.fail{background:#b3261e}
.banner-inner{display:flex;align-items:center;gap:28px;max-width:1340px;margin:0 auto}
.verdict-word{font-size:56px;font-weight:800;letter-spacing:.04em;line-height:1;padding:10px 22px;
border:3px solid rgba(255,255,255,.85);border-radius:8px}
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;opacity:.85}
.headline{font-size:22px;margin:2px 0 4px}
.subline{font-size:13px;opacity:.92}.subline .mono{font-size:12px}
.reasons{max-width:1340px;margin:14px auto 0;background:rgba(0,0,0,.18);border-radius:6px;padding:10px 16px}
.reasons.misses{background:rgba(0,0,0,.12)}
.reasons-title{font-weight:700;margin-bottom:2px}
.reasons ul{margin:0;padding-left:20px}
.reasons summary{cursor:pointer;margin:2px 0 0 20px;font-weight:600}.reasons li{margin:2px 0;overflow-wrap:anywhere}
.page{max-width:1340px;margin:0 auto;padding:16px 0 28px}
.tiles{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:10px;margin-bottom:14px}
.tile{background:#fff;border:1px solid #d5dbe3;border-top:4px solid #9aa5b1;border-radius:6px;padding:9px 12px}
.tile.good{border-top-color:#1b7a3d}.tile.bad{border-top-color:#b3261e}.tile.warn{border-top-color:#d98a1c}
.tile-label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#52606d}
.tile-value{font-size:24px;font-weight:700;margin:2px 0;white-space:nowrap}
.tile.bad .tile-value{color:#b3261e}
.tile-sub{font-size:12px;color:#6b7785;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.grid3{display:grid;grid-template-columns:1.1fr 1fr 1fr;gap:14px;margin-bottom:14px}
.card{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:12px 16px 14px}
.card.wide{margin-bottom:14px}
h2{font-size:15px;margin:0 0 8px;color:#102a43}.h2-sub{font-weight:400;font-size:12px;color:#6b7785;margin-left:6px}
h3{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#52606d;margin:12px 0 4px}
p{margin:4px 0}
table{border-collapse:collapse;width:100%}
.facts th{text-align:left;font-weight:600;color:#52606d;padding:3px 12px 3px 0;white-space:nowrap;vertical-align:top;
width:1%}
.facts td{padding:3px 0;overflow-wrap:anywhere}
.list td{padding:3px 8px 3px 0;border-top:1px solid #edf0f4;vertical-align:top;overflow-wrap:anywhere}
.list td.name{font-weight:600;white-space:nowrap}
.proof-row{display:flex;justify-content:space-between;gap:12px;padding:8px 0;border-top:1px solid #edf0f4}
.proof-label{font-weight:600;color:#334e68}
.leftovers{margin:4px 0 0;padding-left:18px;color:#b3261e}
.vms{font-size:12.5px;table-layout:fixed}
.vms th{position:sticky;top:0;background:#f3f5f8;text-align:left;font-size:11px;text-transform:uppercase;
letter-spacing:.04em;color:#52606d;padding:7px 8px;border-bottom:2px solid #d5dbe3}
.vms td{padding:6px 8px;border-bottom:1px solid #e4e8ee;vertical-align:top;overflow-wrap:anywhere}
.vms tbody tr:nth-child(even){background:#fafbfc}
.vms tr.row-failed td{background:#fdf1f0}.vms tr.row-failed td:first-child{box-shadow:inset 4px 0 0 #b3261e}
.vms tr.row-skipped td{color:#6b7785}
.vms td.name{font-weight:700}
.sub{font-size:11px;color:#6b7785;font-weight:400}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11px;font-weight:700;
text-transform:uppercase;letter-spacing:.03em;background:#e4e8ee;color:#334e68}
.badge.passed{background:#dcf1e3;color:#1b7a3d}.badge.failed{background:#fbe0dd;color:#b3261e}
.badge.skipped{background:#fdf0d9;color:#9a5b00}
.probe{margin-bottom:2px}.nowrap{white-space:nowrap}
details.err{margin-top:3px}details.err summary{cursor:pointer;color:#b3261e}
details.err p{margin:3px 0 3px 14px;color:#334e68}
div.err{margin-top:3px;color:#b3261e}
details>summary h2{display:inline}
.callout{background:#eef4ff;border:1px solid #c4d6f5;border-left:4px solid #2f6fd0;border-radius:4px;
padding:8px 12px;margin:0 0 10px;font-weight:600;color:#1f3f73}
.chart{display:block;max-width:100%;height:auto;font-family:inherit}
.chart .band{fill:#f5f7fa}.chart .grid{stroke:#e1e6ec;stroke-width:1}
.chart .axis{font-size:11px;fill:#52606d}.chart .axis.current{font-weight:700;fill:#102a43}
.chart .label{fill:#1f2933}.chart .bad-fill{fill:#b3261e;font-weight:700}
.chart .legend{font-size:12px;fill:#334e68}
.chart .target{stroke:#5d6d7e;stroke-width:1.6;stroke-dasharray:6 4;fill:none}
.chart .target-label{font-size:11px;fill:#5d6d7e}
.chart .series{fill:none;stroke-width:2.2;stroke-linejoin:round}
.chart .dot{stroke:#fff;stroke-width:1}
.chart .range{stroke:#b8c2d0;stroke-width:7;stroke-linecap:round}
.chart .marker circle{stroke:#fff;stroke-width:1.5}.chart .marker text{font-size:12px;font-weight:700;fill:#fff}
.chart .marker.pass circle{fill:#1b7a3d}.chart .marker.fail circle{fill:#b3261e}
.chart .marker.unknown circle{fill:#9aa5b1}
footer{color:#6b7785;font-size:11.5px;margin-top:6px}
@media (max-width:1100px){.tiles{grid-template-columns:repeat(4,1fr)}.grid3{grid-template-columns:1fr}}
@media print{body{background:#fff}.card,.tile{break-inside:avoid}.vms tr{break-inside:avoid}}
"""
