"""The drill report as a browser shows it: Debian's headless Chromium renders the page to a PNG.

Chromium is a test requirement, not an optional one: ``make test`` installs it when it is
missing, so these tests fail (they never skip) without it. Set ``DRILL_REPORT_SCREENSHOT`` to a
path to keep the screenshot of the realistic report (e.g. ``/tmp/drill-report.png``).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path


from site_recovery.drill_report import render_html, verdict_of
from site_recovery.records import CleanupProof, DrillReport, VmDrillResult

WIDTH, HEIGHT = 1400, 1800
START = datetime(2026, 11, 28, 1, 0, 0, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ a realistic report
def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _job(kind: str, start: datetime, seconds: float, state: str = "Succeeded", description: str = "Completed",
         errors: list | None = None, name: str = "3f9c1d2e-8a41-4b7e-9d55-1c0e2a7b6f01") -> dict:
    return {"kind": kind, "name": name, "state": state, "state_description": description,
            "start_time": _iso(start), "end_time": _iso(start + timedelta(seconds=seconds)),
            "duration_seconds": seconds, "errors": errors or []}


def _passed_vm(name: str, cloud: str, offset: int, failover_s: int, verify_s: int, cleanup_s: int, rpo_s: float,
               probes: list[dict], ip: str) -> dict:
    tf_start = START + timedelta(seconds=offset)
    verify_start = tf_start + timedelta(seconds=failover_s)
    cleanup_start = verify_start + timedelta(seconds=verify_s)
    rto = offset + failover_s + verify_s
    return {
        "vm": name, "cloud": cloud, "outcome": "passed",
        "recovery_point_time": _iso(tf_start - timedelta(seconds=rpo_s)), "rpo_achieved_seconds": rpo_s,
        "rpo_met": rpo_s <= 900, "rto_seconds": rto, "rto_met": rto <= 1800, "test_vm_name": f"{name} - Test",
        "jobs": [_job("TestFailover", tf_start, failover_s, name="8d2f6a10-4c3b-4e0a-9a7e-5b1f0c9d2e41"),
                 _job("TestFailoverCleanup", cleanup_start, cleanup_s, name="c41e7b92-0d5a-4f83-b2c6-9e8a1f3d7b20")],
        "verify": {"vm_name": f"{name} - Test", "state": "Running", "heartbeat": "OK", "ip_addresses": [ip],
                   "started_at": _iso(verify_start), "verified_at": _iso(cleanup_start), "ok": True,
                   "detail": "Running, heartbeat OK"},
        "probes": probes,
        "cleanup": {"verified": True, "detail": "no active test failover; no test VM"},
        "error": None,
        "timeline": [
            {"phase": "test_failover", "start": _iso(tf_start), "end": _iso(verify_start)},
            {"phase": "verify", "start": _iso(verify_start), "end": _iso(cleanup_start)},
            {"phase": "cleanup", "start": _iso(cleanup_start),
             "end": _iso(cleanup_start + timedelta(seconds=cleanup_s))},
        ],
    }


def realistic_report(*, failed: bool = True) -> DrillReport:
    """Three VMs in scope, one skipped at the gate; SQL-PRD-01's test failover fails when ``failed``.

    Written as the report's JSON holds it, and validated into the record the page is rendered from.
    """
    vms = [
        _passed_vm("APP-PRD-01", "Gold-Prod", 45, 540, 150, 260, 312.0,
                   [{"kind": "tcp", "port": 443, "path": None, "ok": True, "detail": "connected in 9 ms"},
                    {"kind": "http", "port": 8080, "path": "/health", "ok": True, "detail": "HTTP 200 in 41 ms"}],
                   "10.99.0.21"),
        _passed_vm("WEB-PRD-01 <edge & \"dmz\">", "Silver-Web", 50, 610, 95, 240, 488.5,
                   [{"kind": "http", "port": 80, "path": "/", "ok": True, "detail": "HTTP 200 in 23 ms"}],
                   "10.99.0.22"),
    ]
    tf_start = START + timedelta(seconds=40)
    sql = {
        "vm": "SQL-PRD-01", "cloud": "Gold-Prod", "outcome": "failed",
        "recovery_point_time": _iso(tf_start - timedelta(seconds=402)), "rpo_achieved_seconds": 402.0,
        "rpo_met": True, "rto_seconds": None, "rto_met": None, "test_vm_name": None,
        "jobs": [
            _job("TestFailover", tf_start, 1012, state="Failed", description="Failed", errors=[{
                "code": "70038",
                "message": "The virtual machine 'SQL-PRD-01' could not be started on host 'HV-RTM-03': "
                           "not enough memory (needs 64 GB, 41 GB free).",
                "possible_causes": "The recovery host does not have enough free memory for the test VM.",
                "recommended_action": "Free memory on HV-RTM-03 or move the replica to another host, then retry.",
            }], name="0b6e9f3a-71c2-4d08-8f1e-2a9c5d7e3b64"),
            _job("TestFailoverCleanup", tf_start + timedelta(seconds=1030), 185,
                 name="5a7d3c21-9e4f-4b10-a6d2-7f8e1c0b9a35"),
        ],
        "verify": None, "probes": [], "cleanup": {"verified": True, "detail": "no active test failover; no test VM"},
        "error": "TestFailover job failed: [70038] The virtual machine 'SQL-PRD-01' could not be started on host "
                 "'HV-RTM-03': not enough memory (needs 64 GB, 41 GB free).",
        "timeline": [
            {"phase": "test_failover", "start": _iso(tf_start), "end": _iso(tf_start + timedelta(seconds=1012))},
            {"phase": "cleanup", "start": _iso(tf_start + timedelta(seconds=1030)),
             "end": _iso(tf_start + timedelta(seconds=1215))},
        ],
    }
    if not failed:
        sql = _passed_vm("SQL-PRD-01", "Gold-Prod", 40, 980, 210, 300, 402.0,
                         [{"kind": "tcp", "port": 1433, "path": None, "ok": True, "detail": "connected in 12 ms"}],
                         "10.99.0.12")
    vms = [sql, *vms]
    proof = {"verified_at": _iso(START + timedelta(seconds=1400)), "items_in_test_failover": [], "test_vms_left": []}
    verdict, reasons = verdict_of([VmDrillResult.model_validate(vm) for vm in vms], CleanupProof.model_validate(proof),
                                  False)
    return DrillReport.model_validate({
        "schema": 1, "site": "lab", "dag_id": "asr_test_failover_drill__lab",
        "run_id": "scheduled__2026-11-28T01:00:00+00:00", "trigger": "scheduled",
        "started_at": _iso(START), "ended_at": _iso(START + timedelta(seconds=1420)),
        "verdict": verdict, "reasons": reasons,
        "targets": {"rpo_seconds": 900, "rto_seconds": 1800},
        "test_network": "DR-Drill-Isolated", "recovery_vmm": "vmm-rtm-01.corp.meridianpack.nl",
        "gate": {"checked": 4, "passed": 3,
                 "skipped": [{"vm": "FS-PRD-02", "reason": "replication health is Warning (resynchronization "
                                                           "required)"}],
                 "leftovers_cleaned": [{"vm": "APP-PRD-01", "detail": "test failover left active by run "
                                        "manual__2026-11-21T14:12:09+00:00; cleaned up (job 77c0e4f1)"}]},
        "vms": vms,
        "cleanup_proof": proof,
        "tasks": [{"task_id": "gate", "map_index": None, "state": "success", "start": _iso(START),
                   "end": _iso(START + timedelta(seconds=31)), "duration_seconds": 31.0}],
    })


def _task(label: str, start: datetime, seconds: float | None, state: str = "Succeeded", *, details: str,
          group: str | None = None, vms: list[str] | None = None, **extra) -> dict:
    end = None if seconds is None else _iso(start + timedelta(seconds=seconds))
    return {"name": label.replace(" ", ""), "friendly_name": label, "state": state, "start_time": _iso(start),
            "end_time": end, "duration_seconds": seconds, "details_type": details, "group_id": group,
            "vms": vms or [], **extra}


def _plan(name: str, description: str, started: datetime, steps: list[tuple], *, state: str, errors=()) -> dict:
    """A plan's section as its job ran ``steps``: ``(label, seconds, state, kind, group, vms, detail)`` in order."""
    tasks, groups, actions, at = [], [], [], started
    for label, seconds, step_state, kind, group, vms, detail in steps:
        details = {"group": "RecoveryPlanGroupTaskDetails", "script": "RecoveryPlanAutomationRunbookActionDetails",
                   "manual": "ManualActionTaskDetails", "check": "ManualActionTaskDetails"}[kind]
        tasks.append(_task(label, at, seconds, step_state, details=details, group=group, vms=vms))
        end = None if seconds is None else _iso(at + timedelta(seconds=seconds))
        if kind == "group":
            groups.append({"group": group, "label": label, "vms": vms, "state": step_state, "start": _iso(at),
                           "end": end})
        else:
            actions.append({"name": label, "kind": kind, "state": step_state, "start": _iso(at), "end": end,
                            "detail": detail})
        at += timedelta(seconds=seconds or 0)
    job = {"name": f"{name}-job", "scenario_name": "TestFailover", "friendly_name": "Test failover",
           "target": name, "state": state, "state_description": state, "start_time": _iso(started),
           "end_time": _iso(at), "duration_seconds": (at - started).total_seconds(), "tasks": tasks,
           "errors": list(errors)}
    return {"plan": name, "description": description, "job": job, "groups": groups, "actions": actions,
            "vms": sorted({vm for step in steps for vm in step[5] or []})}


