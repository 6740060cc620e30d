"""Failover and failback through asr_failover__lab and asr_failback__lab (`dag.test`), after deployment and enable.

Every approval is answered through Airflow's REST API as the UI's required-action form does. The
lab's request log shows what each run sent: nothing before the failover's approval, no job started
twice, no step's write outside its task.
"""

from __future__ import annotations

import json

import pytest

from site_recovery.records import ProtectedItemSummary
from tests.dags.hitl import Answers
from tests.dags.runs import dag_runner, kept_state, states

pytestmark = pytest.mark.lab
FAILOVER, FAILBACK = "asr_failover__lab", "asr_failback__lab"
FAST = {"timeouts.poll_interval": "1s", "failover.verify_timeout": "20s"}
VMS = ["LIC-SRV-01", "FS-PRD-01"]
#: the writes of a recovery, by the path's last segment
RECOVERY_WRITES = ("plannedFailover", "unplannedFailover", "failoverCommit", "failoverCancel", "reProtect")
APPROVE = {"approve_failover": [("admin", "Fail over")], "approve_commit": [("admin", "Commit")],
           "approve_reprotect": [("admin", "Reprotect")]}


@pytest.fixture
def protected(lab, connections, site_file, deploy):
    """The lab site deployed and its VMs protected by the DAGs; returns the lab."""
    site_file(FAST)

    def build() -> None:
        assert deploy().state == "success"
        enabled = dag_runner("asr_enable_replication__lab")(vms=VMS)
        assert enabled.state == "success", states(enabled)

    kept_state(lab, f"recovery of {VMS}", FAST, build)
    return lab


def writes(lab, since: int) -> list[tuple[str, str]]:
    """(action, protected item) of every recovery write sent since ``since``."""
    found = []
    for request in lab.requests(since=since, method="POST"):
        *_, item, action = request["path"].rstrip("/").split("/")
        if action in RECOVERY_WRITES:
            found.append((action, item))
    return found


def items() -> dict[str, ProtectedItemSummary]:
    """The site's protected items by VM name, read through the hook as any ASR client reads them."""
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.pairings import protected_items_in_scope
    from site_recovery.site import load_site_named

    site = load_site_named("lab")
    return {item.vm: item for _, item in protected_items_in_scope(AzureSiteRecoveryHook(site.azure.conn_id), site)}


def job_of(run, task_id: str, vm_index: int = 0):
    """The ASR job a mapped step task of ``run`` started, read back through the hook."""
    from site_recovery.hooks.asr import AzureSiteRecoveryHook, summarize_job
    from site_recovery.site import load_site_named

    site = load_site_named("lab")
    name = run.get_task_instance(task_id, map_index=vm_index).xcom_pull(task_ids=task_id, map_indexes=vm_index)
    hook = AzureSiteRecoveryHook(site.azure.conn_id)
    return summarize_job(hook.get_job(site.azure.resource_group, site.azure.vault_name, name))


def test_a_planned_failover_then_a_failback_end_protected_in_the_original_direction(protected, airflow_users):
    since = protected.last_request_seq()
    with Answers(FAILOVER, APPROVE) as answers:
        run = dag_runner(FAILOVER)(vms=VMS, kind="planned", confirm_site="lab")
    assert run.state == "success", states(run)
    assert [status for *_, status in answers.responses] == [200, 200, 200]
    asked = answers.waited["approve_failover"]
    assert [u["id"] for u in asked["assigned_users"]] == ["admin"]
    assert "LIC-SRV-01" in asked["body"] and "ready to fail over" in asked["body"]
    assert "| LIC-SRV-01 | failed over, commit pending | verified: " in answers.waited["approve_commit"]["body"]
    sent = writes(protected, since)
    assert sorted(action for action, _ in sent) == sorted(["plannedFailover", "failoverCommit", "reProtect"] * 2)
    assert len(set(sent)) == len(sent)  # no write sent twice for one VM
    now = items()
    for vm in VMS:
        assert (now[vm].active_location, now[vm].protection_state) == ("Recovery", "Protected"), now[vm]

    since = protected.last_request_seq()
    with Answers(FAILBACK, APPROVE):
        back = dag_runner(FAILBACK)(vms=VMS, confirm_site="lab")
    assert back.state == "success", states(back)
    assert sorted(action for action, _ in writes(protected, since)) == sorted(
        ["plannedFailover", "failoverCommit", "reProtect"] * 2)
    now = items()
    for vm in VMS:
        assert (now[vm].active_location, now[vm].protection_state) == ("Primary", "Protected"), now[vm]
        assert now[vm].replication_health == "Normal"


