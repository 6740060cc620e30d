"""The one vocabulary of the integration: every state, scenario and outcome a decision reads.

ASR writes these values as strings on the wire; the SDK hands them over as plain ``str``. Here
each gets one name, shared by the hook's records, the triggers, the sensors, the operators, the
domain rules and the reports, so no layer spells ``"TestFailover"`` or ``"Protected"`` itself.
They are ``StrEnum`` members: equal to ASR's strings, JSON-safe, and readable in a log.

Nothing here imports Airflow, Azure or pydantic: DAG files and the plugin manager may load it.
"""

from __future__ import annotations

from enum import StrEnum


class AsrJobState(StrEnum):
    """An ASR job's ``properties.state`` (also each job task's state)."""

    NOT_STARTED = "NotStarted"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SUSPENDED = "Suspended"
    SKIPPED = "Skipped"
    OTHER = "Other"

    @property
    def is_terminal(self) -> bool:
        """The job has ended: its outcome will not change."""
        return self in _TERMINAL_JOB_STATES

    @property
    def is_failure(self) -> bool:
        """The job ended without doing its work."""
        return self in _FAILED_JOB_STATES

    @property
    def is_running(self) -> bool:
        """The job is queued or working."""
        return self in (AsrJobState.NOT_STARTED, AsrJobState.IN_PROGRESS)


_TERMINAL_JOB_STATES = frozenset({AsrJobState.SUCCEEDED, AsrJobState.FAILED, AsrJobState.CANCELLED})
_FAILED_JOB_STATES = frozenset({AsrJobState.FAILED, AsrJobState.CANCELLED})


class AsrJobStateDescription(StrEnum):
    """The ``stateDescription`` values a decision reads (others are shown as ASR wrote them)."""

    #: a ``Succeeded`` job in which some tasks failed
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    #: the description of a plain ``Succeeded`` job (nothing to add to the state)
    COMPLETED = "Completed"


class AsrJobAction(StrEnum):
    """Entries of a job's ``allowedActions``."""

    CANCEL = "Cancel"
    RESTART = "Restart"
    RESUME = "Resume"


class Scenario(StrEnum):
    """A job's ``scenarioName``, also a protected item's ``currentScenario.scenarioName``."""

    REGISTER_PROVIDER = "RegisterDra"
    CREATE_POLICY = "AddProtectionProfile"
    UPDATE_POLICY = "UpdateProtectionProfile"
    REMOVE_POLICY = "RemoveProtectionProfile"
    PAIR_CLOUDS = "AssociateProtectionProfile"
    UNPAIR_CLOUDS = "DissociateProtectionProfile"
    MAP_NETWORKS = "NetworkPairing"
    UNMAP_NETWORKS = "NetworkUnpairing"
    ENABLE_PROTECTION = "EnableDr"
    PRIMARY_INITIAL_REPLICATION = "PrimaryIrCompletion"
    SECONDARY_INITIAL_REPLICATION = "SecondaryIrCompletion"
    TEST_FAILOVER = "TestFailover"
    TEST_FAILOVER_CLEANUP = "TestFailoverCleanup"
    PLANNED_FAILOVER = "PlannedFailover"
    UNPLANNED_FAILOVER = "UnplannedFailover"
    COMMIT_FAILOVER = "CommitFailover"
    CANCEL_FAILOVER = "CancelFailover"
    REPROTECT = "ReverseReplication"
    DISABLE_PROTECTION = "DisableDr"
    PURGE_PROTECTION = "PurgeProtection"


#: The jobs that make up enabling a VM (the initial replication jobs run while the item shows no scenario).
ENABLE_SCENARIOS = frozenset({Scenario.ENABLE_PROTECTION, Scenario.PRIMARY_INITIAL_REPLICATION,
                              Scenario.SECONDARY_INITIAL_REPLICATION})
#: The scenarios of a drill: a protected item showing one of these is in (or leaving) a test failover.
DRILL_SCENARIOS = frozenset({Scenario.TEST_FAILOVER, Scenario.TEST_FAILOVER_CLEANUP})


class ProtectionState(StrEnum):
    """A protected item's ``protectionState`` (the values this product reads; ASR has more)."""

    UNPROTECTED_STATES_BEGIN = "UnprotectedStatesBegin"
    ENABLING_PROTECTION = "EnablingProtection"
    INITIAL_REPLICATION_PENDING = "InitialReplicationPending"
    INITIAL_REPLICATION_IN_PROGRESS = "InitialReplicationInProgress"
    INITIAL_REPLICATION_FAILED = "InitialReplicationFailed"
    PROTECTED = "Protected"
    #: a planned failover finished, its commit pending ("Planned failover finished")
    PLANNED_FAILOVER_COMMIT_PENDING = "CommitPendingStatesBegin"
    UNPLANNED_FAILOVER_COMMIT_PENDING = "UnplannedFailoverCommitPendingStatesBegin"
    #: a planned failover committed ("Planned failover committed")
    PLANNED_FAILOVER_COMMITTED = "PlannedFailoverStatesBegin"
    UNPLANNED_FAILOVER_COMMITTED = "UnplannedFailoverCommitted"

    @property
    def is_enabling(self) -> bool:
        """The item's enable job or initial replication is under way (it uses the WAN link)."""
        return self in _ENABLING_STATES


