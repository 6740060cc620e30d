"""Replicated VMs: enable, initial replication, drills, failover and back, disable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from asr_lab.arm import views
from asr_lab.arm.errors import AsrError
from asr_lab.arm.protection import IDLE, initial_replication_seconds
from tests.lab.test_arm_world import World


@pytest.fixture
def world() -> World:
    return World().configured()


def wire(world: World, vm: str = "APP-ERP-01") -> dict:
    item = world.item(vm)
    return views.protected_item_json(world.backend, world.vault, item, world.clock.now())["properties"]


class TestEnable:
    def test_enable_runs_the_recorded_enable_dr_job(self, world: World):
        job = world.enable("APP-ERP-01")
        assert (job.scenario_name, job.friendly_name, job.target_object_name) == (
            "EnableDr", "Enable replication", "APP-ERP-01")
        assert [t.task_id for t in job.tasks] == [
            "EnableProtectionPreflightChecksTask", "CreateProtectionTargetTask", "EnableProtectionTask",
            "StartInitialReplicationTask", "UpdateDraStateTask"]
        assert job.affected["recoveryVmId"] == ""  # no replica yet, as recorded
        props = wire(world)
        assert (props["protectionState"], props["protectionStateDescription"]) == (
            "UnprotectedStatesBegin", "Enabling protection")
        assert props["currentScenario"]["scenarioName"] == "EnableDr"
        assert props["currentScenario"]["jobId"].endswith(f"/replicationJobs/{job.name}")
        assert props["allowedOperations"] == []

    def test_initial_replication_progresses_with_lab_time_then_the_vm_is_protected(self, world: World):
        job = world.enable("APP-ERP-01")
        world.advance(48)  # the EnableDr job's tasks take 48 s
        assert job.state == "Succeeded"
        ir = initial_replication_seconds(world.vm("APP-ERP-01"))
        progress = []
        for _ in range(3):
            progress.append(int(wire(world)["providerSpecificDetails"]["initialReplicationDetails"][
                "initialReplicationProgressPercentage"]))
            world.advance(ir / 4)
        assert progress[0] < progress[1] < progress[2] < 100
        assert wire(world)["protectionStateDescription"] == "Initial replication in progress"
        assert wire(world)["allowedOperations"] == ["DisableProtection"]
        world.finish()
        props = wire(world)
        assert (props["protectionState"], props["replicationHealth"]) == ("Protected", "Normal")
        assert props["allowedOperations"] == IDLE
        assert props["currentScenario"] == {
            "scenarioName": "None", "jobId": world.asr_id("replicationJobs/None"), "startTime": "1753-01-01T01:01:01Z"}
        scenarios = [j.scenario_name for j in world.backend.list_jobs(world.vault, {}) if j.target_object_name == "APP-ERP-01"]
        assert scenarios[:3] == ["SecondaryIrCompletion", "PrimaryIrCompletion", "EnableDr"]

    def test_last_replicated_time_advances_at_the_policy_frequency(self, world: World):
        world.protected("APP-ERP-01")
        first = wire(world)["providerSpecificDetails"]["lastReplicatedTime"]
        world.advance(299)
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == first
        world.advance(2)
        later = wire(world)["providerSpecificDetails"]["lastReplicatedTime"]
        assert later > first

    def test_nics_show_the_mapped_recovery_network_or_none(self, world: World):
        world.protected("APP-ERP-01")  # Prod-App is mapped to DR-App
        [nic] = wire(world)["providerSpecificDetails"]["vmNics"]
        assert (nic["vMNetworkName"], nic["recoveryVMNetworkId"]) == ("Prod-App", world.network("DR-App"))
        world.protected("SQL-PRD-01")  # Prod-Data is not mapped
        [nic] = wire(world, "SQL-PRD-01")["providerSpecificDetails"]["vmNics"]
        assert nic["recoveryVMNetworkId"] == "00000000-0000-0000-0000-000000000000"

    def test_an_unprotectable_vm_fails_its_prerequisites_check(self, world: World):
        job = world.enable("SQL-FCI-01")
        world.finish()
        assert job.state == "Failed" and job.tasks[0].state == "Failed"
        service = job.errors[0]["serviceErrorDetails"]
        assert service["code"] == "45005" and "shared virtual hard disks" in service["possibleCauses"]
        assert not world.vault.protected_items
        vm = world.vm("SQL-FCI-01")
        assert world.backend.protection_status(world.vault, vm) == "Unprotected"

    def test_enable_needs_a_paired_cloud_and_an_unprotected_vm(self, world: World):
        world.create_policy("Silver-15min", replicationFrequencyInSeconds=900)
        world.finish()
        with pytest.raises(AsrError) as unpaired:
            world.enable("PRINT-01", cloud="Silver-Prod", policy="Silver-15min")
        assert unpaired.value.code == "70091"
        world.enable("APP-ERP-01")
        with pytest.raises(AsrError) as twice:
            world.enable("APP-ERP-01")
        assert twice.value.code == "70093"

    def test_protectable_items_show_protection_status_and_filter_on_it(self, world: World):
        world.protected("APP-ERP-01")
        listed = world.backend.list_protectable_items(world.vault, world.primary, world.cloud("Gold-Prod"),
                                                      {"state": "Unprotected"})
        assert "APP-ERP-01" not in {vm.name for vm in listed} and len(listed) == 7


class TestTestFailover:
    def test_a_drill_from_start_to_cleanup(self, world: World):
        item = world.protected("APP-ERP-01")
        job = world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        assert [t.name for t in job.tasks] == ["VmTfoPrerequisitesCheck", "VmTfoInitiateFailover",
                                               "VmTfoPrepareTestVm", "VmTfoBootTestVm"]
        assert job.details_type == "TestFailoverJobDetails"
        assert (job.details["networkType"], job.details["networkFriendlyName"]) == (
            "VmNetworkAsInput", "DR-Drill-Isolated")
        assert wire(world)["testFailoverState"] == "TestFailoverInitiated"
        world.advance(41)  # prerequisites (1 s) + create test VM (40 s)
        assert item.test_vm is not None and item.test_vm.state == "Off"
        [details] = job.details["protectedItemDetails"]
        assert details["testVmFriendlyName"] == "APP-ERP-01 - Test"
        world.finish()
        props = wire(world)
        assert (props["testFailoverState"], props["testFailoverStateDescription"]) == (
            "WaitingForCompletion", "Waiting for user input")
        assert props["protectionStateDescription"] == "Cleanup test failover pending"
        assert props["allowedOperations"] == ["TestFailoverCleanup"]
        assert props["currentScenario"]["scenarioName"] == "TestFailover"
        [test_vm] = world.backend.test_vms()
        assert (test_vm["name"], test_vm["state"], test_vm["networkName"], test_vm["cloud"]) == (
            "APP-ERP-01 - Test", "Running", "DR-Drill-Isolated", "Gold-DR")
        assert test_vm["host"].startswith("hv-rtm-0")

        cleanup = world.backend.test_failover_cleanup(world.vault, *world.item_args("APP-ERP-01"),
                                                      {"properties": {"comments": "Quarterly drill OK"}})
        assert [t.task_id for t in cleanup.tasks] == ["TestFailoverCleanupPreflightChecksTask",
                                                      "EndTestFailoverTask", "CleanupTestProtectedEntitiesTask"]
        assert cleanup.details["comments"] == "Quarterly drill OK" and cleanup.details["testFailoverStatus"] is None
        props = wire(world)
        assert (props["testFailoverState"], props["testFailoverStateDescription"]) == (
            "MarkedForDeletion", "Cleaning up test environment")
        assert props["lastSuccessfulTestFailoverTime"]
        world.finish()
        props = wire(world)
        assert props["allowedOperations"] == IDLE and props["currentScenario"]["scenarioName"] == "None"
        assert props["protectionStateDescription"] == "Protected"
        assert props["testFailoverState"] == "MarkedForDeletion"  # as the recorded service keeps it
        assert world.backend.test_vms() == []

    def test_a_second_test_failover_while_one_waits_for_cleanup_is_refused(self, world: World):
        world.protected("APP-ERP-01")
        world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.finish()
        with pytest.raises(AsrError) as refused:
            world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        error = refused.value
        assert (error.status, error.code) == (400, "539")
        detail = error.envelope()["error"]["details"][0]
        assert "Cleanup test failover pending" in detail["possibleCauses"]
        assert detail["recommendedAction"] and error.retry_after is None

    def test_an_operation_while_a_job_runs_fails_at_once_with_532(self, world: World):
        world.protected("APP-ERP-01")
        first = world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        second = world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        assert second.state == "Failed" and first.state == "InProgress"
        assert {(t.state, t.state_description) for t in second.tasks} == {("Other", "Skipped")}
        service = second.errors[0]["serviceErrorDetails"]
        assert service["code"] == "532" and "APP-ERP-01 (Test failover) is in progress" in service["possibleCauses"]

    def test_a_failed_drill_that_created_its_test_vm_still_needs_cleanup(self, world: World):
        world.protected("APP-ERP-01")
        world.backend.add_job_fault({"scenario": "TestFailover", "target": "APP-ERP", "outcome": "Failed"})
        job = world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.finish()
        assert job.state == "Failed" and job.tasks[-1].state == "Failed"
        props = wire(world)
        assert props["allowedOperations"] == ["TestFailoverCleanup"]
        assert props["testFailoverState"] == "TestFailoverFailed"
        assert len(world.backend.test_vms()) == 1
        world.backend.test_failover_cleanup(world.vault, *world.item_args("APP-ERP-01"), {})
        world.finish()
        assert world.backend.test_vms() == [] and wire(world)["allowedOperations"] == IDLE
        assert "lastSuccessfulTestFailoverTime" not in wire(world)  # the drill never succeeded

    def test_a_drill_failing_its_prerequisites_leaves_nothing_behind(self, world: World):
        world.protected("APP-ERP-01")
        world.backend.add_job_fault({"scenario": "TestFailover", "outcome": "Failed", "task": 0})
        world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.finish()
        props = wire(world)
        assert props["allowedOperations"] == IDLE and props["testFailoverState"] == "None"
        assert world.backend.test_vms() == []

    def test_the_drill_network_must_be_on_the_recovery_side(self, world: World):
        world.protected("APP-ERP-01")
        body = world.test_failover_body()
        body["properties"]["networkId"] = world.asr_id(
            f"replicationFabrics/{world.primary}/replicationNetworks/{world.network('Prod-App')}")
        with pytest.raises(AsrError) as refused:
            world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), body)
        assert refused.value.code == "23001"


class TestFailoverAndBack:
    def test_planned_failover_commit_and_reprotect(self, world: World):
        item = world.protected("APP-ERP-01")
        args = world.item_args("APP-ERP-01")
        pfo = world.backend.planned_failover(world.vault, *args, {"properties": {"failoverDirection": "PrimaryToRecovery"}})
        assert [t.task_id for t in pfo.tasks] == ["PlannedFailoverPreflightChecksTask", "ShutdownVmOnPrimary",
                                                  "PrepareForFailoverTask", "FailoverTask", "StartVmOnSecondary"]
        assert pfo.details_type == "FailoverJobDetails"
        world.finish()
        props = wire(world)
        # recorded: a planned failover's commit pending
        assert (props["activeLocation"], props["protectionState"], props["protectionStateDescription"]) == (
            "Recovery", "CommitPendingStatesBegin", "Planned failover finished")
        assert props["primaryFabricProvider"] == "VmmFabric"
        assert "Commit" in props["allowedOperations"] and props["lastSuccessfulFailoverTime"]
        assert (item.primary_vm_state, item.replica_vm_state) == ("Off", "Running")
        frozen = props["providerSpecificDetails"]["lastReplicatedTime"]
        world.advance(3600)
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == frozen  # replication stopped

        world.backend.commit_failover(world.vault, *args)
        world.finish()
        assert (item.protection_state, item.protection_state_description, item.allowed_operations) == (
            "PlannedFailoverStatesBegin", "Planned failover committed",
            ["CompleteMigration", "ReverseReplicate", "DisableProtection"])  # recorded (TestFailbackReprotect)

        with pytest.raises(AsrError):
            world.backend.reprotect(world.vault, *args, {"properties": {"failoverDirection": "PrimaryToRecovery"}})
        reverse = world.backend.reprotect(world.vault, *args, {"properties": {"failoverDirection": "RecoveryToPrimary"}})
        assert reverse.scenario_name == "ReverseReplication"
        world.finish()
        assert reverse.tasks[1].state_description == "Skipped"  # already committed
        props = wire(world)
        assert (props["protectionState"], props["activeLocation"]) == ("Protected", "Recovery")
        assert props["allowedOperations"] == IDLE
        world.advance(600)
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] > frozen  # replicating back

        world.backend.planned_failover(world.vault, *args, {"properties": {"failoverDirection": "RecoveryToPrimary"}})
        world.finish()
        assert (item.active_location, item.primary_vm_state, item.replica_vm_state) == ("Primary", "Running", "Off")

    def test_unplanned_failover_without_the_source_site(self, world: World):
        item = world.protected("APP-ERP-01")
        body = {"properties": {"failoverDirection": "PrimaryToRecovery", "sourceSiteOperations": "NotRequired"}}
        job = world.backend.unplanned_failover(world.vault, *world.item_args("APP-ERP-01"), body)
        assert job.friendly_name == "Failover"
        world.finish()
        assert [t.state_description for t in job.tasks[1:3]] == ["Skipped", "Skipped"]
        assert item.protection_state == "UnplannedFailoverCommitPendingStatesBegin"
        assert item.primary_vm_state == "Running"  # nobody could shut it down
        world.backend.commit_failover(world.vault, *world.item_args("APP-ERP-01"))
        world.finish()
        assert (item.protection_state, item.protection_state_description) == (
            "UnplannedFailoverCommitted", "Failover committed")

    def test_a_failed_over_vmm_vm_offers_no_cancel(self, world: World):
        """Recorded: after a VMM-to-VMM failover ASR offers commit, reverse replication, change of recovery point,
        complete migration and disable, never CancelFailover; a cancel is refused and changes nothing."""
        item = world.protected("APP-ERP-01")
        world.backend.planned_failover(world.vault, *world.item_args("APP-ERP-01"), {})
        world.finish()
        assert item.allowed_operations == ["CompleteMigration", "ReverseReplicate", "Commit", "DisableProtection",
                                           "ChangePit"]
        with pytest.raises(AsrError) as refused:
            world.backend.cancel_failover(world.vault, *world.item_args("APP-ERP-01"))
        assert refused.value.code == "539"
        assert (item.protection_state, item.active_location) == ("CommitPendingStatesBegin", "Recovery")

    def test_commit_without_a_failover_is_not_allowed(self, world: World):
        world.protected("APP-ERP-01")
        with pytest.raises(AsrError) as refused:
            world.backend.commit_failover(world.vault, *world.item_args("APP-ERP-01"))
        assert refused.value.code == "539"

    def test_a_failed_failover_leaves_the_vm_where_it_was(self, world: World):
        item = world.protected("APP-ERP-01")
        world.backend.add_job_fault({"scenario": "PlannedFailover", "outcome": "Failed", "task": 2})
        world.backend.planned_failover(world.vault, *world.item_args("APP-ERP-01"), {})
        world.finish()
        assert (item.protection_state, item.active_location, item.allowed_operations) == ("Protected", "Primary", IDLE)


class TestDisable:
    def test_disable_removes_the_item_with_the_recorded_job(self, world: World):
        world.protected("APP-ERP-01")
        job = world.backend.disable_protection(world.vault, *world.item_args("APP-ERP-01"),
                                               {"properties": {"disableProtectionReason": "NotSpecified"}})
        assert [t.task_id for t in job.tasks] == ["DisableProtectionOnPrimaryTask", "DisableProtectionOnSecondaryTask",
                                                  "UpdateDraStateTask"]
        assert wire(world)["protectionState"] == "DisablingProtection"
        world.finish()
        assert not world.vault.protected_items and job.result == "none"

    def test_disable_during_initial_replication_cancels_it(self, world: World):
        world.enable("APP-ERP-01")
        world.advance(120)
        [ir] = world.backend.list_jobs(world.vault, {"jobname": "PrimaryIrCompletion"})
        world.backend.disable_protection(world.vault, *world.item_args("APP-ERP-01"), {})
        assert ir.state == "Cancelled"
        world.finish()
        assert not world.vault.protected_items

    def test_purge_removes_an_item_whatever_it_does(self, world: World):
        world.backend.add_job_fault({"scenario": "TestFailover", "outcome": "Stuck"})
        world.protected("APP-ERP-01")
        tfo = world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.advance(600)
        purge = world.backend.purge_protection(world.vault, *world.item_args("APP-ERP-01"))
        assert tfo.state == "Cancelled"
        world.finish()
        assert purge.state == "Succeeded" and not world.vault.protected_items

    def test_a_re_enabled_vm_is_not_touched_by_its_predecessor_jobs(self, world: World):
        world.enable("APP-ERP-01")
        world.finish()
        world.backend.purge_protection(world.vault, *world.item_args("APP-ERP-01"))
        world.finish()
        job = world.enable("APP-ERP-01")
        world.advance(30)
        assert world.item("APP-ERP-01").scenario_job == job.name


def test_item_times_are_lab_times(world: World):
    start = world.clock.now()
    world.protected("APP-ERP-01")
    props = wire(world)
    last = props["providerSpecificDetails"]["lastReplicatedTime"]
    assert last >= (start + timedelta(seconds=48)).strftime("%Y-%m-%dT%H:%M:%SZ")
