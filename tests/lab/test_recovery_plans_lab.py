"""The recovery plans step against the lab, through the hook and the real SDK: create, leave alone, update, report.

Also a plan's test failover as the drill drives it: one job, a manual action resumed through
the hook with a comment, group tasks read back with their VMs.
"""

from __future__ import annotations

import pytest

from site_recovery.hooks.asr import AzureSiteRecoveryHook, summarize_job
from site_recovery.recovery_plans import create_body, desired_groups, members
from site_recovery.site import load_site_named
from site_recovery.tasks.deploy_plans import ensure_plans, fabric_id, protected_items_by_vm
from site_recovery.vocabulary import AsrJobState, DeployAction
from tests.labflows import Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab

PLAN_VMS = {"Gold-Prod": ["SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01", "FS-PRD-01"],
            "Silver-Prod": ["PRINT-01", "CAD-VAULT-01"]}


@pytest.fixture
def runbook(lab):
    book = Runbook(lab, asr_client(lab), vault_client(lab))
    book.create_vault()
    book.register()
    book.create_policy()[0].result()
    book.pair("Gold-Prod", "Gold-DR")[0].result()
    book.pair("Silver-Prod", "Silver-DR")[0].result()
    return book


@pytest.fixture
def site(lab_connection):
    return load_site_named("lab")


@pytest.fixture
def hook(site):
    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)


def protect(runbook: Runbook, clouds: dict[str, list[str]]) -> None:
    pollers = [runbook.enable(vm, cloud)[0] for cloud, vms in clouds.items() for vm in vms]
    for poller in pollers:
        poller.result()


def plan_groups(runbook: Runbook, name: str) -> list[list[str]]:
    plan = runbook.asr.replication_recovery_plans.get(runbook.rg, runbook.vault_name, name)
    vm_ids = {}
    for cloud, vms in PLAN_VMS.items():
        for vm in vms:
            container, item = runbook.protectable(vm, cloud)
            vm_ids[item.name.lower()] = vm
    return [sorted(vm_ids[i.virtual_machine_id.lower()] for i in g.replication_protected_items or [])
            for g in plan.properties.groups]


def test_plans_wait_for_protection_then_are_created_then_left_alone(lab, runbook, site, hook):
    records = ensure_plans(site, hook)
    assert [(r.item, r.action) for r in records] == [("order-portal", DeployAction.WAITING),
                                                      ("file-and-print", DeployAction.WAITING)]
    assert "SQL-PRD-01" in records[0].detail and records[0].job_name is None

    protect(runbook, PLAN_VMS)
    records = ensure_plans(site, hook)
    assert [(r.item, r.action) for r in records] == [("order-portal", DeployAction.CREATED),
                                                      ("file-and-print", DeployAction.CREATED)]
    for r in records:
        assert runbook.job(r.job_name).properties.state == AsrJobState.SUCCEEDED
    assert plan_groups(runbook, "order-portal") == [[], [], ["SQL-PRD-01"], ["APP-ERP-01", "APP-ERP-02"],
                                                    ["WEB-PORTAL-01"]]
    plan = runbook.asr.replication_recovery_plans.get(runbook.rg, runbook.vault_name, "order-portal")
    # The Airflow-side check is held by ASR as a manual action, so the plan's job stops there for it.
    check, script = plan.properties.groups[2].end_group_actions
    assert (check.action_name, check.custom_details.instance_type) == ("ERP database answers", "ManualActionDetails")
    assert check.custom_details.description.startswith("Airflow check: tcp 1433 on SQL-PRD-01.")
    assert sorted(check.failover_types) == ["PlannedFailover", "TestFailover", "UnplannedFailover"]
    assert (script.action_name, script.custom_details.path, script.custom_details.fabric_location,
            script.custom_details.timeout) == ("Repoint ERP SQL alias", "\\RPScripts\\Set-SqlAlias.ps1",
                                               "Recovery", "PT5M")
    [manual] = plan.properties.groups[3].start_group_actions
    assert manual.failover_directions == ["PrimaryToRecovery"]

    seq = lab.last_request_seq()
    records = ensure_plans(site, hook)
    assert {r.action for r in records} == {DeployAction.IN_PLACE}
    assert lab.requests(seq, mutating=True) == []


