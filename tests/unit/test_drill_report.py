"""The drill report: the verdict rule, the page rendered from its templates, its files and history.

Reports are written here as JSON-like dicts, as the drill's JSON files hold them (ISO times with
``+00:00``), and validated into :class:`~site_recovery.records.DrillReport`: the same path an
earlier drill's report takes when it is read back for the trend.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest

from site_recovery.drill_report import load_history, render_html, verdict_of, write_report
from site_recovery.drill_verdict import vm_outcome, vm_problems
from site_recovery.records import CleanupProof, DrillReport, VmDrillResult
from site_recovery.vocabulary import DrillOutcome, DrillVerdict

START = datetime(2026, 11, 28, 1, 0, 0, tzinfo=timezone.utc)
CLEAN = {"verified_at": "2026-11-28T01:40:00+00:00", "items_in_test_failover": [], "test_vms_left": []}
HOSTILE = '<script>alert("x")</script> & "><img src=x onerror=alert(1)>'


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


def _job(kind: str, start: float, seconds: float, state: str = "Succeeded", description: str = "Completed",
         errors: list | None = None, name: str | None = None) -> dict:
    return {"kind": kind, "name": name or f"{kind.lower()}-{start:.0f}", "state": state,
            "state_description": description, "start_time": _at(start), "end_time": _at(start + seconds),
            "duration_seconds": seconds, "errors": errors or []}


def _verify(name: str = "SQL-PRD-01", offset: float = 30, **changes) -> dict:
    """What verify_test_vm recorded of a healthy test VM."""
    return {"vm_name": f"{name} - Test", "state": "Running", "heartbeat": "OK", "ip_addresses": ["10.99.0.12"],
            "started_at": _at(offset + 600), "verified_at": _at(offset + 700), "ok": True,
            "detail": "Running, heartbeat OK", **changes}


def make_vm(name: str = "SQL-PRD-01", offset: float = 30, **overrides) -> dict:
    """A VM that passed: failed over, verified with a probe, cleaned up."""
    vm = {
        "vm": name, "cloud": "Gold-Prod", "outcome": "passed",
        "recovery_point_time": _at(offset - 300), "rpo_achieved_seconds": 300.0, "rpo_met": True,
        "rto_seconds": offset + 700, "rto_met": True, "test_vm_name": f"{name} - Test",
        "jobs": [_job("TestFailover", offset, 600), _job("TestFailoverCleanup", offset + 800, 200)],
        "verify": _verify(name, offset),
        "probes": [{"kind": "tcp", "port": 1433, "path": None, "ok": True, "detail": "connected in 12 ms"}],
        "cleanup": {"verified": True, "detail": "no active test failover; no test VM"},
        "error": None,
        "timeline": [{"phase": "test_failover", "start": _at(offset), "end": _at(offset + 600)},
                     {"phase": "verify", "start": _at(offset + 600), "end": _at(offset + 700)},
                     {"phase": "cleanup", "start": _at(offset + 800), "end": _at(offset + 1000)}],
    }
    vm.update(overrides)
    return vm


def records(*vms: dict) -> list[VmDrillResult]:
    return [VmDrillResult.model_validate(vm) for vm in vms]


def proof(data: dict | None) -> CleanupProof | None:
    return None if data is None else CleanupProof.model_validate(data)


def make_report(vms: list[dict] | None = None, *, started: datetime = START,
                run_id: str = "scheduled__2026-11-28T01:00:00+00:00", **overrides) -> DrillReport:
    vms = [make_vm()] if vms is None else vms
    verdict, reasons = verdict_of(records(*vms), proof(CLEAN), False)
    report = {
        "schema": 1, "site": "lab", "dag_id": "asr_test_failover_drill__lab", "run_id": run_id,
        "trigger": "scheduled", "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=25)).isoformat(), "verdict": verdict, "reasons": reasons,
        "targets": {"rpo_seconds": 900, "rto_seconds": 1800}, "test_network": "DR-Drill-Isolated",
        "recovery_vmm": "vmm-rtm-01.corp.meridianpack.nl",
        "gate": {"checked": len(vms), "passed": len(vms), "skipped": [], "leftovers_cleaned": []},
        "vms": vms, "cleanup_proof": dict(CLEAN),
        "tasks": [{"task_id": "test_failover", "map_index": "SQL-PRD-01", "state": "success", "start": _at(30),
                   "end": _at(630), "duration_seconds": 600.0}],
    }
    report.update(overrides)
    return DrillReport.model_validate(report)


# ------------------------------------------------------------------------------------ verdict
def test_verdict_pass_when_every_vm_passed_and_nothing_is_left():
    assert verdict_of(records(make_vm("A"), make_vm("B")), proof(CLEAN), False) == (DrillVerdict.PASS, [])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"outcome": "failed", "jobs": [_job("TestFailover", 30, 600, "Failed", "Failed", [
            {"code": "70038", "message": "The VM could not be started.", "possible_causes": None,
             "recommended_action": None}])], "verify": None, "rto_seconds": None,
          "error": "TestFailover job failed: [70038] The VM could not be started."},
         "SQL-PRD-01: TestFailover job failed: [70038] The VM could not be started."),
        ({"jobs": [_job("TestFailover", 30, 600, description="PartiallySucceeded"),
                   _job("TestFailoverCleanup", 830, 200)]},
         "SQL-PRD-01: TestFailover job only partially succeeded (PartiallySucceeded)"),
        ({"jobs": [_job("TestFailover", 30, 600), _job("TestFailoverCleanup", 830, 200,
                                                       description="PartiallySucceeded")]},
         "SQL-PRD-01: TestFailoverCleanup job only partially succeeded (PartiallySucceeded)"),
        ({"jobs": [_job("TestFailover", 30, 600, "InProgress", "InProgress"), _job("TestFailoverCleanup", 830, 200)]},
         "SQL-PRD-01: TestFailover job did not finish"),
        ({"jobs": []}, "SQL-PRD-01: no TestFailover job recorded"),
        ({"verify": None}, "SQL-PRD-01: test VM not verified"),
        ({"verify": _verify(heartbeat="LostCommunication", ip_addresses=[], ok=False)},
         "SQL-PRD-01: test VM heartbeat is LostCommunication"),
        ({"verify": _verify(state="Off", heartbeat=None, ip_addresses=[], ok=False)},
         "SQL-PRD-01: test VM is Off, not Running"),
        ({"verify": _verify(ok=False, detail="the verify task did not finish")},
         "SQL-PRD-01: test VM not verified: the verify task did not finish"),
        ({"probes": [{"kind": "http", "port": 8080, "path": "/health", "ok": False, "detail": "HTTP 503"}]},
         "SQL-PRD-01: probe http 8080/health failed: HTTP 503"),
        ({"cleanup": {"verified": False, "detail": "test VM still present"}},
         "SQL-PRD-01: cleanup not verified: test VM still present"),
        ({"cleanup": None}, "SQL-PRD-01: cleanup not verified"),
        ({"outcome": "failed", "error": "verify timed out after 30m"}, "SQL-PRD-01: verify timed out after 30m"),
        ({"outcome": "failed"}, "SQL-PRD-01: outcome is failed"),
    ],
)
def test_verdict_fails_a_vm_and_says_why(overrides, expected):
    verdict, reasons = verdict_of(records(make_vm(**overrides), make_vm("APP-PRD-01")), proof(CLEAN), False)

    assert verdict == DrillVerdict.FAIL
    assert len(reasons) == 1 and reasons[0].startswith(expected), reasons


def test_verdict_names_each_failed_vm_once_with_all_its_problems():
    vms = records(make_vm("A", verify=None, cleanup=None), make_vm("B"), make_vm("C", outcome="failed", error="boom"))

    verdict, reasons = verdict_of(vms, proof(CLEAN), False)

    assert verdict == DrillVerdict.FAIL
    assert reasons == ["A: test VM not verified; cleanup not verified", "C: boom"]


@pytest.mark.parametrize(
    ("cleanup_proof", "expected"),
    [
        ({**CLEAN, "items_in_test_failover": ["APP-PRD-01", "SQL-PRD-01"]},
         "cleanup proof: 2 protected item(s) still in a test failover: APP-PRD-01, SQL-PRD-01"),
        ({**CLEAN, "test_vms_left": ["SQL-PRD-01 - Test"]},
         "cleanup proof: 1 test VM(s) left on the recovery VMM: SQL-PRD-01 - Test"),
        ({"verified_at": None, "incomplete": True}, "cleanup proof incomplete"),
        (None, "cleanup proof missing"),
    ],
)
def test_verdict_fails_on_leftovers(cleanup_proof, expected):
    verdict, reasons = verdict_of(records(make_vm()), proof(cleanup_proof), False)

    assert verdict == DrillVerdict.FAIL
    assert len(reasons) == 1 and reasons[0].startswith(expected)


def test_verdict_skipped_vms_fail_only_when_the_site_says_so():
    vms = records(make_vm(), {"vm": "FS-PRD-02", "outcome": "skipped", "error": "replication health is Warning"})

    assert verdict_of(vms, proof(CLEAN), False) == (DrillVerdict.PASS, [])
    assert verdict_of(vms, proof(CLEAN), True) == (
        DrillVerdict.FAIL, ["FS-PRD-02: skipped at the readiness gate (replication health is Warning)"])


@pytest.mark.parametrize("vms", [[], [{"vm": "FS-PRD-02", "outcome": "skipped", "error": None}]])
def test_verdict_a_drill_that_tested_nothing_fails(vms):
    assert verdict_of(records(*vms), proof(CLEAN), False) == (
        DrillVerdict.FAIL, ["no VM went through a test failover"])


def test_the_per_vm_rule_decides_the_outcome_the_verdict_reads():
    """vm_problems reads what happened, never the outcome field: it is what decides the outcome."""
    passed, = records(make_vm(outcome="failed"))
    unverified, = records(make_vm(verify=_verify(ok=False, detail="no heartbeat yet")))
    skipped, = records({"vm": "FS-PRD-02", "outcome": "skipped", "error": "not protected"})

    assert vm_problems(passed) == [] and vm_outcome(passed) is DrillOutcome.PASSED
    assert vm_problems(unverified) == ["test VM not verified: no heartbeat yet"]
    assert vm_outcome(unverified) is DrillOutcome.FAILED
    assert vm_outcome(skipped) is DrillOutcome.SKIPPED


# ------------------------------------------------------------------------------------ HTML
def _hostile_report() -> DrillReport:
    """Every text of a report, VM names, ASR's words, run ids, gate and proof entries, is hostile."""
    job_error = {"code": "<70038>", "message": HOSTILE, "possible_causes": HOSTILE, "recommended_action": HOSTILE}
    vm = make_vm(HOSTILE, cloud=HOSTILE, test_vm_name=HOSTILE, error=HOSTILE, outcome="failed",
                 rto_met=False, rpo_met=False,
                 jobs=[_job("TestFailover", 30, 600, "Failed", HOSTILE, [job_error], name=HOSTILE)],
                 verify=_verify(vm_name=HOSTILE, state=HOSTILE, heartbeat=HOSTILE, ip_addresses=[HOSTILE],
                                detail=HOSTILE, ok=False),
                 probes=[{"kind": HOSTILE, "port": 8080, "path": HOSTILE, "ok": False, "detail": HOSTILE}],
                 cleanup={"verified": False, "detail": HOSTILE},
                 timeline=[{"phase": "test_failover", "start": _at(0), "end": None}])
    return make_report(
        [vm], site=HOSTILE, run_id=HOSTILE, dag_id=HOSTILE, trigger=HOSTILE, test_network=HOSTILE,
        recovery_vmm=HOSTILE, verdict="FAIL", reasons=[HOSTILE],
        gate={"checked": 2, "passed": 1, "skipped": [{"vm": HOSTILE, "reason": HOSTILE}],
              "leftovers_cleaned": [{"vm": HOSTILE, "detail": HOSTILE}]},
        cleanup_proof={"verified_at": _at(1400), "items_in_test_failover": [HOSTILE], "test_vms_left": [HOSTILE]},
        tasks=[{"task_id": HOSTILE, "map_index": HOSTILE, "state": HOSTILE, "start": None, "end": None,
                "duration_seconds": None}],
    )


