"""Python twins of the product's PowerShell scripts, run by the emulated Windows servers.

The lab runs no PowerShell: when a script carrying ``# asr-lab-twin: <Name>`` arrives over
WinRM, the twin registered under that name answers it from the lab's state, and writes the
same one JSON document the real script writes on Windows (principle 4). Twins read the
estate (what was built), the ARM backend (what Azure knows: registrations, test failover
VMs) and :class:`~asr_lab.onprem.OnPremState` (what the scripts changed on the servers), and
change the latter two consistently, so both faces of the lab tell one story.

One module per script: ``inventory`` (Get-VmmInventory), ``prerequisites``
(Test-AsrPrerequisites), ``replica_host`` (Initialize-HyperVReplicaHost), ``provider``
(Install-AsrProvider, with ``vault_credentials``), ``mars_agent``
(Install-RecoveryServicesAgent), ``test_vm`` (Get-TestVmStatus), ``endpoint``
(Test-TestVmEndpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from asr_lab.estate import HyperVHost, Site
from asr_lab.onprem import HostState, VmmServerState
from asr_lab.twins.common import module_missing, service_missing
from asr_lab.winrm.scripts import ScriptTwins

if TYPE_CHECKING:
    from asr_lab.app import Lab


@dataclass(frozen=True)
class WindowsServerContext:
    """The emulated Windows server a script runs on, and the lab it belongs to.

    :param fqdn: the server's FQDN as the estate names it.
    :param role: ``"vmm"`` for a VMM server, ``"host"`` for a Hyper-V host.
    :param lab: the running :class:`~asr_lab.app.Lab` (``estate``, ``backend``, ``onprem``,
        ``clock``, ``save_soon()``); tests may pass any object with those attributes.
    """

    fqdn: str
    role: Literal["vmm", "host"]
    lab: "Lab | Any"

    @property
    def site(self) -> Site:
        """The estate site this server belongs to."""
        for site in self.lab.estate.sites:
            if site.vmm.fqdn == self.fqdn or any(h.fqdn == self.fqdn for h in site.hosts):
                return site
        raise LookupError(f"{self.fqdn} is not a server of the estate")

    @property
    def hyperv_host(self) -> HyperVHost:
        return next(h for h in self.site.hosts if h.fqdn == self.fqdn)

    def require_vmm(self, module: str | None = "virtualmachinemanager") -> VmmServerState:
        """The VMM server's state; on a host, fail as the script's first check would there:
        ``Import-Module <module>``, or ``Get-Service SCVMMService`` when ``module`` is None."""
        if self.role != "vmm":
            raise module_missing(module) if module else service_missing("SCVMMService")
        return self.lab.onprem.vmm_server(self.fqdn)

    def require_host(self, module: str | None = "Hyper-V") -> HostState:
        """The host's state; on a VMM server, fail as the script's first check would there:
        ``Import-Module <module>``, or ``Get-Service vmms`` when ``module`` is None."""
        if self.role != "host":
            raise module_missing(module) if module else service_missing("vmms")
        return self.lab.onprem.host(self.fqdn)

    def changed(self) -> None:
        """Record an on-premises change and have the lab persist it."""
        self.lab.onprem.touch()
        self.lab.save_soon()


def build_twins() -> ScriptTwins:
    """The registry of every script twin, by the name on the script's marker line."""
    from asr_lab.twins import endpoint, inventory, mars_agent, prerequisites, provider, replica_host, test_vm

    twins = ScriptTwins()
    for module in (inventory, prerequisites, replica_host, provider, mars_agent, test_vm, endpoint):
        twins.register(module.twin.script_name, module.twin)
    return twins


__all__ = ["WindowsServerContext", "build_twins"]
