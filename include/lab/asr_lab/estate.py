"""The emulated company: its Azure tenant and subscription, and its two VMM sites.

The estate is the lab's fixed input. It says what exists before anyone runs the product:
the resource groups, the VMM servers with their clouds, Hyper-V hosts, VM networks and the
virtual machines on the primary site. Everything Site Recovery later shows about fabrics,
clouds, networks and protectable items is derived from it, and the WinRM twins of the VMM
servers and hosts read the same model, so both faces of the lab tell one story.

Secrets never live here: the server generates client secrets and certificates at start.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_ESTATE = Path(__file__).with_name("data") / "estate.yaml"

_FQDN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"'{value}' is not a GUID") from None


def _fqdn(value: str) -> str:
    if not _FQDN.match(value):
        raise ValueError(f"'{value}' is not a fully qualified domain name")
    return value.lower()


def _prefix(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"'{value}' is not an address prefix: {exc}") from None


Guid = Annotated[str, AfterValidator(_guid)]
Fqdn = Annotated[str, AfterValidator(_fqdn)]
AddressPrefix = Annotated[str, AfterValidator(_prefix)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subnet(_Frozen):
    name: str
    address_prefix: AddressPrefix


class VmNetwork(_Frozen):
    """A VMM VM network; Site Recovery lists it as a replication network (name = GUID)."""

    id: Guid
    name: str
    isolation: Literal["NoIsolation", "WindowsNetworkVirtualization", "VLANBased"] = "NoIsolation"
    purpose: Literal["production", "drill"] = "production"
    subnets: list[Subnet] = Field(min_length=1)


class ReplicaServerSettings(_Frozen):
    """Hyper-V Replica server settings of a host (what Get-VMReplicationServer shows)."""

    enabled: bool = True
    authentication: Literal["Kerberos", "Certificate", "CertificateAndKerberos"] = "Kerberos"
    kerberos_port: int = Field(8083, ge=1, le=65535)
    certificate_port: int = Field(443, ge=1, le=65535)
    storage_path: str


class HyperVHost(_Frozen):
    id: Guid
    fqdn: Fqdn
    cloud: str
    cluster: str | None = None
    os: str
    os_version: str
    logical_processors: int = Field(ge=1)
    memory_gb: int = Field(ge=1)
    replica: ReplicaServerSettings


class Cloud(_Frozen):
    """A VMM cloud; Site Recovery lists it as a protection container (name = GUID)."""

    id: Guid
    name: str
    description: str = ""


class Disk(_Frozen):
    id: Guid
    file: str
    size_gb: int = Field(ge=1)
    role: Literal["OperatingSystem", "Data"]
    controller: Literal["IDE", "SCSI"] = "SCSI"
    shared: bool = False
    passthrough: bool = False


class Nic(_Frozen):
    id: Guid
    network: str
    mac: str
    ip_address: str | None = None

    @property
    def static(self) -> bool:
        return self.ip_address is not None


class Service(_Frozen):
    """A port the VM's guest listens on, which a drill's probe (Test-TestVmEndpoint) finds open.

    ``tcp`` accepts connections; ``http`` also answers every GET with ``status`` (200 unless
    said otherwise). A port the VM does not list refuses connections.
    """

    port: int = Field(ge=1, le=65535)
    kind: Literal["tcp", "http"] = "tcp"
    status: int | None = Field(None, ge=100, le=599)

    @model_validator(mode="before")
    @classmethod
    def _http_answers_200_by_default(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("kind") == "http" and data.get("status") is None:
            return {**data, "status": 200}
        return data

    @model_validator(mode="after")
    def _status_is_for_http(self) -> Service:
        if self.kind == "tcp" and self.status is not None:
            raise ValueError(f"status: port {self.port} is a tcp service; only http services answer with a status")
        return self


class VirtualMachine(_Frozen):
    id: Guid
    name: str
    cloud: str
    host: Fqdn
    generation: Literal[1, 2]
    os_type: Literal["Windows", "Linux"] = "Windows"
    os: str
    cpu_count: int = Field(ge=1)
    memory_mb: int = Field(ge=512)
    role: str = ""
    disks: list[Disk] = Field(min_length=1)
    nics: list[Nic] = Field(default_factory=list)
    fibre_channel_adapter: bool = False
    services: list[Service] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_service_per_port(self) -> VirtualMachine:
        seen: set[int] = set()
        for i, service in enumerate(self.services):
            if service.port in seen:
                raise ValueError(f"services.{i}.port: port {service.port} is listed twice")
            seen.add(service.port)
        return self

    def service(self, port: int) -> Service | None:
        """What listens on ``port`` in the guest, or None (connections are refused)."""
        return next((s for s in self.services if s.port == port), None)

    @property
    def has_shared_vhd(self) -> bool:
        return any(d.shared for d in self.disks)

    @property
    def has_physical_disk(self) -> bool:
        return any(d.passthrough for d in self.disks)

    @property
    def total_size_gb(self) -> int:
        return sum(d.size_gb for d in self.disks)

    def readiness_errors(self) -> list[str]:
        """Why Hyper-V Replica cannot protect this VM (empty when it can)."""
        errors = []
        if self.has_shared_vhd:
            shared = ", ".join(d.file for d in self.disks if d.shared)
            errors.append(
                f"The virtual machine has shared virtual hard disks ({shared}). "
                "Hyper-V Replica doesn't support replication of shared VHDX files."
            )
        if self.has_physical_disk:
            errors.append(
                "The virtual machine has a pass-through (physical) disk attached. "
                "Hyper-V Replica doesn't support replication of physical disks."
            )
        if self.fibre_channel_adapter:
            errors.append(
                "The virtual machine has a virtual Fibre Channel adapter. "
                "Virtual machines with virtual Fibre Channel adapters can't be replicated."
            )
        return errors


class LibraryScript(_Frozen):
    """A PowerShell script in the VMM library share, as a recovery plan's script action runs it.

    ASR runs it on the VMM server as the VMM service account; anything written to STDERR fails
    the action (hyper-v-vmm-recovery-script.md). The lab runs no PowerShell: ``output`` is what
    the script writes, ``stderr`` what it writes to STDERR (non-empty: the action fails with it),
    ``seconds`` how long it runs.
    """

    path: str = Field(pattern=r"^\\[^\\].*\.[pP][sS]1$")
    output: str = ""
    stderr: str = ""
    seconds: float = Field(20.0, ge=0)


class VmmServer(_Frozen):
    id: Guid
    fqdn: Fqdn
    version: str
    product: str
    service_account: str
    #: scripts in the server's library share (MSSCVMMLibrary), by path relative to the share
    library: list[LibraryScript] = Field(default_factory=list)

    def library_script(self, path: str) -> LibraryScript | None:
        """The script at ``path`` (relative to the library share; case-insensitive, as on Windows)."""
        return next((s for s in self.library if s.path.casefold() == path.casefold()), None)


class Site(_Frozen):
    name: str
    role: Literal["primary", "recovery"]
    city: str
    vmm: VmmServer
    clouds: list[Cloud] = Field(min_length=1)
    hosts: list[HyperVHost] = Field(min_length=1)
    networks: list[VmNetwork] = Field(min_length=1)
    vms: list[VirtualMachine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Site:
        clouds = {c.name for c in self.clouds}
        hosts = {h.fqdn for h in self.hosts}
        networks = {n.name for n in self.networks}
        for i, host in enumerate(self.hosts):
            if host.cloud not in clouds:
                raise ValueError(f"hosts.{i}.cloud: '{host.cloud}' is not a cloud of site '{self.name}'")
        for i, vm in enumerate(self.vms):
            if vm.cloud not in clouds:
                raise ValueError(f"vms.{i}.cloud: '{vm.cloud}' is not a cloud of site '{self.name}'")
            if vm.host not in hosts:
                raise ValueError(f"vms.{i}.host: '{vm.host}' is not a host of site '{self.name}'")
            for j, nic in enumerate(vm.nics):
                if nic.network not in networks:
                    raise ValueError(
                        f"vms.{i}.nics.{j}.network: '{nic.network}' is not a VM network of site '{self.name}'"
                    )
        return self

    def cloud_named(self, name: str) -> Cloud:
        return next(c for c in self.clouds if c.name == name)

    def network_named(self, name: str) -> VmNetwork:
        return next(n for n in self.networks if n.name == name)

    def hosts_in(self, cloud_name: str) -> list[HyperVHost]:
        return [h for h in self.hosts if h.cloud == cloud_name]


class Estate(_Frozen):
    company: str
    domain: Fqdn
    tenant_id: Guid
    subscription_id: Guid
    subscription_name: str
    location: str
    resource_groups: list[str] = Field(min_length=1)
    sites: list[Site] = Field(min_length=2, max_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> Estate:
        roles = sorted(s.role for s in self.sites)
        if roles != ["primary", "recovery"]:
            raise ValueError(f"sites: need one primary and one recovery site, got roles {roles}")
        seen: dict[str, str] = {}
        for s_i, site in enumerate(self.sites):
            ids = [("vmm.id", site.vmm.id)]
            ids += [(f"clouds.{i}.id", c.id) for i, c in enumerate(site.clouds)]
            ids += [(f"hosts.{i}.id", h.id) for i, h in enumerate(site.hosts)]
            ids += [(f"networks.{i}.id", n.id) for i, n in enumerate(site.networks)]
            ids += [(f"vms.{i}.id", v.id) for i, v in enumerate(site.vms)]
            shared_disks: dict[str, str] = {}
            for v_i, vm in enumerate(site.vms):
                for i, disk in enumerate(vm.disks):
                    if disk.shared:
                        # A shared VHDX is one file attached to every guest-cluster node.
                        if shared_disks.setdefault(disk.id, disk.file) != disk.file:
                            raise ValueError(f"sites.{s_i}.vms.{v_i}.disks.{i}.id: shared disk "
                                             f"{disk.id} names two files")
                        continue
                    ids.append((f"vms.{v_i}.disks.{i}.id", disk.id))
                ids += [(f"vms.{v_i}.nics.{i}.id", n.id) for i, n in enumerate(vm.nics)]
            ids += [(f"shared disk {f}", d) for d, f in shared_disks.items()]
            for where, value in ids:
                path = f"sites.{s_i}.{where}"
                if value in seen:
                    raise ValueError(f"{path}: GUID {value} is already used by {seen[value]}")
                seen[value] = path
        return self

    @property
    def primary(self) -> Site:
        return next(s for s in self.sites if s.role == "primary")

    @property
    def recovery(self) -> Site:
        return next(s for s in self.sites if s.role == "recovery")

    @cached_property
    def _sites_by_vmm(self) -> dict[str, Site]:
        return {s.vmm.fqdn: s for s in self.sites}

    def site_of_vmm(self, fqdn: str) -> Site | None:
        return self._sites_by_vmm.get(fqdn.lower())

    @cached_property
    def _vms_by_id(self) -> dict[str, tuple[Site, VirtualMachine]]:
        return {vm.id: (s, vm) for s in self.sites for vm in s.vms}

    def vm(self, vm_id: str) -> tuple[Site, VirtualMachine] | None:
        return self._vms_by_id.get(vm_id.lower())

    @cached_property
    def _clouds_by_id(self) -> dict[str, tuple[Site, Cloud]]:
        return {c.id: (s, c) for s in self.sites for c in s.clouds}

    def cloud(self, cloud_id: str) -> tuple[Site, Cloud] | None:
        return self._clouds_by_id.get(cloud_id.lower())

    @cached_property
    def _networks_by_id(self) -> dict[str, tuple[Site, VmNetwork]]:
        return {n.id: (s, n) for s in self.sites for n in s.networks}

    def network(self, network_id: str) -> tuple[Site, VmNetwork] | None:
        return self._networks_by_id.get(network_id.lower())

    def vms_in_cloud(self, cloud_id: str) -> list[VirtualMachine]:
        found = self.cloud(cloud_id)
        if found is None:
            return []
        site, cloud = found
        return [vm for vm in site.vms if vm.cloud == cloud.name]


def load_estate(path: str | Path | None = None) -> Estate:
    """Read and validate an estate file; a bad file raises ValueError naming the field.

    :param path: the YAML file; None reads the packaged default (``asr_lab/data/estate.yaml``).
    :raise ValueError: unreadable YAML or a field that fails validation.
    """
    source = Path(path) if path is not None else DEFAULT_ESTATE
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{source}: cannot read estate: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: the estate must be a mapping, got {type(raw).__name__}")
    try:
        return Estate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValueError(f"{source}: {field}: {message}{more}") from None