_ENABLING_STATES = frozenset({ProtectionState.UNPROTECTED_STATES_BEGIN, ProtectionState.ENABLING_PROTECTION,
                              ProtectionState.INITIAL_REPLICATION_PENDING,
                              ProtectionState.INITIAL_REPLICATION_IN_PROGRESS})


class ReplicationHealth(StrEnum):
    """A protected item's ``replicationHealth``."""

    NORMAL = "Normal"
    WARNING = "Warning"
    CRITICAL = "Critical"


class TestFailoverState(StrEnum):
    """A protected item's ``testFailoverState``."""

    __test__ = False  # not a pytest test class

    NONE = "None"
    INITIATED = "TestFailoverInitiated"
    WAITING_FOR_COMPLETION = "WaitingForCompletion"
    FAILED = "TestFailoverFailed"
    MARKED_FOR_DELETION = "MarkedForDeletion"

    @property
    def is_idle(self) -> bool:
        """No test failover is active: nothing for a cleanup to remove."""
        return self in (TestFailoverState.NONE, TestFailoverState.MARKED_FOR_DELETION)


class AllowedOperation(StrEnum):
    """Entries of a protected item's ``allowedOperations`` that this product reads."""

    TEST_FAILOVER = "TestFailover"
    TEST_FAILOVER_CLEANUP = "TestFailoverCleanup"
    PLANNED_FAILOVER = "PlannedFailover"
    UNPLANNED_FAILOVER = "UnplannedFailover"
    COMMIT = "Commit"
    REPROTECT = "ReverseReplicate"
    DISABLE_PROTECTION = "DisableProtection"
    CANCEL_FAILOVER = "CancelFailover"


class VmPowerState(StrEnum):
    """VMM's ``VirtualMachineState`` of a VM (a drill's test VM), as Get-TestVmStatus reports it."""

    RUNNING = "Running"
    POWER_OFF = "PowerOff"
    SAVED = "Saved"
    PAUSED = "Paused"


class Heartbeat(StrEnum):
    """Hyper-V's heartbeat of a VM, as Get-TestVmStatus reports it."""

    OK = "OK"
    NO_CONTACT = "NoContact"
    LOST_COMMUNICATION = "LostCommunication"
    DEGRADED = "Degraded"
    ERROR = "Error"
    DISABLED = "Disabled"
    UNKNOWN = "Unknown"


class WaitStatus(StrEnum):
    """How a wait ended, as Airflow's trigger events say it."""

    SUCCESS = "success"
    ERROR = "error"


class WaitReason(StrEnum):
    """Why a wait ended. Sensors decide on this, never on a message's text."""

    #: what was awaited happened (a job succeeded, a VM is protected, a slot is free)
    SUCCEEDED = "succeeded"
    #: what was awaited ended badly and a retry will not change it (job failed, VM lost its protection)
    FAILED = "failed"
    #: the wait's own deadline passed first
    TIMED_OUT = "timed_out"
    #: the wait could not read ASR (a retry may help)
    ERROR = "error"
    #: the job reached the manual action the wait was for and waits for a person (a plan's drill goes on)
    SUSPENDED = "suspended"

    @property
    def status(self) -> WaitStatus:
        return WaitStatus.SUCCESS if self in (WaitReason.SUCCEEDED, WaitReason.SUSPENDED) else WaitStatus.ERROR


class ProtectionAction(StrEnum):
    """What the enable-replication plan decided for one in-scope VM."""

    ENABLE = "enable"  #: not protected yet, protectable: the run enables it
    WAIT = "wait"  #: an earlier run (or someone) started enabling it: the run waits for it
    PROTECTED = "already protected"  #: left alone, reported with its health
    NOT_PROTECTABLE = "not protectable"  #: ASR's readiness errors say why; reported, not a failure
    ATTENTION = "needs attention"  #: protected item in a state this DAG does not repair (e.g. failed IR)

    @property
    def has_target(self) -> bool:
        """The VM gets the mapped enable/wait tasks."""
        return self in (ProtectionAction.ENABLE, ProtectionAction.WAIT)


class DrillOutcome(StrEnum):
    """One VM's outcome in a drill report."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class DrillVerdict(StrEnum):
    """A whole drill's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"


