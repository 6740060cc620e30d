"""asr_test_failover_drill__lab end to end (`dag.test`) after the deployment and enable-replication DAGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dags.runs import dag_runner, states
from tests.labflows import RESOURCE_GROUP, VAULT, Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab
DAG_ID = "asr_test_failover_drill__lab"
#: Waits made short; the lab site without its recovery plans, so each VM is drilled on its own here
#: (tests/dags/test_asr_plan_drill.py drills the plans).
FAST = {"timeouts.poll_interval": "1s", "drill.verify_timeout": "5s", "recovery_plans": []}


@pytest.fixture
def protected(protect_for_drill):
    """The lab site deployed and its VMs protected by the two DAGs before it, drills made fast."""
    return protect_for_drill(FAST)


def drill(**conf):
    return dag_runner(DAG_ID)(**conf)


def outcome_of(run):
    """What the drill_report task returned (a DrillOutcomeSummary: verdict, reasons, report paths)."""
    from airflow.sdk.serde import deserialize

    from site_recovery.records import DrillOutcomeSummary

    # The DB's task instance hands back XCom as stored: a record in serde's form.
    pulled = next(t for t in run.get_task_instances() if t.task_id == "drill_report").xcom_pull(
        task_ids="drill_report")
    return DrillOutcomeSummary.model_validate(deserialize(pulled))


def report_of(run) -> dict:
    return json.loads(Path(outcome_of(run).json_path).read_text())


def by_vm(report) -> dict[str, dict]:
    return {vm["vm"]: vm for vm in report["vms"]}


def test_a_clean_drill_passes_and_proves_its_cleanup(protected, output, reports):
    since = protected.last_request_seq()
    output()
    run = drill()
    log = output()
    assert run.state == "success", states(run)
    report = report_of(run)
    assert report["verdict"] == "PASS" and report["reasons"] == []
    vms = by_vm(report)
    assert set(vms) == {"SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01", "FS-PRD-01", "PRINT-01",
                        "LIC-SRV-01", "CAD-VAULT-01"}
    for vm in vms.values():
        assert vm["outcome"] == "passed" and vm["rto_seconds"] is not None and vm["rpo_achieved_seconds"] is not None
        assert vm["rto_met"] and vm["rpo_met"] and vm["cleanup"]["verified"]
        assert [p["phase"] for p in vm["timeline"]] == ["test_failover", "verify", "cleanup"]
    assert [p["ok"] for p in vms["SQL-PRD-01"]["probes"]] == [True]  # tcp 1433, from the site file
    assert report["cleanup_proof"]["items_in_test_failover"] == [] and report["cleanup_proof"]["test_vms_left"] == []
    assert report["test_network"] == "DR-Drill-Isolated"
    timings = {(t["task_id"], t["map_index"]): t for t in report["tasks"]}
    assert timings[("drill_vm.verify_test_vm", "SQL-PRD-01")]["state"] == "success"
    assert timings[("readiness_gate", None)]["duration_seconds"] is not None
    outcome = outcome_of(run)
    assert Path(outcome.html).parent.parent == reports
    html = Path(outcome.html).read_text()
    assert "PASS" in html and "SQL-PRD-01" in html
    assert "Drill verdict PASS" in log and str(reports) in log
    tfo = [r for r in protected.requests(since=since, method="POST") if r["path"].endswith("/testFailover")]
    assert len(tfo) == 8
    labels = {ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id.endswith("verify_test_vm")}
    assert labels == set(vms)

    second = drill(vms=["PRINT-01"])  # the trend reads the first report
    assert second.state == "success", states(second)
    assert len(list(reports.rglob("*.json"))) == 2


def test_a_failed_test_failover_fails_the_run_and_still_cleans_up_every_vm(protected, output):
    protected.add_job_fault("TestFailover", "Failed", target="APP-ERP-01", task=3)  # after the test VM exists
    run = drill(vms=["APP-ERP-01", "PRINT-01"])
    log = output()
    assert run.state == "failed"
    report = report_of(run)
    assert report["verdict"] == "FAIL"
    vms = by_vm(report)
    assert vms["APP-ERP-01"]["outcome"] == "failed" and "70038" in vms["APP-ERP-01"]["error"]
    assert vms["APP-ERP-01"]["cleanup"]["verified"]  # ASR left its test VM: the teardown removed it
    assert vms["PRINT-01"]["outcome"] == "passed"
    assert any("APP-ERP-01" in reason for reason in report["reasons"])
    assert states(run)["start_cleanup"] == "success" and states(run)["check_verdict"] == "failed"
    assert "Drill verdict FAIL" in log


def test_with_cleanup_when_vm_verified_each_vm_is_cleaned_up_once_its_verification_ends(protected, site_file):
    """Each VM's own cleanup task cleans it up, a failed one too; the teardown finds nothing left and starts
    nothing; every cleanup is requested once and reported on its VM."""
    site_file({**FAST, "drill.cleanup_when": "vm_verified"})
    since = protected.last_request_seq()
    protected.add_job_fault("TestFailover", "Failed", target="APP-ERP-01", task=3)  # after the test VM exists
    run = drill(vms=["APP-ERP-01", "PRINT-01"])
    assert run.state == "failed"
    tis = {(ti.task_id, ti.rendered_map_index): ti for ti in run.get_task_instances()}
    for vm in ("APP-ERP-01", "PRINT-01"):
        assert tis["drill_vm.clean_up_test_vm", vm].state == "success"
        assert tis["drill_vm.wait_test_vm_cleanup", vm].state == "success"
    # APP-ERP-01's failover failed, so its verification never ran (and never rendered its label); it was cleaned up
    assert sorted(ti.state for (task, _), ti in tis.items() if task == "drill_vm.verify_test_vm") == [
        "success", "upstream_failed"]
    assert tis["start_cleanup", None].xcom_pull(task_ids="start_cleanup", key="cleanup_jobs") == {}
    cleanups = [r["path"] for r in protected.requests(since=since, method="POST")
                if r["path"].endswith("/testFailoverCleanup")]
    assert len(cleanups) == len(set(cleanups)) == 2
    report = report_of(run)
    assert report["verdict"] == "FAIL" and report["cleanup_proof"]["test_vms_left"] == []
    vms = by_vm(report)
    assert vms["PRINT-01"]["outcome"] == "passed" and vms["APP-ERP-01"]["outcome"] == "failed"
    for vm in vms.values():
        assert vm["cleanup"]["verified"] and vm["timeline"][-1]["phase"] == "cleanup"


@pytest.fixture
def webhook(monkeypatch):
    """A local HTTP endpoint as the Airflow connection ``drill_webhook``; yields the bodies it received."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append({"body": json.loads(self.rfile.read(int(self.headers["Content-Length"]))),
                             "authorization": self.headers.get("Authorization")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_DRILL_WEBHOOK", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": server.server_address[1], "schema": "http",
        "password": "hook-token-123", "extra": {"endpoint": "/drills"}}))
    yield received
    server.shutdown()


