"""One distributed stack (bench/stack.py ``DistributedStack``) for every test of this folder.

api-server, scheduler, dag-processor, two triggerers and two Celery workers on PostgreSQL and
Redis, the reports in Azurite, against the lab on a generated estate of 50 protectable VMs
(bench/estate_200.py). The site ``stack`` is deployed through its DAG once and its VMs protected
once; the lab keeps that state as the snapshot ``protected`` and every test starts from it.

These tests kill parts of the stack: run them alone (``pytest -m stack``), never beside other
heavy tests. Each ends with :func:`assert_clean_drill`: the verdict is right, the cleanup
verified, no test failover and no test VM left, and no mutating ASR request sent twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.drill import enable_with_sdk
from bench.estate_200 import write
from bench.stack import REPORTS_CONN_ID, DistributedStack, wait_for

SITE = "stack"
DEPLOY, DRILL = f"asr_deploy__{SITE}", f"asr_test_failover_drill__{SITE}"
WAIT_TFO, TFO = "drill_vm.wait_test_failover", "drill_vm.test_failover"
POLL_SECONDS = 2
#: How fast the stack notices a dead worker or triggerer. Airflow's defaults (300 s without a task
#: heartbeat, 30 s without a triggerer heartbeat) would only make the tests slower, not different.
DETECTION = {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
             "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10"}
#: One retry of a report the store refused, soon after: each try spends about two minutes in the Azure
#: SDK's own retries already, and the default budget (two retries, 30 s apart) would only make the
#: unreachable-store test three minutes longer, not different.
REPORT_RETRIES = 1
REPORT_BUDGET = {"AIRFLOW__SITE_RECOVERY__REPORT_RETRIES": str(REPORT_RETRIES),
                 "AIRFLOW__SITE_RECOVERY__REPORT_RETRY_DELAY": "5"}


@dataclass
class Drill:
    """One drill run on the stack and what the lab saw of it."""

    run_id: str
    state: str
    requests: list[dict]
    tis: dict[tuple[str, str | None], dict]


@pytest.fixture(scope="module")  # stopped once its tests are done, before any later module runs
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stack")
    estate_file, include, _ = write(workdir / "estate", 50, {SITE: {"max_concurrent": 50,
                                                                    "poll_interval": f"{POLL_SECONDS}s"}})
    with DistributedStack(workdir, estate_file, include, time_scale=0, extra_env=DETECTION | REPORT_BUDGET,
                          database=f"asr_dr_test_{os.getpid()}", redis_db=12) as running:
        run_id, state, seconds = running.run_dag(DEPLOY, timeout=400)
        assert state == "success", f"{DEPLOY} {state} after {seconds:.0f}s; logs in {workdir}"
        enable_with_sdk(running.lab, include / "sites" / f"{SITE}.yaml")
        running.lab.snapshot("protected")
        yield running
    os.environ.pop(f"AIRFLOW_CONN_{REPORTS_CONN_ID.upper()}", None)  # set by stack.reports(): this stack's only
    stray = running.stray_processes()
    assert stray == [], f"processes left running after the stack stopped: {stray}"


@pytest.fixture
def lab(stack):
    """The lab as the snapshot ``protected`` left it, at time scale 0 unless a test sets another."""
    assert stack.lab.restore("protected"), "the lab lost its snapshot"
    stack.lab.set_time_scale(0)
    return stack.lab


def vms_of(stack: DistributedStack, count: int) -> list[str]:
    """The first ``count`` protected VMs of the site, by name."""
    from tests.labflows import RESOURCE_GROUP, VAULT, asr_client

    names = sorted(item.properties.friendly_name for item in asr_client(stack.lab).replication_protected_items.list(
        RESOURCE_GROUP, VAULT) if item.properties.protection_state == "Protected")
    assert len(names) >= count, names
    return names[:count]


def task_instances(stack: DistributedStack, run_id: str) -> dict[tuple[str, str | None], dict]:
    return {(ti["task_id"], ti["rendered_map_index"] if ti["map_index"] >= 0 else None): ti
            for ti in stack.api.task_instances(DRILL, run_id)}


def finish(stack: DistributedStack, run_id: str, since_seq: int, timeout: float = 600,
           earlier_requests: list[dict] | None = None) -> Drill:
    state = stack.api.wait(DRILL, run_id, timeout=timeout)
    requests = (earlier_requests or []) + stack.lab.requests(since=since_seq)
    return Drill(run_id, state, requests, task_instances(stack, run_id))


def stored_report(stack: DistributedStack, run_id: str) -> dict | None:
    from site_recovery.drill_report import safe_name

    from site_recovery.report_store import list_reports

    found = [p for p in list_reports(stack.reports() / SITE)
             if p.name.endswith(f"__{safe_name(run_id, 'run')}.json")]
    return json.loads(found[0].read_text()) if found else None


def assert_clean_drill(stack: DistributedStack, drill: Drill, verdict: str = "PASS", report: bool = True) -> None:
    """The drill's verdict, its cleanup, nothing left in the lab, no mutating request sent twice."""
    assert drill.state == ("success" if verdict == "PASS" else "failed"), (drill.state, _not_ok(drill))
    after = stack.lab.state()
    assert after["inTestFailover"] == [] and after["testVms"] == [], (after["inTestFailover"], after["testVms"])
    mutating = Counter((r["method"], r["path"].lower()) for r in drill.requests if r["mutating"])
    assert [key for key, count in mutating.items() if count > 1] == [], "mutating requests sent twice"
    started = [path for (method, path) in mutating if path.endswith("/testfailover")]
    cleaned = [path for (method, path) in mutating if path.endswith("/testfailovercleanup")]
    assert len(started) == len(cleaned) > 0, (started, cleaned)
    assert drill.tis[("verify_cleanup", None)]["state"] == "success", drill.tis[("verify_cleanup", None)]
    if report:
        stored = stored_report(stack, drill.run_id)
        assert stored is not None, "no report in the store"
        assert stored["verdict"] == verdict, stored["reasons"]
        proof = stored["cleanup_proof"]
        assert proof["items_in_test_failover"] == [] and proof["test_vms_left"] == []


def start_drill_with_waits_deferred(stack: DistributedStack, lab, count: int, time_scale: float) -> tuple[str, int]:
    """Drill ``count`` VMs at ``time_scale`` and return (run id, request log position) once every one of their
    test-failover waits is deferred, so that a part of the stack can be taken away mid-drill."""
    vms = vms_of(stack, count)
    lab.set_time_scale(time_scale)
    since = lab.last_request_seq()
    run_id = stack.api.trigger_when_parsed(DRILL, {"vms": vms})
    wait_for("the test failover waits deferred", lambda: sum(
        1 for (task, _), ti in task_instances(stack, run_id).items()
        if task == WAIT_TFO and ti["state"] == "deferred") == count, timeout=180)
    return run_id, since


def _not_ok(drill: Drill) -> dict:
    return {key: ti["state"] for key, ti in drill.tis.items() if ti["state"] not in ("success", "skipped")}


def task_log(stack: DistributedStack, run_id: str, task_id: str) -> str:
    return "".join(path.read_text(errors="replace") for path in Path(stack.airflow_home / "logs").glob(
        f"dag_id={DRILL}/run_id={run_id}/task_id={task_id}/**/*.log"))