def test_every_report_text_is_escaped():
    page = render_html(_hostile_report(), [_hostile_report()])

    assert "<script" not in page and "<img" not in page and 'alert("x")' not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;&gt;&lt;img" in page
    # no attribute was broken open: every tag that was opened is one the renderer writes
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", page))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "header", "div", "ul", "li", "span", "main",
                    "section", "h2", "h3", "p", "b", "br", "table", "tbody", "thead", "tr", "th", "td", "colgroup",
                    "col", "details", "summary", "svg", "rect", "line", "text", "title", "path", "polyline", "circle",
                    "g", "footer"}, tags


def test_page_is_self_contained():
    page = render_html(make_report([make_vm("A"), make_vm("B", outcome="failed", error="boom")]),
                       [make_report(started=START - timedelta(weeks=1), run_id="older")])

    for forbidden in ("http://", "https://", "<script", " src=", " href=", "url(", "@import", "xlink"):
        assert forbidden not in page, forbidden
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for element_id in ('id="verdict"', 'id="vm-table"', 'id="timeline"', 'id="trend"', 'id="gate"',
                       'id="cleanup-proof"'):
        assert element_id in page
    assert "*{box-sizing:border-box}" in page  # the style sheet is inline


def test_verdict_banner_shows_the_verdict_and_the_reasons():
    failed = make_report([make_vm(outcome="failed", error="boom")])
    passed = make_report()

    failed_page, passed_page = render_html(failed, []), render_html(passed, [])

    assert re.search(r'<header id="verdict" class="banner fail"[^>]*>.*?>FAIL<', failed_page, re.S)
    assert "Why the drill failed" in failed_page and "<li>SQL-PRD-01: boom</li>" in failed_page
    assert re.search(r'<header id="verdict" class="banner pass"[^>]*>.*?>PASS<', passed_page, re.S)
    assert "Why the drill failed" not in passed_page


