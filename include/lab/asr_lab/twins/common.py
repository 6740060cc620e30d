"""What every script twin does the way PowerShell would: bind parameters, write streams, throw.

A twin is written as ``fn(run, args, context)``: ``args`` are the bound parameters (by their
declared names, defaults filled in, validated as the script's ``param()`` block validates
them), ``run`` collects the verbose/information/warning records and the one output document,
and ``run.fail(...)`` stops the script the way ``throw`` does. :func:`script_twin` turns such a
function into the ``(parameters, context) -> TwinResult`` the WinRM layer calls, with the
messages PowerShell gives for a bad parameter, so a caller's mistake fails as on Windows.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asr_lab.winrm.scripts import TwinError, TwinResult

_BINDING = "System.Management.Automation.ParameterBindingException"
_VALIDATION = "System.Management.Automation.ParameterBindingValidationException"
_TRANSFORMATION = "System.Management.Automation.ParameterBindingArgumentTransformationException"
#: PowerShell's common parameters, which every advanced script (``[CmdletBinding()]``) accepts.
COMMON_PARAMETERS = frozenset(name.casefold() for name in (
    "Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ErrorVariable", "WarningVariable",
    "InformationVariable", "OutVariable", "OutBuffer", "PipelineVariable"))
#: Longest real pause a twin takes to play a slow installer, whatever the time scale.
MAX_PAUSE_SECONDS = 20.0


class ScriptFailure(Exception):
    """Raised inside a twin to end the script with a terminating error record."""

    def __init__(self, error: TwinError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Param:
    """One parameter of a script's ``param()`` block, with its validation attributes."""

    name: str
    kind: type = str  # str, int, bool (a [switch]) or list (a [string[]])
    mandatory: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None  # [ValidateSet()]: case-insensitive, spelled as declared
    minimum: int | None = None  # [ValidateRange()]
    maximum: int | None = None
    pattern: str | None = None  # [ValidatePattern()]: case-insensitive, as PowerShell matches
    not_empty: bool = False  # [ValidateNotNullOrEmpty()]
    aliases: tuple[str, ...] = ()
    secret: bool = False  # a [SecureString]: never echoed in any message


def bind(parameters: dict[str, Any], declared: list[Param], script: str) -> dict[str, Any]:
    """Bind what the client sent to ``declared`` as PowerShell does, or raise ScriptFailure."""
    by_name = {alias.casefold(): p for p in declared for alias in (p.name, *p.aliases)}
    bound: dict[str, Any] = {}
    for given, value in parameters.items():
        if given.casefold() in COMMON_PARAMETERS:
            continue
        param = by_name.get(given.casefold())
        if param is None:
            raise ScriptFailure(TwinError(
                f"A parameter cannot be found that matches parameter name '{given}'.", "InvalidArgument",
                f"NamedParameterNotFound,{script}", _BINDING))
        bound[param.name] = _convert(param, value, script)
    missing = [p.name for p in declared if p.mandatory and p.name not in bound]
    if missing:
        raise ScriptFailure(TwinError(
            f"Cannot process command because of one or more missing mandatory parameters: {' '.join(missing)}.",
            "InvalidArgument", f"MissingMandatoryParameter,{script}", _BINDING))
    for param in declared:
        bound.setdefault(param.name, param.default)
    return bound


def _convert(param: Param, value: Any, script: str) -> Any:
    def invalid(reason: str) -> ScriptFailure:
        return ScriptFailure(TwinError(f"Cannot validate argument on parameter '{param.name}'. {reason}",
                                       "InvalidData", f"ParameterArgumentValidationError,{script}", _VALIDATION))

    if param.kind is bool:
        return bool(value)
    if param.kind is int:
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ScriptFailure(TwinError(
                f"Cannot process argument transformation on parameter '{param.name}'. Cannot convert value "
                f"\"{value}\" to type \"System.Int32\". Error: \"Input string was not in a correct format.\"",
                "InvalidData", f"ParameterArgumentTransformationError,{script}", _TRANSFORMATION)) from None
        if param.minimum is not None and value < param.minimum:
            raise invalid(f"The {value} argument is less than the minimum allowed range of {param.minimum}. "
                          f"Supply an argument that is greater than or equal to {param.minimum} and then try "
                          "the command again.")
        if param.maximum is not None and value > param.maximum:
            raise invalid(f"The {value} argument is greater than the maximum allowed range of {param.maximum}. "
                          f"Supply an argument that is less than or equal to {param.maximum} and then try "
                          "the command again.")
        return value
    values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    checked = []
    for text in values:
        if param.not_empty and not text:
            raise invalid("The argument is null or empty. Provide an argument that is not null or empty, "
                          "and then try the command again.")
        if param.choices is not None:
            match = next((c for c in param.choices if c.casefold() == text.casefold()), None)
            if match is None:
                raise invalid(f"The argument \"{text}\" does not belong to the set \"{','.join(param.choices)}\" "
                              "specified by the ValidateSet attribute. Supply an argument that is in the set and "
                              "then try the command again.")
            text = match
        if param.pattern is not None and not re.search(param.pattern, text, re.IGNORECASE):
            shown = "(secret)" if param.secret else text
            raise invalid(f"The argument \"{shown}\" does not match the \"{param.pattern}\" pattern. Supply an "
                          f"argument that matches \"{param.pattern}\" and try the command again.")
        checked.append(text)
    return checked if param.kind is list else checked[0]


