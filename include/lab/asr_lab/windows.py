"""The emulated Windows servers: one WinRM endpoint per VMM server and Hyper-V host.

Every server listens on its own loopback port, speaks WS-Management + PSRP (asr_lab.winrm)
and answers the product's scripts with their twins (asr_lab.twins), which read and change
the same lab state the ARM side serves. All servers accept one domain account, as an
estate run by a DR team's automation account would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from asr_lab.twins import WindowsServerContext, build_twins
from asr_lab.winrm import build_winrm_app

if TYPE_CHECKING:
    from asr_lab.app import Lab


@dataclass
class WindowsServer:
    fqdn: str
    role: str  # "vmm" or "host"
    app: Starlette

    @property
    def service(self):
        return self.app.state.winrm

    @property
    def controls(self):
        return self.app.state.controls


def windows_servers(lab: "Lab", username: str, password: str) -> dict[str, WindowsServer]:
    """Build the WinRM app of every Windows server in the estate, keyed by FQDN."""
    twins = build_twins()
    credentials = {username: password}
    servers: dict[str, WindowsServer] = {}
    for site in lab.estate.sites:
        machines = [(site.vmm.fqdn, "vmm")] + [(host.fqdn, "host") for host in site.hosts]
        for fqdn, role in machines:
            context = WindowsServerContext(fqdn=fqdn, role=role, lab=lab)
            servers[fqdn] = WindowsServer(fqdn, role, build_winrm_app(fqdn, credentials, twins, context))
    return servers