def test_missing_values_render_as_unknown():
    """A VM that failed before verify, and a report with almost nothing in it, still render."""
    early = {"vm": "APP-PRD-02", "outcome": "failed", "recovery_point_time": None, "rpo_achieved_seconds": None,
             "rpo_met": None, "rto_seconds": None, "rto_met": None, "test_vm_name": None, "jobs": [], "verify": None,
             "probes": [], "cleanup": None, "error": "TestFailover was refused: [28093] ...", "timeline": []}
    report = make_report([early], gate={}, cleanup_proof={"incomplete": True}, tasks=[], test_network=None,
                         ended_at=None)

    page = render_html(report, [])

    assert "APP-PRD-02" in page and "not verified" in page and "none (test VMs not connected)" in page
    assert "No phase timings recorded." in page and "No gate result." in page
    assert "<b>not checked</b>" in page and ">INCOMPLETE<" in page
    # verdict_of takes a missing proof (None) as nobody checked; the page says so too
    assert "<b>Missing.</b>" in render_html(report.model_copy(update={"cleanup_proof": None}), [])
    bare = DrillReport.model_validate({"site": "lab", "dag_id": "d", "run_id": "r", "trigger": "manual",
                                       "verdict": "FAIL", "targets": {"rpo_seconds": 900, "rto_seconds": 1800}})
    one_vm = bare.model_copy(update={"vms": records({"vm": "X", "outcome": "failed"})})
    for shown in (bare, one_vm):
        assert 'id="verdict"' in render_html(shown, [bare, one_vm])