class ScriptRun:
    """The streams of one script run, filled as the twin goes."""

    def __init__(self) -> None:
        self.result = TwinResult()

    def verbose(self, message: str) -> None:
        self.result.verbose.append(message)

    def info(self, message: str) -> None:
        self.result.information.append(message)

    def warn(self, message: str) -> None:
        self.result.warning.append(message)

    def fail(self, message: str) -> ScriptFailure:
        """``throw "message"``; use as ``raise run.fail(...)``."""
        return ScriptFailure(TwinError.thrown(message))

    def emit(self, document: dict[str, Any]) -> TwinResult:
        """Write the one document, as ``ConvertTo-Json -Compress`` would, and end the run."""
        self.result.output = [json.dumps(document, separators=(",", ":"))]
        return self.result


def module_missing(module: str) -> ScriptFailure:
    """What ``Import-Module <module>`` says on a server without that module."""
    return ScriptFailure(TwinError(
        f"The specified module '{module}' was not loaded because no valid module file was found in any module "
        "directory.", "ResourceUnavailable", "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
        "System.IO.FileNotFoundException", target_object=module, activity="Import-Module"))


def service_missing(service: str) -> ScriptFailure:
    """What ``Get-Service <name>`` says on a server without that service."""
    return ScriptFailure(TwinError(
        f"Cannot find any service with service name '{service}'.", "ObjectNotFound",
        "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
        "Microsoft.PowerShell.Commands.ServiceCommandException", target_object=service, activity="Get-Service"))


#: What an installer path parameter accepts: an https URL, a local path or a UNC path.
INSTALLER_PATH_PATTERN = r"^(https://\S+|[a-z]:\\.+|\\\\\S.*)$"


def locate_installer(run: ScriptRun, path: str, file_name: str, what: str) -> None:
    """Fail as the script does when the installer is not there.

    The lab's servers (and its download site) hold each installer under its own file name
    only, so a site file naming another file fails as a wrong path does on Windows.
    """
    name = re.split(r"[\\/]", path.split("?", 1)[0].rstrip("\\/"))[-1]
    if path.lower().startswith("https://"):
        if name.casefold() != file_name.casefold():
            raise run.fail(f"Could not download the {what} installer from {path}: "
                           "The remote server returned an error: (404) Not Found.")
        run.verbose(f"Downloading the {what} installer from {path}...")
    elif name.casefold() != file_name.casefold():
        raise run.fail(f"Cannot find path '{path}' because it does not exist.")


async def pause(context: Any, realistic_seconds: float) -> None:
    """Let lab time pass for a slow step (installers), scaled by the lab clock and capped."""
    seconds = min(context.lab.clock.duration(realistic_seconds).total_seconds(), MAX_PAUSE_SECONDS)
    if seconds > 0:
        await asyncio.sleep(seconds)


def script_twin(script: str, declared: list[Param]) -> Callable[[Callable], Callable]:
    """Make ``fn(run, args, context)`` (sync or async) the twin of ``script``.

    Secret parameters are scrubbed from every record the run writes, whatever the twin did.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def twin(parameters: dict[str, Any], context: Any) -> TwinResult:
            run = ScriptRun()
            secrets = [str(v) for p in declared if p.secret
                       for k, v in parameters.items() if k.casefold() == p.name.casefold() and v]
            try:
                args = bind(parameters, declared, script)
                result = fn(run, args, context)
                if inspect.isawaitable(result):
                    result = await result
            except ScriptFailure as failure:
                run.result.terminating_error = failure.error
                result = run.result
            return _scrubbed(result, secrets)

        twin.script_name = script  # type: ignore[attr-defined]
        return twin

    return decorate


def _scrubbed(result: TwinResult, secrets: list[str]) -> TwinResult:
    if not secrets:
        return result

    def clean(text: Any) -> Any:
        if isinstance(text, str):
            for secret in secrets:
                text = text.replace(secret, "***")
        return text

    for stream in ("output", "verbose", "information", "warning", "debug"):
        setattr(result, stream, [clean(item) for item in getattr(result, stream)])
    for error in [*result.errors, result.terminating_error]:
        if error is not None:
            error.message = clean(error.message)
            error.fully_qualified_error_id = clean(error.fully_qualified_error_id)
            error.target_object = clean(error.target_object)
    return result
