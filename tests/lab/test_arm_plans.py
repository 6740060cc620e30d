"""Recovery plans in the lab: definition as ASR keeps it, one job per plan test failover, its cleanup."""

from __future__ import annotations

import pytest

from asr_lab.arm import views
from asr_lab.arm.errors import AsrError
from asr_lab.arm.protection import IDLE, TFO_PENDING
from tests.lab.test_arm_world import World

PORTAL = [["SQL-PRD-01"], ["APP-ERP-01", "APP-ERP-02"], ["WEB-PORTAL-01"]]
SQL_ALIAS = "\\RPScripts\\Set-SqlAlias.ps1"


@pytest.fixture
def world() -> World:
    world = World().configured()
    for vm in (vm for group in PORTAL for vm in group):
        world.enable(vm)
    world.finish()
    return world


def item_id(world: World, vm: str) -> str:
    primary, cloud, name = world.item_args(vm)
    return world.asr_id(f"replicationFabrics/{primary}/replicationProtectionContainers/{cloud}/"
                        f"replicationProtectedItems/{name}")


def script(name: str, path: str = SQL_ALIAS, side: str = "Recovery", timeout: str | None = "PT5M") -> dict:
    return {"actionName": name, "failoverTypes": ["TestFailover", "PlannedFailover", "UnplannedFailover"],
            "failoverDirections": ["PrimaryToRecovery"],
            "customDetails": {"instanceType": "ScriptActionDetails", "path": path, "timeout": timeout,
                              "fabricLocation": side}}


def manual(name: str, text: str = "Confirm the licence server answers") -> dict:
    return {"actionName": name, "failoverTypes": ["TestFailover"], "failoverDirections": ["PrimaryToRecovery"],
            "customDetails": {"instanceType": "ManualActionDetails", "description": text}}


def plan_body(world: World, groups=PORTAL, start=None, end=None) -> dict:
    start, end = start or {}, end or {}
    return {"properties": {
        "primaryFabricId": world.asr_id(f"replicationFabrics/{world.primary}"),
        "recoveryFabricId": world.asr_id(f"replicationFabrics/{world.recovery}"),
        "failoverDeploymentModel": "NotApplicable",
        "groups": [{"groupType": "Boot", "replicationProtectedItems": [{"id": item_id(world, vm)} for vm in vms],
                    "startGroupActions": start.get(n, []), "endGroupActions": end.get(n, [])}
                   for n, vms in enumerate(groups, start=1)]}}


def create(world: World, name: str = "order-portal", **kwargs) -> dict:
    job = world.backend.create_recovery_plan(world.vault, name, plan_body(world, **kwargs))
    world.finish()
    assert job.state == "Succeeded", job.errors
    return views.recovery_plan_json(world.backend, world.vault, world.backend.get_recovery_plan(world.vault, name))


def tfo_body(world: World) -> dict:
    return world.test_failover_body()