def test_a_wrong_confirmation_and_an_unknown_vm_fail_before_any_change(protected, output):
    since = protected.last_request_seq()
    run = dag_runner(FAILOVER)(vms=["LIC-SRV-01", "NOPE-01"], kind="planned", confirm_site="lbа")
    assert run.state == "failed"
    assert states(run)["assess"] == "failed" and states(run)["approve_failover"] == "upstream_failed"
    log = output()
    assert "the confirmation 'lbа' is not the site's name" in log
    assert "not protected in this site's clouds: NOPE-01" in log
    assert protected.requests(since=since, mutating=True) == []


@pytest.mark.parametrize("step", ["approve_failover", "approve_commit", "approve_reprotect"])
def test_a_rejection_at_any_approval_changes_nothing_further(protected, airflow_users, step):
    plan = {}
    for task_id, answer in APPROVE.items():
        plan[task_id] = [("admin", "Reject")] if task_id == step else answer
        if task_id == step:
            break
    since = protected.last_request_seq()
    with Answers(FAILOVER, plan):
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "failed"
    assert states(run)[step] == "failed"
    expected = {"approve_failover": [], "approve_commit": ["plannedFailover"],
                "approve_reprotect": ["plannedFailover", "failoverCommit"]}[step]
    assert [action for action, _ in writes(protected, since)] == expected


def test_the_commit_approval_offers_a_cancel_only_where_asr_allows_it(protected, airflow_users):
    """Recorded: a failed-over VMM-to-VMM VM does not list CancelFailover in its allowedOperations, so the
    approval offers Commit or Reject and says how to go back; an answer it does not offer is refused."""
    with Answers(FAILOVER, {"approve_failover": APPROVE["approve_failover"],
                            "approve_commit": [("admin", "Cancel failover"), ("admin", "Commit")],
                            "approve_reprotect": APPROVE["approve_reprotect"]}) as answers:
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "success", states(run)
    asked = answers.waited["approve_commit"]
    assert asked["options"] == ["Commit", "Reject"]
    assert "ASR offers no cancel for these VMs" in asked["body"]
    assert [(task, status) for task, _, status in answers.responses if task == "approve_commit"] == [
        ("approve_commit", 400), ("approve_commit", 200)]  # "Cancel failover" is not an option here


def test_an_unplanned_failover_with_the_primary_vmm_silent(protected, airflow_users, output):
    protected.winrm_controls("vmm-ams-01.corp.meridianpack.nl", answering=False)
    since = protected.last_request_seq()
    planned = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert planned.state == "failed" and states(planned)["assess"] == "failed"
    assert "a planned failover needs the site it leaves: its VMM server does not answer" in output()
    with Answers(FAILOVER, APPROVE):
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="unplanned", confirm_site="lab")
    assert run.state == "success", states(run)
    [(action, _), *rest] = writes(protected, since)
    assert action == "unplannedFailover" and [a for a, _ in rest] == ["failoverCommit", "reProtect"]
    job = job_of(run, "fail_over_vm.failover")
    assert job.scenario_name == "UnplannedFailover" and job.state == "Succeeded"
    # sourceSiteOperations NotRequired: ASR skips (state Other, "Skipped") the shutdown and the last sync on the
    # silent primary site, and starts the replica from its newest recovery point
    assert [(task.friendly_name, task.state) for task in job.tasks][:3] == [
        ("Prerequisites check for failover", "Succeeded"), ("Shut down the virtual machine", "Other"),
        ("Synchronizing the latest changes", "Other")]