def test_a_changed_site_file_updates_the_plan_in_place_and_says_what_changed(runbook, site, hook):
    protect(runbook, PLAN_VMS)
    ensure_plans(site, hook)
    plan = site.recovery_plans[0]
    moved = plan.model_copy(update={"groups": [
        plan.groups[0].model_copy(update={"vms": ["SQL-PRD-01", "APP-ERP-02"]}),
        plan.groups[1].model_copy(update={"vms": ["APP-ERP-01"], "pre": []}),
        plan.groups[2]]})
    changed = site.model_copy(update={"recovery_plans": [moved, site.recovery_plans[1]]})
    records = ensure_plans(changed, hook)
    assert [r.action for r in records] == [DeployAction.UPDATED, DeployAction.IN_PLACE]
    assert records[0].detail == ("group 1 VMs: add APP-ERP-02; group 2 VMs: remove APP-ERP-02; group 2 actions "
                                 "before boot: the site file has none; ASR has manual action 'Confirm licence server'")
    assert runbook.job(records[0].job_name).properties.scenario_name == "UpdateRecoveryPlan"
    assert plan_groups(runbook, "order-portal")[2:] == [["APP-ERP-02", "SQL-PRD-01"], ["APP-ERP-01"],
                                                         ["WEB-PORTAL-01"]]


def test_a_plan_the_site_file_does_not_name_is_reported_and_kept(runbook, site, hook):
    protect(runbook, {"Gold-Prod": PLAN_VMS["Gold-Prod"][:1]})
    items = protected_items_by_vm(hook, site)
    stray = site.recovery_plans[0].model_copy(update={"name": "legacy-erp", "groups": [
        site.recovery_plans[0].groups[0].model_copy(update={"post": []})]})
    ids, missing = members(stray, items)
    assert missing == []
    primary, recovery = runbook.primary, runbook.recovery
    job = hook.create_recovery_plan(site.azure.resource_group, site.azure.vault_name, "legacy-erp",
                                    create_body(desired_groups(stray, ids), fabric_id(site, primary),
                                                fabric_id(site, recovery)))
    assert runbook.job(job).properties.state == AsrJobState.SUCCEEDED
    records = ensure_plans(site, hook)
    assert (records[-1].item, records[-1].action) == ("legacy-erp", DeployAction.NOT_IN_SITE_FILE)
    assert [p.name for p in hook.list_recovery_plans(site.azure.resource_group, site.azure.vault_name)] == [
        "legacy-erp"]


