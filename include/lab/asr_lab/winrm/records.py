"""Translation between psrpcore's PowerShell objects and the plain values twins deal in.

Twins see parameters as plain Python (str, int, bool, list, dict) and describe errors as
:class:`~asr_lab.winrm.scripts.TwinError`; the client must receive objects shaped like the
ones Windows PowerShell 5.1 serialises, because PsrpHook logs their fields (reason, category
message, script stack trace) into the task log a DR engineer reads.
"""

from __future__ import annotations

import datetime
from typing import Any

import psrpcore
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSObject,
    PSSecureString,
)

from asr_lab.winrm.scripts import (
    COMMAND_NOT_FOUND_EXCEPTION,
    RUNTIME_EXCEPTION,
    WRITE_ERROR_EXCEPTION,
    CommandCall,
    SecureStringValue,
    TwinError,
)

# .NET type chains, most derived first, as PowerShell lists them in an exception's TypeNames.
_EXCEPTION_BASES = {
    COMMAND_NOT_FOUND_EXCEPTION: [RUNTIME_EXCEPTION, "System.SystemException"],
    RUNTIME_EXCEPTION: ["System.SystemException"],
    WRITE_ERROR_EXCEPTION: ["System.SystemException"],
}


class PowerShellCategoryInfo(ErrorCategoryInfo):
    """CategoryInfo whose text is PowerShell's ``Category: (Target:Type) [Activity], Reason``.

    psrpcore 0.3.1 leaves out the colon after the category; PsrpHook logs this text as the
    error line, so it should read exactly as it does against Windows.
    """

    def __str__(self) -> str:
        return (f'{self.Category.name}: ({self.TargetName or ""}:{self.TargetType or ""}) '
                f'[{self.Activity or ""}], {self.Reason or ""}')


def error_record(error: TwinError) -> ErrorRecord:
    """The ErrorRecord PowerShell would build for ``Write-Error``/``throw``/a missing command."""
    exception = NETException(Message=error.message, HResult=-2146233087)
    exception.PSObject.type_names = [error.exception_type, *_EXCEPTION_BASES.get(error.exception_type, []),
                                     "System.Exception", "System.Object"]
    try:
        category = ErrorCategory[error.category]
    except KeyError:
        category = ErrorCategory.NotSpecified
    target = error.target_object
    activity = error.activity
    if activity is None and error.exception_type == WRITE_ERROR_EXCEPTION:
        activity = "Write-Error"
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=PowerShellCategoryInfo(
            Category=category,
            Activity=activity,
            Reason=error.reason,
            TargetName=str(target) if target is not None else None,
            TargetType=_dotnet_type_name(target) if target is not None else None,
        ),
        TargetObject=target,
        FullyQualifiedErrorId=error.fully_qualified_error_id or error.reason,
        ScriptStackTrace=error.position,
    )


def _dotnet_type_name(value: Any) -> str:
    return {str: "String", int: "Int32", bool: "Boolean", float: "Double"}.get(type(value), "Object")


def wire_value(value: Any) -> Any:
    """A twin's output value as something psrpcore can serialise (anything else becomes its text)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(item) for item in value]
    return str(value)


def plain_value(value: Any) -> Any:
    """A deserialised PowerShell value as plain Python, for a twin's parameters."""
    if isinstance(value, PSSecureString):
        return SecureStringValue(value.decrypt())
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime.fromtimestamp(value.timestamp(), tz=value.tzinfo)
    if isinstance(value, dict):
        return {plain_value(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, PSObject):
        properties = value.PSObject.extended_properties + value.PSObject.adapted_properties
        if properties:
            return {prop.name: plain_value(prop.get_value(value)) for prop in properties}
    return str(value)


def command_calls(pipeline: psrpcore.PowerShell) -> list[list[CommandCall]]:
    """The statements of a CreatePipeline, each a list of commands piped into one another."""
    statements: list[list[CommandCall]] = [[]]
    for command in pipeline.commands:
        parameters: dict[str, Any] = {}
        arguments: list[Any] = []
        for name, value in command.parameters:
            if name is None:
                arguments.append(plain_value(value))
            else:  # a parameter sent without a value is a switch, as in PowerShell
                parameters[str(name)] = True if value is None else plain_value(value)
        statements[-1].append(CommandCall(str(command.command_text), bool(command.is_script), parameters, arguments))
        if command.end_of_statement:
            statements.append([])
    return [statement for statement in statements if statement]
