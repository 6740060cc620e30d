"""WinRM in the lab: WS-Management + PowerShell Remoting for the emulated Windows servers.

Each emulated VMM server or Hyper-V host gets ``build_winrm_app(...)``, an ASGI app whose
``POST /wsman`` answers the unmodified pypsrp client (and so Airflow's PsrpHook). PSRP is
psrpcore's server side; instead of PowerShell, Python twins registered in a
:class:`ScriptTwins` answer the product's scripts, found by their ``# asr-lab-twin: <Name>``
line (see :mod:`asr_lab.winrm.scripts`).

Modules: ``wsman`` (SOAP envelopes and faults, pure), ``shell`` (one runspace pool,
sans-I/O), ``records`` (PowerShell objects <-> plain values), ``scripts`` (twins),
``service`` (WSMan actions), ``auth`` (Basic, NTLM, message encryption), ``server`` (HTTP).
"""

from asr_lab.winrm.scripts import (
    POSITIONAL_ARGUMENTS,
    TWIN_MARKER,
    ScriptTwins,
    Twin,
    TwinError,
    TwinResult,
    twin_name_in_script,
)
from asr_lab.winrm.server import build_winrm_app
from asr_lab.winrm.service import WinRMControls, WinRMService

__all__ = [
    "POSITIONAL_ARGUMENTS",
    "TWIN_MARKER",
    "ScriptTwins",
    "Twin",
    "TwinError",
    "TwinResult",
    "WinRMControls",
    "WinRMService",
    "build_winrm_app",
    "twin_name_in_script",
]
