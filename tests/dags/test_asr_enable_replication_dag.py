"""asr_enable_replication__lab end to end (`dag.test`, deferrable waits run inline) after asr_deploy__lab."""

from __future__ import annotations

import pytest

from tests.dags.runs import dag_runner, states
from tests.labflows import RESOURCE_GROUP, VAULT, asr_client

pytestmark = pytest.mark.lab
DAG_ID = "asr_enable_replication__lab"
PROTECTABLE = {"SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01", "FS-PRD-01", "PRINT-01", "LIC-SRV-01",
               "CAD-VAULT-01"}
NOT_PROTECTABLE = {"SQL-FCI-01": "shared virtual hard disks", "SQL-FCI-02": "shared virtual hard disks",
                   "MES-HIST-01": "pass-through", "BACKUP-MEDIA-01": "Fibre Channel"}


@pytest.fixture
def enable(deployed):
    return dag_runner(DAG_ID)


def protected_items(lab) -> dict[str, object]:
    asr = asr_client(lab)
    return {i.properties.friendly_name: i.properties for i in asr.replication_protected_items.list(RESOURCE_GROUP, VAULT)}


def enable_puts(lab, since: int = 0) -> list[dict]:
    return [r for r in lab.requests(since=since, method="PUT") if "/replicationProtectedItems/" in r["path"]]


def report_rows(run) -> dict[str, dict]:
    """The report's rows (ProtectionReportRow records) by VM, as JSON-like dicts."""
    from airflow.sdk.serde import deserialize

    # The DB's task instance hands back XCom as stored: records in serde's form.
    ti = next(t for t in run.get_task_instances() if t.task_id == "report_protection")
    return {row.vm: row.to_json() for row in deserialize(ti.xcom_pull(task_ids="report_protection"))}


def test_protects_every_vm_in_scope_then_a_second_run_changes_nothing(lab, enable, output):
    output()
    run = enable()
    log = output()
    assert run.state == "success", states(run)

    items = protected_items(lab)
    assert set(items) == PROTECTABLE  # JUMP-01 is excluded by the site file; the others cannot be protected
    assert {(p.protection_state, p.replication_health) for p in items.values()} == {("Protected", "Normal")}
    labels = {ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id.endswith("wait_initial_replication")}
    assert labels == PROTECTABLE  # each VM's tasks carry its name
    rows = report_rows(run)
    assert {vm for vm, row in rows.items() if row["result"] == "enabled"} == PROTECTABLE
    for vm, reason in NOT_PROTECTABLE.items():
        assert rows[vm]["result"] == "not protectable" and reason in rows[vm]["to_fix"], rows[vm]
    assert "JUMP-01" not in rows
    assert "Enable replication, site lab" in log and "4 VM(s) need attention." in log

    since = lab.last_request_seq()
    again = enable()
    assert again.state == "success", states(again)
    assert lab.requests(since=since, mutating=True) == []
    assert {row["result"] for vm, row in report_rows(again).items() if vm in PROTECTABLE} == {"already protected"}


def test_a_dry_run_plans_without_changing_anything(lab, enable, output):
    since = lab.last_request_seq()
    run = enable(dry_run=True)
    assert run.state == "success", states(run)
    assert lab.requests(since=since, mutating=True) == []
    rows = report_rows(run)
    assert rows["SQL-PRD-01"]["result"] == "would enable"
    assert "dry run: nothing was changed" in output()


def test_the_vms_parameter_narrows_the_run_and_unknown_names_are_refused(lab, enable, output):
    run = enable(vms=["sql-prd-01", "PRINT-01"])
    assert run.state == "success", states(run)
    assert set(protected_items(lab)) == {"SQL-PRD-01", "PRINT-01"}

    since = lab.last_request_seq()
    refused = enable(vms=["SQL-PRD-01", "NOPE-01", "JUMP-01"])
    log = output()
    assert refused.state == "failed"
    assert states(refused)["plan_protection"] == "failed"
    assert "not in any paired cloud (Gold-Prod, Silver-Prod): NOPE-01" in log
    assert "excluded by the site file's scope: JUMP-01 (Silver-Prod)" in log
    assert lab.requests(since=since, mutating=True) == []