def test_a_partially_succeeded_test_failover_is_a_fail_and_the_notifier_hears_it(protected, site_file, webhook):
    site_file({**FAST, "drill.notifier": {"kind": "webhook", "conn_id": "drill_webhook"}})
    protected.add_job_fault("TestFailover", "PartiallySucceeded", target="PRINT-01")
    run = drill(vms=["PRINT-01"])
    assert run.state == "failed"
    report = report_of(run)
    assert report["verdict"] == "FAIL" and "PartiallySucceeded" in by_vm(report)["PRINT-01"]["error"]
    (call,) = webhook
    assert call["body"]["verdict"] == "FAIL" and call["body"]["dag_id"] == DAG_ID
    assert call["body"]["report"].endswith(".html") and call["authorization"] == "Bearer hook-token-123"
    assert "hook-token-123" not in json.dumps(call["body"])


def test_a_drill_stopped_mid_failover_cancels_and_cleans_up(protected, site_file, output):
    # A test failover that never ends: its wait gives up (as a user marking it failed would stop it);
    # the teardown must cancel the job, then clean up.
    site_file({**FAST, "timeouts.asr_job": "3s"})
    protected.add_job_fault("TestFailover", "Stuck", target="LIC-SRV-01")
    run = drill(vms=["LIC-SRV-01"])
    log = output()
    assert run.state == "failed"
    assert states(run)["wait_test_failover[0]"] == "failed"
    assert "cancelling job" in log
    assert report_of(run)["verdict"] == "FAIL"


