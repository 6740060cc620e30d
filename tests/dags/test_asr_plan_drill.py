"""Recovery plans drilled as a whole by asr_test_failover_drill__lab (`dag.test`), after deployment and enable.

The lab site's plans: order-portal (SQL-PRD-01; APP-ERP-01 and APP-ERP-02 after the manual action
"Confirm licence server"; WEB-PORTAL-01; two VMM library scripts and a check) and file-and-print
(FS-PRD-01; PRINT-01 and CAD-VAULT-01). LIC-SRV-01 is in no plan and is drilled on its own.
Manual actions are answered through Airflow's REST API exactly as the UI's required-action form
does (``PATCH .../hitlDetails``); an unanswered one times out through the scheduler's own sweep.
"""

from __future__ import annotations

import pytest

from tests.dags.hitl import Answer
from tests.dags.runs import dag_runner, states
from tests.dags.test_asr_drill_dag import outcome_of, report_of

pytestmark = pytest.mark.lab
DAG_ID = "asr_test_failover_drill__lab"
PORTAL = "drill_plan_order_portal"
MANUAL = f"{PORTAL}.manual_confirm_licence_server"
SQL_ALIAS = "\\RPScripts\\Set-SqlAlias.ps1"
RTM = "vmm-rtm-01.corp.meridianpack.nl"
FAST = {"timeouts.poll_interval": "1s", "drill.verify_timeout": "5s"}


@pytest.fixture
def planned(protect_for_drill):
    """The lab site deployed, its VMs protected and its plans created by the DAGs before the drill."""
    return protect_for_drill(FAST)


def drill(**conf):
    return dag_runner(DAG_ID)(**conf)


def plan_of(report: dict, name: str) -> dict:
    return next(plan for plan in report["plans"] if plan["plan"] == name)


def plan_jobs(lab, since: int) -> list[str]:
    return [r["path"].rsplit("/", 2)[-2] for r in lab.requests(since=since, method="POST")
            if "/replicationRecoveryPlans/" in r["path"] and r["path"].endswith("/testFailover")]


# ------------------------------------------------------------------------------------ tests
def test_an_unattended_drill_confirms_by_itself_and_reports_each_plan(planned, site_file, reports, output):
    since = planned.last_request_seq()
    output()
    run = drill(unattended=True)
    log = output()
    assert run.state == "success", states(run)
    report = report_of(run)
    assert report["verdict"] == "PASS", report["reasons"]
    assert {vm["vm"]: vm["outcome"] for vm in report["vms"]} == {vm: "passed" for vm in (
        "SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01", "FS-PRD-01", "PRINT-01", "CAD-VAULT-01",
        "LIC-SRV-01")}
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "passed" and portal["rto_seconds"] is not None and portal["rto_met"]
    assert portal["rto_target_seconds"] == 45 * 60
    assert [(g["label"], g["vms"]) for g in portal["groups"]] == [
        ("Group Failover: Create test virtual machines", ["SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"]),
        ("Group 1: Start virtual machines", ["SQL-PRD-01"]),
        ("Group 2: Start virtual machines", ["APP-ERP-01", "APP-ERP-02"]),
        ("Group 3: Start virtual machines", ["WEB-PORTAL-01"])]
    booted = portal["groups"][1:]
    assert all(later["start"] >= earlier["end"] for earlier, later in zip(booted, booted[1:]))  # in boot order
    actions = {a["name"]: a for a in portal["actions"]}
    assert actions["Repoint ERP SQL alias"]["detail"] == "SQL alias ERPDB now points to SQL-PRD-01 (10.60.30.11)"
    assert actions["Confirm licence server"]["detail"].startswith("confirmed automatically by the unattended drill")
    assert actions["ERP database answers"]["state"] == "Succeeded"  # the Airflow-side check: tcp 1433
    [manual] = portal["manual_actions"]
    assert manual["automatic"] and manual["confirmed"] and manual["by"] is None
    assert plan_of(report, "file-and-print")["outcome"] == "passed"
    assert len(plan_jobs(planned, since)) == 2  # one test failover per plan, not one per VM
    item_tfo = [r for r in planned.requests(since=since, method="POST")
                if "/replicationProtectedItems/" in r["path"] and r["path"].endswith("/testFailover")]
    assert len(item_tfo) == 1  # LIC-SRV-01, in no plan
    assert "Group 2: Start virtual machines' (APP-ERP-01, APP-ERP-02) is Succeeded" in log
    html = open(outcome_of(run).html).read()
    assert "Recovery plan order-portal" in html and "Recovery plan file-and-print" in html
    assert states(run)["manual_confirm_licence_server"] == "success"

    # The same drill with order-portal set to skip when unattended: it is skipped and reported, the rest drilled.
    site_file({**FAST, "recovery_plans.0.unattended": "skip"})
    since = planned.last_request_seq()
    run = drill(unattended=True)
    report = report_of(run)
    assert run.state == "success", states(run)
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "skipped" and "unattended: skip" in portal["error"]
    assert {s["vm"] for s in report["gate"]["skipped"]} == {"SQL-PRD-01", "APP-ERP-01", "APP-ERP-02",
                                                            "WEB-PORTAL-01"}
    assert plan_of(report, "file-and-print")["outcome"] == "passed"
    assert len(plan_jobs(planned, since)) == 1
    assert states(run)["manual_confirm_licence_server"] == "skipped"