def test_a_retry_after_the_failover_was_sent_adopts_its_job_and_a_rerun_resumes_at_the_commit(protected,
                                                                                             airflow_users):
    """A worker that dies after sending the failover leaves a job running; its retry must find it, not start
    another; a new run then finds the VM failed over and goes on from the commit."""
    from site_recovery.operators.recovery import RecoveryStepOperator

    site_target = next(vm.target for vm in _assessed(["LIC-SRV-01"]))
    protected.set_time_scale(0.05)  # the failover job takes seconds: still running at the retry
    since = protected.last_request_seq()
    step = RecoveryStepOperator(task_id="failover", site_name="lab", target=site_target,
                                direction="PrimaryToRecovery", step="failover", kind="planned")
    first, retry = step.execute({}), step.execute({})
    assert first and retry == first
    assert [action for action, _ in writes(protected, since)] == ["plannedFailover"]

    with Answers(FAILOVER, {"approve_commit": APPROVE["approve_commit"],
                            "approve_reprotect": APPROVE["approve_reprotect"]}) as answers:
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "success", states(run)
    assert "approve_failover" not in answers.waited  # nothing left to fail over: no approval asked
    assert [action for action, _ in writes(protected, since)] == ["plannedFailover", "failoverCommit", "reProtect"]


def test_a_vm_in_a_drills_test_failover_is_refused_by_name(protected, output):
    from site_recovery.drill import drill_may_send
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.site import load_site_named

    site = load_site_named("lab")
    target = next(vm.target for vm in _assessed(["LIC-SRV-01"]))
    drill = AzureSiteRecoveryHook(site.azure.conn_id, request_guard=drill_may_send)
    drill.test_failover(site.azure.resource_group, site.azure.vault_name, target.fabric, target.container,
                        target.item_name, {"properties": {"failoverDirection": "PrimaryToRecovery",
                                                          "networkType": "NoNetworkAttachAsInput"}})
    since = protected.last_request_seq()
    run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "failed" and states(run)["assess"] == "failed"
    assert "VM LIC-SRV-01: a drill's test failover is active on it" in output()
    assert protected.requests(since=since, mutating=True) == []


def _assessed(vms: list[str]):
    """The VMs as the assessment would see them (read-only), for driving one step by hand."""
    from site_recovery.drill import utc_now
    from site_recovery.failover import assess_vm
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.pairings import protected_items_in_scope
    from site_recovery.records import VmTarget
    from site_recovery.site import load_site_named
    from site_recovery.vocabulary import FailoverDirection, FailoverKind

    site = load_site_named("lab")
    found = []
    for cloud, item in protected_items_in_scope(AzureSiteRecoveryHook(site.azure.conn_id), site):
        if item.vm in vms:
            target = VmTarget(vm=item.vm, cloud=cloud.cloud, fabric=cloud.fabric, container=cloud.container,
                              item_name=item.name)
            found.append(assess_vm(item, target, FailoverDirection.PRIMARY_TO_RECOVERY, FailoverKind.PLANNED,
                                   utc_now()))
    return found


def test_the_recovery_report_says_who_approved_what_and_where_each_vm_ended(protected, airflow_users, reports):
    with Answers(FAILOVER, APPROVE):
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "success", states(run)
    [path] = (reports / "lab" / "recovery").glob("*.json")
    report = json.loads(path.read_text())
    assert report["completed"] is True
    assert report["outcome"] == "every VM failed over, verified, committed and protected again"
    assert [(a["step"], a["decision"], a["by"]) for a in report["approvals"]] == [
        ("failover", "Fail over", "admin"), ("commit", "Commit", "admin"), ("reprotect", "Reprotect", "admin")]
    [vm] = report["vms"]
    assert (vm["vm"], vm["stage"], vm["active_location"]) == ("LIC-SRV-01", "reprotected", "Recovery")
    assert vm["replication_direction"] == "recovery to primary" and vm["data_loss_seconds"] == 0.0
    assert vm["rto_seconds"] > 0 and vm["verify"]["ok"] is True
    assert [job["scenario_name"] for job in vm["jobs"]] == ["PlannedFailover", "CommitFailover", "ReverseReplication"]
    assert all(job["tasks"] for job in vm["jobs"])
    page = path.with_suffix(".html").read_text()
    assert "DONE" in page and "LIC-SRV-01" in page and "Fail over</b> by admin" in page


