"""AsrJobSensor inside a real DAG run (`dag.test`, trigger run inline) against the lab."""

from __future__ import annotations

import pytest

from tests.labflows import create_vault, register_primary_vmm, start_policy_job

pytestmark = pytest.mark.lab


@pytest.fixture
def vault(lab):
    vault = create_vault(lab)
    register_primary_vmm(lab, vault)
    return vault


@pytest.fixture
def watch_job(airflow_db, lab_connection):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder="dags").get_dag("asr_watch_job")

    def run(vault, job_name):
        return dag.test(run_conf={"azure_conn_id": lab_connection, "resource_group_name": vault.resource_group,
                                  "vault_name": vault.name, "job_name": job_name})

    return run


def sensor_ti(dag_run):
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "wait_for_job"]
    return ti


def test_sensor_waits_on_a_lab_job_and_succeeds(lab, vault, watch_job, capsys):
    job = start_policy_job(lab, vault)
    dag_run = watch_job(vault, job)
    log = capsys.readouterr().out
    assert dag_run.state == "success"
    assert sensor_ti(dag_run).state == "success"
    job_gets = lab.requests(method="GET", path=f"/replicationJobs/{job}$")
    assert job_gets and all(r["status"] == 200 for r in job_gets)
    assert "Create replication policy" in log


def test_sensor_fails_with_the_jobs_error_message(lab, vault, watch_job, capsys):
    lab.add_job_fault("AddProtectionProfile", "Failed", error={
        "code": "150261", "message": "Replication policy creation failed.",
        "possibleCauses": "The VMM server is not reachable.", "recommendedAction": "Check the VMM service.",
    })
    job = start_policy_job(lab, vault)
    dag_run = watch_job(vault, job)
    log = capsys.readouterr().out
    assert dag_run.state == "failed"
    assert sensor_ti(dag_run).state == "failed"
    assert "Replication policy creation failed." in log
    assert "150261" in log


def test_sensor_rides_out_a_burst_of_throttling_and_unavailability(lab, vault, watch_job):
    job = start_policy_job(lab, vault)
    path = f"/replicationJobs/{job}$"
    lab.add_http_fault(429, method="GET", path=path, count=3, retry_after=0)
    lab.add_http_fault(503, method="GET", path=path, count=3)
    dag_run = watch_job(vault, job)
    assert dag_run.state == "success"
    statuses = [r["status"] for r in lab.requests(method="GET", path=path)]
    assert statuses.count(429) == 3 and statuses.count(503) == 3 and statuses[-1] == 200
