"""The recovery report as a browser shows it, in Debian's headless Chromium: a completed failover reads green,
a stopped one red, and its tables say who approved what and where each VM ended.

Set ``DRILL_REPORT_SCREENSHOT`` to a path to keep the screenshots (``.recovery.png`` beside it).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from site_recovery.recovery_report import render_recovery_html
from site_recovery.records import RecoveryReport
from tests.ui.test_report_screenshot import WIDTH, _chromium, _greenish, _reddish, _screenshot, png_header, png_rows

START = datetime(2026, 12, 4, 3, 12, 0, tzinfo=timezone.utc)


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


def _job(scenario: str, friendly: str, start: float, seconds: float, tasks: list[tuple[str, float]],
         state: str = "Succeeded") -> dict:
    return {"name": f"{int(start):08d}-4c3b-4e0a-9a7e-{len(scenario):012d}",
            "scenario_name": scenario, "friendly_name": friendly, "state": state, "start_time": _at(start),
            "end_time": _at(start + seconds), "duration_seconds": seconds,
            "tasks": [{"friendly_name": name, "state": state if i == len(tasks) - 1 else "Succeeded",
                       "duration_seconds": duration} for i, (name, duration) in enumerate(tasks)]}


def _vm(name: str, offset: float, verified: bool = True, stage: str = "reprotected") -> dict:
    failover = _job("PlannedFailover", "Planned failover", 60 + offset, 171,
                    [("Prerequisites check for planned failover", 4), ("Shut down the virtual machine", 38),
                     ("Preparing for failover", 21), ("Start failover", 13), ("Start the replica virtual machine", 95)])
    jobs = [failover]
    if stage == "reprotected":
        jobs += [_job("CommitFailover", "Commit", 900 + offset, 19, [("Prerequisites check", 1), ("Commit", 13)]),
                 _job("ReverseReplication", "Reverse replication", 1500 + offset, 64,
                      [("Prerequisites check", 2), ("Reverse replication", 62)])]
    return {"vm": name, "stage": stage, "protection": "Protected" if stage == "reprotected" else "Failover completed",
            "replication_health": "Normal", "active_location": "Recovery",
            "replication_direction": "recovery to primary" if stage == "reprotected" else "not replicating",
            "recovery_point_time": _at(60 + offset), "data_loss_seconds": 0.0,
            "rto_seconds": 231.0 + offset if verified else None,
            "verify": {"vm_name": name, "state": "Running", "heartbeat": "OK" if verified else "NoContact",
                       "ip_addresses": ["10.60.20.59"] if verified else [], "ok": verified,
                       "verified_at": _at(291 + offset) if verified else None,
                       "detail": "Running, heartbeat OK" if verified else "no heartbeat"},
            "jobs": jobs}


def report(*, completed: bool = True) -> RecoveryReport:
    vms = [_vm("SQL-PRD-01", 0), _vm("APP-ERP-01 <tier & \"b\">", 12)]
    approvals = [{"step": "failover", "decision": "Fail over", "by": "j.devries", "at": _at(58)},
                 {"step": "commit", "decision": "Commit", "by": "j.devries", "at": _at(880)},
                 {"step": "reprotect", "decision": "Reprotect", "by": "m.jansen", "at": _at(1490)}]
    outcome = "every VM failed over, verified, committed and protected again"
    if not completed:
        vms[1] = _vm("APP-ERP-01 <tier & \"b\">", 12, verified=False, stage="failed over, commit pending")
        approvals = approvals[:1]
        outcome = "stopped: SQL-PRD-01 failed over, commit pending, APP-ERP-01 failed over, commit pending"
    return RecoveryReport.model_validate({
        "site": "lab", "dag_id": "asr_failover__lab", "run_id": "manual__2026-12-04T03:12:00+00:00",
        "direction": "PrimaryToRecovery", "kind": "planned", "started_at": _at(0), "ended_at": _at(1600),
        "outcome": outcome, "completed": completed,
        "assessment": {"site": "lab", "direction": "PrimaryToRecovery", "kind": "planned", "assessed_at": _at(5),
                       "source_vmm": {"server": "vmm-ams-01.corp.meridianpack.nl", "answered": True, "detail": "VMM"},
                       "target_vmm": {"server": "vmm-rtm-01.corp.meridianpack.nl", "answered": True, "detail": "VMM"},
                       "vms": []},
        "approvals": approvals, "vms": vms})


def test_a_completed_failover_reads_green_with_its_approvals_and_vms(chromium, tmp_path):
    page = tmp_path / "recovery.html"
    page.write_text(render_recovery_html(report()), encoding="utf-8")

    dom = _chromium(chromium, tmp_path, page, "--dump-dom")
    png = _screenshot(chromium, tmp_path, page)
    if os.environ.get("DRILL_REPORT_SCREENSHOT"):
        Path(os.environ["DRILL_REPORT_SCREENSHOT"]).with_suffix(".recovery.png").write_bytes(png)

    assert re.search(r'<header[^>]*id="outcome"[^>]*data-completed="true"', dom)
    approvals = re.search(r'<section class="card" id="approvals">(.*?)</section>', dom, re.S).group(1)
    assert "<b>Fail over</b> by j.devries at" in approvals and "<b>Reprotect</b> by m.jansen" in approvals
    table = re.search(r'<table[^>]*id="vm-table"[^>]*>.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert len(re.findall(r"<tr\b", table)) == 2
    assert "APP-ERP-01 &lt;tier &amp; \"b\"&gt;" in table  # a hostile name is escaped
    assert "recovery to primary" in table and "3m 51s" in table  # SQL-PRD-01's RTO: 231 s
    jobs = re.search(r'<section class="card wide" id="jobs">(.*?)</section>', dom, re.S).group(1)
    assert len(re.findall(r"<h3>", jobs)) == 6 and "Start the replica virtual machine" in jobs
    assert png_header(png)[:2] == (WIDTH, 1800)
    row = png_rows(png, 12)[10]
    assert _greenish(row[WIDTH // 2]) and _greenish(row[4]), f"a completed recovery is not green: {row[4]}"


def test_a_stopped_failover_reads_red_and_marks_the_unverified_vm(chromium, tmp_path):
    page = tmp_path / "stopped.html"
    page.write_text(render_recovery_html(report(completed=False)), encoding="utf-8")

    dom = _chromium(chromium, tmp_path, page, "--dump-dom")
    png = _screenshot(chromium, tmp_path, page, size=(WIDTH, 600))

    assert ">STOPPED<" in dom and "stopped: SQL-PRD-01 failed over, commit pending" in dom
    assert len(re.findall(r'<tr class="row-failed">', dom)) == 1
    row = png_rows(png, 12)[10]
    assert _reddish(row[WIDTH // 2]) and _reddish(row[4]), f"a stopped recovery is not red: {row[4]}"


def test_a_plans_recovery_shows_its_members_answers_and_jobs(chromium, tmp_path):
    from site_recovery.records import ManualActionOutcome, RecoveryPlanResult

    base = report()
    member = base.vms[0].model_copy(update={"plan": "order-portal", "jobs": []})
    plan = RecoveryPlanResult(
        plan="order-portal", vms=["SQL-PRD-01"], jobs=base.vms[0].jobs,
        actions=[ManualActionOutcome(plan="order-portal", action="ERP database answers", confirmed=True,
                                     by="Airflow check", at=_at(240), comment="tcp 1433 accepted"),
                 ManualActionOutcome(plan="order-portal", action="Confirm licence server", confirmed=False,
                                     by="m.jansen", at=_at(300), comment="rejected")])
    page = tmp_path / "plans.html"
    page.write_text(render_recovery_html(base.model_copy(update={"vms": [member, base.vms[1]], "plans": [plan]})),
                    encoding="utf-8")

    dom = _chromium(chromium, tmp_path, page, "--dump-dom")
    png = _screenshot(chromium, tmp_path, page)
    if os.environ.get("DRILL_REPORT_SCREENSHOT"):
        Path(os.environ["DRILL_REPORT_SCREENSHOT"]).with_suffix(".recovery-plan.png").write_bytes(png)

    table = re.search(r'<table[^>]*id="vm-table"[^>]*>.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert '<div class="sub">plan order-portal</div>' in table
    plans = re.search(r'<section class="card wide" id="plans">(.*?)</section>', dom, re.S).group(1)
    assert "<h3>order-portal · SQL-PRD-01</h3>" in plans
    assert re.search(r"ERP database answers</td><td><span class=\"good-text\">[^<]+</span> Airflow check", plans)
    assert re.search(r"Confirm licence server</td><td><span class=\"bad-text\">[^<]+</span> m.jansen", plans)
    jobs = re.search(r'<section class="card wide" id="jobs">(.*?)</section>', dom, re.S).group(1)
    assert len(re.findall(r"<h3>Recovery plan order-portal · ", jobs)) == 3  # the plan's jobs, once, as the plan's
    assert len(re.findall(r"<h3>", jobs)) == 6
    assert png_header(png)[:2] == (WIDTH, 1800)
