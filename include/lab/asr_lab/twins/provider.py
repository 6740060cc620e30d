"""Twin of Install-AsrProvider (step 6): install the ASR Provider on a VMM server and register it.

The steps and their order are the script's: read which vault the credentials name; stop early
when the server is already registered (same vault: nothing to do; another vault: refuse);
install the provider when it is missing (the lab's installer is any ``AzureSiteRecoveryProvider.exe``
path, or an https URL ending in that name); then register, which is where DRConfigurator checks
the credentials against the vault. A successful registration calls
``ArmBackend.register_provider``, so the fabric, its clouds, networks and VMs appear on the ARM
side, and is recorded in :class:`~asr_lab.onprem.OnPremState`.

The credentials are a secret: no record of the run quotes them (``script_twin`` scrubs them too).
"""

from __future__ import annotations

from typing import Any

from asr_lab.onprem import PROVIDER_VERSION, VmmServerState
from asr_lab.twins.common import INSTALLER_PATH_PATTERN, Param, ScriptRun, locate_installer, pause, script_twin
from asr_lab.twins.vault_credentials import (
    CredentialsRejected,
    CredentialsUnreadable,
    check_with_vault,
    parse_vault_credentials,
)

SCRIPT = "Install-AsrProvider"
INSTALLER = "AzureSiteRecoveryProvider.exe"
PARAMETERS = [
    Param("VaultCredentials", mandatory=True, not_empty=True, secret=True),
    Param("InstallerPath", mandatory=True, pattern=INSTALLER_PATH_PATTERN),
    Param("FriendlyName", pattern=r"^[\w.-]{1,64}$"),
    Param("ProxyAddress", pattern=r"^https?://[^\s/:]+(:\d{1,5})?/?$"),
]
#: Realistic durations of the slow steps, played at the lab's time scale.
INSTALL_SECONDS = 150
REGISTER_SECONDS = 45
#: DRConfigurator's exit code for a refused registration (the lab uses one code for all refusals).
DRCONFIGURATOR_REFUSED = 1


def _vault_name(vault_id: str) -> str:
    return vault_id.rstrip("/").rsplit("/", 1)[-1]


def _document(server: str, state: VmmServerState, vault_id: str, *, installed: bool, registered: bool) -> dict:
    return {"server": server, "installed": installed, "registered": registered, "already_registered": not registered,
            "vault_id": vault_id, "friendly_name": state.friendly_name or server,
            "provider_version": state.provider_version or ""}


@script_twin(SCRIPT, PARAMETERS)
async def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    state = context.require_vmm(module=None)
    lab, server = context.lab, context.fqdn
    try:
        credentials = parse_vault_credentials(args["VaultCredentials"])
    except CredentialsUnreadable as exc:
        raise run.fail(str(exc)) from None
    run.verbose(f"The vault credentials are for vault '{credentials.vault_name}' in resource group "
                f"'{credentials.resource_group}'.")

    if state.registered_vault_id:
        if state.registered_vault_id.casefold() == credentials.vault_id.casefold():
            run.info(f"{server} is already registered to the vault '{credentials.vault_name}'; nothing to do.")
            return run.emit(_document(server, state, state.registered_vault_id, installed=False, registered=False))
        raise run.fail(f"This server is already registered to the vault '{_vault_name(state.registered_vault_id)}'. "
                       "Unregister it first.")

    installed = False
    if not state.provider_installed:
        locate_installer(run, args["InstallerPath"], INSTALLER, "provider")
        run.verbose("Extracting the provider (AzureSiteRecoveryProvider.exe /x:<folder> /q)...")
        run.verbose("Installing the provider (SetupDr.exe /i)...")
        run.verbose("Waiting for the DRAdapter registry key...")
        state.provider_version, state.dr_adapter_key = PROVIDER_VERSION, True
        context.changed()
        installed = True
        run.info(f"Installed the Azure Site Recovery Provider {PROVIDER_VERSION} on {server}.")
        await pause(context, INSTALL_SECONDS)
    else:
        run.verbose(f"The Azure Site Recovery Provider {state.provider_version} is already installed.")

    friendly_name = args["FriendlyName"] or server
    run.verbose("Wrote the vault credentials to a temporary file readable by SYSTEM and Administrators only.")
    if args["ProxyAddress"]:
        run.verbose(f"Registering through the proxy {args['ProxyAddress']}.")
    run.verbose(f"Registering with the vault '{credentials.vault_name}' as '{friendly_name}' "
                "(DRConfigurator.exe /r)...")
    try:
        lab.backend.settle()
        vault = check_with_vault(credentials, lab.backend, lab.clock.now())
    except CredentialsRejected as exc:
        run.verbose("Removed the temporary vault credentials file.")
        raise run.fail(f"DRConfigurator.exe could not register {server} with the vault '{credentials.vault_name}' "
                       f"(exit code {DRCONFIGURATOR_REFUSED}): {exc}") from None
    registration = lab.backend.register_provider(vault.id, server)
    state.registered_vault_id, state.friendly_name = vault.id, friendly_name
    state.registered_at = lab.clock.now()
    context.changed()
    run.verbose("Removed the temporary vault credentials file.")
    if registration["created"]:
        run.info(f"Registered {server} with the vault '{vault.name}' (job {registration['job']}); "
                 "the VMM service was restarted.")
        await pause(context, REGISTER_SECONDS)
    else:
        run.info(f"{server} was already known to the vault '{vault.name}'; recorded its registration.")
    return run.emit(_document(server, state, vault.id, installed=installed, registered=registration["created"]))