def test_a_refused_run_still_writes_its_report(protected, reports):
    run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="nope")
    assert run.state == "failed" and states(run)["recovery_report"] == "success"
    [path] = (reports / "lab" / "recovery").glob("*.json")
    report = json.loads(path.read_text())
    assert report["completed"] is False and report["outcome"].startswith("refused at the assessment: 1 problem(s)")
    assert report["vms"][0]["stage"] == "ready to fail over" and report["vms"][0]["jobs"] == []


def test_a_failover_that_fails_for_one_vm_stops_before_the_commit_and_a_rerun_fails_over_only_that_vm(
        protected, airflow_users, reports, output):
    protected.add_job_fault("PlannedFailover", "Failed", target="FS-PRD-01", error={
        "code": "70094", "message": "Failed to start the virtual machine 'FS-PRD-01' on the recovery host.",
        "possibleCauses": "The recovery host is out of memory.", "recommendedAction": "Free memory and retry."})
    since = protected.last_request_seq()
    with Answers(FAILOVER, {"approve_failover": APPROVE["approve_failover"]}):
        run = dag_runner(FAILOVER)(vms=VMS, kind="planned", confirm_site="lab")
    assert run.state == "failed"
    vm_states = states(run)
    assert vm_states["wait_failover[0]"] == "success" and vm_states["verify[0]"] == "success"  # LIC-SRV-01
    assert vm_states["wait_failover[1]"] == "failed" and vm_states["approve_commit"] == "upstream_failed"
    assert "[70094] Failed to start the virtual machine 'FS-PRD-01'" in output()
    [path] = (reports / "lab" / "recovery").glob("*.json")
    report = json.loads(path.read_text())
    assert report["completed"] is False
    assert [(vm["vm"], vm["stage"]) for vm in report["vms"]] == [
        ("LIC-SRV-01", "failed over, commit pending"), ("FS-PRD-01", "ready to fail over")]
    assert report["vms"][1]["jobs"] == []  # the failed job's wait pushed no summary; its error is in the log

    with Answers(FAILOVER, APPROVE) as answers:
        rerun = dag_runner(FAILOVER)(vms=VMS, kind="planned", confirm_site="lab")
    assert rerun.state == "success", states(rerun)
    assert "FS-PRD-01" in answers.waited["approve_failover"]["body"]
    failovers = [item for action, item in writes(protected, since) if action == "plannedFailover"]
    assert len(failovers) == 3 and failovers.count(failovers[-1]) == 2  # FS-PRD-01 twice, LIC-SRV-01 once


def test_a_commit_that_fails_leaves_the_vm_failed_over_for_a_rerun(protected, airflow_users):
    protected.add_job_fault("CommitFailover", "Failed")
    with Answers(FAILOVER, {step: APPROVE[step] for step in ("approve_failover", "approve_commit")}):
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "failed" and states(run)["wait_commit[0]"] == "failed"
    vm = items()["LIC-SRV-01"]
    assert (vm.active_location, vm.protection_state) == ("Recovery", "CommitPendingStatesBegin")
    since = protected.last_request_seq()
    with Answers(FAILOVER, {"approve_commit": APPROVE["approve_commit"],
                            "approve_reprotect": APPROVE["approve_reprotect"]}):
        rerun = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert rerun.state == "success", states(rerun)
    assert [action for action, _ in writes(protected, since)] == ["failoverCommit", "reProtect"]


