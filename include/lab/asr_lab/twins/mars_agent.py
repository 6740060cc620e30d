"""Twin of Install-RecoveryServicesAgent (step 6, when the site file asks for it): the MARS agent.

VMM-to-VMM replication does not need the agent (Hyper-V Replica moves the data); VMM-to-Azure
does, on every host. The twin installs it on a Hyper-V host once, from any
``MARSAgentInstaller.exe`` path or https URL ending in that name, and records it in
:class:`~asr_lab.onprem.OnPremState`; later runs find it and change nothing.
"""

from __future__ import annotations

from typing import Any

from asr_lab.onprem import MARS_AGENT_VERSION
from asr_lab.twins.common import INSTALLER_PATH_PATTERN, Param, ScriptRun, locate_installer, pause, script_twin

SCRIPT = "Install-RecoveryServicesAgent"
INSTALLER = "MARSAgentInstaller.exe"
PARAMETERS = [Param("InstallerPath", mandatory=True, pattern=INSTALLER_PATH_PATTERN)]
INSTALL_SECONDS = 90


@script_twin(SCRIPT, PARAMETERS)
async def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    host = context.require_host(module=None)
    if host.mars_agent_version:
        run.info(f"The Microsoft Azure Recovery Services Agent {host.mars_agent_version} is already installed "
                 f"on {host.fqdn}.")
        return run.emit({"host": host.fqdn, "installed": False, "already_installed": True,
                         "version": host.mars_agent_version})

    locate_installer(run, args["InstallerPath"], INSTALLER, "agent")
    run.verbose("Installing the Microsoft Azure Recovery Services Agent (MARSAgentInstaller.exe /q /nu)...")
    host.mars_agent_version = MARS_AGENT_VERSION
    context.changed()
    await pause(context, INSTALL_SECONDS)
    run.info(f"Installed the Microsoft Azure Recovery Services Agent {MARS_AGENT_VERSION} on {host.fqdn}.")
    return run.emit({"host": host.fqdn, "installed": True, "already_installed": False,
                     "version": MARS_AGENT_VERSION})