def report_with_two_plans() -> DrillReport:
    """The realistic report, plus order-portal (passed, a manual action confirmed by a person) and
    file-and-print (failed: a VM of its second group did not start)."""
    report = realistic_report(failed=False).model_dump(mode="json", by_alias=True)
    at = START + timedelta(seconds=60)
    portal = _plan("order-portal", "Order portal - ERP database, application tier, web front end", at, [
        ("Group Failover: Create test virtual machines", 420, "Succeeded", "group", "Failover",
         ["SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"], None),
        ("Group 1: Start virtual machines", 95, "Succeeded", "group", "1", ["SQL-PRD-01"], None),
        ("ERP database answers", 14, "Succeeded", "check", None, None, "tcp port 1433: passed, connection accepted"),
        ("Repoint ERP SQL alias", 22, "Succeeded", "script", None, None,
         "SQL alias ERPDB now points to SQL-PRD-01 (10.60.30.11)"),
        ("Confirm licence server", 310, "Succeeded", "manual", None, None, "confirmed by j.devries at 01:15:43 UTC"),
        ("Group 2: Start virtual machines", 120, "Succeeded", "group", "2", ["APP-ERP-01", "APP-ERP-02"], None),
        ("Group 3: Start virtual machines", 80, "Succeeded", "group", "3", ["WEB-PORTAL-01"], None),
        ("Point portal DNS at Rotterdam", 12, "Succeeded", "script", None, None,
         "portal.meridianpack.nl -> 10.60.40.21"),
    ], state="Succeeded")
    portal.update(outcome="passed", rto_seconds=1150.0, rto_target_seconds=2700.0, rto_met=True,
                  manual_actions=[{"plan": "order-portal", "action": "Confirm licence server", "confirmed": True,
                                   "by": "j.devries", "at": _iso(at + timedelta(seconds=861))}])
    error = {"code": "70094", "message": "Failed to start 'CAD-VAULT-01 - Test' on host HV-RTM-02.",
             "possible_causes": "Not enough memory on the host."}
    files = _plan("file-and-print", "File shares first, then the print server and the CAD vault", at, [
        ("Group Failover: Create test virtual machines", 380, "Succeeded", "group", "Failover",
         ["FS-PRD-01", "PRINT-01", "CAD-VAULT-01"], None),
        ("Group 1: Start virtual machines", 70, "Succeeded", "group", "1", ["FS-PRD-01"], None),
        ("Group 2: Start virtual machines", 240, "Failed", "group", "2", ["PRINT-01", "CAD-VAULT-01"], None),
    ], state="Failed", errors=[error])
    files.update(outcome="failed", rto_target_seconds=1800.0,
                 error=f"'Test failover' on file-and-print failed: [70094] {error['message']}")
    report["plans"] = [portal, files]
    # The failed plan's members failed with it (their test failover is the plan's job), so the drill fails.
    report["verdict"] = "FAIL"
    report["reasons"] = [f"{vm}: {files['error']}" for vm in files["vms"]]
    return DrillReport.model_validate(report)