def test_one_vm_and_200_vms():
    one = render_html(make_report(), [])
    many_vms = [make_vm(f"VM-{i:03d}", offset=i * 3, outcome="failed" if i % 17 == 0 else "passed",
                        error="boom" if i % 17 == 0 else None) for i in range(200)]
    history = [make_report(many_vms, started=START - timedelta(weeks=w), run_id=f"r{w}") for w in range(25, 0, -1)]
    many = render_html(make_report(many_vms), history)

    assert len(re.findall(r'<tr class="row-', many)) == 200
    assert len(re.findall(r'class="bar"', many)) == 600
    height = {page: float(re.search(r'<svg id="timeline" [^>]*viewBox="0 0 \d+ ([\d.]+)"', page).group(1))
              for page in (one, many)}
    assert height[many] > 10 * height[one]
    assert len(many) < 1_500_000, len(many)  # 20 drills x 200 VMs of trend stay summarised, not 4000 dots
    assert len(re.findall(r'<g class="marker', many)) == 20  # this run and the 19 before it
    assert "median VM" in many and "slowest VM" in many
    assert "<tr class=\"row-failed\"><td class=\"name\">VM-000" in many  # failures lead the table


def test_trend_says_first_drill_when_there_is_no_history():
    assert "First drill for this site" in render_html(make_report(), [])
    page = render_html(make_report(), [make_report(started=START - timedelta(weeks=1), run_id="older")])
    assert "First drill for this site" not in page
    assert len(re.findall(r'<g class="marker pass"', page)) == 2