def test_a_manual_action_approved_through_the_rest_api_resumes_the_plans_job(planned, airflow_users, reports):
    with Answer(DAG_ID, MANUAL, ("oncall", "Confirm"), ("admin", "Confirm")) as answer:
        run = drill(plans=["order-portal"])
    assert run.state == "success", states(run)
    # only the plan's approvers may confirm
    assert answer.responses == [(MANUAL, "oncall", 403), (MANUAL, "admin", 200)]
    [asked] = answer.waited_list[:1]
    assert asked["subject"] == "Recovery plan order-portal: Confirm licence server"
    assert "LIC-SRV-01" in asked["body"] and [u["id"] for u in asked["assigned_users"]] == ["admin"]
    report = report_of(run)
    assert report["verdict"] == "PASS", report["reasons"]
    portal = plan_of(report, "order-portal")
    [manual] = portal["manual_actions"]
    assert (manual["confirmed"], manual["by"], manual["automatic"]) == (True, "admin", False)
    asr_task = next(t for t in portal["job"]["tasks"] if t["friendly_name"] == "Confirm licence server")
    assert asr_task["observation"] == f"Confirm licence server: confirmed by admin in {DAG_ID} run {run.run_id}"
    assert report["vms"] and all(vm["outcome"] == "passed" for vm in report["vms"])
    assert {vm["vm"] for vm in report["vms"]} == {"SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"}


@pytest.mark.parametrize("answer", [("admin", "Reject"), ("admin", None)], ids=["rejected", "timed-out"])
def test_a_rejected_or_unanswered_manual_action_fails_the_drill_and_cleans_up(planned, airflow_users, reports,
                                                                               answer):
    with Answer(DAG_ID, MANUAL, answer):
        run = drill(plans=["order-portal"])
    assert run.state == "failed"
    assert states(run)["manual_confirm_licence_server"] == "failed"
    assert states(run)["verify_cleanup"] == "success"
    report = report_of(run)
    assert report["verdict"] == "FAIL"
    portal = plan_of(report, "order-portal")
    [manual] = portal["manual_actions"]
    assert manual["confirmed"] is False
    assert manual["comment"] == "rejected" if answer[1] else manual["comment"].startswith("no answer")
    assert portal["outcome"] == "failed"
    assert report["cleanup_proof"]["incomplete"] is False
    # teardown (``planned``): no item left in test failover, no test VM left