def earlier_reports() -> list[DrillReport]:
    """Four weekly drills before the realistic one, oldest first; the second one failed."""
    history = []
    for weeks, rtos, verdict in ((4, (1320, 700, 760), "PASS"), (3, (1710, 740, 805), "FAIL"),
                                 (2, (1250, 690, 720), "PASS"), (1, (1395, 760, 770), "PASS")):
        started = START - timedelta(weeks=weeks)
        history.append(DrillReport.model_validate({
            "schema": 1, "site": "lab", "dag_id": "asr_test_failover_drill__lab",
            "run_id": f"scheduled__{started:%Y-%m-%dT%H:%M:%S}+00:00", "trigger": "scheduled",
            "started_at": _iso(started), "verdict": verdict, "targets": {"rpo_seconds": 900, "rto_seconds": 1800},
            "vms": [{"vm": name, "outcome": "passed", "rto_seconds": rto}
                    for name, rto in zip(("SQL-PRD-01", "APP-PRD-01", "WEB-PRD-01 <edge & \"dmz\">"), rtos)],
        }))
    return history


# ------------------------------------------------------------------------------ chromium
def _chromium(binary: str, tmp_path: Path, page: Path, *args: str, size: tuple[int, int] = (WIDTH, HEIGHT)) -> str:
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}", *args,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result.stdout