def test_a_vm_with_stale_replication_is_stopped_at_the_gate(protected, output):
    protected.set_replication("FS-PRD-01", paused=True, lag_seconds=7200)
    run = drill(vms=["FS-PRD-01", "PRINT-01"])
    log = output()
    assert run.state == "success", states(run)  # on_gate_failure: skip
    report = report_of(run)
    fs = by_vm(report)["FS-PRD-01"]
    assert fs["outcome"] == "skipped" and "newest recovery point is" in fs["error"]
    assert "replication health is Critical" in fs["error"]
    assert report["gate"]["skipped"][0]["vm"] == "FS-PRD-01"
    tfo = [r["path"] for r in protected.requests(method="POST") if r["path"].endswith("/testFailover")]
    assert len(tfo) == 1  # only PRINT-01 failed over
    assert "NOT READY" in log


def test_the_gate_can_fail_the_run_instead(protected, site_file):
    site_file({**FAST, "drill.on_gate_failure": "fail"})
    protected.set_replication("FS-PRD-01", paused=True, lag_seconds=7200)
    since = protected.last_request_seq()
    run = drill(vms=["FS-PRD-01", "PRINT-01"])
    assert run.state == "failed" and states(run)["readiness_gate"] == "failed"
    assert [r for r in protected.requests(since=since, mutating=True) if r["path"].endswith("/testFailover")] == []


def test_a_leftover_test_failover_is_cleaned_up_by_the_next_drill(protected, output):
    book = Runbook(protected, asr_client(protected), vault_client(protected))
    book.primary = next(f.name for f in book.asr.replication_fabrics.list(RESOURCE_GROUP, VAULT)
                        if f.properties.friendly_name.startswith("vmm-ams"))
    book.recovery = next(f.name for f in book.asr.replication_fabrics.list(RESOURCE_GROUP, VAULT)
                         if f.properties.friendly_name.startswith("vmm-rtm"))
    poller, _ = book.begin(book.asr.replication_protected_items.begin_test_failover,
                           *book.item_args("WEB-PORTAL-01"), book.test_failover_input())
    poller.result()  # an interrupted drill: failed over, never cleaned up
    output()
    run = drill(vms=["WEB-PORTAL-01"])
    log = output()
    assert run.state == "success", states(run)
    report = report_of(run)
    assert report["gate"]["leftovers_cleaned"][0]["vm"] == "WEB-PORTAL-01"
    assert "cleaned up first" in log


def test_a_network_that_production_maps_to_is_refused_unless_overridden(protected, output):
    since = protected.last_request_seq()
    run = drill(vms=["PRINT-01"], test_network="DR-App")
    log = output()
    assert run.state == "failed" and states(run)["readiness_gate"] == "failed"
    assert "Refusing to drill into 'DR-App': it is the recovery network of production network(s) Prod-App" in log
    assert [r for r in protected.requests(since=since, mutating=True) if r["path"].endswith("/testFailover")] == []


def test_the_drills_asr_client_refuses_a_failover_before_it_leaves(protected):
    from site_recovery.exceptions import RequestRefused
    from site_recovery.tasks.drill import drill_hook
    from site_recovery.site import load_sites

    hook = drill_hook(load_sites()[0]["lab"])
    book = Runbook(protected, hook.connection, vault_client(protected))
    book.primary = next(f.name for f in book.asr.replication_fabrics.list(RESOURCE_GROUP, VAULT)
                        if f.properties.friendly_name.startswith("vmm-ams"))
    since = protected.last_request_seq()
    with pytest.raises(RequestRefused, match="plannedFailover"):
        hook.connection.replication_protected_items.begin_planned_failover(
            RESOURCE_GROUP, VAULT, *book.item_args("PRINT-01", cloud="Silver-Prod"),
            {"properties": {"failoverDirection": "PrimaryToRecovery"}})
    assert protected.requests(since=since, mutating=True) == []
