"""Killing a drill mid-run still cleans up: a real scheduler, triggerer and LocalExecutor.

``dag.test`` runs triggers inline, so it cannot show what happens when a user marks a
deferred task failed in the UI: the triggerer cancels the trigger (its ``on_kill`` runs), the
scheduler fails what depends on the task, and the teardown must still clean up. Here the lab
and ``airflow standalone`` run as separate processes (bench/stack.py), the lab's site is
deployed and two VMs protected by their DAGs, then one VM's test failover is made to hang
(a ``Stuck`` job fault) and its ``drill_vm.wait_test_failover`` is marked failed through the
REST API exactly as the UI's "Mark as failed" does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bench.stack import Stack, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SITE = "lab"
DEPLOY, ENABLE, DRILL = (f"asr_deploy__{SITE}", f"asr_enable_replication__{SITE}",
                         f"asr_test_failover_drill__{SITE}")
STUCK, OTHER = "LIC-SRV-01", "PRINT-01"
WAIT_TFO = "drill_vm.wait_test_failover"
# The lab's site file, waiting tasks reading ASR every 2 s instead of 30 s so the test stays short;
# the test failover's own wait keeps the site's 1 h limit, so only the user's kill ends it.
# No schedule: lab.yaml's weekly drill would start a second drill (and report) when the test runs past it.
SITE_CHANGES = {"timeouts": {"poll_interval": "2s"}, "drill": {"verify_timeout": "30s", "schedule": None}}


def _include(tmp_path: Path) -> Path:
    """include/ with the repo's scripts and a copy of include/sites/lab.yaml with SITE_CHANGES."""
    include = tmp_path / "include"
    (include / "sites").mkdir(parents=True)
    for entry in (REPO / "include").iterdir():
        if entry.name not in ("sites", "state"):
            (include / entry.name).symlink_to(entry)
    site = yaml.safe_load((REPO / "include" / "sites" / "lab.yaml").read_text())
    for section, values in SITE_CHANGES.items():
        site[section].update(values)
    site["recovery_plans"] = []  # PRINT-01 is drilled on its own here, not as a member of its plan
    (include / "sites" / "lab.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return include


@pytest.fixture
def stack(tmp_path):
    with Stack(tmp_path, estate=None, include=_include(tmp_path), time_scale=0,
               extra_env={"AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER": str(tmp_path / "reports")},
               sqlite_wal=True) as running:
        yield running
    stray = running.stray_processes()
    assert stray == [], f"processes left running after the stack stopped: {stray}"


def _tis(stack: Stack, run_id: str) -> dict[tuple[str, str | None], dict]:
    return {(ti["task_id"], ti["rendered_map_index"] if ti["map_index"] >= 0 else None): ti
            for ti in stack.api.task_instances(DRILL, run_id)}


def _jobs(lab) -> list[dict]:
    from tests.labflows import RESOURCE_GROUP, VAULT, asr_client

    return [{"name": j.name, "scenario": j.properties.scenario_name, "vm": j.properties.target_object_name,
             "state": j.properties.state}
            for j in asr_client(lab).replication_jobs.list(RESOURCE_GROUP, VAULT)]


@pytest.mark.timeout(360)
def test_marking_the_waiting_test_failover_failed_still_cancels_and_cleans_up(stack, tmp_path):
    lab, api = stack.lab, stack.api
    for dag_id, conf in ((DEPLOY, {}), (ENABLE, {"vms": [STUCK, OTHER]})):
        run_id, state, seconds = stack.run_dag(dag_id, conf, timeout=150)
        assert state == "success", f"{dag_id} {state} after {seconds:.0f}s; logs in {stack.airflow_home / 'logs'}"

    lab.add_job_fault("TestFailover", "Stuck", target=STUCK)  # its test failover never ends by itself
    run_id = api.trigger_when_parsed(DRILL, {"vms": [STUCK, OTHER]})
    stuck = wait_for(f"{WAIT_TFO} of {STUCK} deferred",
                      lambda: (ti := _tis(stack, run_id).get((WAIT_TFO, STUCK))) and ti["state"] == "deferred" and ti,
                      timeout=90)
    before_kill = lab.state()
    (job,) = [j["job"] for j in before_kill["inFlightJobs"] if j["scenario"] == "TestFailover" and j["target"] == STUCK]
    # A user marks the task failed while it waits in the triggerer: once the trigger has read the job
    # (the sensor read it once before deferring; the trigger reads the vault's list of jobs in progress,
    # or the job itself), it is running there and can be killed.
    sensor_read = lab.requests(method="GET", path=f"/replicationJobs/{job}$")[0]["seq"]
    wait_for("the trigger reading the stuck job",
              lambda: lab.requests(since=sensor_read, method="GET", path=f"/replicationJobs(/{job})?$"),
              timeout=60, interval=0.5)
    test_vm_existed = any(vm["sourceVm"] == STUCK for vm in before_kill["testVms"])
    kill_seq = lab.last_request_seq()

    # What the UI's "Mark as failed" sends for this one task instance.
    killed = time.time()
    patched = api.set_task_instance_state(DRILL, run_id, WAIT_TFO, stuck["map_index"], "failed")
    assert [ti["state"] for ti in patched["task_instances"]] == ["failed"]

    assert api.wait(DRILL, run_id, timeout=120) == "failed"
    tis = _tis(stack, run_id)
    states = {key: ti["state"] for key, ti in tis.items()}
    assert states[(WAIT_TFO, STUCK)] == "failed", states
    assert states[("start_cleanup", None)] == "success", states
    assert states[("check_verdict", None)] == "failed", states

    jobs = _jobs(lab)
    (tfo,) = [j for j in jobs if j["scenario"] == "TestFailover" and j["vm"] == STUCK]
    assert tfo["state"] == "Cancelled" and tfo["name"] == job, tfo
    cancels = [r for r in lab.requests(since=kill_seq, method="POST") if r["path"].lower().endswith(f"/{job}/cancel")]
    assert cancels, "nobody cancelled the stuck test failover job"
    cleanup_log = "".join(log.read_text() for log in stack.airflow_home.glob(
        f"logs/dag_id={DRILL}/**/task_id=start_cleanup/*.log"))
    by = "start_cleanup" if f"cancelling job {job}" in cleanup_log else "the trigger's on_kill"
    print(f"stuck job {job}: {len(cancels)} cancel(s), {cancels[0]['started'] - killed:.1f}s after the kill, by {by}")
    cleanups = [j for j in jobs if j["scenario"] == "TestFailoverCleanup" and j["vm"] == STUCK]
    if test_vm_existed:  # ASR left a test failover to clean up
        assert [j["state"] for j in cleanups] == ["Succeeded"], cleanups
    assert [j["state"] for j in jobs if j["scenario"] == "TestFailoverCleanup" and j["vm"] == OTHER] == ["Succeeded"]

    after = lab.state()
    assert after["inTestFailover"] == [] and after["testVms"] == [], (after["inTestFailover"], after["testVms"])

    (report_file,) = (tmp_path / "reports").rglob("*.json")
    report = json.loads(report_file.read_text())
    assert report["verdict"] == "FAIL" and report["run_id"] == run_id
    vms = {vm["vm"]: vm for vm in report["vms"]}
    assert vms[STUCK]["outcome"] == "failed" and "cancelled" in vms[STUCK]["error"].lower(), vms[STUCK]
    assert any(STUCK in reason for reason in report["reasons"]), report["reasons"]
    assert report["cleanup_proof"]["items_in_test_failover"] == [] and report["cleanup_proof"]["test_vms_left"] == []
