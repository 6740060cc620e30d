"""The project's PowerShell scripts and the one JSON document each writes (principle 4).

Each model reads what one script in ``include/powershell`` writes with ``ConvertTo-Json
-Compress``; the lab's twin of the script writes the same document. Unknown fields are refused,
so a script and its model cannot drift apart silently. ``summary()`` is the line the VMM hook
logs after a run; it names servers and VMs, as a DR engineer reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from site_recovery.script_contract import ScriptContract
from site_recovery.vocabulary import Heartbeat, VmPowerState

Authentication = Literal["Kerberos", "Certificate", "CertificateAndKerberos"]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Get-VmmInventory

class ReplicaServerSettings(_Document):
    """A host's Hyper-V Replica server settings (Get-VMReplicationServer)."""

    enabled: bool
    authentication: Authentication
    kerberos_port: int = Field(ge=1, le=65535)
    certificate_port: int = Field(ge=1, le=65535)
    storage_path: str | None
    allowed_from_any_server: bool


class InventoryCloud(_Document):
    id: str
    name: str
    description: str
    host_groups: list[str]


class InventoryHost(_Document):
    id: str
    fqdn: str
    host_group: str
    cluster: str | None
    os: str
    os_version: str
    hyperv_role: bool
    logical_processors: int
    memory_gb: float
    #: None when the settings could not be read from the VMM server (the script warns why)
    replica: ReplicaServerSettings | None


class InventoryDisk(_Document):
    id: str
    name: str
    size_gb: float
    bus: Literal["IDE", "SCSI"]
    role: Literal["OperatingSystem", "Data"]
    shared: bool
    passthrough: bool


class InventoryNic(_Document):
    id: str
    mac: str
    vm_network: str | None
    ip_addresses: list[str]


class InventoryVm(_Document):
    id: str
    name: str
    cloud: str | None
    host: str
    generation: Literal[1, 2]
    #: VMM's VirtualMachineState: Running, PowerOff, Saved, Paused, ...
    state: str
    os: str
    cpu_count: int
    memory_mb: int
    disks: list[InventoryDisk]
    nics: list[InventoryNic]


class InventorySubnet(_Document):
    name: str
    address_prefix: str


class InventoryVmNetwork(_Document):
    id: str
    name: str
    logical_network: str
    isolation: str
    subnets: list[InventorySubnet]


class InventoryLogicalNetwork(_Document):
    id: str
    name: str
    network_virtualization: bool


class VmmInventory(_Document):
    """What Get-VmmInventory found on one VMM server."""

    server: str
    vmm_version: str
    clouds: list[InventoryCloud]
    hosts: list[InventoryHost]
    vms: list[InventoryVm]
    vm_networks: list[InventoryVmNetwork]
    logical_networks: list[InventoryLogicalNetwork]

    def vms_in(self, cloud: str) -> list[InventoryVm]:
        return [vm for vm in self.vms if vm.cloud == cloud]

    def summary(self) -> str:
        clouds = ", ".join(f"{c.name} ({len(self.vms_in(c.name))} VMs)" for c in self.clouds) or "no clouds"
        return (f"VMM {self.vmm_version} on {self.server}: {clouds}; {len(self.hosts)} Hyper-V hosts, "
                f"{len(self.vm_networks)} VM networks")


# Test-AsrPrerequisites

class PrerequisiteCheck(_Document):
    name: str
    passed: bool
    reason: str


class PrerequisiteReport(_Document):
    """Each documented prerequisite of VMM-to-VMM replication, passed or not, and why."""

    server: str
    checks: list[PrerequisiteCheck] = Field(min_length=1)
    passed: bool

    def failed(self) -> list[PrerequisiteCheck]:
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        failed = self.failed()
        if not failed:
            return f"all {len(self.checks)} prerequisites met on {self.server}"
        return (f"{len(failed)} of {len(self.checks)} prerequisites not met on {self.server}: "
                + "; ".join(f"{c.name}: {c.reason}" for c in failed))


# Initialize-HyperVReplicaHost

class ReplicaHostSettings(_Document):
    """The replica server settings and replication firewall rules after the run."""

    enabled: bool
    authentication: Authentication
    kerberos_port: int = Field(ge=1, le=65535)
    certificate_port: int = Field(ge=1, le=65535)
    storage_path: str | None
    allowed_from_any_server: bool
    allowed_primary_servers: list[str]
    open_firewall_rules: list[str]