def test_a_failed_enable_job_fails_only_that_vm(lab, enable, output):
    lab.add_job_fault("EnableDr", "Failed", target="APP-ERP-02")
    run = enable()
    log = output()
    assert run.state == "failed"
    by_vm = {ti.rendered_map_index: ti.state for ti in run.get_task_instances()
             if ti.task_id.endswith("wait_enable_job")}
    assert by_vm.pop("APP-ERP-02") == "failed"
    assert set(by_vm.values()) == {"success"}
    items = protected_items(lab)
    assert set(items) == PROTECTABLE - {"APP-ERP-02"}
    assert "[70094] Failed to enable protection for the virtual machine." in log
    assert "Recommended action: Check the Hyper-V Replica settings" in log
    rows = report_rows(run)
    assert rows["APP-ERP-02"]["result"] == "enable failed" and "70094" in rows["APP-ERP-02"]["to_fix"]
    assert states(run)["report_protection"] == "success"


def test_a_stuck_initial_replication_hits_the_site_files_timeout(lab, connections, site_file, deploy, output):
    site_file({"scope.initial_replication_timeout": "3s", "timeouts.poll_interval": "1s"})
    assert deploy().state == "success"
    lab.add_job_fault("SecondaryIrCompletion", "Stuck", target="FS-PRD-01")
    run = dag_runner(DAG_ID)(vms=["FS-PRD-01", "PRINT-01"])
    log = output()
    assert run.state == "failed"
    by_vm = {ti.rendered_map_index: ti.state for ti in run.get_task_instances()
             if ti.task_id.endswith("wait_initial_replication")}
    assert by_vm == {"FS-PRD-01": "failed", "PRINT-01": "success"}
    assert "Timeout: initial replication of VM 'FS-PRD-01' had not completed" in log
    assert "limit 3s, site file scope.initial_replication_timeout" in log
    assert "initial replication not finished" in report_rows(run)["FS-PRD-01"]["to_fix"]


def test_a_rerun_waits_on_the_enable_job_an_earlier_run_left_running(lab, connections, site_file, deploy, output):
    """The EnableDr job an interrupted run started is found through the item's current scenario and waited on."""
    from tests.labflows import Runbook, vault_client

    site_file({"scope.enable_job_timeout": "3s", "timeouts.poll_interval": "1s"})
    assert deploy().state == "success"
    book = Runbook(lab, asr_client(lab), vault_client(lab))
    fabrics = {f.properties.friendly_name: f.name for f in book.asr.replication_fabrics.list(RESOURCE_GROUP, VAULT)}
    book.primary = fabrics["vmm-ams-01.corp.meridianpack.nl"]
    lab.add_job_fault("EnableDr", "Stuck", target="LIC-SRV-01")  # still running when the DAG looks
    _, job = book.enable("LIC-SRV-01", cloud="Silver-Prod", policy="policy-ams-rtm-5min")
    since = lab.last_request_seq()
    output()
    run = dag_runner(DAG_ID)(vms=["LIC-SRV-01"])
    log = output()
    assert enable_puts(lab, since) == []  # not enabled twice
    assert f"waiting on its EnableDr job {job}" in log
    assert states(run)["wait_enable_job[0]"] == "failed" and f"(job {job}) was still InProgress" in log
    assert report_rows(run)["LIC-SRV-01"]["result"] == "enabling"


def test_no_more_initial_replications_at_once_than_the_site_file_allows(lab, connections, site_file, deploy):
    site_file({"scope.max_concurrent_initial_replications": 2, "timeouts.poll_interval": "1s"})
    assert deploy().state == "success"
    vms = ["WEB-PORTAL-01", "PRINT-01", "LIC-SRV-01"]  # the smallest: about 4 s each at this scale
    lab.set_time_scale(0.005)
    since = lab.last_request_seq()
    run = dag_runner(DAG_ID)(vms=vms)
    assert run.state == "success", states(run)

    # In flight = from a VM's enable PUT (request log) to the end of its last initial replication job.
    jobs = asr_client(lab).replication_jobs.list(RESOURCE_GROUP, VAULT)
    done = {j.properties.target_object_name: j.properties.end_time.timestamp()
            for j in jobs if j.properties.scenario_name == "SecondaryIrCompletion"}
    names = {item.name: item.properties.friendly_name
             for item in asr_client(lab).replication_protected_items.list(RESOURCE_GROUP, VAULT)}
    puts = [(names[r["path"].rstrip("/").rsplit("/", 1)[-1]], r["started"]) for r in enable_puts(lab, since)
            if r["status"] < 300]
    assert sorted(vm for vm, _ in puts) == sorted(vms)
    for vm, started in puts:
        in_flight = [other for other, other_start in puts if other_start <= started < done[other]]
        assert len(in_flight) <= 2, (vm, in_flight)
    third = max(started for _, started in puts)
    assert any(done[vm] <= third for vm, started in puts if started < third)  # the third waited for a free slot