class TestDefinition:
    def test_groups_read_back_normalised_with_shutdown_and_failover_first(self, world: World):
        plan = create(world, end={1: [script("Repoint ERP")]}, start={2: [manual("Licence server")]})
        groups = plan["properties"]["groups"]
        assert [g["groupType"] for g in groups] == ["Shutdown", "Failover", "Boot", "Boot", "Boot"]
        assert groups[2]["replicationProtectedItems"] == [
            {"id": item_id(world, "SQL-PRD-01"), "virtualMachineId": world.vm("SQL-PRD-01").id}]
        assert groups[2]["endGroupActions"][0]["customDetails"] == {
            "instanceType": "ScriptActionDetails", "path": SQL_ALIAS, "timeout": "PT5M", "fabricLocation": "Recovery"}
        assert groups[3]["startGroupActions"][0]["customDetails"]["instanceType"] == "ManualActionDetails"
        assert plan["properties"]["allowedOperations"] == ["PlannedFailover", "UnplannedFailover", "TestFailover"]
        assert plan["properties"]["primaryFabricFriendlyName"] == world.estate.primary.vmm.fqdn

    def test_update_replaces_the_groups(self, world: World):
        create(world)
        body = plan_body(world, groups=[["SQL-PRD-01", "APP-ERP-01"], ["APP-ERP-02", "WEB-PORTAL-01"]])
        job = world.backend.update_recovery_plan(world.vault, "order-portal", {"properties": body["properties"]})
        world.finish()
        assert (job.scenario_name, job.state) == ("UpdateRecoveryPlan", "Succeeded")
        plan = world.backend.get_recovery_plan(world.vault, "order-portal")
        assert [len(g["replicationProtectedItems"]) for g in plan.groups] == [0, 0, 2, 2]

    def test_delete_removes_the_plan(self, world: World):
        create(world)
        job = world.backend.delete_recovery_plan(world.vault, "order-portal")
        world.finish()
        assert job.scenario_name == "DeleteRecoveryPlan"
        assert world.backend.list_recovery_plans(world.vault) == []

    @pytest.mark.parametrize("edit, reason", [
        (lambda b: b["properties"]["groups"].extend([{"groupType": "Boot"}] * 5), "at most 7 are allowed"),
        (lambda b: b["properties"]["groups"][0]["replicationProtectedItems"].append({"id": "/nope"}),
         "names a protected item that does not exist"),
        (lambda b: b["properties"]["groups"][1]["endGroupActions"].append(script("x", timeout="PT11M")),
         "of at most 600 seconds"),
        (lambda b: b["properties"]["groups"][1]["endGroupActions"].append(script("x", path="C:\\x.ps1")),
         "relative to the VMM library share"),
        (lambda b: b["properties"]["groups"][1]["endGroupActions"].append(
            {**manual("x"), "customDetails": {"instanceType": "AutomationRunbookActionDetails"}}),
         "runbooks run only in failovers to Azure"),
    ])
    def test_asr_rules_are_enforced(self, world: World, edit, reason):
        body = plan_body(world)
        edit(body)
        with pytest.raises(AsrError) as refused:
            world.backend.create_recovery_plan(world.vault, "order-portal", body)
        assert reason in refused.value.rendered["possibleCauses"]