class DrillPhase(StrEnum):
    """The phases of one VM's drill timeline."""

    TEST_FAILOVER = "test_failover"
    VERIFY = "verify"
    CLEANUP = "cleanup"


class DeployAction(StrEnum):
    """What a deployment step did to one thing it ensures."""

    IN_PLACE = "already in place"
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"
    #: a recovery plan whose VMs are not all protected yet: created once enable replication has run
    WAITING = "waiting for protection"
    #: a resource ASR holds that the site file does not name: reported, never deleted
    NOT_IN_SITE_FILE = "not in the site file"


class PlanGroupType(StrEnum):
    """A recovery plan group's ``groupType``: ASR keeps a Shutdown and a Failover group before the Boot groups."""

    SHUTDOWN = "Shutdown"
    FAILOVER = "Failover"
    BOOT = "Boot"


class PlanActionKind(StrEnum):
    """A recovery plan action's ``customDetails.instanceType``."""

    SCRIPT = "ScriptActionDetails"
    MANUAL = "ManualActionDetails"
    RUNBOOK = "AutomationRunbookActionDetails"


class JobTaskDetails(StrEnum):
    """What a job task's details (``customDetails`` / ``groupTaskCustomDetails``) ``instanceType`` says it is.

    A recovery plan's job reports its boot groups, scripts and manual actions as tasks of these types.
    """

    PLAN_GROUP = "RecoveryPlanGroupTaskDetails"
    SCRIPT_ACTION = "ScriptActionTaskDetails"
    MANUAL_ACTION = "ManualActionTaskDetails"


class PlanActionSide(StrEnum):
    """Which site's VMM server runs a plan script (``fabricLocation``)."""

    PRIMARY = "Primary"
    RECOVERY = "Recovery"


class FailoverType(StrEnum):
    """The failover types a recovery plan action applies to (``failoverTypes``)."""

    TEST = "TestFailover"
    PLANNED = "PlannedFailover"
    UNPLANNED = "UnplannedFailover"


class FailoverDirection(StrEnum):
    """``failoverDirection`` of a failover, and the ``failoverDirections`` a plan action applies to."""

    PRIMARY_TO_RECOVERY = "PrimaryToRecovery"
    RECOVERY_TO_PRIMARY = "RecoveryToPrimary"


class FailoverKind(StrEnum):
    """What a real failover may assume of the site it leaves (the failover DAG's ``kind`` param)."""

    #: the site it leaves is up: its VMs are shut down and a last sync runs first (no data loss)
    PLANNED = "planned"
    #: the site it leaves is down or unreachable: the VMs start from the newest recovery point at the other site
    UNPLANNED = "unplanned"


class RecoveryStep(StrEnum):
    """A step of a real recovery that changes production; each has its own approval and request guard."""

    FAILOVER = "failover"
    COMMIT = "commit"
    CANCEL = "cancel"
    REPROTECT = "reprotect"


class ApprovalOption(StrEnum):
    """The answers a recovery's approval offers (the options of its required action)."""

    FAIL_OVER = "Fail over"
    COMMIT = "Commit"
    CANCEL = "Cancel failover"
    REPROTECT = "Reprotect"
    #: refuses the step; every other option is a decision to go on
    REJECT = "Reject"


class RecoveryStage(StrEnum):
    """Where a protected VM stands in a recovery in one direction, as ASR shows it; a rerun resumes from here."""

    #: active on the site the recovery leaves, and ASR allows the failover
    READY = "ready to fail over"
    FAILING_OVER = "failing over"
    #: active on the site the recovery goes to; ASR waits for the commit (or a cancel)
    FAILED_OVER = "failed over, commit pending"
    COMMITTING = "committing"
    CANCELLING = "cancelling the failover"
    #: committed; the reverse replication (reprotect) has not started
    COMMITTED = "committed"
    REPROTECTING = "reprotecting"
    #: protected again, replicating from the site the recovery went to
    REPROTECTED = "reprotected"
    #: in a state the recovery cannot start from (the assessment says why)
    BLOCKED = "blocked"

    @property
    def before_failover(self) -> bool:
        return self in (RecoveryStage.READY, RecoveryStage.FAILING_OVER)


class ProviderConnectionState(StrEnum):
    """A Recovery Services provider's (the ASR Provider on a VMM server) ``connectionStatus``."""

    CONNECTED = "Connected"
    NOT_CONNECTED = "NotConnected"


class ResourceProviderState(StrEnum):
    """An Azure resource provider's ``registrationState`` in a subscription."""

    REGISTERED = "Registered"
    REGISTERING = "Registering"
    NOT_REGISTERED = "NotRegistered"
    UNREGISTERED = "Unregistered"


class ProvisioningState(StrEnum):
    """An ARM resource's ``provisioningState`` (the vault's)."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CREATING = "Creating"
    DELETING = "Deleting"