# ------------------------------------------------------------------------------------ files
def test_write_report_names_files_by_start_time_and_safe_run_id(tmp_path):
    report = make_report()

    paths = write_report(tmp_path, report, [])

    stem = "20261128T010000Z__scheduled__2026-11-28T01_00_00_00_00"
    assert paths == {"json": str(tmp_path / "lab" / f"{stem}.json"), "html": str(tmp_path / "lab" / f"{stem}.html")}
    written = json.loads((tmp_path / "lab" / f"{stem}.json").read_text(encoding="utf-8"))
    assert written == report.model_dump(mode="json", by_alias=True) and written["schema"] == 1
    assert DrillReport.model_validate(written) == report
    assert (tmp_path / "lab" / f"{stem}.html").read_text(encoding="utf-8") == render_html(report, [])
    assert sorted(p.name for p in (tmp_path / "lab").iterdir()) == [f"{stem}.html", f"{stem}.json"]  # no temp files
    assert write_report(tmp_path, report, []) == paths  # a re-run replaces its own files


def test_write_report_keeps_hostile_names_inside_the_folder(tmp_path):
    report = make_report(site="../../etc", run_id="manual__../../x:y+z/ w")

    paths = write_report(tmp_path / "reports", report, [])

    for path in paths.values():
        assert path.startswith(str(tmp_path / "reports" / "etc") + "/")
        assert re.fullmatch(r"20261128T010000Z__manual__\.\._\.\._x_y_z_w\.(json|html)", path.rsplit("/", 1)[1])


def test_load_history_round_trip(tmp_path, caplog):
    reports = [make_report(started=START + timedelta(days=7 * i), run_id=f"scheduled__week{i}+00:00")
               for i in (2, 0, 3, 1)]  # written out of order
    for report in reports:
        write_report(tmp_path, report, [])
    write_report(tmp_path, make_report(site="other", run_id="elsewhere"), [])
    (tmp_path / "lab" / "20261201T000000Z__corrupt.json").write_text('{"schema": 1, "vms": [', encoding="utf-8")
    (tmp_path / "lab" / "20261202T000000Z__list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "lab" / "20261203T000000Z__binary.json").write_bytes(b"\xff\xfe\x00garbage")
    not_a_report = {**reports[0].model_dump(mode="json"), "run_id": "old", "vms": [{"vm": "A", "outcome": "maybe"}]}
    (tmp_path / "lab" / "20261204T000000Z__old.json").write_text(json.dumps(not_a_report), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="site_recovery.drill_report"):
        history = load_history(tmp_path, "lab")

    assert all(isinstance(h, DrillReport) for h in history)
    assert [h.run_id for h in history] == [f"scheduled__week{i}+00:00" for i in range(4)]
    skipped = [r.getMessage() for r in caplog.records if "Skipping drill report" in r.getMessage()]
    assert len(skipped) == 4
    assert any("__old.json" in message and "vms.0.outcome" in message for message in skipped), skipped
    assert history[0] == reports[1]  # what was written is what is read back
    assert [h.run_id for h in load_history(tmp_path, "lab", limit=2)] == ["scheduled__week2+00:00",
                                                                          "scheduled__week3+00:00"]
    assert [h.run_id for h in load_history(tmp_path, "lab", exclude_run_id="scheduled__week3+00:00")] == [
        f"scheduled__week{i}+00:00" for i in range(3)]
    assert load_history(tmp_path, "nowhere") == []
    assert load_history(tmp_path / "missing", "lab") == []
    assert [h.run_id for h in load_history(tmp_path, "other")] == ["elsewhere"]
