"""The catalogue of Site Recovery job scenarios the lab runs: names, tasks, durations.

Scenario names, task ids/names/friendly names and realistic durations come from recorded
VMM-to-VMM traffic (Azure PowerShell E2E session records: TestCreatePolicy, TestCreatePCMap,
TestMapNetwork, TestEnableDR, TestTFO, TestPlannedFailover, TestUFOandFailback,
TestReprotect, TestDisableDR) where it exists; each entry says where it comes from, and
entries marked ``inferred`` follow the recorded ones' conventions. Durations are realistic
seconds; the clock's scale shrinks them.
"""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class TaskSpec:
    """One task of a scenario. ``task_id`` "" means a fresh GUID per job (2021 traces)."""

    task_id: str
    name: str
    friendly_name: str
    seconds: float
    group: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    friendly_name: str
    target_instance_type: str
    details_type: str
    tasks: tuple[TaskSpec, ...]
    evidence: str


def _s(name, friendly, target, details, evidence, *tasks) -> Scenario:
    return Scenario(name, friendly, target, details, tuple(TaskSpec(*t) for t in tasks), evidence)


#: Keyed by the lab's operation kind (two kinds may share an ASR scenario name).
SCENARIOS: dict[str, Scenario] = {
    "RegisterDra": _s(
        "RegisterDra", "Register the Azure Site Recovery Provider", "Server", "AsrJobDetails",
        "scenario and friendly name from ReplicationJobs_List example; tasks inferred",
        ("RegisterDraPreflightChecksTask", "DraRegistrationPrerequisitesCheck",
         "Prerequisites check for registering the provider", 3),
        ("RegisterDraTask", "RegisterDra", "Register the provider with the vault", 20),
        ("RefreshDraTask", "RefreshDraInventory", "Refresh the server inventory", 25),
    ),
    "AddProtectionProfile": _s(
        "AddProtectionProfile", "Create replication policy", "ProtectionProfile", "AsrJobDetails",
        "scenario, friendly name and task ids recorded (TestCreatePolicy); task names inferred",
        ("AddProtectionProfilePreflightsCheckTask", "AddProtectionProfilePrerequisitesCheck",
         "Prerequisites check for creating the replication policy", 2),
        ("AddProtectionProfileTask", "AddProtectionProfile", "Create the replication policy", 6),
    ),
    "UpdateProtectionProfile": _s(
        "UpdateProtectionProfile", "Update replication policy", "ProtectionProfile", "AsrJobDetails",
        "inferred",
        ("UpdateProtectionProfilePreflightsCheckTask", "UpdateProtectionProfilePrerequisitesCheck",
         "Prerequisites check for updating the replication policy", 2),
        ("UpdateProtectionProfileTask", "UpdateProtectionProfile", "Update the replication policy", 8),
    ),
    "RemoveProtectionProfile": _s(
        "RemoveProtectionProfile", "Remove replication policy", "ProtectionProfile", "AsrJobDetails",
        "inferred",
        ("RemoveProtectionProfilePreflightsCheckTask", "RemoveProtectionProfilePrerequisitesCheck",
         "Prerequisites check for removing the replication policy", 2),
        ("RemoveProtectionProfileTask", "RemoveProtectionProfile", "Remove the replication policy", 5),
    ),
    "AssociateProtectionProfile": _s(
        "AssociateProtectionProfile", "Associate replication policy", "ProtectionProfile", "AsrJobDetails",
        "recorded (TestCreatePCMap); task names inferred",
        ("CloudPairingWfPreflightChecksTask", "CloudPairingPreflightChecks", "Check protection prerequisites", 2),
        ("CloudPairingWfPrepareSiteTask", "CloudPairingPrepareSite", "Prepare the server", 20),
        ("CloudPairingWfPrepareCloudForPairingTask", "CloudPairingPrepareCloud",
         "Prepare for configuring protection", 25),
        ("CloudPairingWfPairCloudsTask", "CloudPairingPairClouds", "Configure the protection settings", 30),
    ),
    "DissociateProtectionProfile": _s(
        "DissociateProtectionProfile", "Dissociate replication policy", "ProtectionProfile", "AsrJobDetails",
        "inferred",
        ("CloudUnpairingWfPreflightChecksTask", "CloudUnpairingPreflightChecks", "Check prerequisites", 2),
        ("CloudUnpairingWfUnpairCloudsTask", "CloudUnpairingUnpairClouds", "Remove the protection settings", 20),
    ),
    "NetworkPairing": _s(
        "NetworkPairing", "Map Networks", "Network", "AsrJobDetails", "recorded (TestMapNetwork)",
        ("", "ModifyVMNetworksPairingStatusTask", "Map network", 1),
        ("", "VMNetworksUpdateVMNicsTask", "Attach network (0)", 0, True),
    ),
    "NetworkUnpairing": _s(
        "NetworkUnpairing", "Unmap Networks", "Network", "AsrJobDetails", "inferred from NetworkPairing",
        ("", "ModifyVMNetworksPairingStatusTask", "Unmap network", 1),
    ),
    "EnableDr": _s(
        "EnableDr", "Enable replication", "ProtectionEntity", "AsrJobDetails", "recorded (TestEnableDR)",
        ("EnableProtectionPreflightChecksTask", "EnableProtectionPrerequisitesCheck",
         "Prerequisites check for enabling protection", 1),
        ("CreateProtectionTargetTask", "CreateProtectionTarget", "Identifying the replication target", 16),
        ("EnableProtectionTask", "EnableProtection", "Enable replication", 12),
        ("StartInitialReplicationTask", "VmStartInitialReplication", "Starting initial replication", 13),
        ("UpdateDraStateTask", "UpdateDraState", "Updating the provider states", 6),
    ),
    "PrimaryIrCompletion": _s(
        "PrimaryIrCompletion", "Finalize protection on the primary", "ProtectionEntity", "AsrJobDetails",
        "scenario name from the PowerShell E2E tests; friendly name and task inferred",
        ("", "VmIrCompletionOnPrimary", "Complete initial replication", 600),
    ),
    "SecondaryIrCompletion": _s(
        "SecondaryIrCompletion", "Finalize protection on the recovery", "ProtectionEntity", "AsrJobDetails",
        "scenario name from the PowerShell E2E tests; friendly name and task inferred",
        ("", "VmIrCompletionOnSecondary", "Finalize protection", 20),
    ),
    "TestFailover": _s(
        "TestFailover", "Test failover", "ProtectionEntity", "TestFailoverJobDetails", "recorded (TestTFO)",
        ("TestFailoverPreflightChecksTask", "VmTfoPrerequisitesCheck", "Prerequisites check for test failover", 1),
        ("BeginTestFailoverTask", "VmTfoInitiateFailover", "Create test virtual machine", 40),
        ("PrepareTestProtectedEntitiesTask", "VmTfoPrepareTestVm", "Preparing the virtual machine", 54),
        ("BootTestProtectedEntitiesTask", "VmTfoBootTestVm", "Start the virtual machine", 62),
    ),
    "TestFailoverCleanup": _s(
        "TestFailoverCleanup", "Test failover cleanup", "ProtectionEntity", "TestFailoverJobDetails",
        "recorded (TestTFO)",
        ("TestFailoverCleanupPreflightChecksTask", "VmTfoCleanupPreflightsCheck",
         "Prerequisites check for test failover cleanup", 1),
        ("EndTestFailoverTask", "VmTfoEndFailover", "Ending test failover", 50),
        ("CleanupTestProtectedEntitiesTask", "VmTfoDeleteTestVm", "Clean up the test virtual machine", 1),
    ),
    "PlannedFailover": _s(
        "PlannedFailover", "Planned failover", "ProtectionEntity", "FailoverJobDetails",
        "recorded (TestPlannedFailover)",
        ("PlannedFailoverPreflightChecksTask", "VmPfoPrerequisitesCheck", "Prerequisites check for planned failover", 1),
        ("ShutdownVmOnPrimary", "VmShutdownVmOnPrimary", "Shut down the virtual machine", 60),
        ("PrepareForFailoverTask", "VmPrepareForFailover", "Preparing for failover", 120),
        ("FailoverTask", "VmFailover", "Start failover", 15),
        ("StartVmOnSecondary", "VmFoStartVmOnSecondary", "Start the replica virtual machine", 90),
    ),
    "UnplannedFailover": _s(
        "UnplannedFailover", "Failover", "ProtectionEntity", "FailoverJobDetails", "recorded (TestUFOandFailback)",
        ("UnplannedFailoverPreflightChecksTask", "VmUfoPrerequisitesCheck", "Prerequisites check for failover", 1),
        ("ShutdownVmOnPrimaryForUFO", "VmShutdownVmOnPrimary", "Shut down the virtual machine", 1),
        ("PrepareForUnPlannedFailoverTask", "VmPrepareForUnPlannedFailover", "Synchronizing the latest changes", 30),
        ("FailoverTask", "VmFailover", "Start failover", 13),
        ("StartVmOnSecondary", "VmFoStartVmOnSecondary", "Start the replica virtual machine", 120),
    ),
    "CommitFailover": _s(
        "CommitFailover", "Commit", "ProtectionEntity", "AsrJobDetails", "recorded (TestFailbackReprotect)",
        ("", "VmCommitPrerequisitesCheck", "Prerequisite check", 1),
        ("", "VmCommit", "Commit", 13),
    ),
    "CancelFailover": _s(
        "CancelFailover", "Cancel failover", "ProtectionEntity", "AsrJobDetails", "inferred",
        ("", "VmCancelFailoverPrerequisitesCheck", "Prerequisites check", 1),
        ("", "VmCancelFailover", "Cancel failover", 30),
        ("", "UpdateDraState", "Updating the provider states", 5),
    ),
    "ReverseReplication": _s(
        "ReverseReplication", "Reverse replication", "ProtectionEntity", "AsrJobDetails", "recorded (TestReprotect)",
        ("", "VmReverseReplicationPrerequisitesCheck", "Prerequisites check", 0.2),
        ("", "VmCommit", "Commit", 13),
        ("", "VmPrepareForReverseReplication", "Preparing for reverse replication", 25),
        ("", "VmInitiateReverseReplication", "Start reverse replication", 30),
        ("", "UpdateDraState", "Updating the provider states", 5),
    ),
    "DisableDr": _s(
        "DisableDr", "Disable replication", "ProtectionEntity", "AsrJobDetails", "recorded (TestDisableDR)",
        ("DisableProtectionOnPrimaryTask", "DisableProtectionOnPrimary", "Disable replication on the source location", 20),
        ("DisableProtectionOnSecondaryTask", "DisableProtectionOnSecondary",
         "Disable replication on the target location", 15),
        ("UpdateDraStateTask", "UpdateDraState", "Updating the provider states", 5),
    ),
    "PurgeProtection": _s(
        "DisableDr", "Disable replication", "ProtectionEntity", "AsrJobDetails", "inferred (purge = forced removal)",
        ("", "PurgeProtectedItem", "Remove the replicated item", 5),
    ),
    # Recovery plans: a plan's test failover is one job whose tasks the plan's groups and actions
    # make (plans.py builds them); the entries here give names and types only.
    "CreateRecoveryPlan": _s(
        "CreateRecoveryPlan", "Create recovery plan", "RecoveryPlan", "AsrJobDetails",
        "inferred (recovery plan LROs answer 202 with a job: terraform-provider-azurerm#21963)",
        ("CreateRecoveryPlanTask", "CreateRecoveryPlan", "Create the recovery plan", 4),
    ),
    "UpdateRecoveryPlan": _s(
        "UpdateRecoveryPlan", "Update recovery plan", "RecoveryPlan", "AsrJobDetails", "inferred",
        ("UpdateRecoveryPlanTask", "UpdateRecoveryPlan", "Update the recovery plan", 4),
    ),
    "DeleteRecoveryPlan": _s(
        "DeleteRecoveryPlan", "Delete recovery plan", "RecoveryPlan", "AsrJobDetails",
        "scenario name recorded (ReplicationJobs_List); task inferred",
        ("DeleteRecoveryPlanTask", "DeleteRecoveryPlan", "Delete the recovery plan", 3),
    ),
    "RecoveryPlanTestFailover": _s(
        "TestFailover", "Test failover", "RecoveryPlan", "TestFailoverJobDetails",
        "scenario recorded for plans (Resume-AzureSiteRecoveryJob.md: 'Recovery plan preflight checks', "
        "'Create test environment', per-group tasks); the tasks are built from the plan",
    ),
    "RecoveryPlanTestFailoverCleanup": _s(
        "TestFailoverCleanup", "Cleanup test failover", "RecoveryPlan", "TestFailoverJobDetails",
        "inferred from the item-level cleanup; the tasks are built from the plan",
    ),
    # A plan's failover, commit and reprotect: no VMM-to-VMM recording; names from the item-level
    # jobs, one job for the plan as its test failover is (the tasks are built from the plan).
    "RecoveryPlanPlannedFailover": _s(
        "PlannedFailover", "Planned failover", "RecoveryPlan", "FailoverJobDetails",
        "inferred from the item-level planned failover and the plan test failover",
    ),
    "RecoveryPlanUnplannedFailover": _s(
        "UnplannedFailover", "Failover", "RecoveryPlan", "FailoverJobDetails",
        "inferred from the item-level unplanned failover and the plan test failover",
    ),
    "RecoveryPlanCommit": _s(
        "CommitFailover", "Commit", "RecoveryPlan", "AsrJobDetails", "inferred from the item-level commit",
    ),
    "RecoveryPlanReprotect": _s(
        "ReverseReplication", "Reverse replication", "RecoveryPlan", "AsrJobDetails",
        "inferred from the item-level reprotect",
    ),
}