def test_a_failing_script_fails_the_plan_with_the_scripts_error(planned, reports):
    planned.set_library_script_error(RTM, SQL_ALIAS, "Login failed for user MERIDIAN\\svc-sql-alias")
    run = drill(plans=["order-portal"], unattended=True)
    assert run.state == "failed"
    report = report_of(run)
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "failed"
    assert "Login failed for user" in portal["error"]
    actions = {a["name"]: a for a in portal["actions"]}
    assert actions["Repoint ERP SQL alias"]["state"] == "Failed"
    assert states(run)["manual_confirm_licence_server"] in ("upstream_failed", "skipped")
    assert report["cleanup_proof"]["incomplete"] is False


def test_a_member_vm_that_fails_to_start_fails_the_plan_and_names_it(planned, reports):
    planned.add_job_fault("TestFailover", "Failed", target="order-portal", task="Group 3: Start virtual machines",
                          error={"code": "70094", "message": "Failed to start WEB-PORTAL-01 - Test.",
                                 "possibleCauses": "The host hv-rtm-02 has not enough memory."})
    run = drill(plans=["order-portal"], unattended=True)
    assert run.state == "failed"
    report = report_of(run)
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "failed" and "Failed to start WEB-PORTAL-01 - Test." in portal["error"]
    groups = {g["label"]: g["state"] for g in portal["groups"]}
    assert groups["Group 2: Start virtual machines"] == "Succeeded"
    assert groups["Group 3: Start virtual machines"] == "Failed"
    assert report["cleanup_proof"]["incomplete"] is False


def test_a_failing_check_holds_the_next_group_and_fails_the_drill(planned, site_file, reports):
    # The check now probes a port SQL-PRD-01 does not listen on: the deployment updates the plan in place.
    site_file({**FAST, "recovery_plans.0.groups.0.post.0.probe.port": 1434})
    since = planned.last_request_seq()
    assert dag_runner("asr_deploy__lab")().state == "success"
    changed = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in planned.requests(since=since, mutating=True)
               if "/replicationRecoveryPlans/" in r["path"]]
    assert changed == [("PATCH", "order-portal")]
    since = planned.last_request_seq()
    assert dag_runner("asr_deploy__lab")().state == "success"
    assert planned.requests(since=since, mutating=True) == []  # a second deployment changes nothing

    run = drill(plans=["order-portal"], unattended=True)
    assert run.state == "failed"
    assert states(run)["check_erp_database_answers"] == "failed"
    assert states(run)["manual_confirm_licence_server"] == "upstream_failed"
    report = report_of(run)
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "failed" and portal["error"].startswith("check ERP database answers: ")
    actions = {a["name"]: a for a in portal["actions"]}
    assert actions["ERP database answers"]["state"] == "Failed" and "1434" in actions["ERP database answers"]["detail"]
    groups = {g["label"]: g for g in portal["groups"]}
    assert groups["Group 1: Start virtual machines"]["state"] == "Succeeded"
    assert groups["Group 2: Start virtual machines"]["start"] is None  # held: never booted
    assert report["cleanup_proof"]["incomplete"] is False


def test_a_plan_with_a_member_not_ready_is_skipped_as_a_whole_with_the_reason(planned, reports):
    planned.set_replication("APP-ERP-02", paused=True, lag_seconds=7200)
    since = planned.last_request_seq()
    run = drill(plans=["order-portal"], unattended=True)
    assert run.state == "failed"  # nothing was drilled: the drill proved nothing
    report = report_of(run)
    portal = plan_of(report, "order-portal")
    assert portal["outcome"] == "skipped" and portal["error"].startswith("APP-ERP-02: ")
    assert {s["vm"] for s in report["gate"]["skipped"]} == {"SQL-PRD-01", "APP-ERP-01", "APP-ERP-02",
                                                            "WEB-PORTAL-01"}
    assert plan_jobs(planned, since) == []  # a plan is drilled whole or not at all
    planned.set_replication("APP-ERP-02", paused=False)