class TestPlanTestFailover:
    def test_one_job_runs_the_groups_in_order_and_the_items_follow_it(self, world: World):
        create(world, end={1: [script("Repoint ERP")]})
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        assert (job.scenario_name, job.target_instance_type, job.target_object_name) == (
            "TestFailover", "RecoveryPlan", "order-portal")
        assert [t.friendly_name for t in job.tasks] == [
            "Recovery plan preflight checks", "Create test environment", "Group Failover: Create test virtual machines",
            "Group 1: Start virtual machines", "Repoint ERP", "Group 2: Start virtual machines",
            "Group 3: Start virtual machines", "Finalize test failover"]
        assert world.item("APP-ERP-01").test_failover_state == "TestFailoverInitiated"
        assert world.backend.get_recovery_plan(world.vault, "order-portal").scenario_job == job.name
        world.finish()
        assert job.state == "Succeeded"
        wire = views.job_json(world.backend, world.vault, job)["properties"]
        group2 = wire["tasks"][5]["groupTaskCustomDetails"]
        assert (group2["instanceType"], group2["groupId"], group2["rpGroupType"]) == (
            "RecoveryPlanGroupTaskDetails", "2", "Boot")
        assert [c["friendlyName"] for c in group2["childTasks"]] == ["APP-ERP-01", "APP-ERP-02"]
        assert wire["tasks"][4]["customDetails"] == {
            "instanceType": "ScriptActionTaskDetails", "name": "Repoint ERP", "path": SQL_ALIAS,
            "output": "SQL alias ERPDB now points to SQL-PRD-01 (10.60.30.11)", "isPrimarySideScript": False}
        starts = [wire["tasks"][i]["startTime"] for i in (3, 5, 6)]
        assert starts == sorted(starts) and len(set(starts)) == 3
        for vm in ("SQL-PRD-01", "WEB-PORTAL-01"):
            item = world.item(vm)
            assert (item.test_failover_state, item.allowed_operations) == ("WaitingForCompletion", TFO_PENDING)
            assert item.test_vm.state == "Running"
        assert len(job.details["protectedItemDetails"]) == 4
        plan = views.recovery_plan_json(world.backend, world.vault,
                                        world.backend.get_recovery_plan(world.vault, "order-portal"))
        assert plan["properties"]["allowedOperations"] == ["TestFailoverCleanup"]

        cleanup = world.backend.plan_test_failover_cleanup(world.vault, "order-portal",
                                                           {"properties": {"comments": "drill ok"}})
        world.finish()
        assert (cleanup.scenario_name, cleanup.state) == ("TestFailoverCleanup", "Succeeded")
        for vm in ("SQL-PRD-01", "APP-ERP-02"):
            item = world.item(vm)
            assert (item.test_vm, item.allowed_operations, item.test_failover_state) == (None, IDLE,
                                                                                         "MarkedForDeletion")
            assert item.last_test_failover == cleanup.start_time
        plan = world.backend.get_recovery_plan(world.vault, "order-portal")
        assert world.backend.plan_allowed_operations(world.vault, plan) == [
            "PlannedFailover", "UnplannedFailover", "TestFailover"]

    def test_a_manual_action_suspends_the_job_until_resumed_with_a_comment(self, world: World):
        create(world, start={2: [manual("Licence server", "Check LIC-SRV-01 answers on 27000")]})
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        world.finish()
        assert (job.state, job.state_description) == ("Suspended", "WaitingForManualAction")
        task = job.tasks[job.current]
        assert task.details["instructions"] == "Check LIC-SRV-01 answers on 27000"
        assert world.item("SQL-PRD-01").test_vm.state == "Running"  # group 1 is up
        assert world.item("APP-ERP-01").test_vm.state == "Off"
        world.backend.resume_job(world.vault, job.name, {"properties": {"comments": "approved by ops-lead"}})
        world.finish()
        assert job.state == "Succeeded"
        wire = views.job_json(world.backend, world.vault, job)["properties"]
        manual_task = next(t for t in wire["tasks"] if t["friendlyName"] == "Licence server")
        assert manual_task["customDetails"]["observation"] == "approved by ops-lead"

    def test_a_fault_on_a_later_group_survives_the_resume_of_a_manual_action(self, world: World):
        create(world, start={2: [manual("Licence server")]})
        world.backend.add_job_fault({"scenario": "TestFailover", "outcome": "Failed", "target": "order-portal",
                                     "task": "Group 3: Start virtual machines",
                                     "error": {"code": "70094", "message": "Failed to start WEB-PORTAL-01 - Test."}})
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        world.finish()
        world.backend.resume_job(world.vault, job.name, {"properties": {"comments": "ok"}})
        world.finish()
        assert job.state == "Failed"
        assert job.errors[0]["serviceErrorDetails"]["message"] == "Failed to start WEB-PORTAL-01 - Test."
        states = {t.friendly_name: t.state for t in job.tasks}
        assert (states["Group 2: Start virtual machines"], states["Group 3: Start virtual machines"]) == (
            "Succeeded", "Failed")

    def test_a_script_writing_to_stderr_fails_the_job_and_leaves_test_vms_for_cleanup(self, world: World):
        create(world, end={1: [script("Repoint ERP")]})
        world.backend.set_failing_script(world.estate.recovery.vmm.fqdn, SQL_ALIAS, "Access denied to ERPDB")
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        world.finish()
        assert job.state == "Failed"
        [error] = job.errors
        assert "Access denied to ERPDB" in error["serviceErrorDetails"]["possibleCauses"]
        assert error["serviceErrorDetails"]["code"] == "28112"
        assert [t.state for t in job.tasks][4:] == ["Failed", "Other", "Other", "Other"]
        item = world.item("APP-ERP-01")  # its test VM exists (the Failover group ran): cleanup pending
        assert (item.test_failover_state, item.allowed_operations) == ("TestFailoverFailed", TFO_PENDING)
        world.backend.plan_test_failover_cleanup(world.vault, "order-portal", {"properties": {}})
        world.finish()
        assert world.item("APP-ERP-01").test_vm is None

    def test_cancel_before_any_test_vm_restores_the_items(self, world: World):
        create(world)
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        world.backend.cancel_job(world.vault, job.name)
        item = world.item("WEB-PORTAL-01")
        assert (item.test_failover_state, item.allowed_operations, item.test_vm) == ("None", IDLE, None)
        plan = world.backend.get_recovery_plan(world.vault, "order-portal")
        assert world.backend.plan_allowed_operations(world.vault, plan)[-1] == "TestFailover"

    def test_a_busy_member_refuses_the_plan_test_failover(self, world: World):
        create(world)
        world.backend.test_failover(world.vault, *world.item_args("APP-ERP-02"), tfo_body(world))
        with pytest.raises(AsrError) as refused:
            world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        assert "APP-ERP-02" in refused.value.rendered["possibleCauses"]

    def test_plans_survive_a_restart(self, world: World):
        create(world, start={2: [manual("Licence server")]})
        job = world.backend.plan_test_failover(world.vault, "order-portal", tfo_body(world))
        world.finish()
        restored = type(world.backend).from_dict(world.backend.to_dict(), world.estate, world.clock,
                                                 world.backend.base_url)
        vault = restored.state.vaults[world.vault.id.lower()]
        assert restored.get_job(vault, job.name).state == "Suspended"
        restored.resume_job(vault, job.name, {"properties": {"comments": "ok"}})
        world.backend = restored
        world.vault = vault
        world.finish()
        assert restored.get_job(vault, job.name).state == "Succeeded"