class ReplicaHostConfiguration(_Document):
    host: str
    changed: list[str]
    already: list[str]
    settings: ReplicaHostSettings

    def summary(self) -> str:
        if not self.changed:
            return f"{self.host} was already set up as a replica server ({len(self.already)} settings checked)"
        return f"{self.host}: changed {'; '.join(self.changed)}"


# Install-AsrProvider

class ProviderRegistration(_Document):
    """The ASR Provider on a VMM server: what this run installed and registered."""

    server: str
    installed: bool
    registered: bool
    already_registered: bool
    vault_id: str
    friendly_name: str
    provider_version: str

    def summary(self) -> str:
        vault = self.vault_id.rstrip("/").rsplit("/", 1)[-1]
        if self.already_registered:
            return f"the ASR Provider {self.provider_version} on {self.server} was already registered to vault {vault}"
        installed = f"installed the ASR Provider {self.provider_version} and " if self.installed else ""
        return f"{installed}registered {self.server} as '{self.friendly_name}' with vault {vault}"


# Install-RecoveryServicesAgent

class RecoveryServicesAgentInstallation(_Document):
    host: str
    installed: bool
    already_installed: bool
    version: str

    def summary(self) -> str:
        verb = "already had" if self.already_installed else "installed"
        return f"{self.host} {verb} the Recovery Services agent {self.version}"


# Get-TestVmStatus

class TestVmStatus(_Document):
    """A test failover VM as the recovery VMM server sees it."""

    __test__ = False  # not a pytest test class, despite the name

    vm_name: str
    exists: bool
    vm_id: str | None
    state: str | None
    #: Hyper-V heartbeat: OK, NoContact, LostCommunication, Degraded, Error, Disabled or Unknown
    heartbeat: str | None
    ip_addresses: list[str]
    host: str | None

    @property
    def healthy(self) -> bool:
        """Running, answering its heartbeat, and holding an address."""
        return (self.exists and self.state == VmPowerState.RUNNING and self.heartbeat == Heartbeat.OK
                and bool(self.ip_addresses))

    def summary(self) -> str:
        if not self.exists:
            return f"no VM named '{self.vm_name}'"
        addresses = ", ".join(self.ip_addresses) or "no IP address"
        return f"'{self.vm_name}' on {self.host}: {self.state}, heartbeat {self.heartbeat}, {addresses}"


# Test-TestVmEndpoint

class TestVmEndpointResult(_Document):
    """One probe of a test failover VM from the recovery VMM server: a TCP connect or an HTTP GET."""

    __test__ = False  # not a pytest test class, despite the name

    vm_name: str
    kind: Literal["tcp", "http"]
    port: int = Field(ge=1, le=65535)
    #: the GET's path; None for tcp
    path: str | None
    #: the address probed; None when the VM is missing, not running or has no IPv4 address
    address: str | None
    #: tcp: the port accepted a connection; http: the GET answered with a status below 400
    ok: bool
    status_code: int | None
    #: None when nothing was probed
    elapsed_ms: int | None = Field(ge=0)
    detail: str

    def summary(self) -> str:
        if self.address is None:
            return f"{self.kind} port {self.port} on '{self.vm_name}': not probed, {self.detail}"
        where = f"{self.kind} {self.address}:{self.port}{self.path or ''} on '{self.vm_name}'"
        if not self.ok:
            return f"{where}: failed after {self.elapsed_ms} ms, {self.detail}"
        if self.kind == "http":
            return f"{where}: HTTP {self.status_code} in {self.elapsed_ms} ms"
        return f"{where}: open in {self.elapsed_ms} ms"


SCRIPTS: dict[str, ScriptContract] = {
    contract.name: contract
    for contract in (
        ScriptContract("Get-VmmInventory", VmmInventory, safe_to_retry=True),
        ScriptContract("Test-AsrPrerequisites", PrerequisiteReport, safe_to_retry=True),
        # Each setting is compared before it is set, so a run cut off half-way is finished by the next.
        ScriptContract("Initialize-HyperVReplicaHost", ReplicaHostConfiguration, safe_to_retry=True),
        # Not retried blindly: an installer cut off half-way may still be running on the server.
        ScriptContract("Install-AsrProvider", ProviderRegistration, secret_parameters={"VaultCredentials"}),
        ScriptContract("Install-RecoveryServicesAgent", RecoveryServicesAgentInstallation),
        ScriptContract("Get-TestVmStatus", TestVmStatus, safe_to_retry=True),
        ScriptContract("Test-TestVmEndpoint", TestVmEndpointResult, safe_to_retry=True),
    )
}
