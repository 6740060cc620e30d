"""Drills on a distributed Airflow (Celery workers, PostgreSQL, Redis, two triggerers, reports in
Azurite) and the faults such an Airflow really has: a worker, a triggerer, the scheduler, the lab
or the reports store dying mid-drill. See conftest.py for the stack and the checks every test ends with.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter

import pytest
from asr_lab.throttle import OperationClass

from site_recovery.drill_report import safe_name
from bench.stack import wait_for
from site_recovery.report_store import list_reports
from tests.stack.conftest import (
    DRILL, POLL_SECONDS, REPORT_RETRIES, TFO, WAIT_TFO, assert_clean_drill, finish, start_drill_with_waits_deferred,
    task_instances, task_log, vms_of,
)

pytestmark = [pytest.mark.stack, pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(900)]
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def first_drill(stack):
    """A drill of two VMs, run once: its report is in the store for the tests that read it."""
    assert stack.lab.restore("protected")
    stack.lab.set_time_scale(0)
    since = stack.lab.last_request_seq()
    run_id = stack.api.trigger_when_parsed(DRILL, {"vms": vms_of(stack, 2)})
    drill = finish(stack, run_id, since)
    assert_clean_drill(stack, drill)
    return drill


def test_a_report_written_by_one_worker_is_read_by_the_other(stack, lab, first_drill):
    first_host = first_drill.tis[("drill_report", None)]["hostname"]
    assert first_host in WORKERS, first_host
    # Take the host that wrote the first report away (a clean shutdown, as a node drained for patching):
    # the second drill runs on the other one, and its trend must still find the first drill.
    from bench.stack import stop_process_groups

    stop_process_groups([stack.components[first_host]])
    try:
        since = lab.last_request_seq()
        run_id = stack.api.trigger_when_parsed(DRILL, {"vms": vms_of(stack, 1)})
        drill = finish(stack, run_id, since)
    finally:
        stack.restart_component(first_host)
    assert_clean_drill(stack, drill)
    second_host = drill.tis[("drill_report", None)]["hostname"]
    assert second_host in WORKERS and second_host != first_host
    page = next(p for p in list_reports(stack.reports() / "stack", ".html")
                if p.name.endswith(f"__{safe_name(run_id, 'run')}.html")).read_text()
    assert first_drill.run_id in page, "the second drill's trend does not show the first drill"


def test_the_report_opens_from_the_ui_link_logged_in_and_is_refused_logged_out(stack, first_drill, tmp_path):
    from tests.stack.browser import Browser

    links = stack.api._call("GET", stack.api._run_path(DRILL, first_drill.run_id)
                            + "/taskInstances/drill_report/links")["extra_links"]
    link = links["Report"]
    assert link.startswith(f"http://127.0.0.1:{stack.port}/site-recovery/reports/stack/"), link
    with Browser(tmp_path) as browser:
        browser.get(link)  # logged out: sent to Airflow's login page, the report not shown
        assert "/auth/login" in browser.url, browser.url
        assert first_drill.run_id not in browser.page_source
        password = stack.admin_password()
        browser.log_in(f"http://127.0.0.1:{stack.port}", "admin", password)
        # the task's page in the Airflow UI, its Details tab, the Report link there, the page it opens
        browser.get(f"http://127.0.0.1:{stack.port}/dags/{DRILL}/runs/{first_drill.run_id}/tasks/drill_report")
        browser.click("Details", timeout=60)
        assert browser.open_link("Report", timeout=60) == link
        assert "DR drill · stack" in browser.title, browser.title
        assert first_drill.run_id in browser.page_source
        shot = browser.screenshot(tmp_path / "report-from-stack.png")
        assert shot.stat().st_size > 20_000
        browser.log_out(f"http://127.0.0.1:{stack.port}")
        browser.get(link)
        assert "/auth/login" in browser.url and first_drill.run_id not in browser.page_source


def test_a_worker_killed_after_sending_the_test_failover_does_not_start_another(stack, lab):
    (vm,) = vms_of(stack, 1)
    lab.set_time_scale(0.6)  # a test failover of about 94 s: still running when the retry comes
    lab.hold_answers(25, method="POST", path="/testFailover$")  # ASR starts the job; the worker hears late
    since = lab.last_request_seq()
    run_id = stack.api.trigger_when_parsed(DRILL, {"vms": [vm]})
    wait_for("the test failover job started in ASR",
             lambda: any(j["scenario"] == "TestFailover" and j["target"] == vm for j in lab.state()["inFlightJobs"]),
             timeout=180)
    ti = task_instances(stack, run_id)[(TFO, vm)]
    assert ti["state"] == "running" and ti["hostname"] in WORKERS, ti
    stack.kill_component(ti["hostname"], signal.SIGKILL)  # the host dies: worker, its task, everything
    try:
        drill = finish(stack, run_id, since)
    finally:
        stack.restart_component(ti["hostname"])
    assert_clean_drill(stack, drill)
    retried = drill.tis[(TFO, vm)]
    assert retried["try_number"] >= 2 and retried["hostname"] != ti["hostname"], retried
    posts = [r for r in drill.requests if r["method"] == "POST" and r["path"].lower().endswith("/testfailover")]
    assert len(posts) == 1, posts
    assert "a test failover is already running" in task_log(stack, run_id, TFO)


def _triggers_by_host(stack) -> dict[str, int]:
    import psycopg2

    from bench.stack import DB_ROLE, POSTGRES

    with psycopg2.connect(host=POSTGRES["host"], port=POSTGRES["port"], user=DB_ROLE, dbname=stack.database) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT j.hostname, count(*) FROM trigger t JOIN job j ON t.triggerer_id = j.id "
                        "GROUP BY j.hostname")
            return dict(cur.fetchall())


def _job_ends(lab, scenario: str) -> dict[str, float]:
    from tests.labflows import RESOURCE_GROUP, VAULT, asr_client

    return {j.properties.target_object_name: j.properties.end_time.timestamp()
            for j in asr_client(lab).replication_jobs.list(RESOURCE_GROUP, VAULT)
            if j.properties.scenario_name == scenario and j.properties.end_time}


def test_a_triggerer_killed_with_dozens_of_waits_deferred_hands_them_to_the_other(stack, lab):
    from bench.stack import ts

    vms = vms_of(stack, 30)
    lab.set_time_scale(0.7)  # test failovers of about 110 s: they end after the other triggerer took over
    since = lab.last_request_seq()
    run_id = stack.api.trigger_when_parsed(DRILL, {"vms": vms})

    def all_deferred() -> bool:
        waits = [ti["state"] for (task, _), ti in task_instances(stack, run_id).items() if task == WAIT_TFO]
        return len(waits) == len(vms) and all(state in ("deferred", "success") for state in waits) \
            and waits.count("deferred") >= 24

    wait_for("the test failover waits deferred", all_deferred, timeout=300, interval=2)
    held = wait_for("the triggers assigned", lambda: (found := _triggers_by_host(stack)) and sum(found.values()) >= 24
                    and found, timeout=60)
    victim = max(held, key=held.get)
    assert victim.startswith("triggerer-"), held
    killed = time.time()
    stack.kill_component(victim, signal.SIGKILL)
    try:
        wait_for("the other triggerer running every trigger",
                 lambda: set(_triggers_by_host(stack)) - {victim} and victim not in _triggers_by_host(stack),
                 timeout=120)
        taken_over = time.time()
        drill = finish(stack, run_id, since)
    finally:
        stack.restart_component(victim)
    assert_clean_drill(stack, drill)
    ends = _job_ends(lab, "TestFailover")
    late = {vm: ts(drill.tis[(WAIT_TFO, vm)]["end_date"]) - ends[vm] for vm in vms if ends[vm] > taken_over}
    print(f"killed {victim} holding {held[victim]} of {sum(held.values())} triggers; taken over "
          f"{taken_over - killed:.1f}s later; {len(late)} jobs ended after the takeover, noticed after "
          f"median {statistics.median(late.values()):.1f}s, max {max(late.values()):.1f}s")
    assert len(late) >= 20, "too few jobs ended after the takeover for the test to mean anything"
    # Noticed within one poll interval of the job ending; the rest is Airflow resuming the task on a worker.
    assert statistics.median(late.values()) <= POLL_SECONDS + 5 and max(late.values()) <= POLL_SECONDS + 10, late


def test_the_scheduler_restarted_mid_drill(stack, lab):
    run_id, since = start_drill_with_waits_deferred(stack, lab, count=3, time_scale=0.3)
    stack.restart_component("scheduler")
    drill = finish(stack, run_id, since)
    assert_clean_drill(stack, drill)


def test_the_lab_restarted_mid_drill_keeps_its_state(stack, lab):
    run_id, since = start_drill_with_waits_deferred(stack, lab, count=3, time_scale=0.3)
    before = lab.requests(since=since)  # the request log lives in the lab's memory: keep what it saw so far
    in_flight = {j["job"] for j in lab.state()["inFlightJobs"]}
    stack.restart_component("lab")
    assert {j["job"] for j in lab.state()["inFlightJobs"]} <= in_flight  # the same jobs, none lost or new
    lab.set_time_scale(0.3)
    drill = finish(stack, run_id, 0, earlier_requests=before)
    assert_clean_drill(stack, drill)
    lab.snapshot("protected")  # snapshots live in the lab's memory too: the clean state after this drill


def test_an_unreachable_report_store_fails_the_report_naming_it_and_leaves_the_cleanup_alone(stack, lab):
    (vm,) = vms_of(stack, 1)
    stack.kill_component("azurite", signal.SIGKILL)
    try:
        since = lab.last_request_seq()
        run_id = stack.api.trigger_when_parsed(DRILL, {"vms": [vm]})
        drill = finish(stack, run_id, since, timeout=500)
    finally:
        stack.restart_component("azurite")
    report = drill.tis[("drill_report", None)]
    assert report["state"] == "failed" and report["try_number"] == REPORT_RETRIES + 1, report
    log = task_log(stack, run_id, "drill_report")
    assert f"The reports store {stack.reports_url.rstrip('/')}" in log and "could not be reached" in log
    assert stack.azurite.key not in log
    # The cleanup ran and was proven before the report; the run fails for want of a report.
    assert drill.tis[("start_cleanup", None)]["state"] == "success"
    assert_clean_drill(stack, drill, verdict="FAIL", report=False)


def test_a_drill_of_fifty_vms_under_tight_arm_throttling_honours_every_429(stack, lab):
    """ARM's buckets tightened (reads 20 then 3 a second, writes 5 then 1 a second): the drill's tasks
    and waits are refused again and again, wait as long as each 429 says, and send nothing twice.
    (The waits share their reads, so a drill of fifty reads little: the buckets must be tight to bite.)"""
    started_with = lab.throttle()["limits"]
    lab.set_throttle(limits={"reads": {"burst": 20, "per_second": 3}, "writes": {"burst": 5, "per_second": 1},
                             "deletes": {"burst": 5, "per_second": 1}})
    try:
        vms = vms_of(stack, 50)
        since = lab.last_request_seq()
        run_id = stack.api.trigger_when_parsed(DRILL, {"vms": vms})
        drill = finish(stack, run_id, since, timeout=600)
    finally:
        lab.set_throttle(limits=started_with)
    assert_clean_drill(stack, drill)
    throttled = [r for r in drill.requests if r["throttled"]]
    counts = Counter(str(OperationClass.of(r["method"])) for r in throttled)
    print(f"{len(throttled)} requests throttled ({dict(counts)}) of {len(drill.requests)}")
    assert counts["writes"] > 0 and counts["reads"] > 0, "the buckets were not tight enough to mean anything"
    by_client_id: dict[str, list[dict]] = {}
    for request in drill.requests:
        if request["client_request_id"]:
            by_client_id.setdefault(request["client_request_id"], []).append(request)
    resent_by = Counter()
    for refused in throttled:
        # Sent again by azure-core's retry policy (which keeps the client request id) or, once its three
        # retries on a refused status are spent, by the task's next try: the same call, after the
        # operator has checked that the refused one started nothing.
        later = [r for r in by_client_id[refused["client_request_id"]] if r["seq"] > refused["seq"]]
        resent_by_sdk = bool(later)
        resent_by["sdk" if resent_by_sdk else "task retry"] += 1
        if not resent_by_sdk:
            later = [r for r in drill.requests if r["seq"] > refused["seq"]
                     and (r["method"], r["path"]) == (refused["method"], refused["path"])]
        assert later, f"a throttled request was never sent again: {refused}"
        if resent_by_sdk or refused["method"] != "GET":  # (another reader may read the same path any time)
            # ... no sooner than Retry-After (one second: a token comes back within it at these rates)
            assert later[0]["started"] - refused["ended"] >= 0.95, (refused, later[0])
    print(f"throttled requests sent again by {dict(resent_by)}")