class TestPlanFailover:
    """A plan's failover, commit and reprotect: one job each, the members following it (no VMM-to-VMM recording of
    a plan failover exists; the members' states are the recorded item-level ones)."""

    def test_a_planned_failover_runs_its_groups_in_order_then_commit_and_reprotect_act_on_every_member(
            self, world: World):
        create(world, end={1: [script("Repoint ERP")]}, start={2: [manual("Confirm licence server")]})
        body = {"properties": {"failoverDirection": "PrimaryToRecovery"}}
        job = world.backend.plan_failover(world.vault, "order-portal", body, planned=True)
        assert (job.scenario_name, job.friendly_name, job.target_instance_type) == (
            "PlannedFailover", "Planned failover", "RecoveryPlan")
        # the manual action is for test failovers only: a real failover does not stop at it
        assert [t.friendly_name for t in job.tasks] == [
            "Recovery plan preflight checks", "Group Shutdown: Shut down virtual machines",
            "Group Failover: Fail over virtual machines", "Group 1: Start virtual machines", "Repoint ERP",
            "Group 2: Start virtual machines", "Group 3: Start virtual machines"]
        plan = world.backend.get_recovery_plan(world.vault, "order-portal")
        assert world.backend.plan_allowed_operations(world.vault, plan) == []
        assert world.item("APP-ERP-01").scenario_job == job.name
        world.finish()
        assert job.state == "Succeeded", job.errors
        for vm in ("SQL-PRD-01", "APP-ERP-02", "WEB-PORTAL-01"):
            item = world.item(vm)
            assert (item.protection_state, item.active_location, item.primary_vm_state, item.replica_vm_state) == (
                "CommitPendingStatesBegin", "Recovery", "Off", "Running")
        assert world.backend.plan_allowed_operations(world.vault, plan) == ["Commit", "ReverseReplicate"]

        commit = world.backend.plan_commit(world.vault, "order-portal")
        world.finish()
        assert (commit.scenario_name, commit.state) == ("CommitFailover", "Succeeded")
        assert world.item("SQL-PRD-01").protection_state == "PlannedFailoverStatesBegin"
        assert world.backend.plan_allowed_operations(world.vault, plan) == ["ReverseReplicate"]

        with pytest.raises(AsrError):  # replication must flow from where the VMs now run
            world.backend.plan_reprotect(world.vault, "order-portal", body)
        reprotect = world.backend.plan_reprotect(world.vault, "order-portal",
                                                 {"properties": {"failoverDirection": "RecoveryToPrimary"}})
        world.finish()
        assert (reprotect.scenario_name, reprotect.state) == ("ReverseReplication", "Succeeded")
        for vm in ("SQL-PRD-01", "APP-ERP-01"):
            item = world.item(vm)
            assert (item.protection_state, item.active_location, item.allowed_operations) == (
                "Protected", "Recovery", IDLE)
        assert world.backend.plan_allowed_operations(world.vault, plan) == [
            "PlannedFailover", "UnplannedFailover", "TestFailover"]

    def test_an_unplanned_failover_without_the_source_site_skips_the_shutdown(self, world: World):
        create(world)
        job = world.backend.plan_failover(world.vault, "order-portal", {"properties": {
            "failoverDirection": "PrimaryToRecovery", "sourceSiteOperations": "NotRequired"}}, planned=False)
        world.finish()
        assert (job.friendly_name, job.tasks[1].state_description) == ("Failover", "Skipped")
        item = world.item("SQL-PRD-01")
        assert (item.protection_state, item.primary_vm_state) == ("UnplannedFailoverCommitPendingStatesBegin",
                                                                 "Running")

    def test_a_failed_plan_failover_restores_every_member(self, world: World):
        create(world)
        world.backend.add_job_fault({"scenario": "PlannedFailover", "outcome": "Failed", "task": 4})
        job = world.backend.plan_failover(world.vault, "order-portal",
                                          {"properties": {"failoverDirection": "PrimaryToRecovery"}}, planned=True)
        world.finish()
        assert job.state == "Failed"
        for vm in ("SQL-PRD-01", "WEB-PORTAL-01"):
            item = world.item(vm)
            assert (item.protection_state, item.active_location, item.allowed_operations) == (
                "Protected", "Primary", IDLE)