def test_a_plan_test_failover_suspends_on_its_manual_action_until_resumed(lab, runbook, site, hook):
    protect(runbook, PLAN_VMS)
    ensure_plans(site, hook)
    az = site.azure
    body = {"properties": {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput"}}
    job = hook.recovery_plan_test_failover(az.resource_group, az.vault_name, "order-portal", body)
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    assert (summary.state, summary.state_description) == (AsrJobState.SUSPENDED, "WaitingForManualAction")
    waiting = next(t for t in summary.tasks if t.state == AsrJobState.SUSPENDED)
    assert (waiting.details_type, waiting.label) == ("ManualActionTaskDetails", "ERP database answers")
    hook.resume_job(az.resource_group, az.vault_name, job, "ERP database answers: Airflow check passed")
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    waiting = next(t for t in summary.tasks if t.state == AsrJobState.SUSPENDED)
    assert (waiting.details_type, waiting.label) == ("ManualActionTaskDetails", "Confirm licence server")
    assert waiting.instructions.startswith("Check that LIC-SRV-01")
    hook.resume_job(az.resource_group, az.vault_name, job, "Confirmed by admin in run manual__1")
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    assert summary.state == AsrJobState.SUCCEEDED
    groups = [(t.group_id, t.vms) for t in summary.tasks if t.details_type == "RecoveryPlanGroupTaskDetails"]
    assert groups == [("Failover", ["SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01"]),
                      ("1", ["SQL-PRD-01"]), ("2", ["APP-ERP-01", "APP-ERP-02"]), ("3", ["WEB-PORTAL-01"])]
    confirmed = next(t for t in summary.tasks if t.label == "Confirm licence server")
    assert confirmed.observation == "Confirmed by admin in run manual__1"
    scripts = [t.output for t in summary.tasks if t.details_type == "ScriptActionTaskDetails"]
    assert scripts == ["SQL alias ERPDB now points to SQL-PRD-01 (10.60.30.11)",
                       "portal.meridianpack.nl A record set to 10.60.40.21"]
    cleanup = hook.recovery_plan_test_failover_cleanup(az.resource_group, az.vault_name, "order-portal",
                                                       {"properties": {"comments": "drill done"}})
    assert runbook.job(cleanup).properties.state == AsrJobState.SUCCEEDED


def test_a_plans_failover_commit_and_reprotect_through_the_hooks_guarded_client(lab, runbook, site, hook):
    """The plan-level recovery calls as the failover DAG's steps send them, each through a client that may send
    only its own step's writes; the plan's job stops at the manual action meant for a real failover too."""
    from site_recovery.failover import recovery_guard
    from site_recovery.vocabulary import FailoverDirection, RecoveryStep

    protect(runbook, PLAN_VMS)
    ensure_plans(site, hook)
    az, p2r = site.azure, FailoverDirection.PRIMARY_TO_RECOVERY

    def guarded(step: RecoveryStep) -> AzureSiteRecoveryHook:
        return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=recovery_guard(p2r, step))

    body = {"properties": {"failoverDirection": "PrimaryToRecovery",
                           "providerSpecificDetails": [{"instanceType": "RecoveryPlanProviderSpecificFailoverInput"}]}}
    job = guarded(RecoveryStep.FAILOVER).recovery_plan_failover(az.resource_group, az.vault_name, "order-portal",
                                                                planned=True, failover_input=body)
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    assert (summary.scenario_name, summary.state) == ("PlannedFailover", AsrJobState.SUSPENDED)
    waiting = next(t for t in summary.tasks if t.state == AsrJobState.SUSPENDED)
    assert waiting.label == "ERP database answers"
    for _ in range(2):  # the check, then "Confirm licence server" (site file: test, planned and unplanned)
        hook.resume_job(az.resource_group, az.vault_name, job, "confirmed")
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    assert summary.state == AsrJobState.SUCCEEDED, summary.tasks
    assert [t.label for t in summary.tasks if t.details_type == "RecoveryPlanGroupTaskDetails"][:2] == [
        "Group Shutdown: Shut down virtual machines", "Group Failover: Fail over virtual machines"]
    plan = hook.get_recovery_plan_or_none(az.resource_group, az.vault_name, "order-portal")
    assert plan.allowed_operations == ["Commit", "ReverseReplicate"]

    commit = guarded(RecoveryStep.COMMIT).recovery_plan_commit(az.resource_group, az.vault_name, "order-portal")
    assert runbook.job(commit).properties.state == AsrJobState.SUCCEEDED
    reprotect = guarded(RecoveryStep.REPROTECT).recovery_plan_reprotect(az.resource_group, az.vault_name,
                                                                        "order-portal")
    assert runbook.job(reprotect).properties.state == AsrJobState.SUCCEEDED
    item = runbook.asr.replication_protected_items.get(runbook.rg, runbook.vault_name,
                                                       *runbook.item_args("SQL-PRD-01"))
    assert (item.properties.protection_state, item.properties.active_location) == ("Protected", "Recovery")
