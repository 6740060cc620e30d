"""What the product changes on the emulated Windows servers, as opposed to what the estate says.

The estate (estate.yaml) describes the servers as they were built; the product's scripts then
change them: step 4 opens the replication port and sets the replica server settings of the
Hyper-V hosts, step 6 installs and registers the ASR Provider on the VMM servers and, where the
site file asks for it, the Recovery Services (MARS) agent on the hosts. Those changes live here,
persist next to the ARM state, and are what the script twins read, so a second run of a script
sees what the first one did.

Test failover VMs are not here: the ARM backend owns them (``ArmBackend.test_vms()``), because
a test failover job creates and its cleanup removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from asr_lab.estate import Estate, HyperVHost

#: The version of the ASR Provider and of the MARS agent the lab's installers carry.
PROVIDER_VERSION = "5.1.8400.0"
MARS_AGENT_VERSION = "2.0.9262.0"
#: Built-in Windows firewall rules of Hyper-V Replica; disabled on a fresh Windows Server.
REPLICA_HTTP_RULE = "Hyper-V Replica HTTP Listener (TCP-In)"
REPLICA_HTTPS_RULE = "Hyper-V Replica HTTPS Listener (TCP-In)"
BUILT_IN_RULE_PORTS = {REPLICA_HTTP_RULE: 80, REPLICA_HTTPS_RULE: 443}
SCHEMA_VERSION = 1


@dataclass
class FirewallRule:
    """An inbound TCP allow rule on a host (what Get-NetFirewallRule + its port filter show)."""

    display_name: str
    local_port: int
    enabled: bool
    built_in: bool = False


@dataclass
class AuthorizationEntry:
    """A primary server allowed to replicate to this host (New-VMReplicationAuthorizationEntry)."""

    allowed_primary_server: str
    storage_path: str
    trust_group: str


@dataclass
class ReplicaServer:
    """A host's Hyper-V Replica server settings (Get-VMReplicationServer)."""

    enabled: bool
    authentication: str  # Kerberos | Certificate | CertificateAndKerberos
    kerberos_port: int
    certificate_port: int
    storage_path: str | None
    allowed_from_any_server: bool
    authorization_entries: list[AuthorizationEntry] = field(default_factory=list)
    certificate_thumbprint: str | None = None

    def accepts(self, authentication: str, port: int) -> bool:
        """Whether the replica server listens for ``authentication`` replication on ``port``."""
        if not self.enabled:
            return False
        kerberos = self.authentication in ("Kerberos", "CertificateAndKerberos") and self.kerberos_port == port
        certificate = (self.authentication in ("Certificate", "CertificateAndKerberos")
                       and self.certificate_port == port and self.certificate_thumbprint is not None)
        return kerberos if authentication == "Kerberos" else certificate


@dataclass
class HostState:
    """One Hyper-V host: replica settings, firewall rules, certificates, MARS agent."""

    fqdn: str
    replica: ReplicaServer
    firewall_rules: list[FirewallRule]
    #: thumbprints of Server Authentication certificates in Cert:\LocalMachine\My
    certificates: list[str] = field(default_factory=list)
    mars_agent_version: str | None = None

    def rule(self, display_name: str) -> FirewallRule | None:
        wanted = display_name.casefold()
        return next((r for r in self.firewall_rules if r.display_name.casefold() == wanted), None)

    def port_open(self, port: int) -> bool:
        """Whether an enabled inbound rule lets TCP ``port`` through."""
        return any(r.enabled and r.local_port == port for r in self.firewall_rules)

    def replication_reachable(self, authentication: str, port: int) -> bool:
        """What Test-NetConnection -Port from the VMM server would find: a listener behind an open port."""
        return self.replica.accepts(authentication, port) and self.port_open(port)


@dataclass
class VmmServerState:
    """One VMM server: the ASR Provider (installed? registered to which vault?)."""

    fqdn: str
    provider_version: str | None = None
    #: HKLM:\Software\Microsoft\Microsoft System Center Virtual Machine Manager Server\DRAdapter
    dr_adapter_key: bool = False
    registered_vault_id: str | None = None
    friendly_name: str | None = None
    registered_at: datetime | None = None

    @property
    def provider_installed(self) -> bool:
        return self.provider_version is not None


@dataclass
class _Saved:
    schema: int
    hosts: list[HostState]
    vmm_servers: list[VmmServerState]


_ADAPTER: TypeAdapter[_Saved] = TypeAdapter(_Saved)


class OnPremState:
    """The changeable state of every Windows server of the estate, keyed by FQDN.

    ``version`` moves on every change (``touch()``), so the lab knows when to persist.
    Mutate the records in place, then call ``touch()``.
    """

    def __init__(self, hosts: dict[str, HostState], vmm_servers: dict[str, VmmServerState]) -> None:
        self.hosts = hosts
        self.vmm_servers = vmm_servers
        self.version = 0

    @classmethod
    def initial(cls, estate: Estate) -> OnPremState:
        """The servers as built: replica settings from the estate, replica firewall rules
        disabled (as on a fresh Windows Server), no provider, no agent."""
        hosts = {h.fqdn: _initial_host(h) for site in estate.sites for h in site.hosts}
        vmms = {site.vmm.fqdn: VmmServerState(fqdn=site.vmm.fqdn) for site in estate.sites}
        return cls(hosts, vmms)

    @classmethod
    def from_dict(cls, data: dict[str, Any], estate: Estate) -> OnPremState:
        """Restore saved state; servers the estate no longer has are dropped, new ones start as built.

        :raise ValueError: the data was written by another schema.
        """
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"unsupported on-premises state schema {data.get('schema')!r} "
                             f"(expected {SCHEMA_VERSION})")
        saved = _ADAPTER.validate_python(data)
        state = cls.initial(estate)
        for host in saved.hosts:
            if host.fqdn in state.hosts:
                state.hosts[host.fqdn] = host
        for vmm in saved.vmm_servers:
            if vmm.fqdn in state.vmm_servers:
                state.vmm_servers[vmm.fqdn] = vmm
        return state

    def to_dict(self) -> dict[str, Any]:
        saved = _Saved(SCHEMA_VERSION, list(self.hosts.values()), list(self.vmm_servers.values()))
        return _ADAPTER.dump_python(saved, mode="json")

    def touch(self) -> None:
        """Record that something changed (the lab persists when ``version`` moves)."""
        self.version += 1

    def host(self, fqdn: str) -> HostState:
        """:raise KeyError: ``fqdn`` is not a Hyper-V host of the estate."""
        return self.hosts[fqdn.lower()]

    def vmm_server(self, fqdn: str) -> VmmServerState:
        """:raise KeyError: ``fqdn`` is not a VMM server of the estate."""
        return self.vmm_servers[fqdn.lower()]

    def registrations(self) -> dict[str, str]:
        """VMM server FQDN -> ARM id of the vault its provider is registered to."""
        return {v.fqdn: v.registered_vault_id for v in self.vmm_servers.values() if v.registered_vault_id}


def _initial_host(host: HyperVHost) -> HostState:
    settings = host.replica
    replica = ReplicaServer(
        enabled=settings.enabled, authentication=settings.authentication,
        kerberos_port=settings.kerberos_port, certificate_port=settings.certificate_port,
        storage_path=settings.storage_path if settings.enabled else None,
        allowed_from_any_server=settings.enabled,
    )
    rules = [FirewallRule(name, port, enabled=False, built_in=True) for name, port in BUILT_IN_RULE_PORTS.items()]
    return HostState(fqdn=host.fqdn, replica=replica, firewall_rules=rules)
