"""The persisted records of the emulated control plane, in one schema.

Plain dataclasses, mutated in place by the backend. Keeping them together gives one
place that says what the lab remembers across restarts, and one pydantic ``TypeAdapter``
turns the whole tree into JSON and back (datetimes as ISO strings with their offset).
Dict keys are lower-cased names: ARM compares resource names case-insensitively.

Time-dependent values that follow from a timestamp (initial replication progress, last
replicated time, provider heartbeat) are *not* stored; the wire layer computes them from
the stored instants when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from .faults import JobFault
from .jobs import Job


@dataclass
class Certificate:
    name: str
    certificate: str  # base64 of the DER bytes
    thumbprint: str
    subject: str
    issuer: str
    valid_from: datetime
    valid_to: datetime
    resource_id: int
    client_id: str
    object_id: str
    uploaded: datetime


@dataclass
class ExtendedInfo:
    integrity_key: str | None
    algorithm: str | None
    encryption_key: str | None
    encryption_key_thumbprint: str | None
    etag: str


@dataclass
class Fabric:
    """A registered VMM server; name is a 64-hex string, the provider is named by the VMM id."""

    name: str
    vmm_fqdn: str
    vmm_id: str
    registered: datetime
    kek_thumbprint: str
    kek_expiry: datetime
    #: provider heartbeats count from here (None = ``registered``); moved when the time
    #: scale changes so the heartbeat never goes back
    heartbeat_since: datetime | None = None


@dataclass
class Policy:
    name: str
    guid: str
    instance_type: str
    settings: dict[str, Any]  # validated input fields (input spelling); normalised on read
    created: datetime


@dataclass
class ContainerMapping:
    name: str
    fabric: str
    container: str
    target_fabric: str
    target_container: str
    policy: str
    created: datetime


@dataclass
class NetworkMapping:
    name: str
    fabric: str
    network: str
    recovery_fabric: str
    recovery_network: str
    created: datetime


@dataclass
class TestVm:
    name: str
    id: str
    host: str
    network_id: str
    state: str
    created: datetime


@dataclass
class ProtectedItem:
    """A replicated VM. ``incarnation`` tells a re-enabled item from an earlier one with the
    same name, so late events of the earlier item's jobs cannot touch it."""

    name: str
    fabric: str
    container: str
    vm_id: str
    vm_name: str
    policy: str
    recovery_fabric: str
    recovery_container: str
    replica_vm_id: str
    incarnation: str
    created: datetime
    protection_state: str
    protection_state_description: str
    allowed_operations: list[str]
    active_location: str = "Primary"
    test_failover_state: str = "None"
    test_failover_state_description: str = "None"
    replication_health: str = "Normal"
    health_errors: list[dict] = field(default_factory=list)
    scenario: str = "None"
    scenario_job: str | None = None
    scenario_start: datetime | None = None
    last_failover: datetime | None = None
    last_test_failover: datetime | None = None
    failover_kind: str | None = None
    committed: bool = False
    #: initial replication window (progress is computed from it when read)
    ir_start: datetime | None = None
    ir_end: datetime | None = None
    #: delta replication runs from this instant at the policy frequency (None = stopped)
    replicating_since: datetime | None = None
    #: last replicated time frozen when replication stopped (failover, disable)
    replicated_until: datetime | None = None
    primary_vm_state: str = "Running"
    replica_vm_state: str = "Off"
    test_vm: TestVm | None = None
    #: replication stalled on the Hyper-V side (lab admin control): when it stalled, and the
    #: last replicated time frozen then; health and the health error follow when read
    replication_paused: datetime | None = None
    paused_replicated_until: datetime | None = None


@dataclass
class Operation:
    """A job action (cancel/resume) applied at once; its status answers Succeeded."""

    id: str
    job: str
    action: str
    at: datetime


@dataclass
class RecoveryPlan:
    """A recovery plan: its groups as the service normalises them (Shutdown, Failover, Boot...)."""

    name: str
    primary_fabric: str
    recovery_fabric: str
    failover_deployment_model: str
    #: wire groups: groupType, replicationProtectedItems [{id, virtualMachineId}], start/endGroupActions
    groups: list[dict[str, Any]]
    created: datetime
    current_scenario: str = "None"
    scenario_job: str | None = None
    last_test_failover: datetime | None = None
    #: the Boot groups' items are waiting for a test failover cleanup
    test_failover_pending: bool = False


@dataclass
class Vault:
    id: str
    subscription: str
    resource_group: str
    name: str
    location: str
    sku: dict[str, Any]
    tags: dict[str, str]
    properties: dict[str, Any]
    identity_type: str | None
    principal_id: str | None
    etag: str
    created: datetime
    certificates: dict[str, Certificate] = field(default_factory=dict)
    extended_info: ExtendedInfo | None = None
    fabrics: dict[str, Fabric] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    container_mappings: dict[str, ContainerMapping] = field(default_factory=dict)
    network_mappings: dict[str, NetworkMapping] = field(default_factory=dict)
    protected_items: dict[str, ProtectedItem] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    recovery_plans: dict[str, RecoveryPlan] = field(default_factory=dict)


@dataclass
class LabState:
    vaults: dict[str, Vault] = field(default_factory=dict)
    faults: list[JobFault] = field(default_factory=list)
    fault_seq: int = 0
    #: library scripts made to fail (lab admin control): "<vmm fqdn>|<path, lower-case>" -> STDERR text
    failing_scripts: dict[str, str] = field(default_factory=dict)


STATE_ADAPTER: TypeAdapter[LabState] = TypeAdapter(LabState)
SCHEMA_VERSION = 1


def dump_state(state: LabState) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "state": STATE_ADAPTER.dump_python(state, mode="json")}


def load_state(data: dict[str, Any]) -> LabState:
    if data.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"unsupported lab state schema {data.get('schema')!r} (expected {SCHEMA_VERSION})")
    return STATE_ADAPTER.validate_python(data["state"])
