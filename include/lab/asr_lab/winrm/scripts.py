"""What the lab runs instead of PowerShell: Python twins of the product's scripts.

The lab runs no PowerShell. Each script in ``include/powershell/*.ps1`` names its twin on a
line of its own::

    # asr-lab-twin: Get-VmmInventory

(case-insensitive, anywhere in the script, first match wins). When a pipeline arrives, the
script text is searched for that marker and the twin registered under the name runs with
the parameters the client bound (``add_parameters``). A plain command (``add_cmdlet`` /
``invoke_cmdlet``) is looked up by name. Anything else gets the error PowerShell gives for a
command that does not exist, so a typo in the product fails the way it would on Windows.

A twin is ``callable(parameters: dict, context) -> TwinResult`` and may return an awaitable
instead (twins run on the lab's event loop, so one that must wait should await, not block).
Positional arguments arrive under the key ``"$args"``; switch parameters are ``True``;
SecureString values arrive decrypted as ``str``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

TWIN_MARKER = re.compile(r"^[ \t]*#[ \t]*asr-lab-twin:[ \t]*(?P<name>[A-Za-z][\w.-]*)[ \t]*$",
                         re.MULTILINE | re.IGNORECASE)
POSITIONAL_ARGUMENTS = "$args"

WRITE_ERROR_EXCEPTION = "Microsoft.PowerShell.Commands.WriteErrorException"
RUNTIME_EXCEPTION = "System.Management.Automation.RuntimeException"
COMMAND_NOT_FOUND_EXCEPTION = "System.Management.Automation.CommandNotFoundException"


@dataclass
class TwinError:
    """An error record as PowerShell writes it (``Write-Error``) or throws it (``throw``).

    ``category`` is an ErrorCategory name (NotSpecified, ObjectNotFound, InvalidOperation...),
    ``position`` becomes the record's script stack trace, which PsrpHook logs line by line.
    """

    message: str
    category: str = "NotSpecified"
    fully_qualified_error_id: str | None = None
    exception_type: str = WRITE_ERROR_EXCEPTION
    target_object: Any = None
    activity: str | None = None
    position: str | None = None

    @classmethod
    def thrown(cls, message: str, position: str | None = None) -> TwinError:
        """``throw "message"``: a RuntimeException whose error id is the message itself."""
        return cls(message, "OperationStopped", message, RUNTIME_EXCEPTION, target_object=message, position=position)

    @classmethod
    def command_not_found(cls, name: str) -> TwinError:
        return cls(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable "
            "program. Check the spelling of the name, or if a path was included, verify that the path is correct "
            "and try again.",
            "ObjectNotFound", "CommandNotFoundException", COMMAND_NOT_FOUND_EXCEPTION, target_object=name,
        )

    @property
    def reason(self) -> str:
        """The exception's short type name, as PowerShell fills CategoryInfo.Reason."""
        return self.exception_type.rsplit(".", 1)[-1]


@dataclass
class TwinResult:
    """Everything one script run writes, stream by stream.

    Records reach the client in this order: verbose, debug, information, warning, output,
    errors; then the pipeline completes, or fails with ``terminating_error``. The product's
    scripts write exactly one JSON string to ``output``.
    """

    output: list[Any] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    information: list[Any] = field(default_factory=list)
    warning: list[str] = field(default_factory=list)
    errors: list[TwinError] = field(default_factory=list)
    terminating_error: TwinError | None = None

    def extend(self, other: TwinResult) -> None:
        for name in ("output", "verbose", "debug", "information", "warning", "errors"):
            getattr(self, name).extend(getattr(other, name))
        self.terminating_error = self.terminating_error or other.terminating_error


Twin = Callable[[dict[str, Any], Any], Union[TwinResult, Awaitable[TwinResult]]]


class ScriptTwins:
    """The registry of twins, by script or command name (case-insensitive, like PowerShell)."""

    def __init__(self, twins: Mapping[str, Twin] | None = None) -> None:
        self._twins: dict[str, tuple[str, Twin]] = {}
        for name, twin in (twins or {}).items():
            self.register(name, twin)

    def register(self, name: str, twin: Twin | None = None) -> Any:
        """Register ``twin`` under ``name``; without ``twin``, return a decorator that does."""
        if twin is None:
            return lambda fn: self.register(name, fn)
        self._twins[name.casefold()] = (name, twin)
        return twin

    def get(self, name: str) -> Twin | None:
        entry = self._twins.get(name.casefold())
        return entry[1] if entry else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._twins

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self._twins.values())

    def __len__(self) -> int:
        return len(self._twins)


def twin_name_in_script(script: str) -> str | None:
    """The name on the script's ``# asr-lab-twin: <Name>`` line, if it has one."""
    match = TWIN_MARKER.search(script)
    return match.group("name") if match else None