def _screenshot(binary: str, tmp_path: Path, page: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    png = tmp_path / f"{page.stem}.png"
    _chromium(binary, tmp_path, page, f"--screenshot={png}", size=size)
    assert png.is_file(), "chromium wrote no screenshot"
    return png.read_bytes()


# ------------------------------------------------------------------------------ a tiny PNG reader
def _png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset = 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        yield kind, data[offset + 8:offset + 8 + length]
        offset += 12 + length


def png_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk."""
    kind, ihdr = next(_png_chunks(data))
    assert kind == b"IHDR"
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", ihdr)
    return width, height, depth, colour, interlace


def png_rows(data: bytes, count: int) -> list[list[tuple[int, int, int]]]:
    """The RGB pixels of the first ``count`` rows of an 8-bit RGB/RGBA, non-interlaced PNG."""
    width, height, depth, colour, interlace = png_header(data)
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {depth=} {colour=} {interlace=}"
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    idat = b"".join(body for kind, body in _png_chunks(data) if kind == b"IDAT")
    count = min(count, height)
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * count)
    previous, rows = bytearray(stride), []
    for r in range(count):
        base = r * (stride + 1)
        kind, line = raw[base], bytearray(raw[base + 1:base + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert kind == 0, f"bad PNG filter {kind}"
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        previous = line
    return rows


def _reddish(pixel) -> bool:
    r, g, b = pixel
    return r > 140 and g < 90 and b < 90


def _longest_run(pixels, colour) -> int:
    longest = current = 0
    for pixel in pixels:
        current = current + 1 if colour(pixel) else 0
        longest = max(longest, current)
    return longest


def _greenish(pixel) -> bool:
    r, g, b = pixel
    return g > 90 and r < 80 and b < 110


# ------------------------------------------------------------------------------ tests
def test_png_reader_reads_a_png_it_can_check():
    """The reader itself: a 2x2 RGB PNG with a Sub and a Paeth row decodes to its pixels."""
    raw = bytes([1, 10, 20, 30, 5, 5, 5]) + bytes([4, 1, 1, 1, 2, 2, 2])
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    assert png_rows(png, 2) == [[(10, 20, 30), (15, 25, 35)], [(11, 21, 31), (17, 27, 37)]]


def test_failed_drill_screenshot(chromium, tmp_path):
    page = tmp_path / "drill-report.html"
    page.write_text(render_html(realistic_report(), earlier_reports()), encoding="utf-8")

    png = _screenshot(chromium, tmp_path, page)
    if os.environ.get("DRILL_REPORT_SCREENSHOT"):
        Path(os.environ["DRILL_REPORT_SCREENSHOT"]).write_bytes(png)

    assert png_header(png)[:2] == (WIDTH, HEIGHT)
    rows = png_rows(png, 400)
    assert _reddish(rows[8][WIDTH // 2]) and _reddish(rows[8][4]), "the top of the page is not the red FAIL banner"
    below = next((y for y in range(8, 400) if not _reddish(rows[y][4])), None)
    assert below is not None and 100 < below < 400, f"the banner should end between 100 and 400 px, ends at {below}"
    r, g, b = rows[below + 5][4]
    assert min(r, g, b) > 200, "the page below the banner should be light"


def test_passed_drill_banner_is_green(chromium, tmp_path):
    page = tmp_path / "passed.html"
    page.write_text(render_html(realistic_report(failed=False), []), encoding="utf-8")

    png = _screenshot(chromium, tmp_path, page, size=(WIDTH, 500))

    assert png_header(png)[:2] == (WIDTH, 500)
    row = png_rows(png, 12)[10]
    assert _greenish(row[WIDTH // 2]) and _greenish(row[4]), f"the PASS banner is not green: {row[WIDTH // 2]}"


def test_rendered_dom(chromium, tmp_path):
    page = tmp_path / "drill-report.html"
    page.write_text(render_html(realistic_report(), earlier_reports()), encoding="utf-8")

    dom = _chromium(chromium, tmp_path, page, "--dump-dom")

    verdict = re.search(r'<header[^>]*\bid="verdict"[^>]*>(.*?)</header>', dom, re.S)
    assert verdict and ">FAIL<" in verdict.group(1)
    assert "SQL-PRD-01: TestFailover job failed: [70038]" in verdict.group(1)
    table = re.search(r'<table[^>]*\bid="vm-table"[^>]*>.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert table and len(re.findall(r"<tr\b", table.group(1))) == 3
    assert "WEB-PRD-01 &lt;edge &amp; \"dmz\"&gt;" in table.group(1)
    timeline = re.search(r'<svg[^>]*\bid="timeline"[^>]*>(.*?)</svg>', dom, re.S)
    assert timeline and len(re.findall(r'<rect[^>]*class="bar"', timeline.group(1))) == 8  # 3 + 3 + 2 phases
    trend = re.search(r'<svg[^>]*\bid="trend"[^>]*>(.*?)</svg>', dom, re.S)
    assert trend and len(re.findall(r'<g class="marker (?:pass|fail)"', trend.group(1))) == 5


def test_a_report_with_two_plans(chromium, tmp_path):
    """Each plan gets its section: groups and actions in run order on the plan's own timeline, its RTO,
    each action's outcome (who confirmed the manual action), and the failed plan's error."""
    page = tmp_path / "plans.html"
    page.write_text(render_html(report_with_two_plans(), []), encoding="utf-8")

    dom = _chromium(chromium, tmp_path, page, "--dump-dom")
    png = _screenshot(chromium, tmp_path, page, size=(WIDTH, 4000))
    if os.environ.get("DRILL_REPORT_SCREENSHOT"):
        Path(os.environ["DRILL_REPORT_SCREENSHOT"]).with_suffix(".plans.png").write_bytes(png)

    sections = re.findall(r'<section class="card wide plan" id="plan-\d">(.*?)</section>', dom, re.S)
    assert len(sections) == 2
    portal, files = sections
    assert "Recovery plan order-portal" in portal and '<span class="badge passed">' in portal
    assert "4 VMs in 3 boot groups" in portal
    rows = re.findall(r'<div class="plan-label">(.*?)<div class="sub">', portal)
    assert rows == ["Group Failover: Create test virtual machines", "Group 1: Start virtual machines",
                    "ERP database answers", "Repoint ERP SQL alias", "Confirm licence server",
                    "Group 2: Start virtual machines", "Group 3: Start virtual machines",
                    "Point portal DNS at Rotterdam"]
    assert "confirmed by j.devries at 01:15:43 UTC" in portal
    assert re.search(r"<th>RTO</th><td[^>]*>.*?19m 10s", portal, re.S)  # the plan's RTO: 1150 s
    assert len(re.findall(r'class="plan-bar good"', portal)) == 8
    assert "Recovery plan file-and-print" in files and '<span class="badge failed">' in files
    assert "Failed to start &#39;CAD-VAULT-01 - Test&#39;" in files or "Failed to start 'CAD-VAULT-01 - Test'" in files
    assert len(re.findall(r'class="plan-bar bad"', files)) == 1
    assert png_header(png)[:2] == (WIDTH, 4000)
    # The FAIL banner at the top is red too: the failed plan's bar is a long red run in a row below it.
    bars = [_longest_run(row[WIDTH // 3:], _reddish) >= 100 for row in png_rows(png, 4000)]
    below_banner = bars.index(False)
    assert any(bars[below_banner:]), "the failed plan's red bar is not drawn"