def test_a_drill_run_of_the_site_in_progress_refuses_the_failover(protected, output):
    """Airflow's side of 'one drill, failover or failback per site at a time': a drill run queued or running."""
    from airflow.models.dagrun import DagRun
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    with create_session() as session:
        session.add(DagRun(dag_id="asr_test_failover_drill__lab", run_id="scheduled__drill-in-progress",
                           run_type=DagRunType.SCHEDULED, state=DagRunState.RUNNING, run_after=timezone.utcnow(),
                           start_date=timezone.utcnow()))
    try:
        since = protected.last_request_seq()
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
        assert run.state == "failed" and states(run)["assess"] == "failed"
        assert "1 run(s) of asr_test_failover_drill__lab active" in output()
        assert protected.requests(since=since, mutating=True) == []
    finally:
        with create_session() as session:
            session.query(DagRun).filter(DagRun.run_id == "scheduled__drill-in-progress").delete()


def test_a_reprotect_whose_replication_stalls_fails_the_wait_saying_where_it_stood(protected, airflow_users,
                                                                                  site_file, output):
    """The replica link is down (Hyper-V Replica stopped shipping changes) and stays down: the reverse replication
    never gets healthy, and the wait says so when its limit passes."""
    site_file({**FAST, "scope.initial_replication_timeout": "5s"})
    protected.set_replication("LIC-SRV-01", paused=True)
    with Answers(FAILOVER, APPROVE):
        run = dag_runner(FAILOVER)(vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "failed"
    assert states(run)["wait_reprotect[0]"] == "success" and states(run)["wait_replication[0]"] == "failed"
    log = output()
    assert "Timeout: initial replication of VM 'LIC-SRV-01' had not completed" in log
    vm = items()["LIC-SRV-01"]
    assert (vm.active_location, vm.protection_state, vm.replication_health) == ("Recovery", "Protected", "Warning")


# ------------------------------------------------------------------------------- recovery plans
PORTAL = "plan_order_portal"
MANUAL = f"{PORTAL}.manual_confirm_licence_server"
PORTAL_VMS = ["SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"]


@pytest.fixture
def protected_plans(lab, connections, site_file, deploy):
    """The lab site deployed (its recovery plans created) and every VM in scope protected; returns the lab."""
    site_file(FAST)

    def build() -> None:
        assert deploy().state == "success"
        enabled = dag_runner("asr_enable_replication__lab")()
        assert enabled.state == "success", states(enabled)

    kept_state(lab, "recovery of every VM", FAST, build)
    return lab


def task_states(run) -> dict[str, str]:
    """Each unmapped task's state by its full id (``states`` keys by the id's last part, which plan groups share)."""
    return {ti.task_id: ti.state for ti in run.get_task_instances() if ti.map_index < 0}


def plan_writes(lab, since: int) -> list[tuple[str, str]]:
    """(action, plan) of every recovery write sent to a recovery plan since ``since``; and job resumes."""
    found = []
    for request in lab.requests(since=since, method="POST"):
        *_, kind, name, action = request["path"].rstrip("/").split("/")
        if kind == "replicationRecoveryPlans" or action == "resume":
            found.append((action, name if kind == "replicationRecoveryPlans" else "job"))
    return found


def test_a_recovery_plan_fails_over_in_boot_order_behind_its_manual_action_and_fails_back(
        protected_plans, airflow_users, reports):
    since = protected_plans.last_request_seq()
    answers_for = {"approve_failover": [("admin", "Fail over")],
                   MANUAL: [("admin", "Confirm")],
                   "approve_commit": [("admin", "Commit")], "approve_reprotect": [("admin", "Reprotect")]}
    with Answers(FAILOVER, answers_for) as answers:
        run = dag_runner(FAILOVER)(plans=["order-portal"], vms=["LIC-SRV-01"], kind="planned", confirm_site="lab")
    assert run.state == "success", states(run)
    assert [status for *_, status in answers.responses] == [200, 200, 200, 200]
    assert "| SQL-PRD-01 | plan order-portal | ready to fail over |" in answers.waited["approve_failover"]["body"]
    assert "Check that LIC-SRV-01" in answers.waited[MANUAL]["body"]
    commit_body = answers.waited["approve_commit"]["body"]
    for vm in [*PORTAL_VMS, "LIC-SRV-01"]:
        assert f"| {vm} | failed over, commit pending | verified: " in commit_body
    # one job per step for the whole plan, resumed twice (the Airflow check, then the manual action); the VM
    # named on its own takes its steps as a VM; nothing sent twice
    assert plan_writes(protected_plans, since) == [("plannedFailover", "order-portal"), ("resume", "job"),
                                                   ("resume", "job"), ("failoverCommit", "order-portal"),
                                                   ("reProtect", "order-portal")]
    assert sorted(action for action, item in writes(protected_plans, since) if item != "order-portal") == [
        "failoverCommit", "plannedFailover", "reProtect"]  # LIC-SRV-01's own steps
    s = task_states(run)
    assert s[f"{PORTAL}.check_erp_database_answers"] == "success" and s[f"{PORTAL}.wait_group_3"] == "success"
    assert s["plan_file_and_print.failover"] == "skipped"  # not asked for: every task of it is skipped
    now = items()
    for vm in [*PORTAL_VMS, "LIC-SRV-01"]:
        assert (now[vm].active_location, now[vm].protection_state) == ("Recovery", "Protected"), now[vm]
    assert now["FS-PRD-01"].active_location == "Primary"
    [path] = (reports / "lab" / "recovery").glob("*.json")
    report = json.loads(path.read_text())
    assert report["completed"] is True, report["outcome"]
    [plan] = report["plans"]
    assert plan["vms"] == PORTAL_VMS
    assert [(job["scenario_name"], job["state"]) for job in plan["jobs"]] == [
        ("PlannedFailover", "Succeeded"), ("CommitFailover", "Succeeded"), ("ReverseReplication", "Succeeded")]
    assert [(a["action"], a["confirmed"], a["by"]) for a in plan["actions"]] == [
        ("ERP database answers", True, "Airflow check"), ("Confirm licence server", True, "admin")]
    assert {vm["vm"]: (vm["plan"], vm["verify"]["ok"]) for vm in report["vms"]} == {
        **{vm: ("order-portal", True) for vm in PORTAL_VMS}, "LIC-SRV-01": (None, True)}

    since = protected_plans.last_request_seq()
    with Answers(FAILBACK, APPROVE):  # the manual action runs on failover only (directions: primary_to_recovery)
        back = dag_runner(FAILBACK)(plans=["order-portal"], confirm_site="lab")
    assert back.state == "success", states(back)
    assert plan_writes(protected_plans, since) == [("plannedFailover", "order-portal"), ("resume", "job"),
                                                   ("failoverCommit", "order-portal"), ("reProtect", "order-portal")]
    now = items()
    for vm in PORTAL_VMS:
        assert (now[vm].active_location, now[vm].protection_state) == ("Primary", "Protected"), now[vm]
        assert now[vm].replication_health == "Normal"
    state = protected_plans.state()
    assert state["inTestFailover"] == [] and state["testVms"] == []


def test_a_plan_whose_vm_is_also_named_or_unknown_is_refused_before_any_change(protected_plans, output):
    since = protected_plans.last_request_seq()
    run = dag_runner(FAILOVER)(plans=["order-portal", "payroll"], vms=["APP-ERP-01"], kind="planned",
                               confirm_site="lab")
    assert run.state == "failed" and states(run)["assess"] == "failed"
    log = output()
    assert "no recovery plan payroll in the site file (plans: file-and-print, order-portal)" in log
    assert "named both one by one and through a recovery plan: APP-ERP-01 (plan order-portal)" in log
    assert protected_plans.requests(since=since, mutating=True) == []


def test_a_refused_manual_action_leaves_the_plans_job_waiting_and_a_rerun_adopts_it(protected_plans, airflow_users,
                                                                                     output):
    since = protected_plans.last_request_seq()
    with Answers(FAILOVER, {"approve_failover": [("admin", "Fail over")], MANUAL: [("admin", "Reject")]}):
        run = dag_runner(FAILOVER)(plans=["order-portal"], kind="planned", confirm_site="lab")
    assert run.state == "failed"
    s = task_states(run)
    assert s[MANUAL] == "failed" and s["approve_commit"] == "upstream_failed"
    assert "admin rejected the manual action 'Confirm licence server'" in output()
    assert plan_writes(protected_plans, since) == [("plannedFailover", "order-portal"), ("resume", "job")]

    since = protected_plans.last_request_seq()
    # every member failed over already (the job's first group task), so the failover's approval has nothing to ask
    with Answers(FAILOVER, {MANUAL: [("admin", "Confirm")], "approve_commit": [("admin", "Commit")],
                            "approve_reprotect": [("admin", "Reprotect")]}):
        rerun = dag_runner(FAILOVER)(plans=["order-portal"], kind="planned", confirm_site="lab")
    assert rerun.state == "success", states(rerun)
    # the plan's job was adopted, not started again; the check it had passed is not probed again
    assert plan_writes(protected_plans, since) == [("resume", "job"), ("failoverCommit", "order-portal"),
                                                   ("reProtect", "order-portal")]
    log = output()
    assert "its failover is already running" in log and "is past the check 'ERP database answers' already" in log
    assert "Nothing to approve: no VM stands where this step starts" in log
    now = items()
    assert all((now[vm].active_location, now[vm].protection_state) == ("Recovery", "Protected") for vm in PORTAL_VMS)


def test_a_plans_failover_job_failing_at_a_group_stops_the_run_before_the_commit(protected_plans, airflow_users,
                                                                                 reports, output):
    protected_plans.add_job_fault("PlannedFailover", "Failed", target="order-portal",
                                  task="Group 2: Start virtual machines", error={
                                      "code": "70094", "message": "Failed to start the virtual machine 'APP-ERP-02'.",
                                      "possibleCauses": "The recovery host is out of memory."})
    since = protected_plans.last_request_seq()
    with Answers(FAILOVER, {"approve_failover": [("admin", "Fail over")], MANUAL: [("admin", "Confirm")]}):
        run = dag_runner(FAILOVER)(plans=["order-portal"], kind="planned", confirm_site="lab")
    assert run.state == "failed"
    s = task_states(run)
    assert s[f"{PORTAL}.wait_group_2"] == "failed" and s["approve_commit"] == "upstream_failed"
    assert "Failed to start the virtual machine 'APP-ERP-02'" in output()
    assert [action for action, _ in plan_writes(protected_plans, since)] == ["plannedFailover", "resume", "resume"]
    [path] = (reports / "lab" / "recovery").glob("*.json")
    report = json.loads(path.read_text())
    assert report["completed"] is False
    [plan] = report["plans"]
    assert [(a["action"], a["confirmed"]) for a in plan["actions"]] == [("ERP database answers", True),
                                                                        ("Confirm licence server", True)]
    verified = {vm["vm"]: bool(vm["verify"] and vm["verify"]["ok"]) for vm in report["vms"]}
    assert verified == {"SQL-PRD-01": True, "APP-ERP-01": False, "APP-ERP-02": False, "WEB-PORTAL-01": False}
    now = items()  # ASR rolled the plan's failover back: a rerun starts it again from where the VMs stand
    assert all(now[vm].active_location == "Primary" and "PlannedFailover" in now[vm].allowed_operations
               for vm in PORTAL_VMS), {vm: now[vm] for vm in PORTAL_VMS}


def test_a_plan_the_vault_holds_otherwise_than_the_site_file_is_refused(protected_plans, site_file, output):
    # the site file now keeps APP-ERP-02 out of the plan; the vault's plan (not redeployed) still boots it
    site_file({**FAST, "recovery_plans.0.groups.1.vms": ["APP-ERP-01"]})
    since = protected_plans.last_request_seq()
    run = dag_runner(FAILOVER)(plans=["order-portal"], kind="planned", confirm_site="lab")
    assert run.state == "failed" and states(run)["assess"] == "failed"
    log = output()
    assert "recovery plan order-portal: the vault's plan differs from the site file (" in log
    assert "APP-ERP-02" in log.split("the vault's plan differs from the site file", 1)[1].split("\n", 1)[0]
    assert protected_plans.requests(since=since, mutating=True) == []