def first_command_word(script: str) -> str:
    """The word PowerShell would try to run first in a script without a twin marker."""
    code = re.sub(r"<#.*?#>", "", script, flags=re.DOTALL)
    for line in code.splitlines():
        line = re.sub(r"^[&.]\s+", "", line.split("#", 1)[0].strip())  # call operators: & 'x', . x
        if line:
            word = line.split()[0]
            return word.strip("'\"") or word
    return ""


class SecureStringValue(str):
    """A SecureString parameter, decrypted: a ``str`` to twins, masked in the invocation log."""

    def __repr__(self) -> str:
        return "SecureStringValue('********')"


@dataclass(frozen=True)
class CommandCall:
    """One command of a pipeline as the client sent it (``AddScript`` or ``AddCommand``)."""

    text: str  #: the command name, or the whole script
    is_script: bool
    parameters: dict[str, Any] = field(default_factory=dict)
    arguments: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The twin marker of a script (else its first word), or the command name."""
        if self.is_script:
            return twin_name_in_script(self.text) or first_command_word(self.text)
        return self.text

    def describe(self) -> dict[str, Any]:
        """Name and parameters for the invocation log, SecureString values masked."""
        def mask(value: Any) -> Any:
            return "********" if isinstance(value, SecureStringValue) else value
        return {"name": self.name, "parameters": {k: mask(v) for k, v in self.parameters.items()},
                "arguments": [mask(v) for v in self.arguments]}


async def run_pipeline(statements: list[list[CommandCall]], twins: ScriptTwins, context: Any) -> TwinResult:
    """Run each statement (``cmd | filter | ...``) the way PowerShell would, with twins for scripts.

    Never raises: a twin that raises becomes a terminating error with its message, an unknown
    command becomes PowerShell's CommandNotFoundException record.
    """
    result = TwinResult()
    for statement in statements:
        statement_result = await _run_statement(statement, twins, context)
        result.extend(statement_result)
        if result.terminating_error is not None:
            break
    return result


async def _run_statement(statement: list[CommandCall], twins: ScriptTwins, context: Any) -> TwinResult:
    head, filters = statement[0], statement[1:]
    result = await _run_command(head, twins, context)
    if result.terminating_error is not None:
        return result
    for command in filters:
        if command.is_script or _apply_filter(command, result) is False:
            twin = twins.get(command.name)
            if twin is None:
                return TwinResult(terminating_error=TwinError.command_not_found(command.name))
            piped = await _call_twin(twin, _bind(command, result.output), context)
            result.output = []  # a filter's output replaces what was piped into it
            result.extend(piped)
            if result.terminating_error is not None:
                break
    return result


async def _run_command(command: CommandCall, twins: ScriptTwins, context: Any) -> TwinResult:
    name = command.name
    if command.is_script:
        if not name or name[0] in "$([@{":
            return TwinResult(terminating_error=TwinError(
                "The lab cannot run this script: it carries no '# asr-lab-twin: <Name>' line and does not start "
                "with a command the lab knows.", "NotImplemented", "AsrLabNoTwin", RUNTIME_EXCEPTION))
        twin = twins.get(name)
        if twin is None:  # inside a script, a missing command is an error record; the script goes on
            return TwinResult(errors=[TwinError.command_not_found(name)])
    else:
        twin = twins.get(command.text)
        if twin is None:  # AddCommand of a missing command fails the whole pipeline
            return TwinResult(terminating_error=TwinError.command_not_found(command.text))
    return await _call_twin(twin, _bind(command), context)


def _bind(command: CommandCall, pipeline_input: list[Any] | None = None) -> dict[str, Any]:
    parameters = dict(command.parameters)
    if command.arguments:
        parameters[POSITIONAL_ARGUMENTS] = list(command.arguments)
    if pipeline_input:
        parameters.setdefault("InputObject", list(pipeline_input))
    return parameters


async def _call_twin(twin: Twin, parameters: dict[str, Any], context: Any) -> TwinResult:
    try:
        result = twin(parameters, context)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # a twin bug must reach the client as an error record, not kill the lab
        return TwinResult(terminating_error=TwinError.thrown(str(exc) or type(exc).__name__))
    if not isinstance(result, TwinResult):
        return TwinResult(terminating_error=TwinError.thrown(
            f"The lab twin returned {type(result).__name__}, not a TwinResult."))
    return result


def _apply_filter(command: CommandCall, result: TwinResult) -> bool:
    """Apply the few built-in cmdlets a client appends to a pipeline; False if not one of them."""
    name = command.text.casefold()
    if name == "convertto-json":  # PsrpOperator appends it when do_xcom_push is on
        if result.output:
            value = result.output[0] if len(result.output) == 1 else result.output
            compress = any(key.casefold() == "compress" for key in command.parameters)
            result.output = [json.dumps(value, indent=None if compress else 4)]
        return True
    if name == "out-null":
        result.output = []
        return True
    if name == "out-string":
        result.output = ["".join(f"{item}\n" for item in result.output)] if result.output else []
        return True
    return False
